"""Durable results: the journal a run keeps, and what a crashed run leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rayscale.cli import app
from rayscale.errors import RayscaleError
from rayscale.journal import Journal, read_partial
from rayscale.pipeline import RunOptions, run_benchmark
from rayscale.results import JOURNAL_FILE, MANIFEST_FILE, RESULT_FILE


def test_a_finished_run_journals_every_trial_and_says_complete(tmp_path: Path, small_grid: Path) -> None:
    out = tmp_path / "run"
    run_benchmark(RunOptions(grid=str(small_grid), repeats=2, phases=("grid-seq",), output=out))
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["status"] == "complete" and manifest["phases_done"] == ["grid_sequential"]
    lines = [json.loads(line) for line in (out / JOURNAL_FILE).read_text().splitlines()]
    assert len(lines) == 2 * 4  # every trial of every round, as it finished
    assert {(line["round"], line["index"]) for line in lines} == {(r, i) for r in (1, 2) for i in range(4)}
    assert (out / RESULT_FILE).is_file()


def test_a_journal_never_restarts_another_runs(tmp_path: Path) -> None:
    Journal(tmp_path, {"run_id": "a"}).finish("complete")
    with pytest.raises(RayscaleError, match="already holds a run"):
        Journal(tmp_path, {"run_id": "b"})


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"run_id": "x", "status": "running"}))
    (tmp_path / JOURNAL_FILE).write_text('{"phase": "grid_sequential", "index": 0}\n{"phase": "grid_seq')
    partial = read_partial(tmp_path)
    assert partial.trials == {"grid_sequential": 1} and partial.torn_lines == 1


@pytest.mark.slow
def test_a_killed_run_leaves_its_finished_trials_and_report_marks_it_partial(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [100, 200, 300]\n  max_depth: [3, 4]\n")
    out = tmp_path / "bundle"
    command = [
        sys.executable,
        "-m",
        "rayscale",
        "run",
        "--phases",
        "grid-seq",
        "--dataset",
        "friedman1:3000",
        "--grid",
        str(grid),
        "--repeats",
        "20",
        "--output",
        str(out),
    ]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / JOURNAL_FILE
    deadline = time.monotonic() + 120
    while not (journal.exists() and len(journal.read_text().splitlines()) >= 3):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.1)
    os.kill(run.pid, signal.SIGKILL)  # no handler runs: exactly what a lost pod does
    run.wait()
    assert not (out / RESULT_FILE).exists()
    finished = [json.loads(line) for line in journal.read_text().splitlines() if line.endswith("}")]
    assert len(finished) >= 3 and all(row["phase"] == "grid_sequential" and "rmse" in row for row in finished)

    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert "PARTIAL" in report.stdout and "is running" in report.stdout and "grid_sequential" in report.stdout
    as_json = json.loads(CliRunner().invoke(app, ["report", str(out), "--json"]).stdout)
    assert as_json["status"] == "partial" and as_json["trials"]["grid_sequential"] >= 3
    # The partial bundle is never overwritten by a new run.
    before = journal.read_bytes()
    again = CliRunner().invoke(app, ["run", "--phases", "grid-seq", "--output", str(out)])
    assert again.exit_code == 3 and "already holds a result" in again.stderr
    assert journal.read_bytes() == before


def test_a_failed_run_records_why(tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = CliRunner().invoke(
        app, ["run", "--phases", "grid-seq,grid-ray", "--cpus-per-trial", "64", "--output", str(out)]
    )
    assert result.exit_code == 2 and "no trial could ever be scheduled" in result.stderr
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["status"] == "failed" and "no trial could ever be scheduled" in manifest["error"]
    assert "phases_done" not in manifest  # it failed fast, before the sequential phase
