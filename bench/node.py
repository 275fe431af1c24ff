"""What the real one-node cluster costs a user (root): the images built cold and cached, the cluster
started, `helm install` to the RayCluster ready, a RayJob applied to its driver started and to
SUCCEEDED, and a worker added the way `rayscale scale --kuberay` adds one, from the patch to the Ray
node alive, split into its parts (kuberay #3909, #4226 ask for this resize ramp):

- API/operator: the patch to the worker pod created (the KubeRay operator's reconcile);
- scheduling: pod created to bound to the node (kube-scheduler);
- container start: bound to the Ray container running (kubelet, containerd, runc, CNI);
- Ray join: container running to the new Ray node alive in the head's GCS (ray start in 0.4 core,
  the head Service's DNS name, registration).

Each part is seen by polling every 0.1 s from this process (the API server in-process, Ray's node
list through the head's dashboard over the bridge), so it carries that much resolution. Every round
is one install, one RayJob, one resize up and down, one uninstall, in that order.

    sudo .venv/bin/python bench/node.py [--rounds 3] [--cold-images]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import realnode  # tests/realnode.py
from _results import header, write  # bench/_results.py
from rayscale.results.stats import Stats
from rayscale.work.cluster.kuberay import KubeRayScaler

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "rayscale"
VALUES = CHART / "ci" / "local-node-values.yaml"
GRID_JOB = ROOT / "jobs" / "grid.yaml"
RELEASE, NAMESPACE = "rayscale", "bench"
POLL_S = 0.1
console = Console(stderr=True)


def build_images(cache: Path) -> dict[str, Any]:
    """tools/k8s/images/build.sh against ``cache``: its wall time and the archives' sizes."""
    env = {**os.environ, "RAYSCALE_IMAGE_CACHE": str(cache)}
    started = time.monotonic()
    out = subprocess.run(
        ["bash", str(ROOT / "tools" / "k8s" / "images" / "build.sh")], env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"error: the image build failed: {out.stderr[-800:]}")
    sizes = {p.name.rsplit("-", 1)[0]: p.stat().st_size for p in (cache / "archives").glob("*.tar")}
    return {"wall_s": wall, "archive_bytes": sizes, "log": out.stderr.splitlines()}


