"""The --kuberay path's patch / wait / restore logic.

No Kubernetes cluster exists on this machine, so these tests drive KubeRayScaler with a fake
CustomObjectsApi object that keeps a RayCluster in memory. The real path (the kubernetes client
against a live API server) is exercised by the kind end-to-end test (tests/e2e, jobs/scale.yaml).
"""

from __future__ import annotations

import copy

import pytest

from rayscale.errors import RayscaleError
from rayscale.work.cluster.kuberay import KubeRayScaler


class FakeCustomObjectsApi:
    """Just the two CustomObjectsApi calls KubeRayScaler makes, on an in-memory RayCluster."""

    def __init__(self, cluster: dict) -> None:
        self.cluster = cluster
        self.patches: list[dict] = []

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict:
        assert (group, version, plural) == ("ray.io", "v1", "rayclusters")
        if (namespace, name) != ("bench", "rayscale"):
            error = RuntimeError("Not Found")
            error.status = 404  # type: ignore[attr-defined]
            raise error
        return copy.deepcopy(self.cluster)

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict
    ) -> dict:
        self.patches.append(body)
        self.cluster["spec"]["workerGroupSpecs"] = body["spec"]["workerGroupSpecs"]
        return self.cluster


def _cluster() -> dict:
    return {
        "spec": {
            "workerGroupSpecs": [
                {"groupName": "small", "replicas": 1, "minReplicas": 1, "maxReplicas": 2},
                {"groupName": "workers", "replicas": 2, "minReplicas": 1, "maxReplicas": 4},
            ]
        }
    }


def _scaler(api: FakeCustomObjectsApi, **kw) -> KubeRayScaler:
    return KubeRayScaler("rayscale", "bench", api, group_name="workers", **kw)


def test_patch_widens_min_and_max_and_restore_puts_everything_back() -> None:
    api = FakeCustomObjectsApi(_cluster())
    scaler = _scaler(api)
    with scaler.restored() as original:
        assert original["replicas"] == 2
        scaler.set_workers(0)
        group = api.cluster["spec"]["workerGroupSpecs"][1]
        assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (0, 0, 4)
        scaler.set_workers(7)
        assert api.cluster["spec"]["workerGroupSpecs"][1]["maxReplicas"] == 7
        assert api.cluster["spec"]["workerGroupSpecs"][0] == _cluster()["spec"]["workerGroupSpecs"][0]
    assert api.cluster == _cluster()  # replicas, min and max restored
    assert len(api.patches) == 3


def test_restore_happens_when_the_run_fails() -> None:
    api = FakeCustomObjectsApi(_cluster())
    scaler = _scaler(api)
    with pytest.raises(RuntimeError, match="benchmark blew up"), scaler.restored():
        scaler.set_workers(3)
        raise RuntimeError("benchmark blew up")
    assert api.cluster == _cluster()


def test_wait_returns_when_ray_reports_the_nodes() -> None:
    now = [0.0]
    seen = iter([1, 2, 2, 3])
    scaler = _scaler(
        FakeCustomObjectsApi(_cluster()),
        poll_s=5,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    assert scaler.wait_for(3, lambda: next(seen)) == 15.0


def test_wait_times_out_with_a_clear_error() -> None:
    now = [0.0]
    scaler = _scaler(
        FakeCustomObjectsApi(_cluster()),
        timeout_s=30,
        poll_s=10,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    with pytest.raises(
        RayscaleError, match=r"timed out after 30s waiting for 4 Ray node\(s\).*Ray reports 2 alive"
    ):
        scaler.wait_for(4, lambda: 2)


def test_unknown_cluster_and_group() -> None:
    api = FakeCustomObjectsApi(_cluster())
    with pytest.raises(RayscaleError, match="RayCluster other/rayscale not found"):
        KubeRayScaler("rayscale", "other", api).worker_group()
    with pytest.raises(RayscaleError, match="no worker group 'gpu'"):
        KubeRayScaler("rayscale", "bench", api, group_name="gpu").worker_group()
    assert (
        KubeRayScaler("rayscale", "bench", api).worker_group()["groupName"] == "small"
    )  # default: the first
