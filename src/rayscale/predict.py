"""``rayscale predict``: a trace-driven what-if simulation of a measured bundle at other node counts.

The grid phase is replayed as the runner schedules it: every trial submitted longest-expected
first and handed to the earliest free slot (a list schedule over N × C/cpus-per-trial slots), each
taking the duration it took when measured (or, for configs not measured, the cost model fitted
to those that were), a slot waiting the measured dispatch gap between two tasks, and the round
ending the measured collect time after its last task. Before the round: the node's provisioning
delay, the data's transfer (object size / bandwidth) and the per-node warm-up.

The Tune sweep is replayed on the same slots driving Ray Tune's own ``ASHAScheduler`` with the
reports the bundle recorded, in simulated time: each trial starts when a slot frees, its reports
arrive after the compute they took, and ASHA stops or continues it as they arrive, so stops and
promotions follow arrival order as they do for real. A trial ASHA would run further than it ran
when measured continues at its own seconds per round with its last metric (counted as
``extrapolated``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean, median
from typing import Any

from rayscale.errors import RayscaleError
from rayscale.schema import Result, Round, ScalePoint, ScaleResult, TrialRecord, TuneTrial


@dataclass(frozen=True)
class Costs:
    """What a forecast adds around the measured work (all optional)."""

    cpus_per_node: int
    provision_s: float = 0.0  # a new node's pod start (KubeRay), paid once before the work
    bandwidth_mbps: float | None = None  # None: the data's transfer is not modelled
    price_per_node_hour: float | None = None
    deadline_s: float | None = None


def worker_gap(trials: Sequence[TrialRecord] | Sequence[TuneTrial]) -> float:
    """Mean idle time of a worker between the end of one of its trials and the start of its next
    (the dispatch latency a slot pays per task; the mean, since a makespan adds them up); 0 when
    no worker ran two."""
    by_worker: dict[tuple[str, int], list[Any]] = {}
    for t in trials:
        by_worker.setdefault((t.node_id, t.pid), []).append(t)
    gaps = [
        max(0.0, b.start_ts - a.end_ts)
        for tasks in by_worker.values()
        for a, b in itertools.pairwise(sorted(tasks, key=lambda t: t.start_ts))
    ]
    return fmean(gaps) if gaps else 0.0


def list_schedule(durations: Sequence[float], slots: int, gap_s: float = 0.0) -> float:
    """Makespan of handing ``durations`` out in order, each to the earliest free slot, a slot
    waiting ``gap_s`` before each task it runs (the dispatch latency)."""
    if slots < 1:
        raise ValueError("slots must be at least 1")
    if len(durations) <= slots:
        return gap_s + max(durations, default=0.0)
    free = [0.0] * slots
    end = 0.0
    for d in durations:
        finish = heapq.heappop(free) + gap_s + d
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end


# --- the grid phase ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridTrace:
    """What the grid simulation needs from one measured parallel phase."""

    durations: list[float]  # each trial's task time, in submission order (longest expected first)
    costs: list[float]  # the cost model's figure for each, same order
    gap_s: float  # mean idle time of a worker between two of its tasks
    collect_s: float  # median round wall − span (the driver collecting the last results)
    warmup_s: float
    cpus_per_trial: float
    data_bytes: int

    @classmethod
    def of(
        cls,
        trials: Sequence[TrialRecord],
        rounds: list[Round],
        warmup_s: float,
        cpus_per_trial: float,
        dataset: dict[str, Any],
    ) -> GridTrace:
        ordered = sorted(trials, key=lambda t: (-t.cost, t.index))
        rows = sum(int(dataset.get(k) or 0) for k in ("n_train", "n_test", "n_val"))
        return cls(
            durations=[t.end_ts - t.start_ts for t in ordered],
            costs=[t.cost for t in ordered],
            gap_s=worker_gap(trials),
            collect_s=median(max(0.0, r.wall_s - r.span_s) for r in rounds) if rounds else 0.0,
            warmup_s=warmup_s,
            cpus_per_trial=cpus_per_trial,
            data_bytes=rows * (int(dataset.get("n_features") or 0) + 1) * 8,
        )

    def seconds_per_cost(self) -> float:
        """The cost model fitted to the measured trials (duration = k × cost, least squares)."""
        den = sum(c * c for c in self.costs)
        return sum(c * d for c, d in zip(self.costs, self.durations, strict=True)) / den if den else 0.0

    def with_costs(self, costs: Sequence[float]) -> GridTrace:
        """The same machine running other configs: durations from the fitted cost model."""
        k = self.seconds_per_cost()
        ordered = sorted(costs, reverse=True)
        return replace(self, durations=[k * c for c in ordered], costs=ordered)


@dataclass(frozen=True)
class Point:
    phase: str  # "grid" or "tune"
    nodes: int
    slots: int
    wall_s: float  # one warm round, as the bundle's parallel wall
    total_s: float  # provisioning + transfer + warm-up + the round
    speedup: float  # Σ durations (the work on one slot) / wall
    parallel_efficiency: float  # speedup / CPUs
    schedule_efficiency: float  # lower bound / wall
    cost: float | None
    measured_wall_s: float | None = None
    measured_min_s: float | None = None
    measured_max_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the Tune replay's own figures

    @property
    def error_pct(self) -> float | None:
        if self.measured_wall_s is None:
            return None
        return 100.0 * (self.wall_s - self.measured_wall_s) / self.measured_wall_s

    def row(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "nodes": self.nodes,
            "slots": self.slots,
            "predicted_wall_s": self.wall_s,
            "predicted_total_s": self.total_s,
            "speedup": self.speedup,
            "parallel_efficiency": self.parallel_efficiency,
            "schedule_efficiency": self.schedule_efficiency,
            "cost": self.cost,
            "measured_wall_s": self.measured_wall_s,
            "measured_min_s": self.measured_min_s,
            "measured_max_s": self.measured_max_s,
            "error_pct": self.error_pct,
            **self.extra,
        }


def _slots(nodes: int, costs: Costs, cpus_per_trial: float) -> int:
    per_node = int(costs.cpus_per_node // cpus_per_trial)
    if per_node < 1:
        raise RayscaleError(
            f"--cpus-per-node {costs.cpus_per_node} cannot fit one trial of {cpus_per_trial:g} CPUs"
        )
    return nodes * per_node


def _overheads(trace_warmup_s: float, data_bytes: int, costs: Costs, nodes: int) -> float:
    transfer = 0.0 if not costs.bandwidth_mbps else data_bytes * 8 / (costs.bandwidth_mbps * 1e6)
    return (costs.provision_s if nodes > 1 else 0.0) + transfer + trace_warmup_s


def _cost(nodes: int, total_s: float, costs: Costs) -> float | None:
    if costs.price_per_node_hour is None:
        return None
    return nodes * costs.price_per_node_hour * total_s / 3600.0


def predict_grid(trace: GridTrace, nodes: Sequence[int], costs: Costs) -> list[Point]:
    work = sum(trace.durations)
    points = []
    for n in nodes:
        slots = _slots(n, costs, trace.cpus_per_trial)
        wall = list_schedule(trace.durations, slots, trace.gap_s) + trace.collect_s
        bound = max(work / slots, max(trace.durations, default=0.0))
        total = _overheads(trace.warmup_s, trace.data_bytes, costs, n) + wall
        speedup = work / wall
        points.append(
            Point(
                phase="grid",
                nodes=n,
                slots=slots,
                wall_s=wall,
                total_s=total,
                speedup=speedup,
                parallel_efficiency=speedup / (n * costs.cpus_per_node),
                schedule_efficiency=bound / wall,
                cost=_cost(n, total, costs),
            )
        )
    return points


# --- the Tune sweep ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneTrace:
    """What the Tune replay needs from one measured sweep."""

    trials: list[TuneTrial]  # in Tune's trial order
    scheduler: str
    metric: str
    max_rounds: int
    grace_period: int
    reduction_factor: int
    cpus_per_trial: int
    fixed_s: float  # the sweep's wall less its trials' span: fit() to the first trial, and the tail
    gap_s: float  # mean time between a trial ending and the next starting on its actor
    setup_s: float  # mean wall of a trial beyond its boosting compute (its DMatrix, its reports)

    @classmethod
    def of(cls, trials: Sequence[TuneTrial], options: dict[str, Any], rounds: Sequence[Round]) -> TuneTrace:
        """From the sweep's trials, its stored options (``options["tune"]`` of the bundle) and its
        timed rounds (each round's wall less its span is the fixed part)."""
        tune = options.get("tune") or {}
        ordered = sorted(trials, key=lambda t: t.index)
        setups = [max(0.0, (t.end_ts - t.start_ts) - t.compute_s) for t in ordered]
        return cls(
            trials=ordered,
            scheduler=tune.get("scheduler", "asha"),
            metric=tune.get("metric", "rmse"),
            max_rounds=int(tune.get("max_rounds", max(t.rounds for t in ordered))),
            grace_period=int(tune.get("grace_period") or 1),
            reduction_factor=int(tune.get("reduction_factor") or 2),
            cpus_per_trial=int(tune.get("cpus_per_trial") or 1),
            fixed_s=median(max(0.0, r.wall_s - r.span_s) for r in rounds) if rounds else 0.0,
            gap_s=worker_gap(ordered),
            setup_s=fmean(setups) if setups else 0.0,
        )

    def scheduler_object(self) -> Any:
        """Ray Tune's own scheduler, configured as the sweep's was."""
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

        if self.scheduler != "asha":
            return FIFOScheduler()
        return ASHAScheduler(
            time_attr="rounds",
            metric=self.metric,
            mode="min",
            max_t=self.max_rounds,
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
        )


@dataclass
class _Running:
    trial: TuneTrial
    step: int = 0  # the report it sends next (0-based)


@dataclass(frozen=True)
class _Handle:
    """What ASHA reads of a trial: its id."""

    trial_id: str


@dataclass(frozen=True)
class TuneReplay:
    wall_s: float
    rounds_run: int
    best_rmse: float
    best_trial: str
    stopped_early: int
    extrapolated: int  # reports ASHA asked for that the bundle did not have
    stops: dict[str, int]  # trial id -> rounds it ran
    busy_s: float  # Σ each trial's time in its slot
    longest_s: float


def _report_at(trace: TuneTrace, trial: TuneTrial, step: int, every: int) -> tuple[int, float, float]:
    """(rounds, metric, cumulative compute) of report ``step`` (0-based), extrapolating past the
    recorded ones at the trial's own seconds per round with its last metric."""
    reports = trial.reports
    r = reports[min(step, len(reports) - 1)]
    metric = r.rmse if trace.metric == "rmse" else (r.val_rmse or r.rmse)
    if step < len(reports):
        return r.rounds, metric, r.compute_s
    rounds = min(trace.max_rounds, r.rounds + (step - len(reports) + 1) * every)
    return rounds, metric, r.compute_s / max(1, r.rounds) * rounds


def _verdict(scheduler: Any, trace: TuneTrace, trial_id: str, rounds: int, metric: float) -> bool:
    """Feed one report to the scheduler as Tune's controller does; True when the trial ends here."""
    from ray.tune.schedulers import TrialScheduler

    result = {"rounds": rounds, trace.metric: metric}
    if rounds >= trace.max_rounds:
        scheduler.on_trial_complete(None, _Handle(trial_id), result)
        return True
    return bool(scheduler.on_trial_result(None, _Handle(trial_id), result) == TrialScheduler.STOP)


def replay_tune(trace: TuneTrace, slots: int) -> TuneReplay:
    """Replay the sweep on ``slots`` concurrent trials in simulated time (see the module doc)."""
    if not trace.trials or any(not t.reports for t in trace.trials):
        raise RayscaleError("the bundle's Tune trials have no recorded reports to replay")
    scheduler = trace.scheduler_object()
    every = _report_interval(trace)
    queue = list(reversed(trace.trials))  # pop() takes the next in Tune's order
    events: list[tuple[float, int, _Running]] = []  # (time of its next report, sequence, trial)
    sequence = 0
    final: dict[str, tuple[int, float]] = {}
    began: dict[str, float] = {}
    took: list[float] = []
    extrapolated = 0

    def schedule(run: _Running, at: float, compute_before: float) -> None:
        nonlocal sequence
        _, _, compute = _report_at(trace, run.trial, run.step, every)
        heapq.heappush(events, (at + compute - compute_before, sequence, run))
        sequence += 1

    def start(at: float) -> None:
        trial = queue.pop()
        began[trial.trial_id] = at
        scheduler.on_trial_add(None, _Handle(trial.trial_id))
        schedule(_Running(trial), at + trace.setup_s, 0.0)

    for _ in range(min(slots, len(queue))):
        start(0.0)
    end = 0.0
    while events:
        now, _, run = heapq.heappop(events)
        rounds, metric, compute = _report_at(trace, run.trial, run.step, every)
        extrapolated += run.step >= len(run.trial.reports)
        if _verdict(scheduler, trace, run.trial.trial_id, rounds, metric):
            final[run.trial.trial_id] = (rounds, metric)
            took.append(now - began[run.trial.trial_id])
            end = max(end, now)
            if queue:
                start(now + trace.gap_s)
            continue
        run.step += 1
        schedule(run, now, compute)
    best = min(final, key=lambda k: final[k][1])
    return TuneReplay(
        wall_s=trace.fixed_s + end,
        rounds_run=sum(r for r, _ in final.values()),
        best_rmse=final[best][1],
        best_trial=best,
        stopped_early=sum(1 for r, _ in final.values() if r < trace.max_rounds),
        extrapolated=extrapolated,
        stops={k: r for k, (r, _) in final.items()},
        busy_s=sum(took),
        longest_s=max(took),
    )


def _report_interval(trace: TuneTrace) -> int:
    steps = [b.rounds - a.rounds for t in trace.trials for a, b in itertools.pairwise(t.reports)]
    return int(median(steps)) if steps else max(1, trace.max_rounds)


def replay_in_order(trace: TuneTrace) -> dict[str, int]:
    """ASHA's decisions when fed the recorded reports in the order they were sent (their
    timestamps): trial id -> the rounds at which the trial ended."""
    if any(r.ts is None for t in trace.trials for r in t.reports):
        raise RayscaleError("the bundle's Tune reports carry no timestamps to order them by")
    scheduler = trace.scheduler_object()
    for trial in trace.trials:
        scheduler.on_trial_add(None, _Handle(trial.trial_id))
    arrivals = sorted(
        ((r.ts or 0.0, trial.index, r, trial) for trial in trace.trials for r in trial.reports),
        key=lambda x: (x[0], x[1]),
    )
    ended: dict[str, int] = {}
    for _, _, r, trial in arrivals:
        if trial.trial_id in ended:
            continue
        metric = r.rmse if trace.metric == "rmse" else (r.val_rmse or r.rmse)
        if _verdict(scheduler, trace, trial.trial_id, r.rounds, metric):
            ended[trial.trial_id] = r.rounds
    return ended


# --- from a bundle to a forecast -----------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredPoint:
    """One phase measured at one node count, as the simulation reads it."""

    phase: str  # "grid" or "tune"
    nodes: int
    cpus_per_node: int
    wall_s: float  # median of its rounds
    min_s: float
    max_s: float
    trace: GridTrace | TuneTrace


def measured_points(bundle: Result | ScaleResult) -> list[MeasuredPoint]:
    """Every phase-and-node-count a bundle measured (a run bundle: one per phase)."""
    if isinstance(bundle, ScaleResult):
        run = bundle.options.get("run") or {}
        return [_measured(p, bundle.cpus_per_node, run, bundle.dataset) for p in bundle.points]
    out: list[MeasuredPoint] = []
    grid, tune = bundle.grid, bundle.tune
    if grid is not None and grid.parallel is not None:
        par = grid.parallel
        per_node = max(1, grid.cpus // max(1, grid.nodes))
        trace = GridTrace.of(par.trials, par.rounds, par.warmup_s, par.cpus_per_trial, bundle.dataset)
        walls = [r.wall_s for r in par.rounds]
        out.append(MeasuredPoint("grid", grid.nodes, per_node, par.wall_s, min(walls), max(walls), trace))
    if tune is not None:
        nodes = bundle.cluster.nodes if bundle.cluster else 1
        rounds = [Round.of(tune.wall_s, tune.trials)]
        trace_t = TuneTrace.of(tune.trials, bundle.options, rounds)
        per_node = max(1, tune.cpus // max(1, nodes))
        out.append(MeasuredPoint("tune", nodes, per_node, tune.wall_s, tune.wall_s, tune.wall_s, trace_t))
    return out


def _measured(
    point: ScalePoint, per_node: int, run: dict[str, Any], dataset: dict[str, Any]
) -> MeasuredPoint:
    """One point of a scale bundle (its ``run`` options, its dataset)."""
    rounds = point.rounds
    walls = [r.wall_s for r in rounds]
    trace: GridTrace | TuneTrace
    if point.phase == "tune":
        trace = TuneTrace.of([t for t in point.trials if isinstance(t, TuneTrial)], run, rounds)
    else:
        records = [t for t in point.trials if isinstance(t, TrialRecord)]
        trace = GridTrace.of(records, rounds, point.warmup_s, float(run.get("cpus_per_trial") or 1), dataset)
    name = "tune" if point.phase == "tune" else "grid"
    return MeasuredPoint(name, point.nodes, per_node, median(walls), min(walls), max(walls), trace)


def predict_tune(trace: TuneTrace, nodes: int, costs: Costs, alone_s: float) -> Point:
    """The sweep replayed on ``nodes`` nodes; ``alone_s`` is its replay on one slot (the speedup's base)."""
    slots = _slots(nodes, costs, trace.cpus_per_trial)
    replay = replay_tune(trace, slots)
    span = max(1e-9, replay.wall_s - trace.fixed_s)
    total = (costs.provision_s if nodes > 1 else 0.0) + replay.wall_s
    speedup = alone_s / replay.wall_s
    return Point(
        phase="tune",
        nodes=nodes,
        slots=slots,
        wall_s=replay.wall_s,
        total_s=total,
        speedup=speedup,
        parallel_efficiency=speedup / (nodes * costs.cpus_per_node),
        schedule_efficiency=min(1.0, max(replay.busy_s / slots, replay.longest_s) / span),
        cost=_cost(nodes, total, costs),
        extra={
            "rounds_run": replay.rounds_run,
            "best_rmse": replay.best_rmse,
            "stopped_early": replay.stopped_early,
            "extrapolated_reports": replay.extrapolated,
        },
    )


@dataclass(frozen=True)
class Forecast:
    points: list[Point]
    validated: bool
    base: dict[str, int]  # phase -> the node count predicted from
    cheapest: dict[str, Point | None]  # phase -> the cheapest point within the deadline

    def rows(self) -> list[dict[str, Any]]:
        return [p.row() for p in self.points]


def forecast(
    measured: list[MeasuredPoint],
    nodes: Sequence[int],
    costs: Costs,
    validate: bool = False,
    grid_costs: Sequence[float] | None = None,
) -> Forecast:
    """Predict each phase at ``nodes`` from its smallest ``measured`` point (:func:`measured_points`);
    with ``validate``, predict every measured point instead and attach what was measured. With
    ``grid_costs`` (the cost model's figure for each config of another grid) the grid phase runs
    those configs, timed by the cost model fitted to the measured trials."""
    if grid_costs is not None:
        measured = [
            replace(m, trace=m.trace.with_costs(grid_costs)) if isinstance(m.trace, GridTrace) else m
            for m in measured
        ]
    if not measured:
        raise RayscaleError("the bundle has no grid-parallel or Tune phase to predict from")
    points: list[Point] = []
    base: dict[str, int] = {}
    for phase in ("grid", "tune"):
        mine = sorted((m for m in measured if m.phase == phase), key=lambda m: m.nodes)
        if not mine:
            continue
        smallest = mine[0]
        base[phase] = smallest.nodes
        if validate and len(mine) < 2:
            raise RayscaleError(
                f"--validate needs a scale bundle with two or more node counts; the {phase} phase "
                f"has {len(mine)}"
            )
        trace = smallest.trace
        alone_s = replay_tune(trace, 1).wall_s if isinstance(trace, TuneTrace) else 0.0
        by_nodes = {m.nodes: m for m in mine}
        for n in [m.nodes for m in mine] if validate else nodes:
            seen = by_nodes.get(n)
            # Validation predicts each point on its own node size; a forecast shows what was measured
            # only where the node size is the one asked for.
            at = replace(costs, cpus_per_node=seen.cpus_per_node) if validate and seen else costs
            if seen is not None and seen.cpus_per_node != at.cpus_per_node:
                seen = None
            if isinstance(trace, GridTrace):
                p = predict_grid(trace, [n], at)[0]
            else:
                p = predict_tune(trace, n, at, alone_s)
            points.append(p if seen is None else _with_measured(p, seen))
    cheapest = {phase: _cheapest([p for p in points if p.phase == phase], costs) for phase in base}
    return Forecast(points, validate, base, cheapest)


def _with_measured(p: Point, m: MeasuredPoint) -> Point:
    return replace(p, measured_wall_s=m.wall_s, measured_min_s=m.min_s, measured_max_s=m.max_s)


def _cheapest(points: list[Point], costs: Costs) -> Point | None:
    if costs.price_per_node_hour is None or costs.deadline_s is None:
        return None
    within = [p for p in points if p.total_s <= costs.deadline_s and p.cost is not None]
    return min(within, key=lambda p: (p.cost, p.nodes)) if within else None


def parse_node_counts(text: str) -> tuple[int, ...]:
    """``1,2,4`` or ``1..1024`` (every power of two from the first to the last)."""
    from rayscale.scale import parse_nodes

    if ".." in text:
        low, _, high = text.partition("..")
        first, last = parse_nodes(low), parse_nodes(high)
        if len(first) != 1 or len(last) != 1 or first[0] > last[0]:
            raise RayscaleError(f"--nodes {text!r}: a range is LOW..HIGH, e.g. 1..1024")
        counts, n = [], first[0]
        while n <= last[0]:
            counts.append(n)
            n *= 2
        return tuple(counts)
    return parse_nodes(text)


def run_forecast(
    path: Path,
    nodes_text: str,
    cpus_per_node: int | None,
    provision_s: float | None,
    bandwidth_mbps: float | None,
    price_per_node_hour: float | None,
    deadline_s: float | None,
    validate: bool,
    plot: Path | None,
    grid: str | None = None,
) -> tuple[Forecast, Costs, Path]:
    """``rayscale predict``: load, check the options, simulate, write the plot."""
    from rayscale.bundle import load_any
    from rayscale.report import write_forecast_plot

    for name, value in (
        ("--provision-s", provision_s),
        ("--bandwidth-mbps", bandwidth_mbps),
        ("--price-per-node-hour", price_per_node_hour),
        ("--deadline", deadline_s),
    ):
        if value is not None and (
            not math.isfinite(value) or value < 0 or (value == 0 and name != "--provision-s")
        ):
            raise RayscaleError(f"{name} must be a positive number, got {value:g}")
    if grid is not None and validate:
        raise RayscaleError("--grid predicts other configs, --validate the measured ones: choose one")
    if cpus_per_node is not None and cpus_per_node < 1:
        raise RayscaleError(f"--cpus-per-node must be at least 1, got {cpus_per_node}")
    counts = parse_node_counts(nodes_text)
    bundle = load_any(path)
    measured = measured_points(bundle)
    if not measured:
        raise RayscaleError(f"{path} has no grid-parallel or Tune phase to predict from")
    if provision_s is None:
        ramps = [p.resize_s for p in getattr(bundle, "points", []) if p.resize_s is not None]
        provision_s = median(ramps) if ramps else 0.0
    costs = Costs(
        cpus_per_node=cpus_per_node or min(m.cpus_per_node for m in measured),
        provision_s=provision_s,
        bandwidth_mbps=bandwidth_mbps,
        price_per_node_hour=price_per_node_hour,
        deadline_s=deadline_s,
    )
    grid_costs = None
    if grid is not None:
        if validate:
            raise RayscaleError(
                "--grid predicts other configs; --validate checks the measured ones: choose one"
            )
        from rayscale.grids import load_grid

        n, f = int(bundle.dataset.get("n_train") or 0), int(bundle.dataset.get("n_features") or 0)
        grid_costs = [spec.cost(n, f) for spec in load_grid(grid)]
    result = forecast(measured, counts, costs, validate, grid_costs)
    folder = path if path.is_dir() else path.parent
    png = write_forecast_plot(result, costs, plot or folder / "predict.png")
    return result, costs, png
