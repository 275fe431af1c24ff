"""ASHA's outcome distribution on a real embedded Ray: the curves pass continues each stopped trial's
own reports to the full budget, and the replays are deterministic under their seed and hold the
run's own best."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rayscale.asha import outcomes, timing_noise, with_outcomes
from rayscale.cluster import ray_session
from rayscale.datasets import load_dataset
from rayscale.options import TuneOptions
from rayscale.schema import TuneReport, TuneResult, TuneTrial
from rayscale.tune import run_sweep

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


@pytest.mark.xfail(
    strict=False,
    reason="issue 24 (open): on this 8-config, 2-slot sweep the replays' arrival jitter sometimes never "
    "reaches the order the real run had (trial start times are not jittered), so the run's own best can "
    "fall outside the replayed range; bench/asha.py covered every real best on the 32-config sweep",
)
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


def test_without_curves_there_is_nothing_to_replay(sweep) -> None:
    result, opts = sweep
    bare = result.model_copy(update={"trials": [t.model_copy(update={"curve": []}) for t in result.trials]})
    with pytest.raises(ValueError, match="full budget"):
        outcomes(bare, opts.metric, 10, opts.seed)
