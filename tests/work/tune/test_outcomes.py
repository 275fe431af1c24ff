"""ASHA's outcome distribution on a real embedded Ray: the curves pass continues each stopped trial's
own reports to the full budget, and the replays are deterministic under their seed and hold the
run's own best."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from rayscale.options.commands import TuneOptions
from rayscale.results.schema import TuneReport, TuneResult, TuneTrial
from rayscale.work.cluster.session import ray_session
from rayscale.work.data import load_dataset
from rayscale.work.tune.outcomes import (
    RunNoise,
    dispatch_ranks,
    outcomes,
    start_offsets,
    timing_noise,
    with_outcomes,
)
from rayscale.work.tune.sweep import run_sweep

pytestmark = pytest.mark.slow
SPACE = {"learning_rate": [0.05, 0.3], "max_depth": [2, 4], "subsample": [0.8, 1.0]}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TuneResult, TuneOptions]]:
    dataset = load_dataset("diabetes")
    opts = TuneOptions(space=SPACE, max_rounds=90, grace_period=10, reduction_factor=3, report_every=10)
    with ray_session("", num_cpus=2) as cluster:
        result = run_sweep(dataset, opts, cluster.cpus, tmp_path_factory.mktemp("asha"))
        assert 0 < result.stopped_early < len(result.trials)
        result = with_outcomes(result, dataset, opts)
        yield result, opts


def test_the_curves_continue_each_stopped_trials_own_reports(sweep) -> None:
    result, _ = sweep
    for t in result.trials:
        full = t.full_reports
        assert [r.rounds for r in full] == list(range(10, 91, 10))
        if not t.stopped_early:
            assert t.curve == []
            continue
        # the curve trains the config again from the start: where it overlaps, it is the same model
        sent = {r.rounds: r.metrics for r in t.reports}
        again = {r.rounds: r.metrics for r in t.curve if r.rounds in sent}
        assert again == sent
    assert result.asha_outcomes is not None and result.asha_outcomes.curves_s > 0


def test_the_replays_are_deterministic_and_hold_the_runs_own_best(sweep) -> None:
    result, opts = sweep
    asha = result.asha_outcomes
    assert asha is not None and asha.replays == 200 and len(asha.best) == 200
    assert (
        outcomes(result, opts.metric, 200, opts.seed, asha.curves_s) == asha
    )  # the same seed, the same answer
    q = asha.best_quantiles
    assert q["min"] <= q["p5"] <= q["median"] <= q["p95"] <= q["max"]
    # the full-budget best: the lowest RMSE had every trial run its 90 rounds
    finals = {t.trial_id: t.full_reports[-1].metrics["rmse"] for t in result.trials}
    assert asha.full_budget_trial == min(finals, key=lambda k: finals[k])
    assert asha.full_budget_best == finals[asha.full_budget_trial]
    assert 0.0 <= asha.found_share <= 1.0
    assert (asha.found_share == 1.0) == all(b == asha.full_budget_best for b in asha.best)
    assert all(r < result.rounds_budget for r in asha.rounds_run)  # every replay stopped some early
    assert asha.noise == timing_noise(result.trials) and asha.noise > 0


def test_the_runs_own_best_is_inside_the_replayed_range(sweep) -> None:
    result, _ = sweep
    asha = result.asha_outcomes
    assert asha is not None
    assert asha.best_quantiles["min"] <= asha.observed <= asha.best_quantiles["max"]


def _trial(index: int, per_round: list[float]) -> TuneTrial:
    """A trial whose reports were sent ``per_round`` wall seconds per round apart."""
    compute, reports = 0.0, []
    for i, seconds in enumerate(per_round, 1):
        compute += seconds * 10
        reports.append(TuneReport(rounds=10 * i, compute_s=compute, ts=compute, metrics={"rmse": 1.0}))
    return TuneTrial(
        index=index, trial_id=f"t_{index:05d}", params={}, metrics={"rmse": 1.0}, node="", node_id="",
        pid=1, start_ts=0.0, end_ts=1.0, compute_s=compute, rounds=10 * len(per_round),
        stopped_early=False, reports=reports,
    )  # fmt: skip


def test_timing_noise_is_the_spread_of_seconds_per_round_within_trials() -> None:
    assert timing_noise([_trial(0, [0.01, 0.01, 0.01, 0.01])]) == pytest.approx(0.0, abs=1e-9)  # steady
    # intervals of 0.02, 0.01, 0.02 s/round: log deviations ±ln 2 about their mean, pooled
    noisy = timing_noise([_trial(0, [0.01, 0.02, 0.01, 0.02]), _trial(1, [0.01, 0.01, 0.01, 0.01])])
    import math

    logs = [math.log(0.02), math.log(0.01), math.log(0.02)]
    centre = sum(logs) / 3
    deviations = [x - centre for x in logs] + [0.0, 0.0, 0.0]  # trial 1: three steady intervals
    assert noisy == pytest.approx(math.sqrt(sum(d * d for d in deviations) / 5))
    assert timing_noise([_trial(0, [0.01, 0.01])]) == 0.0  # one interval: nothing to compare


def _started(index: int, pid: int, start_ts: float) -> TuneTrial:
    return _trial(index, [0.01]).model_copy(update={"pid": pid, "start_ts": start_ts})


# Tune's order is 0..5; worker 1 was up first and ran trial 1, then trials 2, 5, 4 as it freed;
# worker 2 started 0.2 s later with trial 0, then took trial 3.
STARTED = [_started(1, 1, 10.0), _started(2, 1, 10.05), _started(0, 2, 10.2), _started(5, 1, 10.21),
           _started(3, 2, 10.3), _started(4, 1, 10.4)]  # fmt: skip


def test_the_first_starts_are_each_workers_first_trial() -> None:
    assert start_offsets(STARTED, 2) == pytest.approx([0.0, 0.2])  # not trial 2, its worker's second
    assert start_offsets(STARTED, 1) == [0.0]


def test_a_dispatch_rank_is_the_started_trials_place_among_those_pending() -> None:
    # trials 0 and 1 each waited for a worker of their own; then 2 (next), 5 (third of 3, 4, 5),
    # 3 (next of 3, 4), 4
    assert dispatch_ranks(STARTED, 2) == [0, 2, 0, 0]
    in_order = [_started(i, 1 + i % 2, 10.0 + i) for i in range(6)]
    assert dispatch_ranks(in_order, 2) == [0, 0, 0, 0]


def test_the_run_noise_draws_from_what_the_run_measured() -> None:
    noise = RunNoise(random.Random(1), 0.0, [0.0, 0.2], [0.01, 0.03], [0, 2, 0, 0])
    starts = [noise.starts(2) for _ in range(50)]
    assert {tuple(s) for s in starts} == {(0.0, 0.2), (0.2, 0.0)}  # which trial got the late worker
    assert {noise.gap() for _ in range(50)} == {0.01, 0.03}
    assert {noise.pick(5) for _ in range(50)} == {0, 2} and {noise.pick(2) for _ in range(50)} == {0, 1}
    assert noise.step() == 1.0  # no noise measured, none drawn
    with pytest.raises(ValueError, match="2 first starts"):
        noise.starts(3)


def test_without_curves_there_is_nothing_to_replay(sweep) -> None:
    result, opts = sweep
    bare = result.model_copy(update={"trials": [t.model_copy(update={"curve": []}) for t in result.trials]})
    with pytest.raises(ValueError, match="full budget"):
        outcomes(bare, opts.metric, 10, opts.seed)


def test_a_slot_whose_actor_ran_no_trial_is_left_out_of_the_replays(sweep) -> None:
    """On real pods a Tune actor can start after the others took every trial: the run used fewer
    workers than its concurrency, and the replays run on the workers it used (seen on the node)."""
    result, opts = sweep
    workers = len({(t.node_id, t.pid) for t in result.trials})
    assert workers == result.max_concurrent == 2
    wider = result.model_copy(update={"max_concurrent": workers + 1})
    replayed = outcomes(wider, opts.metric, 20, opts.seed, result.asha_outcomes.curves_s)
    assert replayed == outcomes(result, opts.metric, 20, opts.seed, result.asha_outcomes.curves_s)
