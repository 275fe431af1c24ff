"""Runners on a real embedded Ray with 2 CPUs."""

from __future__ import annotations

import pytest

from rayscale.cluster import ray_session
from rayscale.datasets import load_dataset
from rayscale.errors import RayscaleError
from rayscale.grids import load_grid
from rayscale.runners import RayGridRunner, mismatches, run_sequential

pytestmark = pytest.mark.slow


def test_an_embedded_ray_never_joins_a_cluster_already_running_here() -> None:
    from rayscale.cluster import local_raylets

    with local_raylets(2, 1), ray_session("", num_cpus=1) as embedded:
        # A 2-node cluster is running on this machine; the embedded Ray is its own 1-CPU node.
        assert (embedded.mode, embedded.nodes, embedded.cpus) == ("embedded", 1, 1)


def test_parallel_equals_sequential_and_runs_longest_first(small_grid) -> None:
    dataset = load_dataset("diabetes")
    specs = load_grid(str(small_grid))
    seq_wall, seq = run_sequential(specs, dataset)
    with ray_session("", num_cpus=2) as cluster:
        assert cluster.cpus == 2 and cluster.nodes == 1 and cluster.mode == "embedded"
        runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=cluster.cpus)
        assert runner.slots == 2
        assert runner.warm_up() > 0
        par_wall, par = runner.run(specs)
        with pytest.raises(RayscaleError, match="more than the cluster's 2 CPUs"):
            RayGridRunner(dataset, cpus_per_trial=3, cluster_cpus=cluster.cpus)
    assert seq_wall > 0 and par_wall > 0
    assert mismatches(seq, par) == []
    assert [t.index for t in par] == [0, 1, 2, 3]
    # Each trial ran in a Ray worker, not the driver, and says where.
    assert all(t.node_id and t.pid != seq[0].pid for t in par)
    assert all(t.queue_s >= 0 and t.end_ts >= t.start_ts for t in par)
    # Longest-expected-first: the costliest config was started no later than the cheapest.
    by_cost = sorted(par, key=lambda t: t.cost)
    assert by_cost[-1].start_ts <= by_cost[0].start_ts
