"""Starting an embedded Ray or connecting to an existing cluster, and what it offers."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from rayscale.errors import RayscaleError
from rayscale.options.commands import validate_address
from rayscale.results.schema import ClusterInfo
from rayscale.work.stopping import Stopped, sigterm_deferred

# The raylet's two agents, which retitle themselves as a worker does (``ray::IDLE``, ``ray::<task>``)
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def where() -> tuple[str, str]:
    """(node IP, node id) of the calling process; the node id is empty outside Ray."""
    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return ray.util.get_node_ip_address(), node_id


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when a ``host:port`` or ``ray://`` address does not answer.

    ``ray.init`` waits a long time for a GCS that is not there; a plain TCP connect tells the
    same thing fast. Empty (embedded) and ``auto`` addresses are left to Ray.
    """
    address = validate_address(address)
    if address in ("", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayscaleError(
            f"cannot reach Ray at {address}: {reason} (is the cluster up and the port open?)", 3
        ) from None


def describe(address: str, mode: str, connect_s: float) -> ClusterInfo:
    import ray

    return ClusterInfo(
        address=address or "embedded",
        mode="embedded" if mode == "embedded" else "existing",
        cpus=int(ray.cluster_resources().get("CPU", 0)),
        nodes=len(alive_nodes()),
        connect_s=connect_s,
        ray_version=ray.__version__,
    )


@contextmanager
def _swapped(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def _lean_start() -> Iterator[None]:
    """While ``ray.init`` starts a local Ray: only the processes a run uses.

    Started: the GCS, the raylet and its two agents (the raylet refuses to start without them;
    the dashboard agent runs ``--minimal``, without the reporter module that polls every process
    of the node). Left out: the dashboard process (with ``include_dashboard=False`` it serves only
    usage stats), the autoscaler monitor (an embedded Ray never resizes) and the log monitor
    (rayscale runs with ``log_to_driver=False``). bench/startup.py measures the difference.

    It swaps two private Ray hooks for the duration of the call only; Ray is pinned
    (constraints.txt) and tests/work/cluster/test_session.py checks the processes that result.
    """
    import ray._private.node as node_module
    import ray._private.utils as ray_utils

    class LeanNode(node_module.Node):
        def __init__(self, ray_params: Any, *args: Any, **kwargs: Any) -> None:
            ray_params.no_monitor = True
            ray_params.include_log_monitor = False
            super().__init__(ray_params, *args, **kwargs)

        def start_api_server(self, *, include_dashboard: bool | None, raise_on_failure: bool) -> None:
            """No dashboard process."""

    def minimal() -> ImportError:
        return ImportError("rayscale starts the agents minimal")

    with (
        _swapped(node_module, "Node", LeanNode),
        _swapped(ray_utils, "get_dashboard_dependency_error", minimal),
    ):
        yield


@contextmanager
def rays_handlers_out() -> Iterator[None]:
    """Starting, joining or leaving Ray changes SIGTERM's handling: ``ray.init`` installs a handler
    that exits with status 15, every raylet ``Node`` one that drains the node for 30 s and exits 1,
    the core worker a native one that prints a stack dump, and its shutdown leaves SIGTERM at the
    default (the process dies at once). Keep Ray's Python handlers out, hold SIGTERM back in the
    meantime, and put rayscale's handler back after (:func:`rayscale.work.stopping.sigterm_deferred`)."""
    from ray._private import utils

    with sigterm_deferred(), _swapped(utils, "set_sigterm_handler", lambda handler: None):
        yield


def _descendants(roots: set[int]) -> set[int]:
    """``roots`` and every process below them, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])  # after "pid (comm) state"
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_now(nodes: list[Any]) -> None:
    """SIGKILL every process of these Ray nodes this driver started, and everything below them
    (the raylet's workers and agents), all at once; then reap them. Ray's own shutdown sends
    SIGTERM and waits, process by process: seconds a stopped job does not have."""
    started = [
        info.process
        for node in nodes
        if node is not None
        for infos in getattr(node, "all_processes", {}).values()
        for info in infos
    ]
    for pid in _descendants({p.pid for p in started}):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for process in started:
        with contextlib.suppress(Exception):
            process.wait(timeout=5)
    for node in nodes:
        if node is not None and hasattr(node, "all_processes"):
            node.all_processes.clear()


@contextmanager
def ray_session(
    address: str | None,
    num_cpus: int | None = None,
    metrics_port: int | None = None,
    lean: bool = True,
    node_ip_address: str | None = None,
) -> Iterator[ClusterInfo]:
    """Start an embedded Ray (empty address) or connect to ``address``; always shut down after.

    ``metrics_port`` fixes the port an embedded Ray exports its own Prometheus metrics on
    (``ray_node_cpu_utilization``, ``ray_resources``, …); by default Ray picks one.
    An embedded Ray starts ``lean`` (:func:`_lean_start`) unless it is to export its own metrics,
    which its dashboard agent does in full. ``RAY_AUTH_MODE`` is honoured as
    Ray documents it: with ``token`` an embedded Ray generates a token, and connecting to a cluster
    needs the same token (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``). ``node_ip_address`` is
    this driver's node address where Ray cannot find it (a namespace without a default route).
    """
    address = validate_address(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    started = time.perf_counter()
    try:
        with rays_handlers_out():
            if address:
                ray.init(
                    address=address,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    _node_ip_address=node_ip_address,
                )
            else:
                with _lean_start() if lean and metrics_port is None else nullcontext():
                    # "local" always starts a new instance; without it ray.init() would join any
                    # cluster already running here (found through /tmp/ray/ray_current_cluster).
                    ray.init(
                        address="local",
                        num_cpus=num_cpus,
                        include_dashboard=False,
                        _metrics_export_port=metrics_port,
                        logging_level=logging.WARNING,
                        log_to_driver=False,
                    )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        ray.shutdown()
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = address or "an embedded Ray"
        raise RayscaleError(f"cannot connect to Ray at {where}: {detail}", 3) from None
    try:
        yield describe(address, "existing" if address else "embedded", time.perf_counter() - started)
    except Stopped:
        # A stopped job has seconds before its SIGKILL: what this driver started goes at once
        # (SIGKILL, not Ray's graceful SIGTERM-and-wait per process). A driver connected to a
        # cluster started nothing, and only disconnects.
        node = ray._private.worker._global_node
        if node is not None:
            with _swapped(node, "kill_all_processes", lambda **_: kill_now([node])), rays_handlers_out():
                ray.shutdown()
        raise
    finally:
        with rays_handlers_out():
            ray.shutdown()


def other_jobs_warning() -> str | None:
    """One line when other Ray jobs (drivers) are alive on the connected cluster: rayscale's
    figures assume the cluster is its own, and KubeRay starts every RayJob that selects a cluster
    as soon as the cluster is ready (docs/kubernetes.md: one job at a time)."""
    import ray

    mine = ray.get_runtime_context().get_job_id()
    try:
        from ray._private import worker

        gcs: Any = getattr(worker.global_worker, "gcs_client")  # noqa: B009 (Worker's stubs lack it)
        jobs = gcs.get_all_job_info(
            skip_submission_job_info_field=True, skip_is_running_tasks_field=True
        ).values()
        # Ray's own drivers live in namespaces "_ray_internal_*" (on a KubeRay head, the dashboard
        # agent's job): not a job of anyone's, as Ray's dashboard counts activity.
        internal = "_ray_internal_"
        others = [
            j
            for j in jobs
            if not j.is_dead and j.job_id.hex() != mine and not j.config.ray_namespace.startswith(internal)
        ]
    except Exception:  # a private API: a Ray that changed it gets no warning, not a failed run
        return None
    if not others:
        return None
    named = ", ".join(f"{j.job_id.hex()} ({j.entrypoint[:80] or 'pid ' + str(j.driver_pid)})" for j in others)
    return (
        f"warning: {len(others)} other Ray job(s) running on this cluster: {named}; they share its CPUs, "
        "so every figure of this run is wrong unless they finish first (run one job at a time)"
    )


def cpu_nodes() -> list[dict]:
    """Alive nodes that offer CPUs, the head first, then by node id (a stable 'first N')."""
    nodes = [n for n in alive_nodes() if n.get("Resources", {}).get("CPU", 0) > 0]
    return sorted(
        nodes, key=lambda n: (not n.get("Resources", {}).get("node:__internal_head__"), n["NodeID"])
    )


class HeadWatch:
    """Notices a Ray head that stopped answering in the middle of a run.

    When the head's GCS dies, Ray's driver blocks and, 60 s later, aborts the process without
    running any Python handler. This thread probes the GCS port every ``interval_s`` and, after
    ``grace_s`` of failures, calls ``on_lost`` (which reports the loss clearly, records it, and
    ends the process) well before that.
    """

    def __init__(
        self, gcs_address: str, on_lost: Callable[[str], None], interval_s: float = 2.0, grace_s: float = 10.0
    ) -> None:
        self.gcs_address = gcs_address
        self.on_lost = on_lost
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rayscale-head-watch", daemon=True)

    def __enter__(self) -> HeadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 1)

    def _answers(self) -> bool:
        host, _, port = self.gcs_address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=self.interval_s):
                return True
        except (OSError, ValueError):
            return False

    def _run(self) -> None:
        silent_since: float | None = None
        while not self._stop.wait(self.interval_s):
            if self._answers():
                silent_since = None
                continue
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since >= self.grace_s and not self._stop.is_set():
                self.on_lost(self.gcs_address)
                return


def gcs_address() -> str:
    """The address of the connected cluster's GCS (the head)."""
    import ray

    return str(ray.get_runtime_context().gcs_address)
