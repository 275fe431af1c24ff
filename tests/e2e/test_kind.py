"""End to end on a real Kubernetes cluster (kind): chart, image, RayJob, Prometheus.

`make e2e-kind` runs it. It needs docker (with a reachable daemon), kind, kubectl and helm,
plus network access to the KubeRay and prometheus-community chart repositories. Where any is
missing it skips with the reason (this development machine has no Docker engine).

Steps: create a kind cluster; install the KubeRay operator and kube-prometheus-stack (Prometheus
operator + Prometheus only); build the rayscale image and `kind load` it; `helm install` the
chart sized for kind; `kubectl apply -f jobs/grid.yaml`; wait for the RayJob to reach
SUCCEEDED; assert Prometheus holds rayscale_* series for the run; then jobs/scale.yaml, which
resizes the cluster for 1, 2 and 3 nodes and must restore its worker replicas; delete the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import tooling

pytestmark = [pytest.mark.kind, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("RAYSCALE_KIND_CLUSTER", "rayscale-e2e")
KUBERAY_VERSION = os.environ.get("RAYSCALE_KUBERAY_VERSION", "1.5.1")
IMAGE = "rayscale:0.1.0"


def sh(*args: str, timeout: float = 900, check: bool = True) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        )
    return out.stdout


def _missing() -> str | None:
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return "docker is installed but no Docker daemon is reachable"
    return None


@pytest.fixture(scope="module")
def kind_cluster() -> Iterator[dict[str, str]]:
    reason = _missing()
    if reason:
        pytest.skip(f"kind end-to-end test needs docker and kind: {reason}")
    helm = tooling.helm()
    sh("kind", "create", "cluster", "--name", CLUSTER, "--wait", "120s")
    try:
        kubectl = ["kubectl", "--context", f"kind-{CLUSTER}"]
        sh(helm, "repo", "add", "kuberay", "https://ray-project.github.io/kuberay-helm/", "--force-update")
        sh(
            helm,
            "repo",
            "add",
            "prometheus-community",
            "https://prometheus-community.github.io/helm-charts",
            "--force-update",
        )
        sh(
            helm,
            "--kube-context",
            f"kind-{CLUSTER}",
            "install",
            "kuberay-operator",
            "kuberay/kuberay-operator",
            "--version",
            KUBERAY_VERSION,
            "--wait",
            "--timeout",
            "10m",
        )
        sh(
            helm,
            "--kube-context",
            f"kind-{CLUSTER}",
            "install",
            "prometheus",
            "prometheus-community/kube-prometheus-stack",
            "--namespace",
            "monitoring",
            "--create-namespace",
            "--set",
            "grafana.enabled=false",
            "--set",
            "alertmanager.enabled=false",
            "--set",
            "nodeExporter.enabled=false",
            "--set",
            "kubeStateMetrics.enabled=false",
            "--set",
            "prometheus.prometheusSpec.scrapeInterval=5s",
            "--wait",
            "--timeout",
            "10m",
        )
        sh("docker", "build", "-t", IMAGE, str(ROOT), timeout=1800)
        sh("kind", "load", "docker-image", IMAGE, "--name", CLUSTER)
        # Sized for a laptop's kind node: 1-CPU head and one 1-CPU worker.
        sh(
            helm,
            "--kube-context",
            f"kind-{CLUSTER}",
            "install",
            "rayscale",
            str(ROOT / "deploy/helm/rayscale"),
            "--set",
            "head.cpu=1",
            "--set",
            "worker.cpu=1",
            "--set",
            "worker.replicas=1",
            "--set",
            "head.memory=3Gi",
            "--set",
            "worker.memory=3Gi",
            "--wait",
            "--timeout",
            "10m",
        )
        yield {"helm": helm, "kubectl": " ".join(kubectl)}
    finally:
        sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)


def _prometheus_query(kubectl: list[str], query: str) -> list[dict]:
    forward = subprocess.Popen(
        [*kubectl, "-n", "monitoring", "port-forward", "svc/prometheus-operated", "19090:9090"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                url = "http://127.0.0.1:19090/api/v1/query?" + urllib.parse.urlencode({"query": query})
                with urllib.request.urlopen(url, timeout=5) as response:
                    return json.load(response)["data"]["result"]
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        forward.terminate()


def test_grid_job_succeeds_and_reaches_prometheus(kind_cluster: dict[str, str]) -> None:
    kubectl = kind_cluster["kubectl"].split()
    sh(*kubectl, "apply", "-f", str(ROOT / "jobs" / "grid.yaml"))
    deadline = time.monotonic() + 1800
    status = ""
    while status not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, f"RayJob still {status or 'pending'} after 30 minutes"
        time.sleep(10)
        status = sh(*kubectl, "get", "rayjob", "rayscale-grid", "-o", "jsonpath={.status.jobStatus}").strip()
    assert status == "SUCCEEDED", sh(*kubectl, "describe", "rayjob", "rayscale-grid", check=False)
    # The job pushed its phases; the ServiceMonitor (honorLabels) brings them into Prometheus.
    deadline = time.monotonic() + 120
    while not (series := _prometheus_query(kubectl, 'rayscale_phase_wall_seconds{phase="grid_parallel"}')):
        assert time.monotonic() < deadline, "no rayscale_* series in Prometheus"
        time.sleep(5)
    run_ids = {s["metric"]["run_id"] for s in series}
    assert len(run_ids) == 1
    run_id = run_ids.pop()
    assert _prometheus_query(kubectl, f'rayscale_trial_duration_seconds_count{{run_id="{run_id}"}}')
    assert _prometheus_query(kubectl, 'ray_node_cpu_utilization{ray_io_cluster="rayscale"}')


def test_scale_job_resizes_the_cluster_and_restores_it(kind_cluster: dict[str, str]) -> None:
    """jobs/scale.yaml: the driver resizes the RayCluster (1, 2, 3 nodes) and restores its replicas."""
    kubectl = kind_cluster["kubectl"].split()
    replicas = "jsonpath={.spec.workerGroupSpecs[0].replicas}"
    before = sh(*kubectl, "get", "raycluster", "rayscale", "-o", replicas).strip()
    sh(*kubectl, "apply", "-f", str(ROOT / "jobs" / "scale.yaml"))
    deadline = time.monotonic() + 3600
    status = ""
    while status not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, f"scale RayJob still {status or 'pending'} after an hour"
        time.sleep(15)
        status = sh(*kubectl, "get", "rayjob", "rayscale-scale", "-o", "jsonpath={.status.jobStatus}").strip()
    assert status == "SUCCEEDED", sh(*kubectl, "describe", "rayjob", "rayscale-scale", check=False)
    assert sh(*kubectl, "get", "raycluster", "rayscale", "-o", replicas).strip() == before
    nodes = {
        s["metric"]["nodes"]
        for s in _prometheus_query(kubectl, 'rayscale_phase_wall_seconds{phase="grid_parallel"}')
    }
    assert {"1", "2", "3"} <= nodes  # every node count pushed, labelled with its nodes
