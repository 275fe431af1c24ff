"""The chart and jobs/ on a node whose pods really run (tests/realnode.py): the image built here, Ray
started in it under Pod Security `restricted`, workers joining the head through cluster DNS, and
every RayJob run by the real KubeRay operator to its end.

One cluster for the module, started after the kwok tests are done (their control plane is module
scoped). The tests run in file order and share the Helm release: install, the grid, Tune, a job
stopped mid-run, a worker lost mid-grid, the scale sweep, then the ephemeral cluster (after the
release is uninstalled). What they prove is in docs/local-kubernetes.md, "The real node".
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import controlplane  # tests/controlplane.py
import realnode  # tests/realnode.py
from realnode import NODE_IP, NODE_NAME, POD_NET, RealNode

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "rayscale"
LOCAL_VALUES = CHART / "ci" / "local-node-values.yaml"
JOBS = ROOT / "jobs"
RELEASE = "rayscale"  # jobs/*.yaml select the cluster of this release name
NAMESPACE = "bench"
SEED_BEST = {"n_estimators": 80, "learning_rate": 0.065, "max_depth": 2}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    tmp = tmp_path_factory.mktemp("node")
    cluster = realnode.start(tmp)
    try:
        node = next(cluster)
    except realnode.Unavailable as exc:
        controlplane._unavailable(str(exc))
    yield node
    cluster.close()
    left = realnode.leftovers(tmp)
    assert not left, f"the node's teardown left: {left}"


# -- helpers ---------------------------------------------------------------------------------------


def pods(real: RealNode, selector: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return real.cp.items("pods", "-n", namespace, "-l", selector)


def ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conditions.get("Ready") == "True"


def head_pod(real: RealNode) -> str:
    (head,) = [p for p in pods(real, f"ray.io/cluster={RELEASE},ray.io/node-type=head") if ready(p)]
    return head["metadata"]["name"]


def wait_cluster_ready(real: RealNode, workers: int, timeout: float = 600) -> None:
    def check() -> bool:
        status = real.cp.get("raycluster", RELEASE, "-n", NAMESPACE).get("status", {})
        running = [p for p in pods(real, f"ray.io/cluster={RELEASE}") if ready(p)]
        return status.get("state") == "ready" and len(running) == 1 + workers

    real.cp.wait(f"the RayCluster ready with {workers} workers", check, timeout=timeout, interval=2)


def ray_alive_nodes(real: RealNode) -> set[str]:
    """The node IPs Ray itself reports alive, asked from inside the head pod."""
    script = (
        "import json, ray; ray.init(address='auto', logging_level='ERROR'); "
        "print(json.dumps(sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive'])))"
    )
    out = real.exec(NAMESPACE, head_pod(real), "python", "-c", script, timeout=180).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def apply_job(real: RealNode, job: Path, *, name: str | None = None, entrypoint: str | None = None) -> str:
    """``kubectl apply -f jobs/<job>`` into the release's namespace; a test that runs a job a second
    time gives it another name (and says so), everything else as shipped."""
    doc = yaml.safe_load(job.read_text(encoding="utf-8"))
    if name is None and entrypoint is None:
        real.cp.kubectl("apply", "-n", NAMESPACE, "-f", str(job))
        return doc["metadata"]["name"]
    doc["metadata"]["name"] = name or doc["metadata"]["name"]
    if entrypoint is not None:
        doc["spec"]["entrypoint"] = entrypoint
    real.cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(doc))
    return doc["metadata"]["name"]


def job_status(real: RealNode, name: str) -> dict[str, Any]:
    return real.cp.get("rayjob", name, "-n", NAMESPACE).get("status", {})


def job_logs(real: RealNode, name: str) -> str:
    job_id = job_status(real, name).get("jobId")
    if not job_id:
        return "(no Ray job id)"
    result = real.exec(NAMESPACE, head_pod(real), "ray", "job", "logs", job_id, check=False, timeout=120)
    return result.stdout[-6000:] + result.stderr[-2000:]


def wait_job(real: RealNode, name: str, timeout: float) -> dict[str, Any]:
    """Until the RayJob's deployment is Complete or Failed; fails with the driver's log unless it
    SUCCEEDED."""

    def finished() -> dict[str, Any] | None:
        status = job_status(real, name)
        return status if status.get("jobDeploymentStatus") in ("Complete", "Failed") else None

    status = real.cp.wait(f"RayJob {name} to finish", finished, timeout=timeout, interval=3)
    assert (status["jobDeploymentStatus"], status.get("jobStatus")) == ("Complete", "SUCCEEDED"), (
        f"RayJob {name} ended {status}:\n{job_logs(real, name)}"
    )
    return status


def bundles(real: RealNode, prefix: str) -> list[Path]:
    """Bundles on the head's results volume (the node's local PersistentVolume), oldest first."""
    return sorted((real.node.volumes / "results").glob(f"{prefix}-*"))


def wait_running(real: RealNode, name: str, journal_prefix: str, timeout: float = 300) -> Path:
    """Until the job's driver is running trials: its journal has a first line. Returns the bundle."""

    def started() -> Path | None:
        for bundle in bundles(real, journal_prefix):
            journal = bundle / "trials.jsonl"
            if journal.is_file() and journal.stat().st_size > 0:
                return bundle
        return None

    return real.cp.wait(f"RayJob {name}'s first trial", started, timeout=timeout, interval=1)


