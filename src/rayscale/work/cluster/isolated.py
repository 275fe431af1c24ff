"""``rayscale scale --local-cluster --isolate``: each node of the local cluster a pod-like box.

Node k (1 is the head) gets

* a network namespace ``rayscale-<run id suffix>-node<k>`` whose one interface, ``eth0``
  (198.18.0.k/16), is a veth on a bridge on the host: every byte between two nodes crosses two
  real links, one per node, shaped with ``tc`` when ``--link-mbps``/``--link-delay-ms`` ask
  (``tbf`` for the rate, ``netem`` for the delay, on both ends of each veth);
* a cgroup ``rayscale/<namespace>`` of the cpu controller whose CFS quota is ``--cpu-limit``
  cores (a pod's ``limits.cpu``) at a 10 ms period, so that a 0.2-core node waits at most 8 ms
  for its next slice instead of 80 ms at the kernel's default 100 ms period;
* ``ray start --block`` run in both, with Ray's logical CPUs still ``--cpus-per-node``.

The driver's thread joins the head's namespace (``setns``), as a RayJob's driver runs in the head
pod, and leaves it before the teardown. The teardown runs on every way out (success, error,
SIGTERM, ``--max-wall``), with SIGTERM and SIGALRM held while it runs: each node's processes are
SIGKILLed by process group, then whatever is left in its cgroup; then the namespaces, the bridge
and the cgroups go. A run that was SIGKILLed leaves them behind; the next isolated run removes
every ``rayscale-*`` one whose owner (``/run/rayscale/<suffix>``) is gone.

While a point runs, a thread samples the host's idle CPU (``/proc/stat``) and each node's CPU
use and throttling (``cpuacct.usage``/``cpu.stat``). The point is *faithful* when the host kept
at least 10 % idle while trials ran and every node got at least 90 % of the CPU it was due while
a trial ran on it; otherwise the bundle says why (``emulation.faithful: false``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rayscale.errors import RayscaleError
from rayscale.options.commands import default_cpu_limit
from rayscale.results.scaling import Emulation
from rayscale.results.schema import ClusterInfo, Trial
from rayscale.work.cluster.isolated_host import (
    CFS_PERIOD_US,
    GCS_PORT,
    HEALTH_CHECK_S,
    MIN_CPU_SHARE,
    MIN_HOST_IDLE,
    NETNS_DIR,
    OBJECT_STORE_BYTES,
    RAY_SETTINGS,
    SAMPLE_S,
    START_LIMIT,
    START_TIMEOUT_S,
    STATE_DIR,
    SUBNET,
    CpuController,
    Names,
    NodeCgroup,
    address,
    entered,
    environment_set,
    process_start_time,
    read_value,
    remove,
    remove_leftovers,
    run_command,
    shape_link,
    signals_held,
)

if TYPE_CHECKING:
    from rayscale.options.commands import ScaleOptions


@dataclass(frozen=True)
class Isolation:
    """How every node is shaped."""

    cpu_limit: float
    link_mbps: float | None = None
    link_delay_ms: float | None = None

    @classmethod
    def of(cls, opts: ScaleOptions) -> Isolation:
        limit = opts.cpu_limit
        if limit is None:
            limit = default_cpu_limit(max(opts.nodes), opts.cpus_per_node)
        return cls(limit, opts.link_mbps, opts.link_delay_ms)


@dataclass
class _Sample:
    ts: float
    host_idle: int
    host_total: int
    nodes: dict[int, tuple[int, int, int]]  # node → (CPU ns, periods, throttled periods)
    ray: dict[int, tuple[float, float]]  # node → CPU s of its Ray processes (its own, the cluster's)


def _host_jiffies() -> tuple[int, int]:
    """(idle, total) jiffies of every CPU of the host so far (idle includes iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return fields[3] + fields[4], sum(fields)


# Each isolated cluster a process starts gets its own GCS port. The driver's gRPC channels share
# subchannels by target, and the one to the previous cluster's GCS, at the same address, can be
# backing off its reconnects when the next head starts: ray.init then waited ~30 s for it.
_CLUSTERS = itertools.count()


@dataclass
class IsolatedCluster:
    """N isolated nodes; the fault methods act on the running cluster from any thread."""

    nodes: int
    cpus_per_node: int
    isolation: Isolation
    names: Names
    controller: CpuController
    host_netns: int  # an fd of the host's network namespace
    info: ClusterInfo | None = None
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    port: int = field(default_factory=lambda: GCS_PORT + next(_CLUSTERS) % 100)  # the GCS's

    def __post_init__(self) -> None:
        self.fidelity = Fidelity(self)

    @property
    def head(self) -> str:
        return address(1)

    def cgroup(self, k: int) -> NodeCgroup:
        return NodeCgroup(self.controller, self.names.netns(k))

    def node_of(self, node_ip: str) -> int:
        return int(node_ip.rpartition(".")[2])

    def _host(self, *argv: str) -> str:
        """A command in the host's namespace, from whichever thread calls."""
        with entered(self.host_netns):
            return run_command(*argv)

    # -- faults --

    def set_link(self, k: int, up: bool) -> None:
        """Node k's link down (a partition) or up again: its host-side veth."""
        self._host("ip", "link", "set", self.names.veth(k), "up" if up else "down")

    def set_cpu_limit(self, k: int, cores: float) -> None:
        self.cgroup(k).set_limit(cores)

    def kill_node(self, k: int) -> None:
        """Every process of node k, at once (a pod lost)."""
        with contextlib.suppress(OSError):
            os.killpg(self.processes[k].pid, signal.SIGKILL)
        for pid in self.cgroup(k).pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    # -- building and tearing down --

    def create(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self.names.owner_file.write_text(f"{os.getpid()} {process_start_time(os.getpid())}")
        if not run_command("ip", "route", "show", SUBNET).strip():
            run_command("ip", "route", "add", "blackhole", SUBNET)  # nothing for 198.18/16 leaves the host
        bridge = self.names.bridge
        run_command("ip", "link", "add", bridge, "type", "bridge")
        run_command("ip", "link", "set", bridge, "up")
        self.names.temp_dir.mkdir(mode=0o700)
        for k in range(1, self.nodes + 1):
            netns, veth = self.names.netns(k), self.names.veth(k)
            run_command("ip", "netns", "add", netns)
            run_command("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            run_command("ip", "link", "set", veth, "master", bridge, "up")
            run_command("ip", "-n", netns, "addr", "add", f"{address(k)}/16", "dev", "eth0")
            run_command("ip", "-n", netns, "link", "set", "eth0", "up")
            run_command("ip", "-n", netns, "link", "set", "lo", "up")
            iso = self.isolation
            for command in (
                shape_link(veth, iso.link_mbps, iso.link_delay_ms),
                shape_link("eth0", iso.link_mbps, iso.link_delay_ms, netns),
            ):
                if command:
                    run_command(*command)
            self.cgroup(k).create(START_LIMIT)  # the node's own limit once every node is up

    def _ray_start(self, k: int) -> list[str]:
        ray = str(Path(sys.executable).with_name("ray"))
        argv = [ray, "start", "--block", "--node-ip-address", address(k),
                "--num-cpus", str(self.cpus_per_node), "--num-gpus", "0",
                "--object-store-memory", str(OBJECT_STORE_BYTES),
                "--temp-dir", str(self.names.temp_dir / f"n{k}")]  # fmt: skip
        if k == 1:
            return [*argv, "--head", "--port", str(self.port), "--include-dashboard=false"]
        return [*argv, "--address", f"{self.head}:{self.port}"]

    def _start_node(self, k: int) -> None:
        """``ray start`` in node k's namespace and cgroup (the shell joins the cgroup, then
        becomes the process), in a process group of its own."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env |= {"RAY_USAGE_STATS_ENABLED": "0", **RAY_SETTINGS}
        env["RAYSCALE_CGROUP_PROCS"] = " ".join(str(f) for f in self.cgroup(k).procs_files)
        join = 'for f in $RAYSCALE_CGROUP_PROCS; do echo $$ > "$f" || exit 1; done; exec "$@"'
        # Not under signals_held: a child inherits the signal mask. One started but not recorded
        # is in the node's cgroup (swept at teardown), or fails to join a removed one and exits.
        with (self.names.temp_dir / f"n{k}.log").open("wb") as log:
            self.processes[k] = subprocess.Popen(
                ["sh", "-c", join, "sh", "ip", "netns", "exec", self.names.netns(k), *self._ray_start(k)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def _check_running(self) -> None:
        for k, process in self.processes.items():
            if process.poll() is not None:
                tail = read_value(self.names.temp_dir / f"n{k}.log").strip().splitlines()[-1:] or [
                    "no output"
                ]
                raise RayscaleError(
                    f"--isolate: ray start on node {k} exited {process.returncode}: {tail[0]}", 3
                )

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            self._check_running()
            if time.monotonic() > deadline:
                raise RayscaleError(f"--isolate: {what} not within {START_TIMEOUT_S:g} s", 3)
            time.sleep(0.2)

    def start(self) -> None:
        """The head; returns once its GCS answers (the calling thread is in the head's namespace)."""
        self._start_node(1)

        def gcs_answers() -> bool:
            with contextlib.suppress(OSError), socket.create_connection((self.head, self.port), timeout=1):
                return True
            return False

        self._wait(gcs_answers, "the head's GCS did not answer")

    def start_workers(self) -> None:
        """Every worker node, one at a time (each alive before the next starts), then every node
        held to its CPU limit (the driver connected).

        Ray's processes start in seconds with a core and in a minute at 0.2 of one; eight starting
        together on a small host miss their health checks and are declared dead. Starting is not
        what a point measures, so nodes start at up to a core each and are limited once all are up.
        """
        from rayscale.work.cluster.session import alive_nodes

        def alive(count: int) -> Callable[[], bool]:
            return lambda: len(alive_nodes()) >= count

        for k in range(2, self.nodes + 1):
            self._start_node(k)
            self._wait(alive(k), f"node {k} was not alive")
        for k in range(1, self.nodes + 1):
            self.cgroup(k).set_limit(self.isolation.cpu_limit)

    def teardown(self) -> None:
        """Every node's process group SIGKILLed, then everything else; from any thread."""
        for process in self.processes.values():
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
        with entered(self.host_netns):
            remove(self.names, range(1, self.nodes + 1))
        for process in self.processes.values():
            process.wait()


@dataclass
class Fidelity:
    """Whether the host kept up with an isolated cluster's emulation: the host's idle share and
    each node's CPU, throttling and Ray processes, sampled while a point runs."""

    cluster: IsolatedCluster
    samples: list[_Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> _Sample:
        idle, total = _host_jiffies()
        nodes = {k: self.cluster.cgroup(k).counters() for k in range(1, self.cluster.nodes + 1)}
        ray = {k: self.cluster.cgroup(k).ray_cpu_s() for k in range(1, self.cluster.nodes + 1)}
        return _Sample(time.time(), idle, total, nodes, ray)

    def _sampling(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.samples.append(self._sample())

    @contextmanager
    def sampled(self) -> Iterator[None]:
        self.samples = [self._sample()]
        self._stop.clear()
        thread = threading.Thread(target=self._sampling, name="rayscale-isolate-sampler", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def _lost(self, trials: Sequence[Trial]) -> set[int]:
        """Nodes the GCS no longer has alive. A retried trial means a worker or node went away:
        the GCS is then given its health check's window to declare a lost node dead (the gRPC
        keepalive ends a partitioned node's calls sooner, and the point can finish before)."""
        from rayscale.work.cluster.session import alive_nodes

        window = HEALTH_CHECK_S if any(getattr(t, "retries", 0) for t in trials) else 0.0
        deadline = time.monotonic() + window
        while True:
            alive = {n["NodeManagerAddress"] for n in alive_nodes()}
            lost = {k for k in range(1, self.cluster.nodes + 1) if address(k) not in alive}
            if lost or time.monotonic() >= deadline:
                return lost
            time.sleep(0.25)

    def emulation(self, trials: Sequence[Trial], cpus_per_trial: float) -> Emulation:
        """The emulation of the point these trials ran in, and whether the host kept up with it."""
        samples = [*self.samples, self._sample()]
        iso = self.cluster.isolation
        busy: dict[int, list[tuple[float, float]]] = {}
        for t in trials:
            busy.setdefault(self.cluster.node_of(t.node), []).append((t.start_ts, t.end_ts))
        spans = [span for spans in busy.values() for span in spans]
        window = [
            s for s in samples if spans and min(a for a, _ in spans) <= s.ts <= max(b for _, b in spans)
        ]
        window = window if len(window) >= 2 else samples
        idle = window[-1].host_idle - window[0].host_idle
        total = window[-1].host_total - window[0].host_total
        host_idle = idle / total if total > 0 else None
        due = min(iso.cpu_limit, cpus_per_trial)
        node_cpu: dict[str, float] = {}
        throttled: dict[str, float] = {}
        for k in range(1, self.cluster.nodes + 1):
            used = seconds = 0.0
            for a, b in itertools.pairwise(samples):
                if any(start <= a.ts and b.ts <= end for start, end in busy.get(k, [])):
                    used += (b.nodes[k][0] - a.nodes[k][0]) / 1e9
                    seconds += b.ts - a.ts
            if seconds >= 4 * SAMPLE_S:
                node_cpu[address(k)] = used / seconds
            periods = window[-1].nodes[k][1] - window[0].nodes[k][1]
            if periods:
                throttled[address(k)] = (window[-1].nodes[k][2] - window[0].nodes[k][2]) / periods
        span_s = window[-1].ts - window[0].ts
        ray_cpu = {
            address(k): max(0.0, window[-1].ray[k][0] - window[0].ray[k][0]) / span_s
            for k in range(1, self.cluster.nodes + 1)
            if span_s > 0
        }
        cluster = sum(
            max(0.0, window[-1].ray[k][1] - window[0].ray[k][1]) for k in range(1, self.cluster.nodes + 1)
        )
        why = [f"node {address(k)} was lost" for k in sorted(self._lost(trials))]
        if host_idle is not None and host_idle < MIN_HOST_IDLE:
            why.append(f"the host was {host_idle:.0%} idle while trials ran (under {MIN_HOST_IDLE:.0%})")
        short = {a: c for a, c in node_cpu.items() if c < MIN_CPU_SHARE * due}
        if short:
            got = ", ".join(f"{a} {c:.2f}" for a, c in short.items())
            why.append(f"node(s) got fewer cores than the {due:g} they were due while busy: {got}")
        return Emulation(
            cpu_limit=iso.cpu_limit,
            cfs_period_us=CFS_PERIOD_US,
            link_mbps=iso.link_mbps,
            link_delay_ms=iso.link_delay_ms,
            host_idle=host_idle,
            node_cpu=node_cpu,
            node_throttled=throttled,
            ray_cpu=ray_cpu,
            cluster_cpu=cluster / span_s if span_s > 0 else None,
            faithful=not why,
            why="; ".join(why) or None,
        )


@contextmanager
def isolated_cluster(
    nodes: int,
    cpus_per_node: int,
    isolation: Isolation,
    run_id: str,
    kept: str = "",
    on_lost: Callable[[str], None] = lambda message: None,
) -> Iterator[IsolatedCluster]:
    """``nodes`` isolated nodes with this thread in the head's namespace and connected; sampled
    for fidelity; torn down, whatever happens, with the thread back in its own namespace. A head
    that stops answering (:class:`rayscale.work.cluster.session.HeadWatch`) is reported to ``on_lost``
    (one line, ``kept`` saying what was kept), and the process ends with exit 3 after the teardown."""
    from rayscale.work.cluster.session import HeadWatch, describe, ray_session

    controller = CpuController.find()
    if controller is None:
        raise RayscaleError("--isolate needs the cgroup cpu controller; nothing was created", 2)
    with signals_held():
        remove_leftovers()
    host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    names = Names(run_id.rpartition("-")[2])
    cluster = IsolatedCluster(nodes, cpus_per_node, isolation, names, controller, host)
    started = time.perf_counter()
    try:
        cluster.create()
        with entered(NETNS_DIR / names.netns(1)):
            cluster.start()
            gcs = f"{cluster.head}:{cluster.port}"

            def lost(address: str) -> None:  # on the watch thread, the main one blocked in Ray
                try:
                    on_lost(f"lost the Ray head at {address}; {kept}")
                    cluster.teardown()
                finally:
                    os._exit(3)

            # watched from the first answer of the GCS: a head lost while the driver connects
            # would otherwise block it for Ray's 60 s
            with (
                HeadWatch(gcs, lost),
                environment_set(RAY_SETTINGS),
                ray_session(gcs, node_ip_address=cluster.head),
            ):
                cluster.start_workers()
                cluster.info = describe(gcs, "embedded", time.perf_counter() - started)
                with cluster.fidelity.sampled():
                    yield cluster
    finally:
        try:
            _disconnected()  # Ray's own signal deferral, which would unblock SIGTERM: not held
        finally:
            try:
                with signals_held():
                    cluster.teardown()
            finally:
                os.close(host)


def _disconnected() -> None:
    """A driver still connected (a SIGTERM that ended ``ray.init``) disconnects before the cluster
    goes: left connected, Ray's exit handler waits ~30 s for the torn-down GCS."""
    import ray

    from rayscale.work.cluster.session import rays_handlers_out

    if ray.is_initialized():
        with rays_handlers_out():
            ray.shutdown()