def urlopen(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return json.loads(response.read())


def until(what: str, check: Any, timeout: float = 600) -> float:
    """Poll ``check`` every POLL_S until truthy; return the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(POLL_S)
    raise SystemExit(f"error: timed out waiting for {what}")


def ray_pods(real: realnode.RealNode, kind: str = "") -> list[dict[str, Any]]:
    selector = f"ray.io/cluster={RELEASE}" + (f",ray.io/node-type={kind}" if kind else "")
    return real.cp.items("pods", "-n", NAMESPACE, "-l", selector)


def running(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in s.get("state", {}) for s in statuses)


def ray_nodes_alive(head_ip: str) -> set[str]:
    """The node IPs the head's GCS reports alive (Ray's state API, through the dashboard)."""
    try:
        nodes = urlopen(f"http://{head_ip}:8265/api/v0/nodes?limit=100")["data"]["result"]["result"]
    except (OSError, KeyError, ValueError):
        return set()
    return {n["node_ip"] for n in nodes if n["state"] == "ALIVE"}


def install(real: realnode.RealNode) -> float:
    started = time.monotonic()
    real.cp.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(VALUES), timeout=300)

    def ready() -> bool:
        status = real.cp.get("raycluster", RELEASE, "-n", NAMESPACE).get("status", {})
        return status.get("state") == "ready"

    return until("the RayCluster ready", ready) - started


def run_job(real: realnode.RealNode, name: str) -> tuple[float, float]:
    """Apply jobs/grid.yaml as ``name``: seconds to its driver started (Ray's job RUNNING) and to the
    RayJob SUCCEEDED."""
    doc = yaml.safe_load(GRID_JOB.read_text(encoding="utf-8"))
    doc["metadata"]["name"] = name
    started = time.monotonic()
    real.cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(doc))
    head_ip = ray_pods(real, "head")[0]["status"]["podIP"]

    def driver_running() -> bool:
        job_id = real.cp.get("rayjob", name, "-n", NAMESPACE).get("status", {}).get("jobId")
        if not job_id:
            return False
        try:
            return urlopen(f"http://{head_ip}:8265/api/jobs/{job_id}")["status"] in ("RUNNING", "SUCCEEDED")
        except OSError:
            return False

    driver = until("the driver", driver_running) - started

    def finished() -> bool:
        status = real.cp.get("rayjob", name, "-n", NAMESPACE).get("status", {})
        if status.get("jobDeploymentStatus") == "Failed":
            raise SystemExit(f"error: RayJob {name} failed: {status}")
        return status.get("jobStatus") == "SUCCEEDED"

    return driver, until("the RayJob to succeed", finished, timeout=1200) - started


def resize(real: realnode.RealNode, scaler: KubeRayScaler) -> dict[str, float]:
    """One worker added as `scale --kuberay` adds it (its patch), timed part by part; then removed."""
    before = {p["metadata"]["name"] for p in ray_pods(real, "worker")}
    head_ip = ray_pods(real, "head")[0]["status"]["podIP"]
    alive_before = ray_nodes_alive(head_ip)
    replicas = scaler.worker_group()["replicas"]
    t0 = time.monotonic()
    scaler.set_workers(replicas + 1)
    new: dict[str, Any] = {}

    def created() -> bool:
        fresh = [p for p in ray_pods(real, "worker") if p["metadata"]["name"] not in before]
        if fresh:
            new["pod"] = fresh[0]
        return bool(fresh)

    def current() -> dict[str, Any]:
        return real.cp.get("pod", new["pod"]["metadata"]["name"], "-n", NAMESPACE)

    t_created = until("the new worker pod", created)
    t_scheduled = until("it scheduled", lambda: current().get("spec", {}).get("nodeName"))
    t_running = until("its container running", lambda: running(current()))
    ip = current()["status"]["podIP"]
    t_alive = until("its Ray node alive", lambda: ip in ray_nodes_alive(head_ip) - alive_before)
    # Back to where it was: the operator deletes a pod (any of the group's), Ray marks its node dead.
    scaler.set_workers(replicas)
    until("the extra worker gone", lambda: len(ray_pods(real, "worker")) == replicas, timeout=300)
    until("Ray to drop a node", lambda: len(ray_nodes_alive(head_ip)) == len(alive_before), timeout=300)
    return {
        "api_operator_s": t_created - t0,
        "scheduling_s": t_scheduled - t_created,
        "container_start_s": t_running - t_scheduled,
        "ray_join_s": t_alive - t_running,
        "total_s": t_alive - t0,
    }


def uninstall(real: realnode.RealNode) -> None:
    real.cp.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", timeout=300)
    until("the release's pods gone", lambda: not real.cp.items("pods", "-n", NAMESPACE), timeout=300)
    # The results volume is Released with its old claim (Retain): made Available for the next install.
    until("the results volume Released", lambda: real.reclaim_volumes(), timeout=120)


def summary(values: list[float]) -> dict[str, Any]:
    stats = Stats(values)
    return {"rounds_s": values, "median_s": stats.median, "min_s": stats.min, "max_s": stats.max}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-images", action="store_true", help="also build the images, empty cache")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("error: the real node needs root")
    report = header("node")
    report["rounds"] = args.rounds

    images: dict[str, Any] = {}
    if args.cold_images:
        with tempfile.TemporaryDirectory(prefix="rayscale-images-") as cache:
            console.print("images: cold build (empty cache) …")
            images["cold"] = build_images(Path(cache))
            console.print(f"  {images['cold']['wall_s']:.1f} s; cached rebuild …")
            images["cached"] = build_images(Path(cache))
            console.print(f"  {images['cached']['wall_s']:.1f} s")
    report["images"] = images

    tmp = Path(tempfile.mkdtemp(prefix="rayscale-node-bench-"))
    started = time.monotonic()
    cluster = realnode.start(tmp)
    real = next(cluster)
    report["cluster_start_s"] = time.monotonic() - started
    report["cluster_start_parts_s"] = real.timings
    console.print(f"cluster up in {report['cluster_start_s']:.1f} s: {real.timings}")
    try:
        real.cp.namespace(NAMESPACE)
        from kubernetes import client

        scaler = KubeRayScaler(RELEASE, NAMESPACE, client.CustomObjectsApi(real.cp.api_client()))
        installs, drivers, jobs, ramps = [], [], [], []
        for r in range(args.rounds):
            installs.append(install(real))
            driver, done = run_job(real, f"rayscale-grid-bench-{r}")
            drivers.append(driver)
            jobs.append(done)
            ramps.append(resize(real, scaler))
            uninstall(real)
            console.print(
                f"round {r + 1}: install→ready {installs[-1]:.1f} s, job→driver {driver:.1f} s, "
                f"job→SUCCEEDED {done:.1f} s, resize {ramps[-1]['total_s']:.1f} s ({ramps[-1]})"
            )
    finally:
        cluster.close()
    report["helm_install_to_ready"] = summary(installs)
    report["rayjob_applied_to_driver"] = summary(drivers)
    report["rayjob_applied_to_succeeded"] = summary(jobs)
    report["resize_ramp"] = {part: summary([r[part] for r in ramps]) for part in ramps[0]}
    report["leftovers"] = realnode.leftovers(tmp)
    path = write(report)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
