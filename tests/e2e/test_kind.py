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
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import tooling

# Waits inside the tests (seconds), and what the module-scoped fixture may take: creating kind,
# two chart installs (10 min each at most) and the image build (30 min at most).
GRID_WAIT_S = 1800
SCALE_WAIT_S = 3600
SETUP_S = 3600
# pytest-timeout's timeout covers fixture setup too (pytest-timeout #190), so the project-wide 600 s
# would stop the first test while its fixture is still building; each test gets its own budget.
pytestmark = [
    pytest.mark.kind,
    pytest.mark.slow,
    pytest.mark.timeout(SETUP_S + SCALE_WAIT_S + 600),
]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("RAYSCALE_KIND_CLUSTER", "rayscale-e2e")
KUBERAY_VERSION = os.environ.get("RAYSCALE_KUBERAY_VERSION", "1.5.1")
KUBE_PROMETHEUS_STACK_VERSION = os.environ.get("RAYSCALE_KPS_VERSION", "79.5.0")
IMAGE = "rayscale:0.1.0"
# jobs/scale.yaml runs 1, 2 and 3 nodes: a 1-CPU head and up to two 1-CPU workers, 2 GiB each, beside
# the operator and Prometheus. The kind node (the docker VM) must have this much to give.
NEEDS_CPUS = 4
NEEDS_MEMORY_GIB = 10
# Helm's repositories and caches for this test only: the user's own are left alone.
HELM_HOME = Path(tempfile.mkdtemp(prefix="rayscale-e2e-helm-"))
HELM_ENV = {
    "HELM_CONFIG_HOME": str(HELM_HOME / "config"),
    "HELM_CACHE_HOME": str(HELM_HOME / "cache"),
    "HELM_DATA_HOME": str(HELM_HOME / "data"),
    "HELM_REPOSITORY_CONFIG": str(HELM_HOME / "config" / "repositories.yaml"),
    "HELM_REPOSITORY_CACHE": str(HELM_HOME / "cache" / "repository"),
}


def sh(*args: str, timeout: float = 900, check: bool = True) -> str:
    env = {**os.environ, **HELM_ENV}
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and out.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        )
    return out.stdout


def _missing() -> str | None:
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    info = subprocess.run(
        ["docker", "info", "--format", "{{.NCPU}} {{.MemTotal}}"], capture_output=True, text=True, check=False
    )
    if info.returncode != 0:
        return "docker is installed but no Docker daemon is reachable"
    cpus, memory = (int(x) for x in info.stdout.split())
    if cpus < NEEDS_CPUS or memory < NEEDS_MEMORY_GIB * 2**30:
        return (
            f"the docker VM has {cpus} CPUs and {memory / 2**30:.1f} GiB; the 3-node scale job needs "
            f"{NEEDS_CPUS} CPUs and {NEEDS_MEMORY_GIB} GiB"
        )
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
            "--version",
            KUBE_PROMETHEUS_STACK_VERSION,
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
        # Sized for a laptop's kind node: 1-CPU head and one 1-CPU worker (two during the scale
        # job); the scale Role on, for jobs/scale.yaml.
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
            "head.memory=2Gi",
            "--set",
            "worker.memory=2Gi",
            "--set",
            "rbac.scaleRole=true",
            "--wait",
            "--timeout",
            "10m",
        )
        yield {"helm": helm, "kubectl": " ".join(kubectl)}
    finally:
        sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)
        shutil.rmtree(HELM_HOME, ignore_errors=True)


def wait_for_rayjob(kubectl: list[str], name: str, seconds: float, every: float) -> str:
    """The RayJob's final jobStatus; fails at once when the deployment itself failed (a rejected
    submission never reaches a jobStatus) or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        out = sh(
            *kubectl,
            "get",
            "rayjob",
            name,
            "-o",
            "jsonpath={.status.jobStatus}|{.status.jobDeploymentStatus}",
        )
        status, _, deployment = out.strip().partition("|")
        if status in ("SUCCEEDED", "FAILED", "STOPPED") or deployment in ("Failed", "ValidationFailed"):
            return status or deployment
        assert time.monotonic() < deadline, f"RayJob {name} still {status or deployment or 'pending'}"
        time.sleep(every)


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
    status = wait_for_rayjob(kubectl, "rayscale-grid", GRID_WAIT_S, every=10)
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
    status = wait_for_rayjob(kubectl, "rayscale-scale", SCALE_WAIT_S, every=15)
    assert status == "SUCCEEDED", sh(*kubectl, "describe", "rayjob", "rayscale-scale", check=False)
    assert sh(*kubectl, "get", "raycluster", "rayscale", "-o", replicas).strip() == before
    nodes = {
        s["metric"]["nodes"]
        for s in _prometheus_query(kubectl, 'rayscale_phase_wall_seconds{phase="grid_parallel"}')
    }
    assert {"1", "2", "3"} <= nodes  # every node count pushed, labelled with its nodes
