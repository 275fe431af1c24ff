"""The chart and jobs/ against a real API server and the real KubeRay operator (tests/controlplane.py).

One control plane for the session: etcd, kube-apiserver, controller-manager and scheduler, kwok's
fake nodes and the KubeRay operator, on loopback. What this proves, and what only a real cluster
proves, is in docs/local-kubernetes.md. The chart is installed with a real helm and the jobs applied with
a real kubectl, exactly as users do; pods never run containers (kwok only moves them to Running).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import controlplane  # tests/controlplane.py (pytest puts tests/ on sys.path)
from controlplane import ControlPlane, assert_unreachable

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "rayscale"
JOBS = ROOT / "jobs"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "rayscale"  # jobs/*.yaml select the cluster of this release name
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # Module scope: stopped before tests/k8s/test_node.py starts its real node (its own control plane).
    yield from controlplane.start(tmp_path_factory.mktemp("controlplane"))


# -- helpers --------------------------------------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.lstrip("v").split("-")[0].split(".")[:3])


def load_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(cp: ControlPlane, namespace: str, *values: str, release: str = RELEASE) -> list[dict[str, Any]]:
    server = json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    out = cp.helm("template", release, str(CHART), "-n", namespace, "--kube-version", server, *values).stdout
    return load_docs(out)


def strict_dry_run(cp: ControlPlane, namespace: str, docs: list[dict[str, Any]]) -> None:
    """Every object through the API server's admission and strict field validation (nothing stored)."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_namespace.setdefault(doc["metadata"].get("namespace", namespace), []).append(doc)
    for where, group in by_namespace.items():
        manifest = "\n---\n".join(json.dumps(doc) for doc in group)
        result = cp.kubectl(
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-n",
            where,
            "-f",
            "-",
            input=manifest,
            check=False,
        )
        assert result.returncode == 0, f"the API server refused the chart's objects:\n{result.stderr}"
        assert "Warning" not in result.stderr, f"the API server warned:\n{result.stderr}"


def helm_ok(result: Any) -> None:
    """helm succeeded without the API server's warnings (unknown or duplicate fields, deprecations)."""
    assert "warning" not in result.stderr.lower(), f"helm printed warnings:\n{result.stderr}"


def cluster(cp: ControlPlane, namespace: str, name: str = RELEASE) -> dict[str, Any]:
    return cp.get("raycluster", name, "-n", namespace)


