"""The host side of an isolated node (:mod:`rayscale.work.cluster.isolated`): what this machine offers, the
network namespaces, veths and bridge, ``tc`` shaping, the CPU cgroups, and the removal of what a
killed run left behind."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rayscale.errors import RayscaleError
from rayscale.options.commands import CFS_PERIOD_US, MIN_CPU_LIMIT
from rayscale.work.cluster.session import RAY_AGENTS

if TYPE_CHECKING:
    from rayscale.options.commands import ScaleOptions

SUBNET = "198.18.0.0/16"
GCS_PORT = 6379
OBJECT_STORE_BYTES = 256 * 2**20  # per node; Ray's default (30 % of RAM per node) overcommits N nodes
START_TIMEOUT_S = 90.0
START_LIMIT = 1.0  # cores a node may use while Ray starts on it
# Ray's GCS declares a node dead after `threshold` failed checks, one every `period`: ~5 s on an
# isolated cluster (Ray's defaults, 3 s x 5 with a 10 s timeout, take 15-60 s). A partitioned
# node sends no reset: the driver's calls to its workers hang until gRPC's keepalive gives up
# (Ray's default: pings every 300 s), so the keepalive is 1 s + 2 s too. Every node and the
# driver get the same settings. Objects move in 1 MiB chunks, not Ray's 5 MiB: through the shaped
# links, pulls of one object into 2-3 nodes at once took up to 4x the link's time in 5 MiB chunks
# and the link's time in 1 MiB ones (bench/transfer.py), as plain TCP does.
RAY_SETTINGS = {
    "RAY_object_manager_default_chunk_size": str(2**20),
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
    "RAY_grpc_client_keepalive_time_ms": "1000",
    "RAY_grpc_client_keepalive_timeout_ms": "2000",
    "RAY_grpc_keepalive_time_ms": "1000",
    "RAY_grpc_keepalive_timeout_ms": "2000",
}
# a node stops answering → declared dead after this long (threshold × period, and a timeout to spare)
HEALTH_CHECK_S = (
    int(RAY_SETTINGS["RAY_health_check_failure_threshold"]) * int(RAY_SETTINGS["RAY_health_check_period_ms"])
    + int(RAY_SETTINGS["RAY_health_check_timeout_ms"]) * 2
) / 1000
SAMPLE_S = 0.25
MIN_HOST_IDLE = 0.10
MIN_CPU_SHARE = 0.9

STATE_DIR = Path("/run/rayscale")
NETNS_DIR = Path("/run/netns")
_SUFFIX = r"[0-9a-f]{6}"
_NETNS = re.compile(rf"^rayscale-({_SUFFIX})-node\d+$")
_LINK = re.compile(rf"^rs({_SUFFIX})(?:br|n\d+)$")
_CLONE_NEWNET = 0x40000000


# -- what this machine offers ---------------------------------------------------------------------


@dataclass(frozen=True)
class CpuController:
    """Where the cpu controller is mounted (v1: its own hierarchy; v2: the unified one), and
    where CPU use is read (v1: the cpuacct hierarchy, which may be the same mount)."""

    version: int
    cpu: Path
    cpuacct: Path

    @classmethod
    def find(cls) -> CpuController | None:
        v1: dict[str, Path] = {}
        v2: Path | None = None
        for line in Path("/proc/self/mounts").read_text().splitlines():
            _, point, kind, opts, *_ = line.split()
            if kind == "cgroup":
                for name in set(opts.split(",")) & {"cpu", "cpuacct"}:
                    v1.setdefault(name, Path(point))
            elif kind == "cgroup2" and v2 is None:
                v2 = Path(point)
        if "cpu" in v1 and "cpuacct" in v1:
            return cls(1, v1["cpu"], v1["cpuacct"])
        if v2 is not None and "cpu" in read_value(v2 / "cgroup.controllers").split():
            return cls(2, v2, v2)
        return None


def read_value(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _works(*argv: str) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def missing(links: bool, delay: bool) -> str | None:
    """What this machine lacks for --isolate (None: nothing). Probes create nothing that lasts:
    ``unshare --net`` makes a namespace that ends with the probe."""
    if os.geteuid() != 0:
        return "root (it creates network namespaces and cgroups)"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "the ip and unshare commands (iproute2, util-linux)"
    if not _works(
        "unshare", "--net", "ip", "link", "add", "rsprobe", "type", "veth", "peer", "name", "rsprobe1"
    ):
        return "network namespaces with veth interfaces (unshare --net failed)"
    if CpuController.find() is None:
        return "the cgroup cpu controller (mounted at /sys/fs/cgroup/cpu on v1, or enabled on v2)"
    if links and (shutil.which("tc") is None or not _works("unshare", "--net", *_tbf("lo", 100))):
        return "tc with the tbf qdisc (for --link-mbps)"
    if delay and not _works("unshare", "--net", *_netem("lo", 1.0)):
        return "the kernel's netem qdisc (CONFIG_NET_SCH_NETEM, for --link-delay-ms)"
    return None


def check_isolation(opts: ScaleOptions) -> None:
    """That this machine can isolate what ``opts`` asks for; one line naming what is missing."""
    if opts.isolate and (what := missing(opts.link_mbps is not None, bool(opts.link_delay_ms))) is not None:
        raise RayscaleError(f"--isolate needs {what}; nothing was created", 2)


# -- network namespaces ---------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(netns: Path | int) -> Iterator[None]:
    """This thread in another network namespace (a path under /run/netns, or an open fd) for the
    block; threads and processes it starts meanwhile are born there."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY) if isinstance(netns, Path) else os.dup(netns)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(saved)
    finally:
        os.close(target)
        os.close(saved)