# -- the node --------------------------------------------------------------------------------------


def test_the_node_is_real_and_local(real: RealNode) -> None:
    cp = real.cp
    (node,) = cp.items("nodes")
    assert node["metadata"]["name"] == NODE_NAME
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3" and info["containerRuntimeVersion"].startswith(
        "containerd://2."
    )
    assert node["status"]["capacity"]["cpu"] == str(os.cpu_count())
    assert not node["spec"].get("taints")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == NODE_IP
    # Every listener the node's processes opened is on loopback or the bridge.
    for name in ("kubelet", "containerd", "coredns", "kube-proxy", "kube-apiserver"):
        found = listeners(cp.processes[name].popen.pid)
        assert found, f"{name} listens nowhere"
        assert found <= {"127.0.0.1", NODE_IP}, f"{name} listens on {found}"
    # The blackhole stays: a Service IP is refused at once from the host (kube-proxy serves pods).
    controlplane.assert_unreachable("198.19.240.1", 443)


def listeners(pid: int) -> set[str]:
    """IPv4/IPv6 addresses of the TCP and UDP sockets ``pid`` listens on (its own network namespace)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, listen_state in (("tcp", "0A"), ("udp", "07"), ("tcp6", "0A"), ("udp6", "07")):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == listen_state:
                found.add(_address(fields[1].split(":")[0]))
    return found


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    ip = ipaddress.IPv6Address(words)
    return str(ip.ipv4_mapped or ip)


# -- the chart --------------------------------------------------------------------------------------


def test_the_chart_runs_under_restricted_and_workers_join_by_dns(real: RealNode) -> None:
    cp = real.cp
    cp.namespace(NAMESPACE)
    started = time.monotonic()
    cp.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(LOCAL_VALUES), timeout=300)
    wait_cluster_ready(real, workers=2)
    print(f"[node] helm install to RayCluster ready: {time.monotonic() - started:.1f} s")
    ray_pods = pods(real, f"ray.io/cluster={RELEASE}")
    for pod in ray_pods:
        name = pod["metadata"]["name"]
        assert ipaddress.ip_address(pod["status"]["podIP"]) in POD_NET
        # The image's user, under restricted (the namespace enforces it; the pod was admitted).
        assert real.exec(NAMESPACE, name, "id", "-u").stdout.strip() == "1000"
        assert real.exec(NAMESPACE, name, "id", "-g").stdout.strip() == "100"
        # Cluster DNS and no way out: CoreDNS on the bridge, no default route.
        resolv = real.exec(NAMESPACE, name, "cat", "/etc/resolv.conf").stdout
        assert f"nameserver {NODE_IP}" in resolv and f"search {NAMESPACE}.svc.cluster.local" in resolv
        routes = real.exec(NAMESPACE, name, "cat", "/proc/net/route").stdout.splitlines()[1:]
        assert routes and all(line.split()[1] != "00000000" for line in routes), routes
        # Ray's logical CPUs as the values state them, on a pod of 0.4 core.
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert limits["cpu"] == "400m"
    namespace_labels = cp.get("namespace", NAMESPACE)["metadata"]["labels"]
    assert namespace_labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The workers joined the head through its Service's DNS name, and Ray reports each alive.
    head_svc = f"{RELEASE}-head-svc.{NAMESPACE}.svc.cluster.local"
    workers = [p for p in ray_pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
    assert len(workers) == 2
    for worker in workers:
        spec = json.dumps(worker["spec"]["containers"][0])
        assert head_svc in spec, "the worker was not told the head's DNS name"
        lookup = real.exec(
            NAMESPACE,
            worker["metadata"]["name"],
            "python",
            "-c",
            f"import socket; print(socket.gethostbyname('{head_svc}'))",
        ).stdout.strip()
        assert lookup == real.pod_ip(NAMESPACE, head_pod(real))
    alive = ray_alive_nodes(real)
    assert alive == {p["status"]["podIP"] for p in ray_pods}
    # The API server reaches the kubelet (its client certificate): logs and cp work, as exec does.
    head = head_pod(real)
    assert "Ray runtime started" in cp.kubectl("logs", "-n", NAMESPACE, head).stdout
    copied = cp.tmp / "pyvenv.cfg"
    cp.kubectl("cp", f"{NAMESPACE}/{head}:/home/ray/venv/pyvenv.cfg", str(copied))
    assert "version = 3.11" in copied.read_text(encoding="utf-8")


def test_grid_job_runs_to_completion(real: RealNode) -> None:
    started = time.monotonic()
    name = apply_job(real, JOBS / "grid.yaml")
    status = wait_job(real, name, timeout=1500)
    print(f"[node] jobs/grid.yaml applied to SUCCEEDED: {time.monotonic() - started:.1f} s")
    (bundle,) = bundles(real, "grid")
    from rayscale.results.bundle import load_result

    result = load_result(bundle)
    assert result.grid is not None and result.grid.best is not None
    best = result.grid.best
    assert {k: best.params[k] for k in SEED_BEST} == SEED_BEST
    assert round(best.rmse, 2) == 52.42
    parallel = result.grid.parallel
    assert parallel is not None
    ips = {t.node for t in parallel.trials}
    assert len(ips) > 1 and all(ipaddress.ip_address(ip) in POD_NET for ip in ips), ips
    assert status.get("jobId")
    # Alone on the cluster: no warning of other jobs (Ray's own drivers are not one).
    assert "other Ray job" not in job_logs(real, name)
    # The Pushgateway pod holds what the driver pushed.
    (gateway,) = pods(real, "app.kubernetes.io/component=pushgateway")
    metrics = urlopen(f"http://{gateway['status']['podIP']}:9091/metrics")
    assert re.search(r'^rayscale_\w+\{[^}]*run_id="' + result.run_id, metrics, re.M), metrics[:2000]


def urlopen(url: str) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read().decode()


def test_tune_job_runs_to_completion_and_its_best_is_reproducible(real: RealNode) -> None:
    started = time.monotonic()
    name = apply_job(real, JOBS / "tune.yaml")
    wait_job(real, name, timeout=1500)
    print(f"[node] jobs/tune.yaml applied to SUCCEEDED: {time.monotonic() - started:.1f} s")
    (bundle,) = bundles(real, "tune")
    from rayscale.results.bundle import load_result

    result = load_result(bundle)
    tune = result.tune
    assert tune is not None and tune.trials and tune.best.rounds
    assert len({t.node for t in tune.trials}) > 1
    # The best, retrained here from the bundle alone (its params, rounds, dataset and seed), scores
    # what the sweep on the pods recorded.
    assert retrained_rmse(result) == pytest.approx(tune.best.rmse, rel=1e-6)


def retrained_rmse(result: Any) -> float:
    import xgboost as xgb

    from rayscale.options.scoring import regression_scores
    from rayscale.work.data import load_dataset

    options = result.options
    dataset = load_dataset(
        options["dataset"],
        seed=options["seed"],
        test_size=options["test_size"],
        validation_size=options.get("validation_size", 0.0),
    )
    best = result.tune.best
    booster = xgb.train(
        {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "nthread": result.tune.cpus_per_trial,
            "seed": options["seed"],
            **best.params,
        },
        xgb.DMatrix(dataset.X_train, label=dataset.y_train),
        num_boost_round=best.rounds,
    )
    return regression_scores(dataset.y_test, booster.predict(xgb.DMatrix(dataset.X_test)))["rmse"]


def test_deleting_a_running_rayjob_stops_it_with_its_journal_marked_failed(real: RealNode) -> None:
    """KubeRay's stop (the RayJob deleted: SIGTERM to the driver) ends the run with rayscale's one-line
    error, and the journal on the results volume is kept, marked failed."""
    doc = yaml.safe_load((JOBS / "grid.yaml").read_text(encoding="utf-8"))
    entrypoint = doc["spec"]["entrypoint"].replace("/results/grid-", "/results/stopped-")
    name = apply_job(real, JOBS / "grid.yaml", name="rayscale-grid-stopped", entrypoint=entrypoint)
    bundle = wait_running(real, name, "stopped")
    job_id = real.cp.wait("the Ray job id", lambda: job_status(real, name).get("jobId"), timeout=60)
    head = head_pod(real)
    deleted = time.monotonic()
    real.cp.kubectl("delete", "rayjob", name, "-n", NAMESPACE, "--wait=true", timeout=180)

    # Ray's job API on the head pod (reached over the bridge, as the operator reaches it).
    url = f"http://{real.pod_ip(NAMESPACE, head)}:8265/api/jobs/{job_id}"

    def ended() -> str | None:
        status = json.loads(urlopen(url))["status"]
        return status if status in ("STOPPED", "FAILED", "SUCCEEDED") else None

    assert real.cp.wait(f"Ray job {job_id} to stop", ended, timeout=120, interval=0.5) == "STOPPED"
    # rayscale ends at once and is reaped (the entrypoint's exec): Ray did not wait out its 30 s
    # RAY_JOB_STOP_WAIT_TIME_S and SIGKILL a zombie.
    assert time.monotonic() - deleted < 15
    logs = real.exec(NAMESPACE, head, "ray", "job", "logs", job_id, check=False).stdout
    errors = [line for line in logs.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in logs, logs[-3000:]
    manifest = json.loads((bundle / "run.json").read_text(encoding="utf-8"))
    assert manifest.get("status") == "failed", manifest
    assert (bundle / "trials.jsonl").stat().st_size > 0
    assert not (bundle / "result.json").exists()


def test_a_worker_pod_lost_mid_grid_still_runs_every_config_once(real: RealNode) -> None:
    """jobs/grid.yaml's Ray phase alone, on fits long enough (friedman1:4000, a few seconds each at
    0.4 core) that a worker pod deleted once it has finished a trial is in the middle of its next."""
    entrypoint = (
        "rayscale run --phases grid-ray --repeats 1 --dataset friedman1:4000 --address auto --max-wall 1500"
        " --push-gateway http://rayscale-pushgateway:9091 --output /results/lost-$(date -u +%Y%m%dT%H%M%SZ)"
    )
    name = apply_job(real, JOBS / "grid.yaml", name="rayscale-grid-lost-worker", entrypoint=entrypoint)
    victim, victim_ip = real.cp.wait(
        "a Ray trial finished on a worker pod", lambda: _worker_with_a_ray_trial(real, "lost"), timeout=600
    )
    real.cp.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--grace-period=0", "--wait=false")
    wait_job(real, name, timeout=1500)
    (bundle,) = bundles(real, "lost")
    rows = [json.loads(line) for line in (bundle / "trials.jsonl").read_text(encoding="utf-8").splitlines()]
    configs = json.loads((bundle / "result.json").read_text(encoding="utf-8"))["grid"]["configs"]
    assert sorted(r["index"] for r in rows if r["phase"] == "grid_parallel") == list(range(configs))
    # The pod went mid-trial: that trial ran again elsewhere, once.
    retried = [r for r in rows if r.get("retries")]
    assert retried and all(r["node"] != victim_ip for r in retried), [(r["index"], r["node"]) for r in rows]
    wait_cluster_ready(real, workers=2)  # the operator replaced the pod


def _worker_with_a_ray_trial(real: RealNode, prefix: str) -> tuple[str, str] | None:
    """A worker pod (name, IP) that has finished a trial of the grid's Ray phase (from the journal)."""
    by_ip = {
        p["status"].get("podIP"): p["metadata"]["name"]
        for p in pods(real, f"ray.io/cluster={RELEASE},ray.io/node-type=worker")
        if ready(p)
    }
    for bundle in bundles(real, prefix):
        for line in (bundle / "trials.jsonl").read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("phase") == "grid_parallel" and entry.get("node") in by_ip:
                return by_ip[entry["node"]], entry["node"]
    return None


