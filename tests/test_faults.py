"""Reliability on real multi-node Ray clusters started on this machine: node loss mid-grid."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rayscale import summary
from rayscale.cluster import ray_session
from rayscale.datasets import load_dataset
from rayscale.grids import load_grid
from rayscale.runners import RayGridRunner, run_sequential

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
    assert summary.mismatches(sequential, trials) == []
    # The trial that was running on the killed node ran again, and says so.
    retried = [t for t in trials if t.retries > 0]
    assert retried and all(t.node_id != worker_id for t in retried)
    assert all(t.start_ts >= started for t in trials)
