from __future__ import annotations

from pathlib import Path

from rich.console import Console

from rayscale.options.commands import RunOptions
from rayscale.options.files import PLOTS
from rayscale.views.plots import write_plots
from rayscale.views.tables import print_report
from rayscale.work.run import run_benchmark

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_run_writes_the_seed_plots_and_timeline(tmp_path: Path, small_grid: Path) -> None:
    result, out = run_benchmark(
        RunOptions(grid=str(small_grid), repeats=1, phases=("grid-seq",), output=tmp_path / "r")
    )
    write_plots(result, out)
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name


def test_report_prints_timing_and_best_model(tmp_path: Path, small_grid: Path) -> None:
    result, out = run_benchmark(
        RunOptions(grid=str(small_grid), repeats=3, phases=("grid-seq",), output=tmp_path / "r")
    )
    console = Console(record=True, width=120)
    print_report(result, console, out)
    text = console.export_text()
    assert "Sequential time" in text and "median of 3" in text
    assert "Best model" in text and f"{result.grid.best.rmse:.2f}" in text
    assert "Speedup" not in text  # no parallel phase ran, so no speedup is claimed
