"""``rayscale predict``: a trace-driven what-if simulation of a measured bundle at other node counts.

The grid phase is replayed as the runner schedules it: every trial submitted longest-expected
first and handed to the earliest free slot (a list schedule over N × C/cpus-per-trial slots), each
taking the duration it took when measured (or, for configs not measured, the cost model fitted
to those that were), a slot waiting the measured dispatch gap between two tasks, and the round
ending the measured collect time after its last task. Before the round: the node's provisioning
delay, the data's transfer (the head sends a copy to each other node through its own link: N − 1
× object size / bandwidth) and the per-node warm-up.

Isolated nodes (``--isolate``) all get the same CPU limit, but the head spends part of its own on
the cluster's Ray processes (GCS, autoscaler monitor, dashboard process, client server), which a
worker node does not run; the sampler measures that split at the one-node base point, and a trial
on a worker node takes its measured time × :func:`~rayscale.work.sim.slots.worker_speed` (the head's slots
keep the measured pace). Ray places the first tasks on the nodes in an order of its own, so the
grid's wall is then the mean over where the head's slots fall among them
(:func:`~rayscale.work.sim.slots.first_placements`), their range beside it.

The Tune sweep is replayed on the same slots driving Ray Tune's own ``ASHAScheduler`` with the
reports the bundle recorded, in simulated time: each trial starts when a slot frees, its reports
arrive after the compute they took, and ASHA stops or continues it as they arrive, so stops and
promotions follow arrival order as they do for real. A trial ASHA would run further than it ran
when measured continues at its own seconds per round with its last metric (counted as
``extrapolated``). The sweep's fixed part (``Tuner.fit()`` to its first trial, and its last trial
to the end: the Tune actors' start-up, most of a short sweep's wall) is carried over unchanged, the
median of the measured rounds'; their min and max are the prediction's range.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import fmean, median
from typing import Any, Protocol

from rayscale.results.bundle import load_any
from rayscale.errors import RayscaleError
from rayscale.results.forecast import Forecast, ForecastCosts, ForecastPoint
from rayscale.work.grid.configs import load_grid
from rayscale.options.commands import GRID_PARALLEL, TUNE, PredictOptions
from rayscale.results.scaling import Measurement, ScaleResult, cheapest_meeting_deadline, node_hours
from rayscale.results.schema import Result, Round, TrialRecord, TuneTrial, lower_bound, trial_slots
from rayscale.work.sim.slots import capacity, first_placements, list_schedule, slot_speeds, worker_gap, worker_speed
from rayscale.work.tune.sweep import scheduler_for

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
    worker_speed: float = 1.0  # a trial's time on a worker node against the measured node's

    @classmethod
    def of(
        cls,
        trials: Sequence[TrialRecord],
        rounds: list[Round],
        warmup_s: float,
        cpus_per_trial: float,
        dataset: dict[str, Any],
        worker_speed: float = 1.0,
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
            worker_speed=worker_speed,
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


def _slots(nodes: int, costs: ForecastCosts, cpus_per_trial: float) -> int:
    per_node = trial_slots(costs.cpus_per_node, cpus_per_trial)
    if per_node < 1:
        raise RayscaleError(
            f"--cpus-per-node {costs.cpus_per_node} cannot fit one trial of {cpus_per_trial:g} CPUs"
        )
    return nodes * per_node


def transfer_s(data_bytes: int, costs: ForecastCosts, nodes: int) -> float:
    """The data's way to the other nodes: the head holds its only copy and sends one to each of
    the ``nodes`` − 1 others through its own link (0 without ``--bandwidth-mbps``, or on one)."""
    if not costs.bandwidth_mbps:
        return 0.0
    return (nodes - 1) * data_bytes * 8 / (costs.bandwidth_mbps * 1e6)


def _cost(nodes: int, total_s: float, costs: ForecastCosts) -> float | None:
    if costs.price_per_node_hour is None:
        return None
    return node_hours(total_s, nodes) * costs.price_per_node_hour


def predict_grid(trace: GridTrace, nodes: Sequence[int], costs: ForecastCosts) -> list[ForecastPoint]:
    work = sum(trace.durations)
    points = []
    for n in nodes:
        slots = _slots(n, costs, trace.cpus_per_trial)
        per_node = slots // n
        speeds = slot_speeds(slots, per_node, trace.worker_speed)
        orders: list[list[int] | None] = [None]  # equal slots: where each task lands makes no difference
        if trace.worker_speed != 1.0:
            orders = [*first_placements(slots, per_node)]
        walls = [list_schedule(trace.durations, slots, trace.gap_s, speeds, o) for o in orders]
        wall = fmean(walls) + trace.collect_s
        bound = lower_bound(work, max(trace.durations, default=0.0) * min(speeds), capacity(speeds))
        warmup = transfer_s(trace.data_bytes, costs, n) + trace.warmup_s
        total = (costs.provision_s if n > 1 else 0.0) + warmup + wall
        speedup = work / wall
        points.append(
            ForecastPoint(
                phase=GRID_PARALLEL.key,
                nodes=n,
                slots=slots,
                predicted_wall_s=wall,
                predicted_min_s=min(walls) + trace.collect_s,
                predicted_max_s=max(walls) + trace.collect_s,
                predicted_total_s=total,
                predicted_warmup_s=warmup,
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
    metric: str  # the reported key ASHA judged
    mode: str  # its direction, min or max
    max_rounds: int
    grace_period: int
    reduction_factor: int
    cpus_per_trial: int
    fixed_s: float  # the sweep's wall less its trials' span: fit() to the first trial, and the tail
    gap_s: float  # mean time between a trial ending and the next starting on its actor
    setup_s: float  # mean wall of a trial beyond its boosting compute (its DMatrix, its reports)
    worker_speed: float = 1.0  # a trial's time on a worker node against the measured node's
    fixed_range_s: tuple[float, float] | None = None  # the fixed part's (min, max) over the rounds

    @classmethod
    def of(
        cls,
        trials: Sequence[TuneTrial],
        options: dict[str, Any],
        rounds: Sequence[Round],
        worker_speed: float = 1.0,
    ) -> TuneTrace:
        """From the sweep's trials, its stored options (``options["tune"]`` of the bundle) and its
        timed rounds (each round's wall less its span is the fixed part)."""
        tune = options.get("tune") or {}
        ordered = sorted(trials, key=lambda t: t.index)
        setups = [max(0.0, (t.end_ts - t.start_ts) - t.compute_s) for t in ordered]
        fixed = [max(0.0, r.wall_s - r.span_s) for r in rounds]
        return cls(
            trials=ordered,
            scheduler=tune.get("scheduler", "asha"),
            metric=tune.get("metric", "rmse"),
            mode=tune.get("mode", "min"),
            max_rounds=int(tune.get("max_rounds", max(t.rounds for t in ordered))),
            grace_period=int(tune.get("grace_period") or 1),
            reduction_factor=int(tune.get("reduction_factor") or 2),
            cpus_per_trial=int(tune.get("cpus_per_trial") or 1),
            fixed_s=median(fixed) if fixed else 0.0,
            gap_s=worker_gap(ordered),
            setup_s=fmean(setups) if setups else 0.0,
            worker_speed=worker_speed,
            fixed_range_s=(min(fixed), max(fixed)) if fixed else None,
        )

    def scheduler_object(self) -> Any:
        """Ray Tune's own scheduler, configured as the sweep's was."""
        return scheduler_for(
            self.scheduler, self.max_rounds, self.grace_period, self.reduction_factor, self.metric, self.mode
        )


class Noise(Protocol):
    """What a replay draws where real runs of one sweep differ (``rayscale.work.tune.outcomes.RunNoise``)."""

    def step(self) -> float:
        """The factor one report's compute is scaled by."""
        ...

    def starts(self, n: int) -> list[float]:
        """The start times of the first ``n`` trials (the earliest at 0)."""
        ...

    def gap(self) -> float:
        """The dispatch gap before a trial that takes a freed slot."""
        ...

    def pick(self, pending: int) -> int:
        """Which of ``pending`` trials a freed slot takes (0: the next in Tune's order)."""
        ...


@dataclass
class _Running:
    trial: TuneTrial
    slot: int
    step: int = 0  # the report it sends next (0-based)


@dataclass(frozen=True)
class _Handle:
    """What ASHA reads of a trial: its id."""

    trial_id: str


@dataclass(frozen=True)
class TuneReplay:
    wall_s: float
    rounds_run: int
    best_score: float  # on the trace's metric
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
    metric = r.value(trace.metric)
    if step < len(reports):
        return r.rounds, metric, r.compute_s
    rounds = min(trace.max_rounds, r.rounds + (step - len(reports) + 1) * every)
    return rounds, metric, r.compute_s / max(1, r.rounds) * rounds


def _ends(scheduler: Any, trace: TuneTrace, trial_id: str, rounds: int, metric: float) -> bool:
    """Feed one report to the scheduler as Tune's controller does; True when the trial ends here."""
    from ray.tune.schedulers import TrialScheduler

    result = {"rounds": rounds, trace.metric: metric}
    if rounds >= trace.max_rounds:
        scheduler.on_trial_complete(None, _Handle(trial_id), result)
        return True
    return bool(scheduler.on_trial_result(None, _Handle(trial_id), result) == TrialScheduler.STOP)


def replay_tune(
    trace: TuneTrace, slots: int, noise: Noise | None = None, speeds: Sequence[float] | None = None
) -> TuneReplay:
    """Replay the sweep on ``slots`` concurrent trials in simulated time (see the module doc):
    the first trials start together, each next one in Tune's order the mean dispatch gap after a
    slot frees. ``noise`` draws instead each report's compute factor, the first trials' start
    times, each gap and which pending trial a freed slot takes (timing noise, which reorders
    arrivals as it does between real runs). A trial on slot i runs at ``speeds[i]`` × its measured
    times (:func:`list_schedule`)."""
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
        step = (compute - compute_before) * (noise.step() if noise else 1.0) * factor[run.slot]
        heapq.heappush(events, (at + step, sequence, run))
        sequence += 1

    def start(at: float, slot: int, first: bool = False) -> None:
        trial = queue.pop(-1 - (noise.pick(len(queue)) if noise and not first else 0))
        began[trial.trial_id] = at
        scheduler.on_trial_add(None, _Handle(trial.trial_id))
        schedule(_Running(trial, slot), at + trace.setup_s * factor[slot], 0.0)

    factor = list(speeds) if speeds is not None else [1.0] * slots
    first = min(slots, len(queue))
    for slot, at in enumerate(noise.starts(first) if noise else [0.0] * first):
        start(at, slot, first=True)
    end = 0.0
    while events:
        now, _, run = heapq.heappop(events)
        rounds, metric, compute = _report_at(trace, run.trial, run.step, every)
        extrapolated += run.step >= len(run.trial.reports)
        if _ends(scheduler, trace, run.trial.trial_id, rounds, metric):
            final[run.trial.trial_id] = (rounds, metric)
            took.append(now - began[run.trial.trial_id])
            end = max(end, now)
            if queue:
                start(now + (noise.gap() if noise else trace.gap_s), run.slot)
            continue
        run.step += 1
        schedule(run, now, compute)
    sign = 1 if trace.mode == "min" else -1
    best = min(final, key=lambda k: sign * final[k][1])
    return TuneReplay(
        wall_s=trace.fixed_s + end,
        rounds_run=sum(r for r, _ in final.values()),
        best_score=final[best][1],
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
        metric = r.value(trace.metric)
        if _ends(scheduler, trace, trial.trial_id, r.rounds, metric):
            ended[trial.trial_id] = r.rounds
    return ended


# --- from a bundle to a forecast -----------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """One measured point and the trace its simulation replays."""

    measured: Measurement
    cpus_per_node: int
    trace: GridTrace | TuneTrace


def measured_points(bundle: Result | ScaleResult) -> list[_Source]:
    """Every phase-and-node-count a bundle measured (a run bundle: one per phase), with its trace."""
    if isinstance(bundle, ScaleResult):
        run = bundle.options.get("run") or {}
        cpus_per_trial = float(run.get("cpus_per_trial") or 1)
        out = []
        per_node = bundle.cpus_per_node
        for p in bundle.points:
            m = Measurement.of(p, trial_slots(p.cpus, cpus_per_trial))
            demand = trial_slots(per_node, cpus_per_trial) * cpus_per_trial
            trace = _trace(m, cpus_per_trial, run, bundle.dataset, worker_speed(m.emulation, demand))
            out.append(_Source(m, per_node, trace))
        return out
    sources: list[_Source] = []
    grid, tune = bundle.grid, bundle.tune
    if grid is not None and grid.parallel is not None and grid.lower_bound_s is not None:
        par = grid.parallel
        m = Measurement(
            GRID_PARALLEL.key,
            grid.nodes,
            grid.cpus,
            grid.slots,
            par.rounds,
            par.trials,
            grid.lower_bound_s,
            warmup_s=par.warmup_s,
        )
        per_node = max(1, grid.cpus // max(1, grid.nodes))
        sources.append(_Source(m, per_node, _trace(m, par.cpus_per_trial, bundle.options, bundle.dataset)))
    if tune is not None:
        nodes = bundle.cluster.nodes if bundle.cluster else 1
        rounds = [Round.of(tune.wall_s, tune.trials)]
        m = Measurement(
            TUNE.key, nodes, tune.cpus, tune.max_concurrent, rounds, tune.trials, tune.lower_bound_s
        )
        per_node = max(1, tune.cpus // max(1, nodes))
        sources.append(_Source(m, per_node, _trace(m, tune.cpus_per_trial, bundle.options, bundle.dataset)))
    return sources


def _trace(
    m: Measurement,
    cpus_per_trial: float,
    options: dict[str, Any],
    dataset: dict[str, Any],
    speed: float = 1.0,
) -> GridTrace | TuneTrace:
    """What the simulation replays of a measurement (``options``: the stored run options;
    ``speed``: :func:`worker_speed`)."""
    if m.phase == TUNE.key:
        return TuneTrace.of([t for t in m.trials if isinstance(t, TuneTrial)], options, m.rounds, speed)
    records = [t for t in m.trials if isinstance(t, TrialRecord)]
    return GridTrace.of(records, m.rounds, m.warmup_s, cpus_per_trial, dataset, speed)


def predict_tune(trace: TuneTrace, nodes: int, costs: ForecastCosts, alone_s: float) -> ForecastPoint:
    """The sweep replayed on ``nodes`` nodes; ``alone_s`` is its replay on one slot (the speedup's base)."""
    slots = _slots(nodes, costs, trace.cpus_per_trial)
    replay = replay_tune(trace, slots, speeds=slot_speeds(slots, slots // nodes, trace.worker_speed))
    span = max(1e-9, replay.wall_s - trace.fixed_s)
    low = high = None  # the wall over the measured rounds' fixed parts
    if trace.fixed_range_s is not None:
        low, high = span + trace.fixed_range_s[0], span + trace.fixed_range_s[1]
    total = (costs.provision_s if nodes > 1 else 0.0) + replay.wall_s
    speedup = alone_s / replay.wall_s
    return ForecastPoint(
        phase=TUNE.key,
        nodes=nodes,
        slots=slots,
        predicted_wall_s=replay.wall_s,
        predicted_min_s=low,
        predicted_max_s=high,
        predicted_total_s=total,
        speedup=speedup,
        parallel_efficiency=speedup / (nodes * costs.cpus_per_node),
        schedule_efficiency=min(1.0, lower_bound(replay.busy_s, replay.longest_s, slots) / span),
        cost=_cost(nodes, total, costs),
        rounds_run=replay.rounds_run,
        best_score=replay.best_score,
        metric=trace.metric,
        stopped_early=replay.stopped_early,
        extrapolated_reports=replay.extrapolated,
    )


def _predict_phase(
    mine: list[_Source], nodes: Sequence[int], costs: ForecastCosts, validate: bool
) -> list[ForecastPoint]:
    """One phase at ``nodes`` (or, validating, at every measured node count) from its smallest point."""
    trace = mine[0].trace
    alone_s = replay_tune(trace, 1).wall_s if isinstance(trace, TuneTrace) else 0.0
    by_nodes = {s.measured.nodes: s for s in mine}
    points = []
    for n in [s.measured.nodes for s in mine] if validate else nodes:
        seen = by_nodes.get(n)
        # Validation predicts each point on its own node size; a forecast shows what was measured
        # only where the node size is the one asked for.
        at = costs.model_copy(update={"cpus_per_node": seen.cpus_per_node}) if validate and seen else costs
        if seen is not None and seen.cpus_per_node != at.cpus_per_node:
            seen = None
        if isinstance(trace, GridTrace):
            p = predict_grid(trace, [n], at)[0]
        else:
            p = predict_tune(trace, n, at, alone_s)
        if seen is not None:
            walls = seen.measured.walls
            p = p.model_copy(
                update={
                    "measured_wall_s": walls.median,
                    "measured_warmup_s": seen.measured.warmup_s if p.phase == GRID_PARALLEL.key else None,
                    "measured_min_s": walls.min,
                    "measured_max_s": walls.max,
                }
            )
        points.append(p)
    return points


def forecast(
    measured: list[_Source],
    nodes: Sequence[int],
    costs: ForecastCosts,
    validate: bool = False,
    grid_costs: Sequence[float] | None = None,
) -> Forecast:
    """Predict each phase at ``nodes`` from its smallest ``measured`` point (:func:`measured_points`);
    with ``validate``, predict every measured point instead and attach what was measured. With
    ``grid_costs`` (the cost model's figure for each config of another grid) the grid phase runs
    those configs, timed by the cost model fitted to the measured trials."""
    if grid_costs is not None:
        measured = [
            replace(s, trace=s.trace.with_costs(grid_costs)) if isinstance(s.trace, GridTrace) else s
            for s in measured
        ]
    if not measured:
        raise RayscaleError("the bundle has no grid-parallel or Tune phase to predict from")
    points: list[ForecastPoint] = []
    base: dict[str, int] = {}
    for phase in (GRID_PARALLEL.key, TUNE.key):
        mine = sorted((s for s in measured if s.measured.phase == phase), key=lambda s: s.measured.nodes)
        if not mine:
            continue
        if validate and len(mine) < 2:
            raise RayscaleError(
                f"--validate needs a scale bundle with two or more node counts; the {phase} phase "
                f"has {len(mine)}"
            )
        base[phase] = mine[0].measured.nodes
        points += _predict_phase(mine, nodes, costs, validate)
    cheapest = {phase: _cheapest([p for p in points if p.phase == phase], costs) for phase in base}
    speeds = {
        s.measured.phase: s.trace.worker_speed
        for s in measured
        if s.measured.nodes == base.get(s.measured.phase) and s.trace.worker_speed != 1.0
    }
    return Forecast(
        validated=validate, base=base, costs=costs, points=points, cheapest=cheapest, worker_speed=speeds
    )


def _cheapest(points: list[ForecastPoint], costs: ForecastCosts) -> int | None:
    if costs.price_per_node_hour is None or costs.deadline_s is None:
        return None
    walls = [(p.nodes, p.predicted_total_s) for p in points]
    best = cheapest_meeting_deadline(walls, costs.price_per_node_hour, costs.deadline_s)
    return None if best is None else best[0]


def run_forecast(opts: PredictOptions) -> Forecast:
    """``rayscale predict``: check the options, load the bundle, simulate. The plot is the caller's."""
    opts.validate()
    bundle = load_any(opts.bundle)
    measured = measured_points(bundle)
    provision_s = opts.provision_s
    if provision_s is None:
        ramps = [p.resize_s for p in getattr(bundle, "points", []) if p.resize_s is not None]
        provision_s = median(ramps) if ramps else 0.0
    costs = ForecastCosts(
        cpus_per_node=opts.cpus_per_node or min((s.cpus_per_node for s in measured), default=1),
        provision_s=provision_s,
        bandwidth_mbps=opts.bandwidth_mbps,
        price_per_node_hour=opts.price_per_node_hour,
        deadline_s=opts.deadline_s,
    )
    grid_costs = None
    if opts.grid is not None:
        n, f = int(bundle.dataset.get("n_train") or 0), int(bundle.dataset.get("n_features") or 0)
        grid_costs = [spec.cost(n, f) for spec in load_grid(opts.grid)]
    return forecast(measured, opts.nodes, costs, opts.validate_points, grid_costs)
