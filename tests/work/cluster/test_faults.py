"""Reliability on real multi-node Ray clusters started on this machine: node loss mid-grid."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rayscale.work.cluster.session import ray_session
from rayscale.work.data import load_dataset
from rayscale.work.grid.configs import load_grid
from rayscale.work.grid.runners import RayGridRunner, mismatches, run_sequential

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def test_worker_node_killed_mid_grid_loses_no_trial(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [150, 200, 250, 300]\n  max_depth: [3, 4]\n")
    dataset = load_dataset("friedman1:2000")
    specs = load_grid(str(grid))
    _, sequential = run_sequential(specs, dataset)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    killed = threading.Event()
    try:
        with ray_session(cluster.address) as info:
            assert info.nodes == 2
            worker_id = worker.node_id
            runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=2)
            runner.warm_up()

            def kill_the_worker() -> None:
                # Longest first: both nodes are 1.5 s into fits of 2-3 s, so the worker loses one.
                cluster.remove_node(worker, allow_graceful=False)
                killed.set()

            timer = threading.Timer(1.5, kill_the_worker)
            started = time.time()
            timer.start()
            try:
                _, trials = runner.run(specs)
            finally:
                timer.cancel()
    finally:
        cluster.shutdown()
    assert killed.is_set()
    # Every config exactly once, with the metrics the sequential run gives.
    assert sorted(t.index for t in trials) == list(range(len(specs)))
    assert mismatches(sequential, trials) == []
    # The trial that was running on the killed node ran again, and says so.
    retried = [t for t in trials if t.retries > 0]
    assert retried and all(t.node_id != worker_id for t in retried)
    assert all(t.start_ts >= started for t in trials)


def test_a_node_that_joins_mid_grid_gets_work(tmp_path: Path) -> None:
    """The runner dispatches itself on more than one node: one that joins mid-round (KubeRay's
    workers while ``scale --kuberay`` resizes, an autoscaler's) takes configs once it is alive."""
    from ray.cluster_utils import Cluster

    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [150, 200, 250, 300]\n  max_depth: [3, 4]\n")
    dataset = load_dataset("friedman1:2000")
    specs = load_grid(str(grid))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    joined: list[str] = []
    try:
        with ray_session(cluster.address):
            runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=2)
            runner.warm_up()

            ran: list[Any] = []
            # the round on a thread: Ray's cluster utilities start a node from the main thread only
            round_ = threading.Thread(target=lambda: ran.append(runner.run(specs)))
            round_.start()
            time.sleep(1.0)
            joined.append(cluster.add_node(num_cpus=1).node_id)
            round_.join(timeout=300)
            _, trials = ran[0]
    finally:
        cluster.shutdown()
    assert joined
    assert sorted(t.index for t in trials) == list(range(len(specs)))  # every config exactly once
    assert any(t.node_id == joined[0] for t in trials)


def test_losing_the_head_mid_run_is_reported_and_the_bundle_kept(tmp_path: Path) -> None:
    """Kill the head's GCS and raylet under a running `rayscale run --address`: within seconds the run
    says what happened in one line, marks its bundle failed, keeps the finished trials, exits 3."""
    import json
    import subprocess
    import sys

    from ray.cluster_utils import Cluster

    from rayscale.options.files import JOURNAL_FILE, MANIFEST_FILE

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    out = tmp_path / "bundle"
    command = [
        sys.executable,
        "-m",
        "rayscale",
        "run",
        "--phases",
        "grid-ray",
        "--address",
        cluster.address,
        "--dataset",
        "friedman1:3000",
        "--repeats",
        "20",
        "--output",
        str(out),
    ]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        journal = out / JOURNAL_FILE
        deadline = time.monotonic() + 120
        while not (journal.exists() and len(journal.read_text().splitlines()) >= 5):
            assert run.poll() is None and time.monotonic() < deadline, (
                "the run ended before the head was killed"
            )
            time.sleep(0.2)
        killed = time.monotonic()
        cluster.head_node.kill_gcs_server()
        cluster.head_node.kill_raylet()
        _, stderr = run.communicate(timeout=90)
        reported_after = time.monotonic() - killed
    finally:
        if run.poll() is None:
            run.kill()
        cluster.shutdown()
    assert run.returncode == 3, stderr[-2000:]
    assert reported_after < 45  # Ray's own abort comes after 60 s, and says far less
    last = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(last) == 1 and "lost the Ray head at" in last[0] and f"rayscale run --resume {out}" in last[0]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["status"] == "failed" and "lost the Ray head" in manifest["error"]
    assert len((out / JOURNAL_FILE).read_text().splitlines()) >= 5
