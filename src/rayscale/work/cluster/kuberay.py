"""Resizing a KubeRay RayCluster's worker group for node-count sweeps.

Uses the ``kubernetes`` client's CustomObjectsApi (in-cluster config inside a pod, else the
local kubeconfig). The API object is injectable, so the patch/wait/restore logic is tested
against a fake where no cluster exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rayscale.errors import RayscaleError

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayclusters"


def default_api() -> Any:
    """CustomObjectsApi from the in-cluster config, else the kubeconfig."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise RayscaleError("--kuberay needs the kubernetes client: pip install 'rayscale[k8s]'") from None
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise RayscaleError(f"no Kubernetes configuration found: {exc}", 3) from None
    return client.CustomObjectsApi()


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def current_namespace(default: str = "default") -> str:
    """The namespace this pod runs in (from its ServiceAccount), else ``default``."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            return handle.read().strip() or default
    except OSError:
        return default


@dataclass
class KubeRayScaler:
    """Patch a RayCluster's worker group replicas, wait for Ray to see the nodes, restore after."""

    name: str
    namespace: str
    api: Any
    group_name: str | None = None  # None: the first worker group
    timeout_s: float = 600.0
    poll_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def _get(self) -> dict:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except Exception as exc:  # the client raises ApiException; a fake may raise anything
            status = getattr(exc, "status", None)
            what = (
                "not found" if status == 404 else f"unreadable ({type(exc).__name__}: {exc})".splitlines()[0]
            )
            raise RayscaleError(f"RayCluster {self.namespace}/{self.name} {what}", 3) from None

    def _group_index(self, cluster: dict) -> int:
        groups = cluster.get("spec", {}).get("workerGroupSpecs", [])
        if not groups:
            raise RayscaleError(f"RayCluster {self.name} has no worker group to resize", 3)
        if self.group_name is None:
            return 0
        for i, group in enumerate(groups):
            if group.get("groupName") == self.group_name:
                return i
        raise RayscaleError(f"RayCluster {self.name} has no worker group {self.group_name!r}", 3)

    def worker_group(self) -> dict:
        cluster = self._get()
        return dict(cluster["spec"]["workerGroupSpecs"][self._group_index(cluster)])

    def set_workers(
        self, replicas: int, min_replicas: int | None = None, max_replicas: int | None = None
    ) -> None:
        """Patch the group's replicas, widening min/max so the operator accepts the count."""
        cluster = self._get()
        index = self._group_index(cluster)
        groups = [dict(g) for g in cluster["spec"]["workerGroupSpecs"]]
        group = groups[index]
        group["replicas"] = replicas
        group["minReplicas"] = (
            min(group.get("minReplicas", 0), replicas) if min_replicas is None else min_replicas
        )
        group["maxReplicas"] = (
            max(group.get("maxReplicas", replicas), replicas) if max_replicas is None else max_replicas
        )
        self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"spec": {"workerGroupSpecs": groups}}
        )

    def wait_for(self, expected: int, alive: Callable[[], int]) -> float:
        """Poll ``alive()`` until it reports ``expected`` nodes; return the seconds it took."""
        started = self.clock()
        while True:
            seen = alive()
            if seen == expected:
                return self.clock() - started
            if self.clock() - started > self.timeout_s:
                raise RayscaleError(
                    f"timed out after {self.timeout_s:.0f}s waiting for {expected} Ray node(s) in "
                    f"RayCluster {self.namespace}/{self.name}; Ray reports {seen} alive",
                    3,
                )
            self.sleep(self.poll_s)

    @contextmanager
    def restored(self) -> Iterator[dict]:
        """Remember the worker group's replicas/min/max and put them back afterwards, whatever happens."""
        original = self.worker_group()
        try:
            yield original
        finally:
            self.set_workers(
                original.get("replicas", 0), original.get("minReplicas", 0), original.get("maxReplicas", 0)
            )
