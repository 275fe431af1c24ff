"""The typer CLI through CliRunner: thin commands, one-line errors, nothing half-written."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rayscale.cli import app

runner = CliRunner()


def _one_line_error(result, exit_code: int, fragment: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"rayscale {metadata.version('rayscale')}"


def test_sequential_run_prints_json_and_writes_the_bundle(tmp_path: Path, small_grid: Path) -> None:
    out = tmp_path / "bundle"
    result = runner.invoke(
        app,
        [
            "run",
            "--grid",
            str(small_grid),
            "--phases",
            "grid-seq",
            "--repeats",
            "1",
            "--output",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["grid"]["configs"] == 4 and document["grid"]["parallel"] is None
    assert json.loads((out / "result.json").read_text()) == document


def test_report_rerenders_tables_and_plots(tmp_path: Path, small_grid: Path) -> None:
    out = tmp_path / "bundle"
    assert (
        runner.invoke(
            app,
            [
                "run",
                "--grid",
                str(small_grid),
                "--phases",
                "grid-seq",
                "--repeats",
                "1",
                "--output",
                str(out),
            ],
        ).exit_code
        == 0
    )
    (out / "timeline.png").unlink()
    result = runner.invoke(app, ["report", str(out / "result.json")])
    assert result.exit_code == 0, result.output
    assert "Timing results" in result.stdout and "Best model" in result.stdout
    assert (out / "timeline.png").is_file()
    as_json = runner.invoke(app, ["report", str(out), "--json", "--no-plots"])
    assert json.loads(as_json.stdout)["grid"]["configs"] == 4


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dataset", "iris"], "unknown dataset 'iris'"),
        (["--dataset", "csv:/nonexistent.csv:y"], "CSV file not found"),
        (["--test-size", "1.5"], "--test-size must be between 0 and 1"),
        (["--grid", "missing.yaml"], "grid file not found"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial must be at least 1"),
        (["--phases", "grid-seq,sweep"], "unknown phase 'sweep'"),
        (["--phases", ","], "--phases is empty"),
        (["--address", "not an address"], "--address 'not an address' is not"),
        (["--max-trials", "5"], "more than --max-trials 5"),
        (["--phases", "tune", "--max-rounds", "0"], "--max-rounds must be at least 1"),
        (["--phases", "tune", "--space", "nope.yaml"], "search space file not found"),
        (["--phases", "tune", "--grace-period", "400"], "--grace-period 400 exceeds --max-rounds 300"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--phases", "grid-seq", "--output", str(out), *args])
    _one_line_error(result, 2, fragment)
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "--repeats", "many"], "Invalid value for '--repeats'"),
        (["run", "--no-such-option"], "No such option: --no-such-option"),
        (["run", "--scheduler", "hyperband"], "Invalid value for '--scheduler'"),
        (["reprot"], "No such command 'reprot'"),
        (["report"], "Missing argument 'RESULT'"),
    ],
)
def test_usage_errors_are_one_line_too(args: list[str], fragment: str) -> None:
    _one_line_error(runner.invoke(app, args), 2, fragment)


def test_existing_results_are_kept(tmp_path: Path, small_grid: Path) -> None:
    out = tmp_path / "bundle"
    base = ["run", "--grid", str(small_grid), "--phases", "grid-seq", "--repeats", "1", "--output", str(out)]
    assert runner.invoke(app, base).exit_code == 0
    before = (out / "result.json").read_bytes()
    _one_line_error(runner.invoke(app, base), 3, "already holds a result")
    assert (out / "result.json").read_bytes() == before


def test_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(
        runner.invoke(app, ["run", "--phases", "grid-seq", "--output", str(blocker / "sub")]),
        3,
        "is not writable",
    )


@pytest.mark.parametrize("content", [None, "{}", "[1, 2]"])
def test_report_of_a_non_bundle(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith("error: ")


@pytest.mark.slow
def test_full_run_on_embedded_ray(tmp_path: Path, small_grid: Path) -> None:
    out = tmp_path / "bundle"
    result = runner.invoke(
        app,
        [
            "run",
            "--grid",
            str(small_grid),
            "--repeats",
            "2",
            "--output",
            str(out),
            "--max-rounds",
            "50",
            "--grace-period",
            "10",
            "--report-every",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    for needle in (
        "Sequential time",
        "Parallel time (warm)",
        "Speedup",
        "Parallel efficiency",
        "Cold start",
        "2 CPUs",
        "Best model",
        f"bundle: {out}",
    ):
        assert needle in result.stdout, needle
    document = json.loads((out / "result.json").read_text())
    assert len(document["grid"]["parallel"]["rounds_s"]) == 2
    assert document["cluster"]["mode"] == "embedded"
    assert document["tune"]["max_rounds"] == 50 and len(document["tune"]["trials"]) == 32


@pytest.mark.slow
def test_tune_only_json_keeps_stdout_clean(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  max_depth: [2, 3]\n")
    result = runner.invoke(
        app,
        [
            "run",
            "--phases",
            "tune",
            "--space",
            str(space),
            "--max-rounds",
            "20",
            "--scheduler",
            "none",
            "--output",
            str(tmp_path / "b"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # nothing but the JSON on stdout, Tune's chatter included
    assert document["grid"] is None and document["tune"]["scheduler"] == "none"
    for key in ("wall_s", "compute_s", "cpus", "trials", "scheduler"):
        assert key in document["tune"]
    assert set(document["tune"]["baseline"]) >= {"rmse", "r2"} and set(document["tune"]["best"]) >= {
        "params",
        "rmse",
        "r2",
    }