def test_scale_job_resizes_the_worker_group_for_real(real: RealNode) -> None:
    """jobs/scale.yaml (smaller work per point, below) with the scale Role (values rbac.scaleRole,
    the documented upgrade path):
    `rayscale scale --kuberay` patches the worker group, the operator deletes and creates pods, each
    point's trials ran on as many pods as it has nodes, and the group is restored afterwards."""
    cp = real.cp
    cp.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values", "--set", "rbac.scaleRole=true")
    # KubeRay 1.5.x keeps running pods on their old spec: the head needs the token mount.
    cp.kubectl("delete", "pod", "-n", NAMESPACE, "-l", f"ray.io/cluster={RELEASE}", "--wait=false")
    cp.wait(
        "the old Ray pods gone",
        lambda: all(
            p["metadata"].get("deletionTimestamp") is None for p in pods(real, f"ray.io/cluster={RELEASE}")
        ),
        timeout=120,
    )
    wait_cluster_ready(real, workers=2)
    before = _worker_group(real)
    workers_before = {
        p["metadata"]["name"] for p in pods(real, f"ray.io/cluster={RELEASE},ray.io/node-type=worker")
    }
    # As shipped but for the work per point: friedman1:7000 twice over is sized for 2-CPU pods (at
    # 0.4 core one point's grid takes minutes); friedman1:1000 once keeps every point short.
    doc = yaml.safe_load((JOBS / "scale.yaml").read_text(encoding="utf-8"))
    shipped = doc["spec"]["entrypoint"]
    assert "--dataset friedman1:7000 --repeats 2" in shipped
    entrypoint = shipped.replace(
        "--dataset friedman1:7000 --repeats 2", "--dataset friedman1:1000 --repeats 1"
    )
    started = time.monotonic()
    name = apply_job(real, JOBS / "scale.yaml", entrypoint=entrypoint)
    wait_job(real, name, timeout=2400)
    print(f"[node] jobs/scale.yaml applied to SUCCEEDED: {time.monotonic() - started:.1f} s")
    (bundle,) = bundles(real, "scale")
    from rayscale.results.bundle import load_any

    result = load_any(bundle)
    assert result.kind == "scale" and result.mode == "kuberay"
    assert [p.nodes for p in result.points if p.phase == "grid_parallel"] == [1, 2, 3]
    for point in result.points:
        ips = {t.node for t in point.trials}  # trials_per_node is by Ray node id
        assert len(ips) == len(point.trials_per_node) == point.nodes, (point.phase, point.nodes, ips)
        assert all(ipaddress.ip_address(ip) in POD_NET for ip in ips)
        if point.nodes > 1:
            assert point.resize_s is not None and point.resize_s > 0
    # Restored: replicas, min and max as before; the pods it ran on were the operator's new ones.
    assert _worker_group(real) == before
    wait_cluster_ready(real, workers=before["replicas"])
    workers_after = {
        p["metadata"]["name"] for p in pods(real, f"ray.io/cluster={RELEASE},ray.io/node-type=worker")
    }
    assert not workers_before & workers_after, "scaling to one node should have deleted every worker pod"


