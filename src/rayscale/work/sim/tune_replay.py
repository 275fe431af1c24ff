"""The Tune sweep replayed in simulated time, driving Ray Tune's own ``ASHAScheduler``.

The sweep is replayed on the same slots as the grid's forecast with the reports the bundle
recorded: each trial starts when a slot frees, its reports arrive after the compute they took, and
ASHA stops or continues it as they arrive, so stops and promotions follow arrival order as they do
for real. A trial ASHA would run further than it ran when measured continues at its own seconds per
round with its last metric (counted as ``extrapolated``). The sweep's fixed part (``Tuner.fit()`` to
its first trial, and its last trial to the end: the Tune actors' start-up, most of a short sweep's
wall) is carried over unchanged, the median of the measured rounds'; their min and max are the
prediction's range. The scheduler is built here (:func:`scheduler_for`) for the live sweep too, so
both judge with the same ASHA.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean, median
from typing import Any, Protocol

from rayscale.errors import RayscaleError
from rayscale.options.commands import TUNE
from rayscale.results.forecast import ForecastCosts, ForecastPoint
from rayscale.results.schema import Round, TuneTrial, lower_bound
from rayscale.work.sim.grid_forecast import node_cost, slots_for
from rayscale.work.sim.slots import slot_speeds, worker_gap


def scheduler_for(
    kind: str,
    max_rounds: int,
    grace_period: int,
    reduction_factor: int,
    metric: str | None = None,
    mode: str = "min",
) -> Any:
    """Ray Tune's scheduler for a sweep: ASHA over rounds, or FIFO (no early stopping). With
    ``metric`` the scheduler judges that metric (in ``mode``) itself, as predict's replay needs (a
    live sweep names its metric in ``TuneConfig`` instead, and Tune refuses it in both places)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if kind != "asha":
        return FIFOScheduler()
    judged: dict[str, Any] = {"metric": metric, "mode": mode} if metric else {}
    return ASHAScheduler(
        time_attr="rounds",
        max_t=max_rounds,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        **judged,
    )


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


def ends_trial(scheduler: Any, trace: TuneTrace, trial_id: str, rounds: int, metric: float) -> bool:
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
        if ends_trial(scheduler, trace, run.trial.trial_id, rounds, metric):
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


def predict_tune(trace: TuneTrace, nodes: int, costs: ForecastCosts, alone_s: float) -> ForecastPoint:
    """The sweep replayed on ``nodes`` nodes; ``alone_s`` is its replay on one slot (the speedup's base)."""
    slots = slots_for(nodes, costs, trace.cpus_per_trial)
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
        cost=node_cost(nodes, total, costs),
        rounds_run=replay.rounds_run,
        best_score=replay.best_score,
        metric=trace.metric,
        stopped_early=replay.stopped_early,
        extrapolated_reports=replay.extrapolated,
    )
