"""``rayscale scale --local-cluster --isolate`` on real namespaces, cgroups and Ray clusters: nodes
on distinct addresses, real link rates, faults (a partitioned node, a slowed node, a lost head, a
Tune trial's node partitioned), and nothing left behind on any way out."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rayscale.cli import app
from rayscale.options.commands import RunOptions, ScaleOptions, TuneOptions, default_cpu_limit
from rayscale.results.scaling import stragglers
from rayscale.work.cluster import isolated_host as sandbox
from rayscale.work.cluster.isolated import Isolation, isolated_cluster
from rayscale.work.cluster.isolated_host import Names
from rayscale.work.data import load_dataset
from rayscale.work.grid.configs import load_grid
from rayscale.work.grid.runners import RayGridRunner, mismatches, run_sequential
from rayscale.work.scale import run_scale

RAYSCALE = str(Path(sys.executable).parent / "rayscale")
WHY_NOT = sandbox.missing(links=True, delay=False)
needs_isolation = pytest.mark.skipif(WHY_NOT is not None, reason=f"--isolate needs {WHY_NOT}")


def _left_behind() -> list[str]:
    """Every namespace, interface, cgroup and process an isolated run could have left."""
    found = [f"netns {n}" for n in sandbox._listdir(sandbox.NETNS_DIR) if n.startswith("rayscale-")]
    found += [f"link {n}" for n in os.listdir("/sys/class/net") if sandbox._LINK.match(n)]
    controller = sandbox.CpuController.find()
    if controller is not None:
        for root in {controller.cpu, controller.cpuacct}:
            found += [f"cgroup {root}/rayscale/{n}" for n in sandbox._listdir(root / "rayscale")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        cmdline = sandbox.read_value(Path(f"/proc/{pid}/cmdline"))
        if "/tmp/rs-" in cmdline:  # every node's --temp-dir
            found.append(f"process {pid} {cmdline[:80]!r}")
    return found


def _owned_by(pid: int, timeout_s: float = 120) -> Names:
    """The names of the isolated run process ``pid`` owns, once it has one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for suffix in sandbox._listdir(sandbox.STATE_DIR):
            if sandbox.read_value(sandbox.STATE_DIR / suffix).split(" ")[0] == str(pid):
                return Names(suffix)
        time.sleep(0.1)
    raise AssertionError(f"process {pid} started no isolated cluster")


def _running(names: Names, k: int, what: str) -> bool:
    """A process of node k's namespace has ``what`` in its command line."""
    out = subprocess.run(["ip", "netns", "pids", names.netns(k)], capture_output=True, text=True)
    return any(what in sandbox.read_value(Path(f"/proc/{p}/cmdline")) for p in out.stdout.split())


def _ray_up(names: Names, k: int) -> bool:
    return _running(names, k, "raylet")


def _wait(
    ready: Callable[[], bool], proc: subprocess.Popen[str] | None = None, timeout_s: float = 180
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc is None or proc.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str], Path], subprocess.Popen[str]]]:
    """Start ``rayscale ARGV`` with stderr to a file; killed at the end of a test that failed."""
    started: list[subprocess.Popen[str]] = []

    def start(argv: list[str], log: Path) -> subprocess.Popen[str]:
        with log.open("w") as sink:
            started.append(
                subprocess.Popen([RAYSCALE, *argv], stdout=subprocess.DEVNULL, stderr=sink, text=True)
            )
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            sandbox.remove_leftovers()


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text("product:\n  n_estimators: [10, 20]\n  learning_rate: [0.1]\n  max_depth: [1, 2]\n")
    return path


@pytest.fixture(autouse=True)
def _clean_after() -> Iterator[None]:
    yield
    if WHY_NOT is None:
        assert not _left_behind()


