"""The grid's two runners: sequential in the driver, and one Ray task per config.

Both call :func:`fit_and_score`, so the only difference between them is where and when each
fit runs; their metrics must agree exactly (:func:`mismatches`).
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rayscale.datasets import Dataset
from rayscale.errors import RayscaleError, TrialFailed
from rayscale.grids import TrialSpec
from rayscale.options import GRID_PARALLEL, GRID_SEQUENTIAL, check_cpus_per_trial
from rayscale.schema import TrialRecord, trial_slots

# X_train, y_train, X_test, y_test, X_val, y_val (the validation pair is None without one)
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]
OnTrial = Callable[[TrialRecord], None]


def _system_failures() -> tuple[type[BaseException], ...]:
    """Failures of the machinery rather than of the model: the trial can simply run again."""
    from ray import exceptions as rex

    names = (
        "WorkerCrashedError",
        "NodeDiedError",
        "ObjectLostError",
        "OwnerDiedError",
        "TaskUnschedulableError",
        "RaySystemError",
        "LocalRayletDiedError",
    )
    return tuple(getattr(rex, name) for name in names if hasattr(rex, name))


def arrays(dataset: Dataset) -> Arrays:
    return dataset.X_train, dataset.y_train, dataset.X_test, dataset.y_test, dataset.X_val, dataset.y_val


def scores(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, R² and MAE: the same metrics for the grid and for Tune."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, predicted))),
        "r2": float(r2_score(y_true, predicted)),
        "mae": float(mean_absolute_error(y_true, predicted)),
    }


def where() -> tuple[str, str]:
    """(node IP, node id) of the calling process; the node id is empty outside Ray."""
    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return ray.util.get_node_ip_address(), node_id


def fit_and_score(params: dict[str, Any], data: Arrays) -> dict[str, Any]:
    """Fit one GradientBoostingRegressor and score it on the hold-out set (and the validation
    split, when there is one)."""
    from sklearn.ensemble import GradientBoostingRegressor

    X_train, y_train, X_test, y_test, X_val, y_val = data
    start_ts = time.time()
    t0 = time.perf_counter()
    model = GradientBoostingRegressor(**params).fit(X_train, y_train)
    t1 = time.perf_counter()
    predicted = model.predict(X_test)
    t2 = time.perf_counter()
    node, node_id = where()
    validation = None if X_val is None else scores(y_val, model.predict(X_val))["rmse"]  # type: ignore[arg-type]
    return {
        **scores(y_test, predicted),
        "val_rmse": validation,
        "fit_s": t1 - t0,
        "predict_s": t2 - t1,
        "node": node,
        "node_id": node_id,
        "pid": os.getpid(),
        "start_ts": start_ts,
        "end_ts": time.time(),
    }


def _record(
    spec: TrialSpec, cost: float, outcome: dict[str, Any], submit_ts: float, retries: int = 0
) -> TrialRecord:
    # Clocks of different hosts can disagree by milliseconds; a queue time is never negative.
    queue_s = max(0.0, outcome["start_ts"] - submit_ts)
    return TrialRecord(
        index=spec.index, params=spec.params, cost=cost, queue_s=queue_s, retries=retries, **outcome
    )


def run_sequential(
    specs: Sequence[TrialSpec], dataset: Dataset, on_trial: OnTrial | None = None
) -> tuple[float, list[TrialRecord]]:
    """Fit every config one after another in this process; return (wall seconds, records)."""
    data = arrays(dataset)
    records = []
    started = time.perf_counter()
    for spec in specs:
        submit_ts = time.time()
        try:
            outcome = fit_and_score(spec.params, data)
        except Exception as exc:  # the model's own error: this trial failed
            raise TrialFailed(_failure(spec, exc), GRID_SEQUENTIAL.key) from None
        record = _record(spec, spec.cost(dataset.n_train, dataset.n_features), outcome, submit_ts)
        records.append(record)
        if on_trial:
            on_trial(record)
    return time.perf_counter() - started, records


def _failure(spec: TrialSpec, exc: BaseException) -> str:
    return f"config {spec.index} failed: {type(exc).__name__}: {exc}".splitlines()[0]


def warm_driver(dataset: Dataset) -> float:
    """The sequential runner's warm-up, the same as a Ray worker's: import the estimator and fit
    a tiny model, so that no timed round pays the import."""
    started = time.perf_counter()
    _warm_task(arrays(dataset), 0.0)
    return time.perf_counter() - started


class RayProcesses:
    """CPU time of this Ray session's own processes on this machine (raylet, GCS, monitors, and
    the raylet's agents, which retitle themselves ``ray::DashboardAgent``/``ray::RuntimeEnvAgent``),
    read from /proc. Trial workers (``ray::IDLE``, ``ray::<task>``) and the driver are not among them."""

    AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._tick = os.sysconf("SC_CLK_TCK")

    @classmethod
    def find(cls) -> RayProcesses | None:
        """The processes of the connected session, or None where /proc cannot tell."""
        import ray

        session = getattr(getattr(ray._private.worker, "_global_node", None), "session_name", None)
        proc = Path("/proc")
        if not session or not proc.is_dir():
            return None
        own, agents = [], []
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if session in command and not command.startswith("ray::"):
                own.append(int(entry.name))
            elif command.startswith(cls.AGENTS):
                agents.append((int(entry.name), parent))
        pids = own + [pid for pid, parent in agents if parent in own]
        return cls(pids) if pids else None

    def cpu_s(self) -> float:
        total = 0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        return total / self._tick


def _remote_fit() -> Any:
    import ray

    # Ray's own retries are off: the runner retries system failures itself, so it can count them.
    return ray.remote(max_retries=0)(fit_and_score)


def _warm_task(data: Arrays, hold_s: float) -> int:
    """Import the estimator, touch the shared data, fit a tiny model, then hold the CPU."""
    from sklearn.ensemble import GradientBoostingRegressor

    started = time.perf_counter()
    X_train, y_train = data[0], data[1]
    GradientBoostingRegressor(n_estimators=2, max_depth=1).fit(X_train[:64], y_train[:64])
    time.sleep(max(0.0, hold_s - (time.perf_counter() - started)))
    return os.getpid()


class RayGridRunner:
    """Runs a grid as Ray tasks against data put once in the object store.

    ``warm_up`` starts one worker per trial slot (each imports scikit-learn and reads the data)
    so that timed rounds measure the steady state; its cost is reported as ``warmup_s``.

    With ``nodes`` (``[(node_id, cpus), ...]``) trials are pinned to those nodes only: each node's
    slots are kept full with hard node-affinity tasks, refilled as trials finish. That is the same
    longest-first list schedule, restricted to a subset of a larger cluster.
    """

    def __init__(
        self,
        dataset: Dataset,
        cpus_per_trial: float,
        cluster_cpus: int,
        nodes: Sequence[tuple[str, int]] | None = None,
        max_retries: int = 3,
    ) -> None:
        import ray

        largest = max((cpus for _, cpus in nodes), default=0) if nodes else cluster_cpus
        check_cpus_per_trial(cpus_per_trial, largest, "any selected node's" if nodes else "the cluster's")
        self.dataset = dataset
        self.cpus_per_trial = cpus_per_trial
        self.max_retries = max_retries
        self.nodes = list(nodes) if nodes else None
        self.slots = sum(self._slots().values()) if self.nodes else trial_slots(cluster_cpus, cpus_per_trial)
        self.data_ref = ray.put(arrays(dataset))
        self._fit = _remote_fit()

    def _pinned(self, remote: Any, node_id: str | None) -> Any:
        """``remote`` with this runner's CPUs per trial, hard-pinned to ``node_id`` when given."""
        if node_id is None:
            return remote.options(num_cpus=self.cpus_per_trial)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        return remote.options(num_cpus=self.cpus_per_trial, scheduling_strategy=strategy)

    def _slots(self) -> dict[str | None, int]:
        if self.nodes is None:
            return {None: self.slots}
        return {node_id: trial_slots(cpus, self.cpus_per_trial) for node_id, cpus in self.nodes}

    def warm_up(self, hold_s: float = 0.3) -> float:
        import ray

        started = time.perf_counter()
        task = ray.remote(_warm_task)
        refs = [
            self._pinned(task, node_id).remote(self.data_ref, hold_s)
            for node_id, count in self._slots().items()
            for _ in range(count)
        ]
        ray.get(refs)
        return time.perf_counter() - started

    def run(
        self, specs: Sequence[TrialSpec], on_trial: OnTrial | None = None
    ) -> tuple[float, list[TrialRecord]]:
        """One timed round: submit longest-expected-first, collect as tasks finish.

        Unpinned, every task is submitted at once and Ray's scheduler hands them out in order;
        pinned, each node gets tasks as its slots free up.
        """
        import ray

        n, f = self.dataset.n_train, self.dataset.n_features
        queue: deque[tuple[TrialSpec, int]] = deque(
            (spec, 0) for spec in sorted(specs, key=lambda s: s.cost(n, f), reverse=True)
        )
        free: dict[str | None, int] = self._slots() if self.nodes else {None: len(queue)}
        pending: dict[ray.ObjectRef, tuple[TrialSpec, float, str | None, int]] = {}
        remotes = {node_id: self._pinned(self._fit, node_id) for node_id in free}

        def fill() -> None:
            for node_id in free:
                while free[node_id] > 0 and queue:
                    spec, retries = queue.popleft()
                    submit_ts = time.time()
                    ref = remotes[node_id].remote(spec.params, self.data_ref)
                    pending[ref] = (spec, submit_ts, node_id, retries)
                    free[node_id] -= 1

        started = time.perf_counter()
        fill()
        records = []
        while pending:
            waiting = list(pending)
            ready, waiting = ray.wait(waiting, num_returns=1)
            if waiting:  # take every other finished task too, without waiting
                more, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
                ready += more
            for ref in ready:
                spec, submit_ts, node_id, retries = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except _system_failures() as exc:
                    # The worker or its node went away: run the trial again elsewhere, first in line
                    # (it was among the longest), on a node that is still alive.
                    if retries >= self.max_retries:
                        raise RayscaleError(
                            f"config {spec.index} was lost {retries + 1} times "
                            f"({type(exc).__name__}); giving up",
                            3,
                        ) from None
                    queue.appendleft((spec, retries + 1))
                    if node_id is not None and not _alive(node_id):
                        del free[node_id]
                        if not free:
                            raise RayscaleError(
                                "every selected node died; no node is left to run trials", 3
                            ) from None
                    else:
                        free[node_id] += 1
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if exc.cause is not None else exc
                    raise TrialFailed(_failure(spec, cause), GRID_PARALLEL.key) from None
                free[node_id] += 1
                record = _record(spec, spec.cost(n, f), outcome, submit_ts, retries)
                records.append(record)
                if on_trial:
                    on_trial(record)
            fill()
        wall = time.perf_counter() - started
        records.sort(key=lambda r: r.index)
        return wall, records


METRICS = ("rmse", "r2", "mae")


def mismatches(a: Sequence[TrialRecord], b: Sequence[TrialRecord], rel_tol: float = 1e-9) -> list[str]:
    """Configs whose metrics differ between two runs of the same grid (empty when identical)."""
    by_index = {t.index: t for t in b}
    problems = []
    for t in a:
        other = by_index.get(t.index)
        if other is None:
            problems.append(f"config {t.index} missing from the second run")
            continue
        for name in METRICS:
            x, y = getattr(t, name), getattr(other, name)
            if not math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-12):
                problems.append(f"config {t.index}: {name} {x!r} != {y!r}")
    problems += [
        f"config {i} missing from the first run" for i in sorted(set(by_index) - {t.index for t in a})
    ]
    return problems


def _alive(node_id: str) -> bool:
    import ray

    return any(node["NodeID"] == node_id and node.get("Alive") for node in ray.nodes())
