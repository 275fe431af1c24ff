"""The main job end to end on a real embedded Ray (2 CPUs): the first seed's published result, then Tune."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayscale.bundle import load_result
from rayscale.options import RunOptions
from rayscale.pipeline import run_benchmark
from rayscale.plots import write_plots

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
    assert (out / "tune_timeline.png").is_file() and (out / "tune_rmse_vs_rounds.png").is_file()
    assert load_result(out) == result