# -- bad input and a machine that cannot isolate -----------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--local-cluster", "--cpu-limit", "0.5"], "--cpu-limit shapes isolated nodes; add --isolate"),
        (["--address", "127.0.0.1:1", "--isolate"], "add --local-cluster"),
        (["--local-cluster", "--isolate", "--cpu-limit", "0.05"], "--cpu-limit must be at least 0.1"),
        (["--local-cluster", "--isolate", "--link-mbps", "-1"], "--link-mbps must be a positive number"),
    ],
)
def test_bad_isolation_options_are_one_line_exit_2(argv: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["scale", "--nodes", "1", *argv, "--output", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output


@needs_isolation
def test_without_root_one_line_names_what_is_missing_and_creates_nothing() -> None:
    out = Path(tempfile.mkdtemp())
    out.chmod(0o777)
    argv = ["scale", "--nodes", "1", "--local-cluster", "--isolate", "--output", str(out / "o")]
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", RAYSCALE, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(out)},
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: --isolate needs root (it creates network namespaces and cgroups); nothing was created"
    ]
    assert not (out / "o").exists()


def test_a_process_is_a_worker_a_clusters_or_a_nodes_own(tmp_path: Path) -> None:
    gcs = tmp_path / "gcs_server"  # the GCS is a binary of that name
    gcs.write_bytes(Path("/bin/sleep").read_bytes())
    gcs.chmod(0o755)
    raylet = tmp_path / "raylet"
    raylet.write_bytes(Path("/bin/sleep").read_bytes())
    raylet.chmod(0o755)
    started = {
        "worker": ["bash", "-c", 'exec -a "ray::IDLE" sleep 30'],  # a Ray worker's process title
        "cluster": [str(gcs), "30"],
        "node": ["sleep", "30"],
        # the raylet names the workers it starts; an agent takes a worker's kind of title
        "raylet": ["bash", "-c", f'exec -a "raylet --python_worker_command=default_worker.py" {raylet} 30'],
        "agent": ["bash", "-c", 'exec -a "ray::DashboardAgent" sleep 30'],
        "client server": ["bash", "-c", 'exec -a "python -m ray.util.client.server" sleep 30'],
    }
    roles = {"raylet": "node", "agent": "node", "client server": "cluster"}
    processes = {role: subprocess.Popen(argv) for role, argv in started.items()}
    try:
        time.sleep(0.3)
        for role, process in processes.items():
            assert process.poll() is None, role
            assert sandbox.process_cpu(process.pid)[0] == roles.get(role, role), role
        before, began = sandbox.process_cpu(os.getpid())[1], time.process_time()
        while time.process_time() - began < 0.3:
            pass
        assert sandbox.process_cpu(os.getpid())[1] - before >= 0.2  # CPU seconds so far, from /proc
    finally:
        for process in processes.values():
            process.kill()
            process.wait()
    assert sandbox.process_cpu(processes["node"].pid) == ("gone", 0.0)


# -- isolated clusters ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.cluster
@needs_isolation
def test_isolated_scale_runs_trials_on_distinct_node_addresses_and_records_its_emulation(
    tmp_path: Path,
) -> None:
    # fits of about a second: tiny ones could all end on the head before a worker's lease is granted
    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n_estimators: [60, 120]\n  max_depth: [2, 3]\n")
    out = tmp_path / "s"
    argv = ["scale", "--nodes", "1,2", "--local-cluster", "--isolate", "--link-mbps", "200"]
    argv += ["--dataset", "friedman1:3000", "--grid", str(grid), "--repeats", "1", "--output", str(out)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    bundle = json.loads((out / "scale.json").read_text())
    assert bundle["options"]["isolate"] is True
    subnet = ipaddress.ip_network(sandbox.SUBNET)
    for point in bundle["points"]:
        emulation = point["emulation"]
        assert emulation["isolated"] and emulation["link_mbps"] == 200
        assert emulation["cpu_limit"] == default_cpu_limit(2, 1)
        assert emulation["cfs_period_us"] == 10_000 and 0 <= emulation["host_idle"] <= 1
        nodes = {t["node"] for t in point["trials"]}
        assert len(nodes) == point["nodes"], [
            (t["node"], t["start_ts"], t["end_ts"]) for t in point["trials"]
        ]
        assert all(
            ipaddress.ip_address(n) in subnet and not ipaddress.ip_address(n).is_loopback for n in nodes
        )


@pytest.mark.slow
@pytest.mark.cluster
@needs_isolation
def test_the_link_rate_is_what_the_data_crosses() -> None:
    """4 MB from the head's object store to a task on node 2, through two 20 Mbit/s links: >= 1.6 s."""
    import numpy as np
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    with isolated_cluster(2, 1, Isolation(0.5, link_mbps=20), "t-0a0b01") as cluster:
        assert (
            "tbf"
            in subprocess.run(
                ["tc", "-n", cluster.names.netns(2), "qdisc", "show", "dev", "eth0"],
                capture_output=True,
                text=True,
            ).stdout
        )
        node2 = next(n["NodeID"] for n in ray.nodes() if n["NodeManagerAddress"] == sandbox.address(2))
        pinned = NodeAffinitySchedulingStrategy(node2, soft=False)

        def nbytes(data: Any) -> int:
            return int(data.nbytes)

        size = ray.remote(nbytes).options(scheduling_strategy=pinned)
        ray.get(size.remote(np.zeros(8)))  # a worker started on node 2
        data = ray.put(np.zeros(4_000_000 // 8))
        started = time.perf_counter()
        assert ray.get(size.remote(data)) == 4_000_000
        took = time.perf_counter() - started
    assert 4e6 * 8 / 20e6 * 0.8 <= took < 15, took


@pytest.mark.slow
@pytest.mark.cluster
@needs_isolation
def test_a_stopped_isolated_scale_exits_3_in_one_line_and_leaves_nothing(
    tmp_path: Path, grid: Path, spawn: Any
) -> None:
    out = tmp_path / "s"
    argv = ["scale", "--nodes", "1,2", "--local-cluster", "--isolate", "--grid", str(grid)]
    proc = spawn([*argv, "--repeats", "2000", "--output", str(out)], tmp_path / "stderr")
    names = _owned_by(proc.pid)
    _wait(lambda: (out / "scale.json").is_file() and _ray_up(names, 2), proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    took = time.monotonic() - sent
    stderr = (tmp_path / "stderr").read_text()
    assert proc.returncode == 3, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: SIGTERM received"), stderr
    assert "Traceback" not in stderr
    assert took < 3.0, f"stopping took {took:.2f}s"
    assert json.loads((out / "scale.json").read_text())["node_counts"] == [1, 2]


@pytest.mark.slow
@pytest.mark.cluster
@needs_isolation
def test_what_a_killed_run_left_is_removed_on_the_next_start(tmp_path: Path, grid: Path, spawn: Any) -> None:
    argv = ["scale", "--nodes", "2", "--local-cluster", "--isolate", "--grid", str(grid), "--repeats", "2000"]
    proc = spawn([*argv, "--output", str(tmp_path / "s")], tmp_path / "stderr")
    names = _owned_by(proc.pid)
    _wait(lambda: _ray_up(names, 2), proc)
    proc.send_signal(signal.SIGKILL)  # no teardown at all
    proc.wait()
    assert names.suffix in sandbox.leftovers() and _left_behind()
    with isolated_cluster(1, 1, Isolation(0.5), "t-0a0b02"):
        left = _left_behind()
    assert not any(names.suffix in item or "/tmp/rs-" + names.suffix in item for item in left), left


# -- faults ---------------------------------------------------------------------------------------------


def _eight(tmp_path: Path) -> Path:
    path = tmp_path / "grid8.yaml"
    path.write_text("product:\n  n_estimators: [100, 150, 200, 250]\n  max_depth: [2, 3]\n")
    return path


@pytest.mark.slow
@pytest.mark.cluster
@needs_isolation
def test_a_node_partitioned_mid_grid_loses_no_trial(tmp_path: Path) -> None:
    dataset = load_dataset("friedman1:2000")
    specs = load_grid(str(_eight(tmp_path)))
    _, sequential = run_sequential(specs, dataset)
    with isolated_cluster(2, 1, Isolation(0.5), "t-0a0b03") as cluster:
        runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=2)
        runner.warm_up()
        cut: list[float] = []

        def partition() -> None:
            cluster.set_link(2, up=False)
            cut.append(time.time())

        timer = threading.Timer(1.5, partition)
        timer.start()
        try:
            _, trials = runner.run(specs)
        finally:
            timer.cancel()
        emulation = cluster.fidelity.emulation(trials, 1)
    assert cut
    assert sorted(t.index for t in trials) == list(range(len(specs)))  # every config exactly once
    assert mismatches(sequential, trials) == []
    retried = [t for t in trials if t.retries > 0]
    assert retried and all(t.node == sandbox.address(1) for t in retried)
    detect_s = min(t.start_ts - t.queue_s for t in retried) - cut[0]  # partition → resubmitted
    assert 0 < detect_s < 15, detect_s
    assert not emulation.faithful and f"node {sandbox.address(2)} was lost" in (emulation.why or "")


@pytest.mark.slow
@pytest.mark.cluster
@needs_isolation
def test_the_stragglers_of_a_node_slowed_mid_run_are_attributed_to_it(tmp_path: Path) -> None:
    grid = tmp_path / "grid12.yaml"
    grid.write_text("product:\n  n_estimators: [60, 80, 100, 120, 140, 160]\n  max_depth: [2, 3]\n")
    dataset = load_dataset("friedman1:2000")
    specs = load_grid(str(grid))
    with isolated_cluster(2, 1, Isolation(0.5), "t-0a0b04") as cluster:
        runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=2)
        runner.warm_up()
        done: list[int] = []

        def on_trial(record: Any) -> None:
            done.append(record.index)
            if len(done) == 2:  # mid-run: node 2's quota cut to a fifth
                cluster.set_cpu_limit(2, 0.1)

        _, trials = runner.run(specs, on_trial)
    found = stragglers(trials)
    assert found and {s.node for s in found} == {sandbox.address(2)}, found


@pytest.mark.slow
@pytest.mark.cluster
@needs_isolation
def test_a_lost_head_is_one_line_within_the_watch_and_keeps_scale_json(
    tmp_path: Path, grid: Path, spawn: Any
) -> None:
    out = tmp_path / "s"
    argv = [
        "scale",
        "--nodes",
        "1,2",
        "--local-cluster",
        "--isolate",
        "--grid",
        str(grid),
        "--repeats",
        "500",
    ]
    proc = spawn([*argv, "--output", str(out)], tmp_path / "stderr")
    names = _owned_by(proc.pid)
    _wait(lambda: (out / "scale.json").is_file() and _ray_up(names, 2), proc)
    time.sleep(2)  # the 2-node cluster watched from its first GCS answer on
    assert proc.poll() is None
    lost = time.monotonic()
    head = sandbox.NodeCgroup(sandbox.CpuController.find(), names.netns(1))  # type: ignore[arg-type]
    for pid in head.pids():  # the head pod lost: its GCS, raylet and workers
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    took = time.monotonic() - lost
    stderr = (tmp_path / "stderr").read_text()
    assert proc.returncode == 3, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    # the process's second cluster: its GCS on the second port (each cluster its own, from 6379)
    assert len(errors) == 1 and re.match(r"error: lost the Ray head at 198\.18\.0\.1:6380; ", errors[0]), (
        stderr
    )
    assert "scale.json" in errors[0]
    assert took < 10 + 2 * 2 + 3, f"reported after {took:.1f}s"  # grace + two probes + teardown
    assert json.loads((out / "scale.json").read_text())["points"]  # the 1-node point kept


@pytest.mark.slow
@pytest.mark.cluster
@needs_isolation
def test_a_tune_sweep_survives_a_partitioned_trial_node(tmp_path: Path) -> None:
    tune = TuneOptions(
        space={"learning_rate": [0.05, 0.1], "max_depth": [2, 3]},
        max_rounds=150,
        scheduler="none",
        report_every=10,
        max_failures=2,
    )
    run = RunOptions(dataset="friedman1:2000", phases=("tune",), repeats=1, output=tmp_path / "s", tune=tune)
    opts = ScaleOptions(nodes=(2,), local_cluster=True, isolate=True, cpu_limit=0.5, run=run)
    me = os.getpid()

    def partition_when_trials_run() -> None:
        names = _owned_by(me)
        _wait(lambda: _running(names, 2, "ray::ImplicitFunc"))  # a trial runs on node 2
        time.sleep(1)
        subprocess.run(["ip", "link", "set", names.veth(2), "down"], check=True)

    injector = threading.Thread(target=partition_when_trials_run, daemon=True)
    injector.start()
    result, _ = run_scale(opts)
    injector.join(timeout=5)
    assert not injector.is_alive()
    point = result.points[0]
    ids = [t.trial_id for t in point.trials]  # type: ignore[union-attr]
    assert len(ids) == 4 and len(set(ids)) == 4, ids  # every trial once
    assert point.emulation is not None and not point.emulation.faithful  # node 2 was lost