def run_command(*argv: str) -> str:
    """Run a command; a failure is one line with its first line of stderr."""
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if out.returncode != 0:
        detail = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[0]
        raise RayscaleError(f"--isolate: {' '.join(argv)} failed: {detail}", 3)
    return out.stdout


def _tbf(dev: str, mbps: float, netns: str | None = None) -> list[str]:
    # burst: 10 ms at the rate (at least 16 KiB); a 50 ms queue before packets are dropped
    burst = max(16 * 1024, int(mbps * 1e6 / 8 / 100))
    where = ["-n", netns] if netns else []
    return ["tc", *where, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{mbps:g}mbit",
            "burst", str(burst), "latency", "50ms"]  # fmt: skip


def _netem(dev: str, delay_ms: float, mbps: float | None = None, netns: str | None = None) -> list[str]:
    where = ["-n", netns] if netns else []
    rate = ["rate", f"{mbps:g}mbit", "limit", "10000"] if mbps else []
    return ["tc", *where, "qdisc", "add", "dev", dev, "root", "netem", "delay", f"{delay_ms:g}ms", *rate]


def shape_link(
    dev: str, mbps: float | None, delay_ms: float | None, netns: str | None = None
) -> list[str] | None:
    if delay_ms:
        return _netem(dev, delay_ms, mbps, netns)
    if mbps:
        return _tbf(dev, mbps, netns)
    return None


# -- cgroups --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeCgroup:
    """``rayscale/<name>`` of the cpu controller (and of cpuacct, where that is mounted apart)."""

    controller: CpuController
    name: str

    @property
    def dirs(self) -> list[Path]:
        c = self.controller
        return list(dict.fromkeys([c.cpu / "rayscale" / self.name, c.cpuacct / "rayscale" / self.name]))

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def create(self, cores: float) -> None:
        if self.controller.version == 2:
            for parent in (self.controller.cpu, self.controller.cpu / "rayscale"):
                parent.mkdir(exist_ok=True)
                if "cpu" not in read_value(parent / "cgroup.subtree_control").split():
                    (parent / "cgroup.subtree_control").write_text("+cpu")
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        self.set_limit(cores)

    def set_limit(self, cores: float) -> None:
        if cores < MIN_CPU_LIMIT:
            raise RayscaleError(f"a node's CPU limit must be at least {MIN_CPU_LIMIT:g} core, got {cores:g}")
        quota = round(cores * CFS_PERIOD_US)
        cpu = self.dirs[0]
        if self.controller.version == 2:
            (cpu / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
        else:
            (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))

    def pids(self) -> set[int]:
        return {int(p) for f in self.procs_files for p in read_value(f).split()}

    def ray_cpu_s(self) -> tuple[float, float]:
        """CPU seconds so far of the Ray processes alive in this cgroup that are not workers:
        (every node's own: raylet, agents, log monitor; the cluster's: GCS, autoscaler monitor,
        dashboard process, client server)."""
        own = cluster = 0.0
        for pid in self.pids():
            role, cpu_s = process_cpu(pid)
            if role == "node":
                own += cpu_s
            elif role == "cluster":
                cluster += cpu_s
        return own, cluster

    def counters(self) -> tuple[int, int, int]:
        """(CPU ns used, CFS periods, periods throttled) so far."""
        stat = dict(
            line.split() for line in read_value(self.dirs[0] / "cpu.stat").splitlines() if " " in line
        )
        if self.controller.version == 2:
            used = int(stat.get("usage_usec", 0)) * 1000
        else:
            used = int(read_value(self.dirs[-1] / "cpuacct.usage").strip() or 0)
        return used, int(stat.get("nr_periods", 0)), int(stat.get("nr_throttled", 0))

    def remove(self, timeout_s: float = 10.0) -> None:
        """SIGKILL whatever is still inside, then remove the cgroup (and ``rayscale/`` once empty)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for pid in self.pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for d in self.dirs:
                with contextlib.suppress(FileNotFoundError, OSError):
                    d.rmdir()
                with contextlib.suppress(OSError):  # busy: another run's cgroups are in it
                    d.parent.rmdir()
            if not any(d.exists() for d in self.dirs):
                return
            if time.monotonic() > deadline:
                raise RayscaleError(f"--isolate: cgroup {self.dirs[0]} could not be removed", 3)
            time.sleep(0.05)


# -- one run's names, and what a killed run left --------------------------------------------------


@dataclass(frozen=True)
class Names:
    """Every name an isolated run creates, from its run id's random suffix (interface names
    stay within the kernel's 15 characters)."""

    suffix: str

    def netns(self, k: int) -> str:
        return f"rayscale-{self.suffix}-node{k}"

    def veth(self, k: int) -> str:
        return f"rs{self.suffix}n{k}"

    @property
    def bridge(self) -> str:
        return f"rs{self.suffix}br"

    @property
    def temp_dir(self) -> Path:
        return Path(f"/tmp/rs-{self.suffix}")  # short: Ray's socket paths live under it

    @property
    def owner_file(self) -> Path:
        return STATE_DIR / self.suffix


