from __future__ import annotations

import math

import pytest

from rayscale import summary
from rayscale.results import TrialRecord


def _trial(index: int, rmse: float = 50.0, start: float = 0.0, end: float = 1.0, **kw: float) -> TrialRecord:
    fields = dict(
        index=index,
        params={"n_estimators": 10 + index},
        cost=1.0,
        rmse=rmse,
        r2=0.5,
        mae=40.0,
        fit_s=end - start,
        predict_s=0.001,
        queue_s=0.0,
        node="10.0.0.1",
        node_id="n1",
        pid=1,
        start_ts=start,
        end_ts=end,
    )
    fields.update(kw)
    return TrialRecord(**fields)


def test_lower_bound_is_total_work_over_cpus_when_work_spreads() -> None:
    assert summary.lower_bound([1.0, 1.0, 1.0, 1.0], cpus=2) == 2.0


def test_lower_bound_is_the_longest_fit_when_one_dominates() -> None:
    assert summary.lower_bound([5.0, 0.5, 0.5], cpus=4) == 5.0


def test_lower_bound_edge_cases() -> None:
    assert summary.lower_bound([], cpus=2) == 0.0
    with pytest.raises(ValueError):
        summary.lower_bound([1.0], cpus=0)


def test_efficiency_and_speedup() -> None:
    assert summary.efficiency(1.8, 2.0) == pytest.approx(0.9)
    assert summary.efficiency(1.0, 0.0) == 0.0
    assert summary.speedup(6.0, 2.0) == 3.0
    assert summary.speedup(1.0, 0.0) == math.inf


def test_makespan_spans_first_start_to_last_end() -> None:
    assert summary.makespan([_trial(0, start=10.0, end=11.0), _trial(1, start=10.5, end=12.5)]) == 2.5
    assert summary.makespan([]) == 0.0


def test_best_is_lowest_rmse_and_ties_go_to_the_first_config() -> None:
    trials = [_trial(0, rmse=53.0), _trial(1, rmse=52.4), _trial(2, rmse=52.4)]
    best = summary.best(trials)
    assert best.index == 1 and best.rmse == 52.4 and best.params == {"n_estimators": 11}


def test_mismatches_finds_differing_and_missing_configs() -> None:
    a = [_trial(0), _trial(1, rmse=52.0)]
    assert summary.mismatches(a, [_trial(0), _trial(1, rmse=52.0)]) == []
    problems = summary.mismatches(a, [_trial(0), _trial(1, rmse=52.5), _trial(2)])
    assert problems == ["config 1: rmse 52.0 != 52.5", "config 2 missing from the first run"]
    assert summary.mismatches(a, [_trial(1, rmse=52.0)]) == ["config 0 missing from the second run"]
