"""--max-wall and SIGTERM: a run or a scale stops cleanly, keeping what it finished and restoring
what it changed; SIGTERM on real rayscale processes, as KubeRay's StopJob sends it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from rayscale.cli import app
from rayscale.errors import RayscaleError
from rayscale.options.commands import check_max_wall
from rayscale.work.stopping import WallLimitReached, wall_limit
from standins import RayletOperator, serve_kubernetes_api  # tests/standins.py


def test_the_limit_interrupts_the_block_and_is_cleared_after() -> None:
    started = time.monotonic()
    with (
        pytest.raises(WallLimitReached, match=r"--max-wall 0.2s reached; stopped. kept here"),
        wall_limit(0.2, "kept here"),
    ):
        time.sleep(5)
    assert time.monotonic() - started < 2
    with wall_limit(0.5):
        pass
    time.sleep(0.7)  # the timer was cancelled on leaving the block: nothing fires later
    with wall_limit(None):
        time.sleep(0.01)


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_bad_limits(bad: float) -> None:
    with pytest.raises(RayscaleError, match="--max-wall must be a positive number of seconds"):
        check_max_wall(bad)


def test_a_run_past_its_max_wall_exits_3_and_keeps_its_journal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["run", "--phases", "grid-seq", "--repeats", "100", "--max-wall", "3", "--output", str(out)],
    )
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--max-wall 3s reached" in lines[0] and "--resume" in lines[0]
    assert "Traceback" not in result.output
    assert not (out / "result.json").exists()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert (out / "trials.jsonl").read_text().strip()  # the rounds that finished are kept


# -- SIGTERM: what KubeRay's StopJob does to a driver ----------------------------------------------

RAYSCALE = str(Path(sys.executable).parent / "rayscale")
NATIVE_DUMP = ("*** SIGTERM received", "PC: @")


def _journal_has(out: Path, phase: str) -> Callable[[], bool]:
    def ready() -> bool:
        journal = out / "trials.jsonl"
        return journal.is_file() and f'"phase": "{phase}"' in journal.read_text()

    return ready


def _stop(
    argv: list[str],
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Start a rayscale process, SIGTERM it once ``ready()``, and report how it ended; ``tick``
    runs while waiting (a stand-in operator reconciles there)."""
    log = Path(tempfile.mkdtemp()) / "stderr"
    with log.open("w") as sink:
        proc = subprocess.Popen([RAYSCALE, *argv], stdout=subprocess.DEVNULL, stderr=sink, text=True, env=env)
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"never got to the point to stop it at:\n{log.read_text()}"
        tick()
        time.sleep(0.1)
    children = psutil.Process(proc.pid).children(recursive=True)
    sent, sent_ts = time.monotonic(), time.time()
    proc.send_signal(signal.SIGTERM)
    while proc.poll() is None and time.monotonic() - sent < 60:
        time.sleep(0.02)
    took = time.monotonic() - sent
    proc.wait(timeout=60)
    stderr = log.read_text()
    _, alive = psutil.wait_procs(children, timeout=15)
    return {"rc": proc.returncode, "stderr": stderr, "took": took, "alive": alive, "sent_ts": sent_ts}


def _stopped_cleanly(ended: dict[str, Any]) -> None:
    stderr = ended["stderr"]
    assert ended["rc"] == 3, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: SIGTERM received"), stderr
    assert "Traceback" not in stderr and not any(dump in stderr for dump in NATIVE_DUMP), stderr
    # Ray SIGKILLs the driver RAY_JOB_STOP_WAIT_TIME_S (3 s by default) after the SIGTERM.
    assert ended["took"] < 3.0, f"stopping took {ended['took']:.2f}s"
    assert not ended["alive"], f"left running: {[p.pid for p in ended['alive']]}"


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["grid_parallel", "tune"])
def test_a_stopped_run_exits_3_in_one_line_keeps_its_journal_and_leaves_nothing(
    tmp_path: Path, phase: str
) -> None:
    out = tmp_path / "run"
    phases = "grid-ray" if phase == "grid_parallel" else "tune"
    ended = _stop(
        ["run", "--phases", phases, "--repeats", "50", "--output", str(out)], _journal_has(out, phase)
    )
    _stopped_cleanly(ended)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith("SIGTERM received")
    assert not (out / "result.json").exists()
    assert _journal_has(out, phase)()  # the trials that finished are kept


@pytest.mark.slow
@pytest.mark.cluster
def test_a_stopped_local_scale_tears_its_cluster_down(tmp_path: Path, small_grid: Path) -> None:
    out = tmp_path / "scale"

    def two_nodes_running() -> bool:
        return (out / "scale.json").is_file() and len(_raylets()) >= 2

    ended = _stop(
        [
            "scale", "--nodes", "1,2", "--local-cluster", "--grid", str(small_grid),
            "--repeats", "10", "--output", str(out),
        ],
        two_nodes_running,
    )  # fmt: skip
    _stopped_cleanly(ended)
    assert json.loads((out / "scale.json").read_text())["node_counts"] == [1, 2]  # the 1-node point kept
    assert not _raylets()


def _raylets() -> list[psutil.Process]:
    """Raylets of the clusters this test's rayscale started (children of this process's tree)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "raylet" in p.name():
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.slow
@pytest.mark.cluster
def test_a_stopped_kuberay_scale_restores_the_worker_group(tmp_path: Path, small_grid: Path) -> None:
    """Through the real kubernetes client against a stand-in API server: the replicas, min and max
    the worker group had are patched back after the SIGTERM, before the driver exits."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    operator = RayletOperator(cluster)
    try:
        with serve_kubernetes_api(operator, tmp_path) as kubeconfig:
            env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
            argv = [
                "scale", "--nodes", "1,2", "--kuberay", "rayscale", "--namespace", "bench",
                "--address", cluster.address, "--grid", str(small_grid), "--repeats", "10",
                "--output", str(tmp_path / "s"),
            ]  # fmt: skip

            def resized() -> bool:
                return (tmp_path / "s" / "scale.json").is_file() and len(operator.workers) == 1

            ended = _stop(argv, resized, env, tick=operator.reconcile)
            operator.reconcile()  # the restore patch, served while the driver was stopping
    finally:
        cluster.shutdown()
    _stopped_cleanly(ended)
    assert "the worker replicas were restored" in ended["stderr"]
    restored_ts, groups = operator.patches[-1]
    assert restored_ts > ended["sent_ts"]  # the restore came after the signal
    assert groups[0] == {"groupName": "workers", "replicas": 0, "minReplicas": 0, "maxReplicas": 4}
    assert not operator.workers
