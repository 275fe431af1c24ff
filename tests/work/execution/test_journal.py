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
from rayscale.options.commands import RunOptions
from rayscale.options.files import JOURNAL_FILE, MANIFEST_FILE, RESULT_FILE
from rayscale.results.bundle import read_partial
from rayscale.work.execution.journal import Journal
from rayscale.work.run import run_benchmark


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


def test_a_refused_run_leaves_nothing(tmp_path: Path) -> None:
    """Refused after connecting (no trial fits the cluster), before any work: no bundle at all."""
    out = tmp_path / "b"
    result = CliRunner().invoke(
        app, ["run", "--phases", "grid-seq,grid-ray", "--cpus-per-trial", "64", "--output", str(out)]
    )
    assert result.exit_code == 2 and "no trial could ever be scheduled" in result.stderr
    assert not out.exists()


def test_a_run_that_fails_after_work_keeps_its_journal_and_records_why(tmp_path: Path) -> None:
    """The second config passes validation but fails inside fit (its early-stopping split leaves
    no rows): the first trial stays journaled, the run is marked failed with the reason, exit 3."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "configs:\n  - {n_estimators: 10}\n"
        "  - {n_estimators: 10, n_iter_no_change: 2, validation_fraction: 0.999}\n"
    )
    out = tmp_path / "b"
    result = CliRunner().invoke(
        app, ["run", "--phases", "grid-seq", "--grid", str(grid), "--repeats", "1", "--output", str(out)]
    )
    assert result.exit_code == 3 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config 1 failed: ValueError"), lines
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["status"] == "failed" and "config 1 failed" in manifest["error"]
    assert "phases_done" not in manifest
    rows = [json.loads(line) for line in (out / JOURNAL_FILE).read_text().splitlines()]
    assert [row["index"] for row in rows] == [0]
    assert not (out / RESULT_FILE).exists()


@pytest.mark.slow
def test_resume_finishes_a_killed_tune_sweep_without_rerunning_finished_trials(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "space:\n  learning_rate: [0.03, 0.1]\n  max_depth: [2, 3, 4]\n  subsample: [0.8, 1.0]\n"
    )
    out = tmp_path / "bundle"
    command = [
        sys.executable,
        "-m",
        "rayscale",
        "run",
        "--phases",
        "grid-seq,tune",
        "--grid",
        str(space.parent / "g.yaml"),
        "--space",
        str(space),
        "--dataset",
        "friedman1:50000",
        "--max-rounds",
        "400",
        "--scheduler",
        "none",
        "--report-every",
        "50",
        "--repeats",
        "1",
        "--output",
        str(out),
    ]
    (tmp_path / "g.yaml").write_text("configs:\n  - {n_estimators: 10}\n")
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / JOURNAL_FILE
    deadline = time.monotonic() + 180

    def tune_lines() -> list[dict]:
        rows = (
            [json.loads(x) for x in journal.read_text().splitlines() if x.endswith("}")]
            if journal.exists()
            else []
        )
        return [r for r in rows if r["phase"] == "tune"]

    while len(tune_lines()) < 2:
        assert run.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.2)
    time.sleep(1.5)  # Tune saves its experiment state every second (rayscale sets it)
    killed_at = time.time()
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    before = {r["trial_id"]: r for r in tune_lines()}
    assert 2 <= len(before) < 12 and not (out / RESULT_FILE).exists()

    resumed = CliRunner().invoke(app, ["run", "--resume", str(out), "--json"])
    assert resumed.exit_code == 0, resumed.output
    document = json.loads(resumed.stdout)
    trials = document["tune"]["trials"]
    # Every config exactly once, every trial to the end (no scheduler), and the trials finished
    # before the kill were kept as they were, not run again.
    assert len(trials) == 12 and len({t["trial_id"] for t in trials}) == 12
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 12
    assert all(t["rounds"] == 400 for t in trials)
    by_id = {t["trial_id"]: t for t in trials}
    for trial_id, row in before.items():
        assert by_id[trial_id]["start_ts"] == row["start_ts"] and by_id[trial_id]["end_ts"] == row["end_ts"]
    # Trials Tune had saved as finished never run again; only one that finished in the last
    # save period before the kill may (its first, journaled record is the one kept).
    reran = set(document["tune"]["reran_after_resume"])
    assert document["tune"]["resumed_with"] == len(before)
    assert all(trial_id not in reran for trial_id, row in before.items() if row["end_ts"] < killed_at - 2.0)
    assert reran <= {trial_id for trial_id, row in before.items() if row["end_ts"] >= killed_at - 2.0}
    assert document["grid"]["sequential"]["trials"]  # the finished grid phase was kept
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["status"] == "complete" and len(manifest["resumed_utc"]) == 1
    assert (out / RESULT_FILE).is_file()


@pytest.mark.parametrize(
    ("setup", "message"),
    [("none", "not a partial rayscale bundle"), ("complete", "already finished")],
)
def test_resume_of_a_non_resumable_folder(tmp_path: Path, small_grid: Path, setup: str, message: str) -> None:
    target = tmp_path / "b"
    if setup == "complete":
        run_benchmark(RunOptions(grid=str(small_grid), repeats=1, phases=("grid-seq",), output=target))
    else:
        target.mkdir()
    result = CliRunner().invoke(app, ["run", "--resume", str(target)])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
