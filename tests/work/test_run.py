"""The main job end to end on a real embedded Ray (2 CPUs): the first seed's published result, then Tune."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayscale.options.commands import RunOptions
from rayscale.results.bundle import load_result
from rayscale.views.plots import write_plots
from rayscale.work.run import run_benchmark

pytestmark = pytest.mark.slow


def test_seed_experiment_is_reproduced(tmp_path: Path) -> None:
    result, out = run_benchmark(RunOptions(repeats=1, output=tmp_path / "seed"))
    grid = result.grid
    assert grid is not None and grid.sequential and grid.parallel
    # The first seed's best-model table: 80 trees, lr 0.065, depth 2, RMSE 52.42, R² 0.4814, MAE 42.74.
    assert grid.best.params == {
        "n_estimators": 80,
        "learning_rate": 0.065,
        "max_depth": 2,
        "random_state": 42,
    }
    assert round(grid.best.rmse, 2) == 52.42
    assert round(grid.best.r2, 4) == 0.4814
    assert round(grid.best.mae, 2) == 42.74
    # Both runners fitted all 20 configs with identical metrics.
    assert grid.mismatches == [] and result.status == "complete"
    assert len(grid.sequential.trials) == len(grid.parallel.trials) == 20
    # Timing figures are present and coherent with each other.
    assert grid.cpus == 2 and grid.nodes == 1
    assert grid.speedup == pytest.approx(grid.sequential.wall_s / grid.parallel.wall_s)
    fits = [t.fit_s for t in grid.parallel.trials]
    assert grid.lower_bound_s == pytest.approx(max(sum(fits) / 2, max(fits)))
    assert grid.schedule_efficiency == pytest.approx(grid.lower_bound_s / grid.parallel.wall_s)
    assert grid.parallel_efficiency == pytest.approx(grid.speedup / 2)
    assert grid.parallel.connect_s > 0 and grid.parallel.warmup_s > 0
    assert len({t.pid for t in grid.parallel.trials}) == 2  # both CPUs did work
    # The Tune phase ran too (all phases by default): baseline vs tuned, every trial recorded.
    tune = result.tune
    assert tune is not None and len(tune.trials) == 32
    assert tune.best.rmse <= tune.baseline.rmse
    assert 0 < tune.rounds_run < tune.rounds_budget
    write_plots(result, out)  # the views the CLI draws after the work
    assert (out / "tune_timeline.png").is_file() and (out / "tune_score_vs_rounds.png").is_file()
    assert load_result(out) == result


def test_a_classification_run_tunes_the_task_with_lightgbm(tmp_path: Path) -> None:
    """The Tune phase follows the task: LightGBM's binary objective on breast_cancer, judged by
    accuracy (the classification default), beside the grid on the same metric."""
    from rich.console import Console

    from rayscale.options.commands import TuneOptions
    from rayscale.views.tables import print_report

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "estimator: sklearn.ensemble.RandomForestClassifier\n"
        "product:\n  n_estimators: [10]\n  max_depth: [2, 4]\n"
    )
    space = {"learning_rate": [0.05, 0.2], "num_leaves": [7, 15]}
    tune = TuneOptions(model="lightgbm", space=space, max_rounds=30, grace_period=10, report_every=10)
    opts = RunOptions(
        dataset="sklearn:breast_cancer", grid=str(grid), repeats=1, phases=("grid-ray", "tune"),
        output=tmp_path / "run", tune=tune,
    )  # fmt: skip
    result, out = run_benchmark(opts)
    t = result.tune
    assert t is not None and t.task == "classification" and t.metric == "accuracy" and t.model == "lightgbm"
    assert t.best_score == max(x.metrics["accuracy"] for x in t.trials)
    stored = load_result(out)
    assert stored.tune is not None and stored.tune.best == t.best and stored.options["tune"]["mode"] == "max"
    console = Console(record=True, width=140)
    print_report(result, console, out)
    text = console.export_text()
    assert "Tune sweep (LightGBM, asha)" in text and "Baseline vs tuned (LightGBM)" in text
    assert f"{t.best.metrics['accuracy']:.4f}" in text and "Boosting rounds run" in text
    write_plots(result, out)
    assert (out / "tune_score_vs_rounds.png").stat().st_size > 5_000