def _worker_group(real: RealNode) -> dict[str, int]:
    (group,) = real.cp.get("raycluster", RELEASE, "-n", NAMESPACE)["spec"]["workerGroupSpecs"]
    return {k: group[k] for k in ("replicas", "minReplicas", "maxReplicas")}


def ephemeral_for_this_node() -> dict[str, Any]:
    """jobs/ephemeral.yaml with its Ray pods scaled down to the local values' size: as shipped it
    asks for 2 CPUs per pod (6 in all), which a 2-core node cannot hold. Each Ray container gets
    400m and 2Gi with num-cpus 1, as deploy/helm/rayscale/ci/local-node-values.yaml gives; nothing
    else changes (docs/local-kubernetes.md)."""
    doc = yaml.safe_load((JOBS / "ephemeral.yaml").read_text(encoding="utf-8"))
    spec = doc["spec"]["rayClusterSpec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        group["rayStartParams"]["num-cpus"] = "1"
        for container in group["template"]["spec"]["containers"]:
            size = {"cpu": "400m", "memory": "2Gi"}
            container["resources"] = {"requests": dict(size), "limits": dict(size)}
    return doc


def test_ephemeral_job_brings_its_own_cluster_and_takes_it_away(real: RealNode) -> None:
    cp = real.cp
    cp.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", timeout=300)
    cp.wait("the Helm release's pods gone", lambda: not cp.items("pods", "-n", NAMESPACE), timeout=180)
    doc = ephemeral_for_this_node()
    name = doc["metadata"]["name"]
    started = time.monotonic()
    cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(doc))
    status = real.cp.wait(
        "the ephemeral job to finish",
        lambda: (s := job_status(real, name)).get("jobDeploymentStatus") in ("Complete", "Failed") and s,
        timeout=1800,
        interval=3,
    )
    print(
        f"[node] jobs/ephemeral.yaml applied to {status.get('jobStatus')}: {time.monotonic() - started:.1f} s"
    )
    assert (status["jobDeploymentStatus"], status.get("jobStatus")) == ("Complete", "SUCCEEDED"), status
    cluster = status["rayClusterName"]
    assert cp.get("raycluster", cluster, "-n", NAMESPACE), "shutdownAfterJobFinishes waits out the TTL"
    deleted = time.monotonic()
    cp.kubectl("delete", "rayjob", name, "-n", NAMESPACE, "--wait=false")
    cp.wait(
        "the ephemeral RayCluster garbage-collected",
        lambda: not cp.get("raycluster", cluster, "-n", NAMESPACE),
        timeout=120,
    )
    cp.wait("its pods gone", lambda: not cp.items("pods", "-n", NAMESPACE), timeout=120)
    assert time.monotonic() - deleted < 120 < doc["spec"]["ttlSecondsAfterFinished"]
