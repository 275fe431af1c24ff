"""ASHA's answer as a distribution, from one sweep.

Asynchronous successive halving decides as results arrive, so the same sweep with the same seed
finds different bests from run to run: which trial reaches a rung first depends on timing. One
run's best cannot tell luck from the method. After the sweep, a **curves pass** runs every trial
ASHA stopped on to the full budget (Ray tasks on the same cluster, outside every timing; training
is deterministic, so each curve continues the reports the trial sent). Then the sweep is
**replayed** through Ray Tune's own ``ASHAScheduler`` (predict's replay, at the run's
concurrency) with those full-budget reports, each placed at the wall time after its trial's start
at which it was sent (on short trials, reporting is much of that time), each step scaled by a
factor drawn from the sweep's own timing noise, the run's own first-start offsets dealt to the
first trials in a random order, and each dispatch gap and dispatch order drawn from the run's
(:class:`RunNoise`), many times: the spread of the replays' bests is the spread of what ASHA
finds on this work, and the share that chose the full-budget best is how often it finds it.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from rayscale.options.commands import TuneOptions
from rayscale.options.scoring import Task, direction, ranking_key
from rayscale.results.schema import AshaOutcomes, Round, TuneReport, TuneResult, TuneTrial
from rayscale.work.data import Arrays, Dataset, arrays
from rayscale.work.sim.slots import worker_gaps
from rayscale.work.sim.tune_replay import TuneTrace, replay_tune
from rayscale.work.tune.families import family_for


def _curve(
    params: dict[str, Any], data: Arrays, model: str, task: Task, n_classes: int, opts: TuneOptions
) -> list[TuneReport]:
    """One config trained to the full budget, its reports as the sweep's trainable sends them."""
    family = family_for(model, task, n_classes)
    test, val = family.eval_sets(data, opts.cpus_per_trial)
    out: list[TuneReport] = []

    def emit(rounds: int, compute_s: float, trained: Any) -> None:
        on_val = {} if val is None or data[5] is None else family.scores(trained, val, data[5])
        scores = family.scores(trained, test, data[3])
        out.append(TuneReport(rounds=rounds, compute_s=compute_s, metrics=scores, val_metrics=on_val))

    family.train(params, data, opts.max_rounds, opts.report_every, opts.cpus_per_trial, opts.seed, emit)
    return out


def run_curves(result: TuneResult, dataset: Dataset, opts: TuneOptions) -> float:
    """The curves pass: every trial ASHA stopped, to the full budget, as Ray tasks (Ray must be
    initialised); fills each one's ``curve`` and returns the pass's wall seconds."""
    import ray

    started = time.perf_counter()
    stopped = [t for t in result.trials if t.stopped_early]
    if stopped:
        data = ray.put(arrays(dataset))
        task = ray.remote(max_retries=2)(_curve).options(num_cpus=opts.cpus_per_trial)
        n_classes = len(dataset.classes)
        refs = [task.remote(t.params, data, opts.model, dataset.task, n_classes, opts) for t in stopped]
        for trial, curve in zip(stopped, ray.get(refs), strict=True):
            trial.curve = curve
    return time.perf_counter() - started


def _wall_steps(t: TuneTrial) -> list[float]:
    """Wall seconds per round between the trial's successive reports, as the driver saw them sent."""
    sent = [(r.rounds, r.ts) for r in t.reports if r.ts is not None]
    return [(tb - ta) / (rb - ra) for (ra, ta), (rb, tb) in itertools.pairwise(sent) if rb > ra and tb > ta]


def timing_noise(trials: list[TuneTrial]) -> float:
    """The sweep's timing noise: the standard deviation of log wall seconds per round between one
    trial's reports about that trial's mean (the same work, timed again; on a short trial the
    reporting itself is much of it), pooled over the trials with at least two intervals."""
    deviations: list[float] = []
    for t in trials:
        logs = [math.log(x) for x in _wall_steps(t)]
        if len(logs) >= 2:
            centre = sum(logs) / len(logs)
            deviations += [x - centre for x in logs]
    return math.sqrt(sum(d * d for d in deviations) / (len(deviations) - 1)) if len(deviations) > 1 else 0.0


def used_slots(result: TuneResult) -> int:
    """The trial slots the sweep really used: its concurrency, less the Tune actors that ran no
    trial (one that started after the others had taken every trial: a slow pod, a busy head).
    The replays run on these, as the run did."""
    return min(result.max_concurrent, len({(t.node_id, t.pid) for t in result.trials}))


def start_offsets(trials: list[TuneTrial], slots: int) -> list[float]:
    """When each of the first ``slots`` workers began its first trial, in seconds after the first
    did (each waited for its worker process to start: on short trials, much of what orders their
    reports); a worker is a (node, pid), one Tune actor that reused actors run trial after trial."""
    first: dict[tuple[str, int], float] = {}
    for t in trials:
        key = (t.node_id, t.pid)
        first[key] = min(first.get(key, t.start_ts), t.start_ts)
    starts = sorted(first.values())[:slots]
    return [s - starts[0] for s in starts]


def dispatch_ranks(trials: list[TuneTrial], slots: int) -> list[int]:
    """For each trial after the first ``slots`` in Tune's order (those each wait for a worker of
    their own), in the order they started: its place among the ones not yet started, in Tune's
    order (0: the next one; a freed actor takes the next trial most of the time, not always)."""
    pending = sorted(t.index for t in trials)[slots:]
    ranks = []
    for t in sorted(trials, key=lambda t: (t.start_ts, t.index)):
        if t.index in pending:
            ranks.append(pending.index(t.index))
            pending.remove(t.index)
    return ranks


