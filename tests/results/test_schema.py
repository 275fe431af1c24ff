"""The schema's derived figures: lower bound, best model, the speedup breakdown, v1 bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factories import trial  # tests/factories.py
from rayscale.results.bundle import load_any
from rayscale.results.schema import (
    GridResult,
    ParallelPhase,
    Result,
    Round,
    SequentialPhase,
    TrialState,
    TuneTrial,
    best_of,
    lower_bound,
)
from rayscale.work.grid.runners import mismatches

ROOT = Path(__file__).resolve().parents[2]


def test_lower_bound_is_total_work_over_slots_when_work_spreads() -> None:
    assert lower_bound(4.0, 1.0, slots=2) == 2.0


def test_lower_bound_is_the_longest_fit_when_one_dominates() -> None:
    assert lower_bound(6.0, 5.0, slots=4) == 5.0


def test_lower_bound_edge_cases() -> None:
    assert lower_bound(0.0, 0.0, slots=2) == 0.0
    with pytest.raises(ValueError):
        lower_bound(1.0, 1.0, slots=0)


def test_round_spans_first_start_to_last_end() -> None:
    r = Round.of(3.0, [trial(0, start=10.0, end=11.0), trial(1, start=10.5, end=12.5)])
    assert (r.span_s, r.busy_s, r.longest_s) == (2.5, 3.0, 2.0)
    assert Round.of(1.0, []).span_s == 0.0


def test_best_is_lowest_rmse_and_ties_go_to_the_first_config() -> None:
    best = best_of([trial(0, rmse=53.0), trial(1, rmse=52.4), trial(2, rmse=52.4)])
    assert best.index == 1 and best.rmse == 52.4 and best.params == {"n_estimators": 11}


def test_best_is_selected_on_validation_when_there_is_one() -> None:
    trials = [trial(0, rmse=50.0, val_rmse=60.0), trial(1, rmse=55.0, val_rmse=58.0)]
    best = best_of(trials)
    assert best.index == 1 and best.rmse == 55.0 and best.val_rmse == 58.0


def test_mismatches_finds_differing_and_missing_configs() -> None:
    a = [trial(0), trial(1, rmse=52.0)]
    assert mismatches(a, [trial(0), trial(1, rmse=52.0)]) == []
    problems = mismatches(a, [trial(0), trial(1, rmse=52.5), trial(2)])
    assert problems == ["config 1: rmse 52.0 != 52.5", "config 2 missing from the first run"]
    assert mismatches(a, [trial(1, rmse=52.0)]) == ["config 0 missing from the second run"]


def test_trial_states_and_durations() -> None:
    assert trial(0).state is TrialState.ok and trial(0, retries=1).state is TrialState.retried
    assert trial(0, start=0.0, end=2.0).duration_s == 2.0
    tune = TuneTrial(
        index=0,
        trial_id="t_00000",
        params={},
        rmse=1.0,
        r2=0.5,
        mae=1.0,
        compute_s=0.7,
        rounds=50,
        stopped_early=True,
        node="n",
        node_id="i",
        pid=1,
        start_ts=0.0,
        end_ts=1.0,
    )
    assert tune.state is TrialState.stopped_early and tune.duration_s == 0.7
    assert json.loads(tune.model_dump_json())["state"] == "stopped_early"


def _grid(seq_walls: list[float], par_walls: list[float], cpus: int = 2) -> GridResult:
    seq_trials = [trial(i, start=i * 1.0, end=i * 1.0 + 0.9) for i in range(4)]  # Σ fit 3.6, longest 0.9
    par_trials = [trial(i, start=0.1 + (i // 2) * 1.1, end=0.1 + (i // 2) * 1.1 + 1.0) for i in range(4)]
    return GridResult(
        configs=4,
        cpus=cpus,
        nodes=1,
        sequential=SequentialPhase(rounds=[Round.of(w, seq_trials) for w in seq_walls], trials=seq_trials),
        parallel=ParallelPhase(
            rounds=[Round.of(w, par_trials) for w in par_walls],
            trials=par_trials,
            connect_s=4.0,
            warmup_s=1.5,
            cpus_per_trial=1,
        ),
    )


def test_the_breakdown_multiplies_exactly_to_speedup_over_cpus() -> None:
    grid = _grid([4.0, 4.2, 3.9, 4.1, 4.05], [2.5, 2.6, 2.45, 2.55, 2.5])
    product = 1.0
    for value in grid.breakdown.values():
        product *= value
    assert grid.parallel_efficiency == pytest.approx(grid.speedup / 2, abs=1e-12)
    assert product == pytest.approx(grid.parallel_efficiency, abs=1e-9)
    b = grid.breakdown
    assert b["contention"] == pytest.approx(3.6 / 4.0)  # fits 0.9 s alone, 1.0 s side by side
    assert b["schedule"] == pytest.approx(2.0 / 2.1)  # bound 4.0 / 2 slots, makespan 2.1
    assert b["dispatch"] == pytest.approx(2.1 / 2.5)
    assert grid.schedule_efficiency == pytest.approx(2.0 / 2.5)


def test_speedup_ci_brackets_the_speedup_and_end_to_end_counts_the_cold_start() -> None:
    grid = _grid([4.0, 4.2, 3.9, 4.1, 4.05], [2.5, 2.6, 2.45, 2.55, 2.5])
    low, high = grid.speedup_ci
    assert low <= grid.speedup <= high
    e2e = grid.end_to_end
    assert e2e.parallel_s == pytest.approx(2.5 + 5.5)
    assert e2e.saved_per_config_s == pytest.approx((4.05 - 2.5) / 4)
    assert e2e.break_even_configs == 15 and not e2e.pays_off  # ceil(5.5 / 0.3875)
    assert "did not pay off on this run" in e2e.sentence() and "from 15 configs" in e2e.sentence()


def test_an_even_number_of_rounds_has_a_true_median() -> None:
    grid = _grid([4.0, 6.0], [2.0, 4.0])
    assert grid.sequential.wall_s == 5.0 and grid.parallel.wall_s == 3.0  # not the lower one


def test_status_says_inconsistent_when_the_runners_disagree() -> None:
    grid = _grid([4.0], [2.0]).model_copy(update={"mismatches": ["config 1: rmse 1 != 2"]})
    result = Result(
        run_id="r", created_utc="t", command=[], environment={}, options={}, dataset={}, grid=grid
    )
    assert result.status == "inconsistent"
    assert json.loads(result.to_json())["status"] == "inconsistent"


def test_the_committed_version_1_bundle_loads_and_compares_with_itself() -> None:
    from typer.testing import CliRunner

    from rayscale.cli import app

    path = ROOT / "bench" / "results" / "scale-20261122-vm-1cpu-n1-2" / "scale.json"
    assert json.loads(path.read_text())["schema_version"] == 1
    loaded = load_any(path)
    assert loaded.schema_version == 2 and [p.nodes for p in loaded.points] == [1, 2]
    two = loaded.points[1]
    assert two.parallel_efficiency == pytest.approx(two.speedup / 2) and len(two.rounds_s) == 2
    result = CliRunner().invoke(app, ["compare", str(path), str(path), "--fail", "speedup:1%"])
    assert result.exit_code == 0, result.output
    assert "within noise" in result.stdout