def pods(cp: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    return cp.items("pods", "-n", namespace, "-l", selector)


def ray_pods(cp: ControlPlane, namespace: str, node_type: str, name: str = RELEASE) -> list[dict[str, Any]]:
    live = pods(cp, namespace, f"ray.io/cluster={name},ray.io/node-type={node_type}")
    return [p for p in live if not p["metadata"].get("deletionTimestamp")]


def running(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
    return status.get("phase") == "Running" and ready == "True"


def events(cp: ControlPlane, namespace: str, name: str | None = None) -> list[str]:
    found = cp.items("events", "-n", namespace)
    return [
        f"{e.get('involvedObject', {}).get('kind')}/{e.get('involvedObject', {}).get('name')}: "
        f"{e.get('reason')}: {e.get('message')}"
        for e in found
        if name is None or e.get("involvedObject", {}).get("name") == name
    ]


def wait_cluster_ready(cp: ControlPlane, namespace: str, workers: int, name: str = RELEASE) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        rc = cluster(cp, namespace, name)
        heads, live = ray_pods(cp, namespace, "head", name), ray_pods(cp, namespace, "worker", name)
        ok = (
            rc.get("status", {}).get("state") == "ready"
            and len(heads) == 1
            and len(live) == workers
            and all(running(p) for p in heads + live)
        )
        return rc if ok else None

    try:
        return cp.wait(f"RayCluster {namespace}/{name} ready with {workers} workers", ready, timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nevents:\n" + "\n".join(events(cp, namespace))) from None


def install(cp: ControlPlane, namespace: str, *values: str, release: str = RELEASE) -> None:
    result = cp.helm("install", release, str(CHART), "-n", namespace, *values)
    helm_ok(result)


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def ray_start(c: dict[str, Any]) -> list[str]:
    """The words of the `ray start` command KubeRay generated for a Ray container."""
    text = " ".join(c.get("command", []) + c.get("args", []))
    return shlex.split(text[text.index("ray start") :].split(";")[0].split("&&")[0])


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


def mounts_token(pod: dict[str, Any], container_name: str) -> bool:
    paths = [m["mountPath"] for m in container(pod, container_name).get("volumeMounts", [])]
    return SA_TOKEN_PATH in paths


def can_i(cp: ControlPlane, namespace: str, sa: str, *what: str) -> bool:
    result = cp.kubectl(
        "auth", "can-i", *what, "-n", namespace, f"--as=system:serviceaccount:{namespace}:{sa}", check=False
    )
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def job_doc(name: str, **spec: Any) -> str:
    doc = yaml.safe_load((JOBS / name).read_text(encoding="utf-8"))
    doc["spec"].update(spec)
    return json.dumps(doc)


def apply_job(cp: ControlPlane, namespace: str, manifest: str) -> None:
    cp.kubectl("apply", "--server-side", "--validate=strict", "-n", namespace, "-f", "-", input=manifest)


def scenario_skip(cp: ControlPlane, values: dict[str, Any]) -> str | None:
    """Why a values scenario is outside what the operator built here supports, if it is."""
    running_version = _version(cp.kuberay_version)
    rendered_for = str(values.get("kuberay", {}).get("version", "1.5.1"))
    if _version(rendered_for)[:2] > running_version[:2]:
        return f"renders for KubeRay {rendered_for}; the control plane runs KubeRay {cp.kuberay_version}"
    if values.get("auth", {}).get("mode") == "token" and running_version < (1, 5, 1):
        return f"Ray token auth needs KubeRay >= 1.5.1 (values.yaml auth.mode); this is {cp.kuberay_version}"
    return None


@pytest.fixture(scope="module")
def default_release(cp: ControlPlane) -> str:
    """`helm install rayscale deploy/helm/rayscale` with the defaults, in a `restricted` namespace."""
    namespace = cp.namespace("rs-default")
    install(cp, namespace)
    wait_cluster_ready(cp, namespace, workers=2)
    return namespace


# -- the control plane itself ---------------------------------------------------------------------


def test_control_plane_is_real_and_local(cp: ControlPlane) -> None:
    """The versions helm and kwok check, kwok's nodes, and no route out for pod or Service addresses."""
    version = json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"].startswith("v1.") and version["major"] == "1", version
    assert _version(cp.kuberay_version) >= (1, 5, 0)
    nodes = cp.items("nodes")
    assert len(nodes) == controlplane.NODES
    assert {n["status"]["allocatable"]["cpu"] for n in nodes} == {str(controlplane.NODE_CPU)}
    service = cp.get("service", "kubernetes", "-n", "default")
    assert_unreachable(service["spec"]["clusterIP"], 443)
    assert cp.server.startswith("https://127.0.0.1:")


# -- the chart: every scenario installs, upgrades and uninstalls cleanly --------------------------


@pytest.mark.parametrize("scenario", [None, *SCENARIOS], ids=lambda s: "defaults" if s is None else s.stem)
def test_chart_installs_upgrades_and_uninstalls(cp: ControlPlane, scenario: Path | None) -> None:
    values_args = [] if scenario is None else ["-f", str(scenario)]
    values = {} if scenario is None else yaml.safe_load(scenario.read_text(encoding="utf-8")) or {}
    reason = scenario_skip(cp, values)
    name = "defaults" if scenario is None else scenario.stem.removesuffix("-values").replace(".", "-")
    namespace = cp.namespace(f"rs-chart-{name}")
    if reason:
        # Rendered for a newer operator than the one running: its CRDs lack the fields, and the API
        # server's strict field validation refuses the RayCluster (what kuberay.version guards).
        raycluster = [d for d in render(cp, namespace, *values_args) if d["kind"] == "RayCluster"]
        refused = cp.kubectl(
            "create", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
            input=json.dumps(raycluster[0]), check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and "unknown field" in refused.stderr, (reason, refused.stderr)
        return
    try:
        docs = render(cp, namespace, *values_args)
        # Objects the chart puts in other namespaces (the dashboard ConfigMap) need them to exist.
        for other in {d["metadata"].get("namespace") for d in docs} - {None, namespace}:
            cp.namespace(other, restricted=False)
        strict_dry_run(cp, namespace, docs)
        install(cp, namespace, *values_args)

        for doc in docs:
            where = doc["metadata"].get("namespace", namespace)
            assert cp.get(doc["kind"], doc["metadata"]["name"], "-n", where), f"{doc['kind']} not created"

        # Every pod admitted under Pod Security `restricted`: head, workers, Pushgateway.
        workers = int(values.get("worker", {}).get("replicas", 2))
        pushgateway = values.get("pushgateway", {}).get("enabled", True)

        def admitted() -> bool:
            gateway = pods(cp, namespace, "app.kubernetes.io/component=pushgateway")
            return (
                len(ray_pods(cp, namespace, "head")) == 1
                and len(ray_pods(cp, namespace, "worker")) == workers
                and (len(gateway) == 1 or not pushgateway)
            )

        try:
            cp.wait("every pod of the release to be admitted", admitted, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nevents:\n" + "\n".join(events(cp, namespace))) from None

        result = cp.helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "-n",
            namespace,
            *values_args,
            "--set",
            f"worker.replicas={workers + 1}",
        )
        helm_ok(result)
        cp.wait(
            "the upgraded worker count",
            lambda: (
                cluster(cp, namespace)["spec"]["workerGroupSpecs"][0]["replicas"] == workers + 1
                and len(ray_pods(cp, namespace, "worker")) == workers + 1
            ),
            timeout=60,
        )

        helm_ok(cp.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "90s"))

        def leftovers() -> list[str]:
            left = [
                f"{d['kind']}/{d['metadata']['name']}"
                for d in docs
                if cp.get(d["kind"], d["metadata"]["name"], "-n", d["metadata"].get("namespace", namespace))
            ]
            left += [f"pod/{p['metadata']['name']}" for p in cp.items("pods", "-n", namespace)]
            left += [f"service/{s['metadata']['name']}" for s in cp.items("services", "-n", namespace)]
            left += [f"pvc/{s['metadata']['name']}" for s in cp.items("pvc", "-n", namespace)]
            left += [f"secret/{s['metadata']['name']}" for s in cp.items("secrets", "-n", namespace)]
            return left

        cp.wait("nothing left after helm uninstall", lambda: not leftovers(), timeout=60)
    finally:
        cp.delete_namespace(namespace)


# -- what the operator makes of the chart ---------------------------------------------------------


def test_operator_reconciles_the_chart(cp: ControlPlane, default_release: str) -> None:
    """Pods and Services the operator generates carry the chart's resources, ports, volumes, env."""
    namespace = default_release
    rc = cluster(cp, namespace)
    assert rc["status"]["state"] == "ready"
    assert rc["status"].get("readyWorkerReplicas") == 2
    assert rc["status"].get("desiredCPU") == "6"  # 2 + 2 x 2

    head = ray_pods(cp, namespace, "head")[0]
    ray_head = container(head, "ray-head")
    assert ray_head["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    start = ray_start(ray_head)
    assert "--head" in start
    assert "--num-cpus=2" in start, start  # KubeRay derives num-cpus from the CPU limit
    assert "--metrics-export-port=8080" in start and "--dashboard-host=0.0.0.0" in start, start
    ports = {p["name"]: p["containerPort"] for p in ray_head["ports"]}
    assert ports == {
        "gcs-server": 6379,
        "dashboard": 8265,
        "client": 10001,
        "metrics": 8080,
        "as-metrics": 44217,
        "dash-metrics": 44227,
    }
    mounts = {m["name"]: m["mountPath"] for m in ray_head["volumeMounts"]}
    assert mounts["ray-logs"] == "/tmp/ray" and mounts["results"] == "/results"
    volumes = {v["name"]: v for v in head["spec"]["volumes"]}
    assert "emptyDir" in volumes["ray-logs"] and "emptyDir" in volumes["results"]
    assert ray_head.get("readinessProbe") and ray_head.get("livenessProbe"), "KubeRay's probes are missing"
    env = env_of(ray_head)
    assert env.get("RAY_AUTH_MODE") == "disabled", env
    assert env.get("RAY_ADDRESS") == "127.0.0.1:6379", env  # what `--address auto` on the head finds
    assert ray_head["securityContext"]["allowPrivilegeEscalation"] is False
    assert head["spec"]["securityContext"]["runAsNonRoot"] is True
    assert not mounts_token(head, "ray-head"), "the head mounts a token without rbac.scaleRole"
    assert head["spec"]["serviceAccountName"] == RELEASE

    workers = ray_pods(cp, namespace, "worker")
    assert len(workers) == 2
    for worker in workers:
        ray_worker = container(worker, "ray-worker")
        assert ray_worker["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
        assert "--num-cpus=2" in ray_start(ray_worker)
        assert {p["name"]: p["containerPort"] for p in ray_worker["ports"]} == {"metrics": 8080}
        worker_env = env_of(ray_worker)
        assert worker_env.get("RAY_AUTH_MODE") == "disabled"
        # Workers join through the head Service's cluster DNS name.
        assert worker_env.get("FQ_RAY_IP") == f"{RELEASE}-head-svc.{namespace}.svc.cluster.local", worker_env
        assert ray_worker.get("readinessProbe") and ray_worker.get("livenessProbe")
        assert not mounts_token(worker, "ray-worker")

    # The head Service the jobs and the workers rely on.
    svc = cp.get("service", f"{RELEASE}-head-svc", "-n", namespace)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"]["ray.io/node-type"] == "head"
    assert svc["spec"]["selector"]["ray.io/cluster"] == RELEASE
    svc_ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert {"gcs-server": 6379, "dashboard": 8265, "client": 10001}.items() <= svc_ports.items(), svc_ports
    # KubeRay 1.5 makes the head Service headless: its name resolves to the head pod's IP.
    if svc["spec"]["clusterIP"] != "None":
        assert_unreachable(svc["spec"]["clusterIP"], 8265)
    assert_unreachable(head["status"]["podIP"], 8265)
    # The Pushgateway the jobs push to (http://rayscale-pushgateway:9091).
    gateway = cp.get("service", f"{RELEASE}-pushgateway", "-n", namespace)
    assert {p["port"] for p in gateway["spec"]["ports"]} == {9091}
    gateway_pods = pods(cp, namespace, "app.kubernetes.io/component=pushgateway")
    assert len(gateway_pods) == 1 and running(gateway_pods[0])
    gateway_container = container(gateway_pods[0], "pushgateway")
    assert gateway_container["readinessProbe"]["httpGet"]["path"] == "/-/ready"


def test_ray_start_params_override_is_one_key(cp: ControlPlane) -> None:
    """A user's `--set-string head.rayStartParams.metrics-export-port=9090` replaces the chart's key."""
    namespace = cp.namespace("rs-params")
    args = ["--set-string", "head.rayStartParams.metrics-export-port=9090"]
    try:
        docs = render(cp, namespace, *args)
        strict_dry_run(cp, namespace, docs)
        install(cp, namespace, *args)
        rc = cluster(cp, namespace)
        assert rc["spec"]["headGroupSpec"]["rayStartParams"]["metrics-export-port"] == "9090"
        head = cp.wait("the head pod", lambda: ray_pods(cp, namespace, "head"))[0]
        start = ray_start(container(head, "ray-head"))
        assert [w for w in start if w.startswith("--metrics-export-port")] == [
            "--metrics-export-port=9090"
        ], start
        ports = {p["name"]: p["containerPort"] for p in container(head, "ray-head")["ports"]}
        assert ports["metrics"] == 9090
    finally:
        cp.helm("uninstall", RELEASE, "-n", namespace, check=False)
        cp.delete_namespace(namespace)


# -- RayJobs --------------------------------------------------------------------------------------


def test_rayjobs_are_accepted_and_run(cp: ControlPlane, default_release: str) -> None:
    """jobs/ as users apply them: accepted, picked up by the operator; a selector job's deletion keeps
    the Helm cluster; the ephemeral job's own cluster goes with it (garbage collection)."""
    namespace = default_release
    result = cp.kubectl(
        "apply",
        "--server-side",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        str(JOBS),
        "--field-manager=user",
    )
    assert "Warning" not in result.stderr, result.stderr
    names = [
        yaml.safe_load(p.read_text(encoding="utf-8"))["metadata"]["name"] for p in sorted(JOBS.glob("*.yaml"))
    ]

    def statuses() -> dict[str, str] | None:
        found = {j["metadata"]["name"]: j.get("status", {}) for j in cp.items("rayjobs", "-n", namespace)}
        states = {n: found.get(n, {}).get("jobDeploymentStatus", "") for n in names}
        return states if all(s in ("Initializing", "Running") for s in states.values()) else None

    try:
        cp.wait("every RayJob Initializing or Running", statuses, timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nevents:\n" + "\n".join(events(cp, namespace))) from None

    # The ephemeral job: its own cluster, every pod admitted (its submitter's too) and Running.
    ephemeral = cp.wait(
        "the ephemeral job's cluster name",
        lambda: (
            cp.get("rayjob", "rayscale-ephemeral", "-n", namespace).get("status", {}).get("rayClusterName")
        ),
    )
    assert ephemeral != RELEASE
    wait_cluster_ready(cp, namespace, workers=2, name=ephemeral)
    try:
        cp.wait(
            "the ephemeral job Running with its submitter pod admitted",
            lambda: (
                cp.get("rayjob", "rayscale-ephemeral", "-n", namespace)["status"].get("jobDeploymentStatus")
                == "Running"
                and pods(cp, namespace, "job-name=rayscale-ephemeral")
            ),
            timeout=60,
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nevents:\n" + "\n".join(events(cp, namespace, "rayscale-ephemeral"))
        ) from None

    # Deleting a clusterSelector job never deletes the Helm release's cluster.
    selected = [n for n in names if n != "rayscale-ephemeral"]
    cp.kubectl("delete", "rayjob", *selected, "-n", namespace, "--wait=true", "--timeout=60s")
    time.sleep(5)  # a few operator reconciles (RayJob requeue is 3 s)
    rc = cluster(cp, namespace)
    assert rc and not rc["metadata"].get("deletionTimestamp"), (
        "deleting a selector RayJob deleted the cluster"
    )
    assert len(ray_pods(cp, namespace, "head")) == 1

    # Deleting the ephemeral job garbage-collects its cluster and the cluster's pods.
    cp.kubectl("delete", "rayjob", "rayscale-ephemeral", "-n", namespace, "--wait=true", "--timeout=60s")
    cp.wait(
        "the ephemeral cluster to be garbage-collected",
        lambda: not cluster(cp, namespace, ephemeral),
        timeout=60,
    )
    cp.wait(
        "the ephemeral cluster's pods to go",
        lambda: not pods(cp, namespace, f"ray.io/cluster={ephemeral}"),
        timeout=60,
    )
    assert cluster(cp, namespace), "the Helm cluster went with the ephemeral job"


def test_backoff_limit_and_a_selected_cluster(cp: ControlPlane) -> None:
    """A failing clusterSelector RayJob with backoffLimit > 0 deletes the cluster it selected on KubeRay
    1.5.x (its retry releases "its" cluster; fixed in 1.6); the shipped jobs set backoffLimit 0 and
    leave the cluster alone. The Ray job API is a fake whose jobs fail, so the operator's real
    HTTPMode failure path runs."""
    selector_jobs = [
        yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in sorted(JOBS.glob("*.yaml"))
        if "clusterSelector" in yaml.safe_load(p.read_text(encoding="utf-8"))["spec"]
    ]
    assert selector_jobs, "no clusterSelector job in jobs/"
    for job in selector_jobs:
        assert job["spec"].get("backoffLimit", 0) == 0, f"{job['metadata']['name']} retries: backoffLimit > 0"

    retry, shipped = cp.namespace("rs-backoff-1"), cp.namespace("rs-backoff-0")
    try:
        for namespace in (retry, shipped):
            install(cp, namespace)
            cp.fake_dashboard(RELEASE, namespace, status="FAILED")
        for namespace in (retry, shipped):
            wait_cluster_ready(cp, namespace, workers=2)
        apply_job(cp, retry, job_doc("grid.yaml", backoffLimit=1))
        apply_job(cp, shipped, job_doc("grid.yaml"))

        def job_status(namespace: str) -> dict[str, Any]:
            return cp.get("rayjob", "rayscale-grid", "-n", namespace).get("status", {})

        # As shipped: the Ray job fails, the RayJob ends Failed, the cluster stays.
        cp.wait(
            "the shipped grid job to fail", lambda: job_status(shipped).get("jobDeploymentStatus") == "Failed"
        )
        assert job_status(shipped).get("reason") == "AppFailed", job_status(shipped)

        # backoffLimit 1: the retry deletes the selected, Helm-managed cluster on 1.5.x.
        deletes = _version(cp.kuberay_version) < (1, 6)

        def deleted() -> bool:
            rc = cluster(cp, retry)
            return not rc or bool(rc["metadata"].get("deletionTimestamp"))

        if deletes:
            cp.wait("KubeRay 1.5's retry to delete the selected cluster", deleted, timeout=60)
            assert any("DeletedRayCluster" in e for e in events(cp, retry, "rayscale-grid")), events(
                cp, retry
            )
        else:
            cp.wait("the retry", lambda: int(job_status(retry).get("failed", 0)) >= 1, timeout=60)
            time.sleep(6)
            assert not deleted(), f"KubeRay {cp.kuberay_version} deleted the selected cluster on retry"

        time.sleep(3)  # more reconciles of the shipped job: still no deletion
        rc = cluster(cp, shipped)
        assert rc and not rc["metadata"].get("deletionTimestamp"), "backoffLimit 0 deleted the cluster"
        assert not any("DeletedRayCluster" in e for e in events(cp, shipped))
        hosts = [cp.fake_dashboard(RELEASE, ns) for ns in (retry, shipped)]
        assert all(("POST", "/api/jobs/") in cp.dashboards.requests_for(h) for h in hosts)
    finally:
        for namespace in (retry, shipped):
            cp.kubectl("delete", "rayjob", "--all", "-n", namespace, "--wait=false", check=False)
            cp.helm("uninstall", RELEASE, "-n", namespace, check=False)
            cp.delete_namespace(namespace)


# -- RBAC: the scale Role, for real ---------------------------------------------------------------


def test_scale_role_lets_the_head_resize_its_own_cluster_only(cp: ControlPlane, default_release: str) -> None:
    """rbac.scaleRole=true: the head's ServiceAccount gets and patches its own RayCluster, nothing
    else; rayscale's KubeRayScaler with that token resizes the worker group (the operator creates the
    pods) and restores replicas, min and max. Without the Role the same call is refused."""
    from kubernetes import client

    from rayscale.errors import RayscaleError
    from rayscale.work.cluster.kuberay import KubeRayScaler

    namespace = cp.namespace("rs-scale")
    try:
        install(cp, namespace, "-f", str(CHART / "ci" / "scale-role-values.yaml"))
        wait_cluster_ready(cp, namespace, workers=2)
        head = ray_pods(cp, namespace, "head")[0]
        sa = head["spec"]["serviceAccountName"]
        assert mounts_token(head, "ray-head"), "rbac.scaleRole=true but the head has no ServiceAccount token"

        assert can_i(cp, namespace, sa, "get", f"rayclusters.ray.io/{RELEASE}")
        assert can_i(cp, namespace, sa, "patch", f"rayclusters.ray.io/{RELEASE}")
        for verb, what in [
            ("patch", "rayclusters.ray.io/other"),
            ("list", "rayclusters.ray.io"),
            ("delete", f"rayclusters.ray.io/{RELEASE}"),
            ("update", f"rayclusters.ray.io/{RELEASE}"),
            ("patch", f"rayjobs.ray.io/{RELEASE}"),
            ("create", "pods"),
            ("get", "secrets"),
            ("patch", "pods"),
        ]:
            assert not can_i(cp, namespace, sa, verb, what), f"{sa} may {verb} {what}"
        assert not can_i(cp, default_release, sa, "patch", f"rayclusters.ray.io/{RELEASE}")

        api = client.CustomObjectsApi(cp.api_client(token=cp.token(namespace, sa)))
        scaler = KubeRayScaler(RELEASE, namespace, api, group_name="workers")
        with scaler.restored() as original:
            assert (original["replicas"], original["minReplicas"], original["maxReplicas"]) == (2, 0, 16)
            scaler.set_workers(4, min_replicas=4, max_replicas=4)
            cp.wait("4 Running workers", lambda: sum(map(running, ray_pods(cp, namespace, "worker"))) == 4)
            group = scaler.worker_group()
            assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (4, 4, 4)
        group = scaler.worker_group()
        assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (2, 0, 16)
        cp.wait("the workers back to 2", lambda: len(ray_pods(cp, namespace, "worker")) == 2, timeout=60)

        # The same ServiceAccount name without the Role (default values): refused, one line.
        plain = cp.get("sa", RELEASE, "-n", default_release)
        assert plain, "the default release has no ServiceAccount"
        refused_api = client.CustomObjectsApi(cp.api_client(token=cp.token(default_release, RELEASE)))
        refused = KubeRayScaler(RELEASE, default_release, refused_api, group_name="workers")
        with pytest.raises(RayscaleError) as excinfo:
            refused.set_workers(3)
        message = str(excinfo.value)
        assert "\n" not in message and message.startswith(
            f"RayCluster {default_release}/{RELEASE} unreadable"
        )
        assert "403" in message or "Forbidden" in message, message
        assert cluster(cp, default_release)["spec"]["workerGroupSpecs"][0]["replicas"] == 2
    finally:
        cp.helm("uninstall", RELEASE, "-n", namespace, check=False)
        cp.delete_namespace(namespace)


def test_upgrade_to_scale_role_gives_the_head_its_token(cp: ControlPlane) -> None:
    """The documented path (values.yaml rbac.scaleRole, jobs/scale.yaml): `helm upgrade --reuse-values
    --set rbac.scaleRole=true`, then on KubeRay 1.5.x delete the Ray pods; the new head mounts a token
    that may patch the cluster."""
    namespace = cp.namespace("rs-upgrade")
    try:
        install(cp, namespace)
        wait_cluster_ready(cp, namespace, workers=2)
        old_head = ray_pods(cp, namespace, "head")[0]
        assert not mounts_token(old_head, "ray-head")

        helm_ok(
            cp.helm(
                "upgrade",
                RELEASE,
                str(CHART),
                "-n",
                namespace,
                "--reuse-values",
                "--set",
                "rbac.scaleRole=true",
            )
        )
        if _version(cp.kuberay_version) < (1, 6):
            cp.kubectl("delete", "pod", "-n", namespace, "-l", f"ray.io/cluster={RELEASE}", "--wait=false")

        def new_head() -> dict[str, Any] | None:
            heads = [
                p
                for p in ray_pods(cp, namespace, "head")
                if p["metadata"]["uid"] != old_head["metadata"]["uid"]
            ]
            return heads[0] if heads and running(heads[0]) else None

        head = cp.wait("a new, Running head pod", new_head, timeout=90)
        assert mounts_token(head, "ray-head"), "the new head has no ServiceAccount token"
        volumes = [v for v in head["spec"]["volumes"] if "projected" in v]
        assert any(
            "serviceAccountToken" in source for v in volumes for source in v["projected"]["sources"]
        ), head["spec"]["volumes"]
        assert can_i(
            cp, namespace, head["spec"]["serviceAccountName"], "patch", f"rayclusters.ray.io/{RELEASE}"
        )
        wait_cluster_ready(cp, namespace, workers=2)
    finally:
        cp.helm("uninstall", RELEASE, "-n", namespace, check=False)
        cp.delete_namespace(namespace)
