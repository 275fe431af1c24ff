"""A real multi-node Ray cluster on this machine (``rayscale scale --local-cluster``): a head and
worker raylets, each a separate set of processes, sharing the machine's cores (unlike
:mod:`rayscale.work.cluster.isolated`'s nodes, which each get their own network and CPU limit)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rayscale.results.schema import ClusterInfo
from rayscale.work.cluster.session import kill_now, ray_session, rays_handlers_out
from rayscale.work.stopping import Stopped


@contextmanager
def local_raylets(nodes: int, cpus_per_node: int) -> Iterator[str]:
    """A real multi-node Ray cluster on this machine: a head and ``nodes - 1`` worker raylets,
    each a separate set of processes with ``cpus_per_node`` CPUs. Yields its address; torn down
    whatever happens."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    cluster = None
    try:
        with rays_handlers_out():
            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": cpus_per_node, "include_dashboard": False},
            )
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=cpus_per_node)
        cluster.wait_for_nodes()
        yield cluster.address
    except Stopped:  # seconds before SIGKILL: no graceful wait (see ray_session)
        if cluster is not None:
            kill_now([*cluster.worker_nodes, cluster.head_node])
        raise
    finally:
        if cluster is not None:
            with rays_handlers_out():
                cluster.shutdown()


@contextmanager
def local_cluster(nodes: int, cpus_per_node: int) -> Iterator[ClusterInfo]:
    """:func:`local_raylets` with this process connected; ``connect_s`` covers starting them all."""
    started = time.perf_counter()
    with local_raylets(nodes, cpus_per_node) as address, ray_session(address) as info:
        yield info.model_copy(update={"connect_s": time.perf_counter() - started, "mode": "embedded"})