@dataclass
class RunNoise:
    """What differs between real runs of one sweep, as this run measured it (predict's
    :class:`~rayscale.work.sim.tune_replay.Noise`): each report's step scaled by a log-normal factor of the
    sweep's :func:`timing_noise`; the run's own first-start offsets dealt to the first trials in
    a random order (which trial got the worker that started first is luck); each dispatch gap,
    and which pending trial a freed slot takes, drawn from the ones the run had. Without the
    offsets and the order, a short sweep's replays never reach the orders its real runs have
    (bench/asha.py --sweep small)."""

    rng: random.Random
    sigma: float
    offsets: list[float]  # start_offsets of the run
    gaps: list[float]  # the run's worker_gaps
    ranks: list[int]  # the run's dispatch_ranks

    @classmethod
    def of(cls, result: TuneResult, seed: int) -> RunNoise:
        slots = used_slots(result)
        return cls(
            random.Random(seed),
            timing_noise(result.trials),
            start_offsets(result.trials, slots),
            worker_gaps(result.trials),
            dispatch_ranks(result.trials, slots),
        )

    def step(self) -> float:
        return math.exp(self.rng.gauss(0.0, self.sigma))

    def starts(self, n: int) -> list[float]:
        if n > len(self.offsets):
            raise ValueError(f"the run measured {len(self.offsets)} first starts, not {n}")
        return self.rng.sample(self.offsets, n)

    def gap(self) -> float:
        return self.rng.choice(self.gaps) if self.gaps else 0.0

    def pick(self, pending: int) -> int:
        return min(self.rng.choice(self.ranks), pending - 1) if self.ranks else 0


def _timed_by_wall(t: TuneTrial) -> TuneTrial:
    """The trial to the full budget, each report placed at the wall seconds since the trial began
    at which it was sent (arrivals are what ASHA orders by); its curve continues at the trial's own
    wall seconds per round."""
    if any(r.ts is None for r in t.reports):  # a bundle without send times: compute alone
        return t.model_copy(update={"reports": t.full_reports})
    sent = [r.model_copy(update={"compute_s": max(0.0, (r.ts or 0.0) - t.start_ts)}) for r in t.reports]
    pace = sent[-1].compute_s / max(1, sent[-1].rounds)
    rest = [r.model_copy(update={"compute_s": r.rounds * pace}) for r in t.full_reports[len(sent) :]]
    # its setup is in its first report's wall now, not to be added again at its start
    return t.model_copy(update={"reports": [*sent, *rest], "compute_s": t.end_ts - t.start_ts})


def outcomes(result: TuneResult, judged: str, replays: int, seed: int, curves_s: float = 0.0) -> AshaOutcomes:
    """The sweep replayed ``replays`` times with jittered arrivals (deterministic under ``seed``),
    ASHA judging the reported key ``judged`` (the sweep's ``TuneOptions.metric``); every stopped
    trial must have its curve (:func:`run_curves`)."""
    metric = result.metric
    if any(t.full_reports[-1].rounds < result.max_rounds for t in result.trials):
        raise ValueError("every trial needs its reports to the full budget (run_curves)")
    options = {
        "tune": {
            "scheduler": "asha",
            "metric": judged,
            "mode": direction(metric),
            "max_rounds": result.max_rounds,
            "grace_period": result.grace_period,
            "reduction_factor": result.reduction_factor,
            "cpus_per_trial": result.cpus_per_trial,
        }
    }
    full = [_timed_by_wall(t) for t in result.trials]
    trace = TuneTrace.of(full, options, [Round.of(result.wall_s, result.trials)])
    by_id = {t.trial_id: t for t in full}

    def chosen(scores: dict[str, float]) -> str:
        return min(scores, key=lambda k: (ranking_key(metric, scores[k]), by_id[k].index))

    target = chosen({t.trial_id: t.reports[-1].value(judged) for t in full})
    noise = RunNoise.of(result, seed)
    slots = used_slots(result)
    best, rounds_run, found = [], [], 0
    for _ in range(replays):
        replay = replay_tune(trace, slots, noise)
        pick = chosen({k: _at(by_id[k], r).value(judged) for k, r in replay.stops.items()})
        best.append(_at(by_id[pick], replay.stops[pick]).metrics[metric])
        rounds_run.append(replay.rounds_run)
        found += pick == target
    observed = min(result.trials, key=lambda t: (ranking_key(metric, t.selection(metric)), t.index))
    return AshaOutcomes(
        replays=replays,
        seed=seed,
        noise=noise.sigma,
        best=best,
        rounds_run=rounds_run,
        found_share=found / replays,
        full_budget_trial=target,
        full_budget_best=by_id[target].reports[-1].metrics[metric],
        observed=result.best_score,
        observed_found=observed.trial_id == target,
        curves_s=curves_s,
    )


def _at(trial: TuneTrial, rounds: int) -> TuneReport:
    """The trial's report at ``rounds``."""
    return next(r for r in trial.reports if r.rounds == rounds)


def with_outcomes(result: TuneResult, dataset: Dataset, opts: TuneOptions) -> TuneResult:
    """An ASHA sweep with its outcome distribution (``opts.asha_replays`` replays; none at 0)."""
    if result.scheduler != "asha" or opts.asha_replays == 0:
        return result
    curves_s = run_curves(result, dataset, opts)
    result.asha_outcomes = outcomes(result, opts.metric, opts.asha_replays, opts.seed, curves_s)
    return result