def address(k: int) -> str:
    return f"198.18.0.{k}"


# with gcs_server: the processes only a head runs (Ray's client server among them)
CLUSTER_PROCESSES = ("autoscaler/_private/monitor.py", "dashboard/dashboard.py", "ray.util.client.server")


def process_cpu(pid: int) -> tuple[str, float]:
    """(role, CPU seconds so far) of a process: a Ray ``worker`` (where trials run), a process
    only a head runs for the ``cluster`` (the GCS, the autoscaler monitor, the client server), or
    one every ``node`` runs (the raylet, its agents, the log monitor); ("gone", 0) once it has
    exited. The raylet's command line names ``default_worker.py`` (the workers it starts) and its
    agents retitle themselves ``ray::…`` as workers do, so both are told apart first."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone", 0.0
    comm, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    if comm == "gcs_server" or any(p in cmdline for p in CLUSTER_PROCESSES):
        return "cluster", cpu_s
    if comm == "raylet" or cmdline.startswith(RAY_AGENTS):
        return "node", cpu_s
    if cmdline.startswith("ray::") or "default_worker.py" in cmdline:
        return "worker", cpu_s
    return "node", cpu_s


def process_start_time(pid: int) -> str | None:
    stat = read_value(Path(f"/proc/{pid}/stat"))
    return stat.rpartition(")")[2].split()[19] if stat else None


def _owner_alive(names: Names) -> bool:
    pid, _, started = read_value(names.owner_file).partition(" ")
    return pid.isdigit() and process_start_time(int(pid)) == started.strip()


def leftovers() -> set[str]:
    """Suffixes of isolated runs whose namespaces, bridge or cgroups exist but whose owner is gone."""
    found = {m.group(1) for p in _listdir(NETNS_DIR) if (m := _NETNS.match(p))}
    found |= {m.group(1) for p in _listdir(Path("/sys/class/net")) if (m := _LINK.match(p))}
    controller = CpuController.find()
    if controller is not None:
        for root in {controller.cpu, controller.cpuacct}:
            found |= {m.group(1) for p in _listdir(root / "rayscale") if (m := _NETNS.match(p))}
    return {s for s in found if not _owner_alive(Names(s))}


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def remove_leftovers() -> None:
    for suffix in leftovers():
        remove(Names(suffix))


def remove(names: Names, nodes: Sequence[int] = ()) -> None:
    """Everything ``names`` may have made: its processes (by cgroup), namespaces, bridge,
    cgroups, temp dir and owner file. Absent pieces are skipped; ``nodes`` adds node numbers to
    those found on the machine."""
    controller = CpuController.find()
    prefix = f"rayscale-{names.suffix}-node"
    numbers = set(nodes) | {int(p[len(prefix) :]) for p in _listdir(NETNS_DIR) if p.startswith(prefix)}
    veth = f"rs{names.suffix}n"
    numbers |= {int(p[len(veth) :]) for p in _listdir(Path("/sys/class/net")) if p.startswith(veth)}
    if controller is not None:
        for root in {controller.cpu, controller.cpuacct}:
            numbers |= {int(p[len(prefix) :]) for p in _listdir(root / "rayscale") if p.startswith(prefix)}
        for k in sorted(numbers):
            NodeCgroup(controller, names.netns(k)).remove()
    for k in sorted(numbers):
        # the veth first: a namespace goes away asynchronously, its interfaces with it
        if Path(f"/sys/class/net/{names.veth(k)}").exists():
            run_command("ip", "link", "del", names.veth(k))
        if (NETNS_DIR / names.netns(k)).exists():
            run_command("ip", "netns", "del", names.netns(k))
    if Path(f"/sys/class/net/{names.bridge}").exists():
        run_command("ip", "link", "del", names.bridge)
    shutil.rmtree(names.temp_dir, ignore_errors=True)
    names.owner_file.unlink(missing_ok=True)


@contextmanager
def environment_set(values: dict[str, str]) -> Iterator[None]:
    """These environment variables for the block (Ray reads its settings at ``ray.init``)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGTERM and SIGALRM (--max-wall) wait until the block is done: a teardown is never cut
    short. A signal that came meanwhile is handled, as usual, right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGTERM, signal.SIGALRM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


# -- an isolated cluster --------------------------------------------------------------------------
