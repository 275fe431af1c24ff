"""The grid's two runners: sequential in the driver, and one Ray task per config (per config
and fold with ``--cv``).

Both call :func:`fit_and_score`, so the only difference between them is where and when each
fit runs; their metrics must agree exactly (:func:`mismatches`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rayscale.errors import RayscaleError, TrialFailed
from rayscale.options.commands import GRID_PARALLEL, GRID_SEQUENTIAL, check_cpus_per_trial
from rayscale.options.scoring import score
from rayscale.results.schema import BestModel, CostSource, TrialRecord, trial_slots
from rayscale.work.cluster.session import RAY_AGENTS, where
from rayscale.work.data import Dataset, Work
from rayscale.work.grid.configs import (
    DEFAULT_ESTIMATOR,
    TrialSpec,
    cost_formula_applies,
    estimator_class,
    make_estimator,
    shape,
)

OnTrial = Callable[[TrialRecord], None]
TINY_S = 0.01  # a trial predicted to take less (fit and scoring) goes with others into one task
BATCH_S = 0.2  # about how long such a task runs (joblib's smallest ideal batch duration; bench/load.py)
JOIN_POLL_S = 1.0  # how often a round looks for nodes that joined, while configs remain


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


def fit_and_score(spec: TrialSpec, data: Work) -> dict[str, Any]:
    """Fit one config and score it on the task's metrics: on the hold-out set (and the validation
    split, when there is one), or with ``--cv`` on its fold's held-out rows."""
    X_train, y_train, X_test, y_test, X_val, y_val = data.arrays
    if spec.fold is not None:
        fit_rows, held_out = data.folds[spec.fold]
        X_train, y_train, X_test, y_test = (
            X_train[fit_rows],
            y_train[fit_rows],
            X_train[held_out],
            y_train[held_out],
        )
        X_val = y_val = None
    start_ts = time.time()
    t0 = time.perf_counter()
    model = make_estimator(spec.estimator, spec.params).fit(X_train, y_train)
    t1 = time.perf_counter()
    metrics = score(data.task, model, X_test, y_test, data.n_classes)
    t2 = time.perf_counter()
    node, node_id = where()
    val_metrics = {} if X_val is None else score(data.task, model, X_val, y_val, data.n_classes)  # type: ignore[arg-type]
    return {
        "metrics": metrics,
        "val_metrics": val_metrics,
        "fit_s": t1 - t0,
        "predict_s": t2 - t1,
        "node": node,
        "node_id": node_id,
        "pid": os.getpid(),
        "start_ts": start_ts,
        "end_ts": time.time(),
    }


def refit(best: BestModel, estimator: str, dataset: Dataset) -> BestModel:
    """``--cv``: the chosen config fitted on the whole training split and scored once on the
    untouched test split (as GridSearchCV's ``refit``)."""
    outcome = fit_and_score(TrialSpec(best.index, best.params, estimator), Work.of(dataset))
    scores = {k: outcome["metrics"].get(k) for k in ("rmse", "r2", "mae")}
    return best.model_copy(update={"metrics": outcome["metrics"], **scores})


def _record(
    spec: TrialSpec, cost: float, outcome: dict[str, Any], submit_ts: float, retries: int = 0
) -> TrialRecord:
    # Clocks of different hosts can disagree by milliseconds; a queue time is never negative.
    queue_s = max(0.0, outcome["start_ts"] - submit_ts)
    return TrialRecord(
        index=spec.index,
        params=spec.params,
        fold=spec.fold,
        cost=cost,
        queue_s=queue_s,
        retries=retries,
        **outcome,
    )


def run_sequential(
    specs: Sequence[TrialSpec], dataset: Dataset, on_trial: OnTrial | None = None
) -> tuple[float, list[TrialRecord]]:
    """Fit every config one after another in this process; return (wall seconds, records)."""
    data = Work.of(dataset)
    records = []
    started = time.perf_counter()
    for spec in specs:
        submit_ts = time.time()
        try:
            outcome = fit_and_score(spec, data)
        except Exception as exc:  # the model's own error: this trial failed
            raise TrialFailed(_failure(spec, exc), GRID_SEQUENTIAL.key) from None
        record = _record(spec, spec.cost(dataset.n_train, dataset.n_features), outcome, submit_ts)
        records.append(record)
        if on_trial:
            on_trial(record)
    return time.perf_counter() - started, records


def _failure(spec: TrialSpec, exc: BaseException) -> str:
    return f"config {spec.index} failed: {type(exc).__name__}: {exc}".splitlines()[0]


def warm_driver(dataset: Dataset, estimator: str = DEFAULT_ESTIMATOR) -> float:
    """The sequential runner's warm-up, the same as a Ray worker's: import the estimator and fit
    a tiny model, so that no timed round pays the import."""
    started = time.perf_counter()
    _warm_task(Work.of(dataset), 0.0, estimator)
    return time.perf_counter() - started


class RayProcesses:
    """CPU time of this Ray session's own processes on this machine (raylet, GCS, monitors, and
    the raylet's agents, which retitle themselves ``ray::DashboardAgent``/``ray::RuntimeEnvAgent``),
    read from /proc. Trial workers (``ray::IDLE``, ``ray::<task>``) and the driver are not among them."""

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
            elif command.startswith(RAY_AGENTS):
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


def _tiny(estimator: str) -> dict[str, Any]:
    """A few trees or iterations of ``estimator``, where it has such a parameter."""
    known = estimator_class(estimator)().get_params()
    return {k: v for k, v in (("n_estimators", 2), ("max_iter", 2), ("max_depth", 1)) if k in known}


def _remote_fit() -> Any:
    import ray

    # Ray's own retries are off: the runner retries system failures itself, so it can count them.
    return ray.remote(max_retries=0)(fit_batch)


def _warm_task(data: Work, hold_s: float, estimator: str = DEFAULT_ESTIMATOR) -> int:
    """Import the estimator, touch the shared data, fit a tiny model, then hold the CPU."""
    started = time.perf_counter()
    X_train, y_train = data.arrays[0], data.arrays[1]
    with contextlib.suppress(Exception):  # best effort: the timed rounds report a real failure
        estimator_class(estimator)(**_tiny(estimator)).fit(X_train[:64], y_train[:64])
    time.sleep(max(0.0, hold_s - (time.perf_counter() - started)))
    return os.getpid()


class RayGridRunner:
    """Runs a grid as Ray tasks against data put once in the object store.

    ``warm_up`` starts one worker per trial slot on every node (each imports scikit-learn and reads
    the data) so that timed rounds measure the steady state; its cost is reported as ``warmup_s``.

    On a cluster of more than one node the runner dispatches itself (``own_dispatch``): each
    node's slots are kept full with hard node-affinity tasks, a freed slot taking the
    next-longest remaining config at once, the workers' slots first and the head's (which also
    runs the cluster's own processes) last; a node that joins mid-round gets work within
    ``JOIN_POLL_S``, and a lost node's trials run again elsewhere. Submitting every task at once
    instead leaves Ray to queue each behind a busy worker while other nodes sit idle (a 4-node
    round ran its last five configs one after another on one node). On one node, every task is
    submitted at once: the raylet's own queue refills a slot without a round trip to the driver.
    With ``nodes`` (``[(node_id, cpus), ...]``) trials go to those nodes only, the same dispatch
    restricted to a subset of a larger cluster.
    """

    def __init__(
        self,
        dataset: Dataset,
        cpus_per_trial: float,
        cluster_cpus: int,
        nodes: Sequence[tuple[str, int]] | None = None,
        max_retries: int = 3,
        estimator: str = DEFAULT_ESTIMATOR,
        batch_s: float = BATCH_S,
        own_dispatch: bool | None = None,
    ) -> None:
        import ray

        largest = max((cpus for _, cpus in nodes), default=0) if nodes else cluster_cpus
        check_cpus_per_trial(cpus_per_trial, largest, "any selected node's" if nodes else "the cluster's")
        self.dataset = dataset
        self.cpus_per_trial = cpus_per_trial
        self.max_retries = max_retries
        self.estimator = estimator
        self.batch_s = batch_s  # about how long a task of tiny trials runs
        self.nodes = list(nodes) if nodes else None
        # None: on more than one node (False: Ray queues every task, the baseline bench/dispatch.py times)
        self.own_dispatch = own_dispatch
        self.slots = sum(self._slots().values()) if self.nodes else trial_slots(cluster_cpus, cpus_per_trial)
        self.data_ref = ray.put(Work.of(dataset))
        self.seconds_per_cost: float | None = None  # from the fits timed so far; sizes the batches
        self.tasks = 0  # Ray tasks the last round ran (fewer than its trials when batched)
        self.lost_nodes: set[str] = set()  # nodes that died under a round: never given work again
        self._seen: tuple[float, list[tuple[str, int]]] | None = None  # (when, the cluster's CPU nodes)
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

    def _dispatched(self) -> list[tuple[str, int]] | None:
        """The nodes this round dispatches to itself, in the order their slots take the first
        tasks (workers first, the head last), or None where Ray's own queue is used."""
        if self.nodes is not None:
            return self.nodes
        if self.own_dispatch is False:
            return None
        from rayscale.work.cluster.session import cpu_nodes

        # the GCS asked at most once a JOIN_POLL_S: a grid of tiny rounds would wait on it every round
        if self._seen is None or time.monotonic() - self._seen[0] >= JOIN_POLL_S:
            found = [(n["NodeID"], int(n["Resources"]["CPU"])) for n in cpu_nodes()]  # the head first
            self._seen = (time.monotonic(), found)
        nodes = [(node_id, cpus) for node_id, cpus in self._seen[1] if trial_slots(cpus, self.cpus_per_trial)]
        if len(nodes) < 2 and not self.own_dispatch:
            return None
        return [*nodes[1:], *nodes[:1]]

    def warm_up(self, hold_s: float = 0.3) -> float:
        """Every slot of every node holds a warm task at once: pinned to its node even when the
        rounds are not, since a node whose first worker starts in a round would lose its trials to
        the nodes already warm, and the round would time a worker's start."""
        import ray

        from rayscale.work.cluster.session import cpu_nodes

        started = time.perf_counter()
        task = ray.remote(_warm_task)
        nodes = self.nodes or [(node["NodeID"], node["Resources"]["CPU"]) for node in cpu_nodes()]
        refs = [
            self._pinned(task, node_id).remote(self.data_ref, hold_s, self.estimator)
            for node_id, cpus in nodes
            for _ in range(trial_slots(cpus, self.cpus_per_trial))
        ]
        ray.get(refs)
        return time.perf_counter() - started

    def _batch(
        self, queue: deque[tuple[TrialSpec, int]], cost: Callable[[TrialSpec], float], most: int
    ) -> list[tuple[TrialSpec, int]]:
        """The next task's trials: one, or for tiny trials as many as make about ``batch_s``
        (joblib's auto-batching, sized from the trial times measured so far), at most ``most``."""
        batch = [queue.popleft()]
        k = self.seconds_per_cost
        if k is None or k * cost(batch[0][0]) >= TINY_S:
            return batch
        total = k * cost(batch[0][0])
        while (
            queue
            and len(batch) < most
            and total + k * cost(queue[0][0]) <= self.batch_s
            and k * cost(queue[0][0]) < TINY_S
        ):
            total += k * cost(queue[0][0])
            batch.append(queue.popleft())
        return batch

    def run(
        self,
        specs: Sequence[TrialSpec],
        on_trial: OnTrial | None = None,
        costs: Mapping[tuple[int, int | None], float] | None = None,
    ) -> tuple[float, list[TrialRecord]]:
        """One timed round: longest-expected first (by ``costs``, by (index, fold), where the
        formula does not apply: :func:`expected_costs`), collected as tasks finish. Dispatched
        here (see the class), a freed slot takes the next task at once; otherwise every task is
        submitted at once and Ray hands them out in order. Tiny trials go several to a task
        (:meth:`_batch`); until a first fit is timed, one slot's worth goes first, alone."""
        import ray

        n, f = self.dataset.n_train, self.dataset.n_features
        known = costs or {(s.index, s.fold): s.cost(n, f) for s in specs}

        def cost(spec: TrialSpec) -> float:
            return known[(spec.index, spec.fold)]

        queue = deque((spec, 0) for spec in sorted(specs, key=cost, reverse=True))
        nodes = self._dispatched()
        slots = self.slots if nodes is None else sum(trial_slots(c, self.cpus_per_trial) for _, c in nodes)
        pilot, most = self.seconds_per_cost is None, max(1, len(specs) // (2 * slots))  # 2+ tasks/slot
        free: dict[str | None, int] = (
            {None: slots if pilot else len(queue)}
            if nodes is None
            else {node_id: trial_slots(cpus, self.cpus_per_trial) for node_id, cpus in nodes}
        )
        round_ = _Round(self, queue, free, lambda: self._batch(queue, cost, most))
        started = time.perf_counter()
        round_.fill()
        records: list[TrialRecord] = []
        self.tasks = 0
        polled = time.monotonic()
        while round_.pending:
            joining = nodes is not None and self.nodes is None and bool(queue)
            for ref in round_.finished(JOIN_POLL_S if joining else None):
                batch, submit_ts, node_id = round_.pending.pop(ref)
                self.tasks += 1
                try:
                    outcomes = ray.get(ref)
                except _system_failures() as exc:
                    # The worker or its node went away: run its trials again elsewhere, first in line
                    # (they were among the longest), on a node that is still alive.
                    round_.lose(batch, exc, node_id)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if exc.cause is not None else exc
                    raise TrialFailed(_failure(batch[0][0], cause), GRID_PARALLEL.key) from None
                free[node_id] += 1
                for (spec, retries), outcome in zip(batch, outcomes, strict=True):
                    if "error" in outcome:
                        raise TrialFailed(
                            f"config {spec.index} failed: {outcome['error']}", GRID_PARALLEL.key
                        )
                    records.append(_record(spec, cost(spec), outcome, submit_ts, retries))
                    if on_trial:
                        on_trial(records[-1])
            if pilot and records:  # the first fits are timed: size the batches, submit the rest
                self.seconds_per_cost = _seconds_per_cost(records)
                pilot = False
                if nodes is None:
                    free[None] += len(queue)
            if joining and time.monotonic() - polled >= JOIN_POLL_S:
                polled = time.monotonic()
                round_.join()
            round_.fill()
        wall = time.perf_counter() - started
        self.seconds_per_cost = _seconds_per_cost(records)
        records.sort(key=lambda r: (r.index, r.fold or 0))
        return wall, records


class _Round:
    """One round's dispatch: the configs not yet submitted (longest first), each node's free
    slots (one entry, ``None``, where Ray's queue is used), the tasks in flight."""

    def __init__(
        self,
        runner: RayGridRunner,
        queue: deque[tuple[TrialSpec, int]],
        free: dict[str | None, int],
        next_batch: Callable[[], list[tuple[TrialSpec, int]]],
    ) -> None:
        self.runner, self.queue, self.free, self.next_batch = runner, queue, free, next_batch
        self.pending: dict[Any, tuple[list[tuple[TrialSpec, int]], float, str | None]] = {}
        self.remotes = {node_id: runner._pinned(runner._fit, node_id) for node_id in free}

    def fill(self) -> None:
        """Each node with a free slot takes the next task in turn (the order of ``free``)."""
        while self.queue and (ready := [node_id for node_id, k in self.free.items() if k > 0]):
            for node_id in ready:
                if not self.queue:
                    return
                batch = self.next_batch()
                submit_ts = time.time()
                ref = self.remotes[node_id].remote([spec for spec, _ in batch], self.runner.data_ref)
                self.pending[ref] = (batch, submit_ts, node_id)
                self.free[node_id] -= 1

    def finished(self, timeout_s: float | None) -> list[Any]:
        """The tasks done: the next to finish (waiting at most ``timeout_s``) and every other
        already finished, without waiting."""
        import ray

        ready, waiting = ray.wait(list(self.pending), num_returns=1, timeout=timeout_s)
        if waiting and ready:
            more, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
            ready += more
        return list(ready)

    def join(self) -> None:
        """Nodes that joined the cluster since the round began get slots, first in line (the
        head stays last)."""
        from rayscale.work.cluster.session import cpu_nodes

        runner = self.runner
        for node in cpu_nodes():
            node_id, cpus = node["NodeID"], int(node["Resources"]["CPU"])
            slots = trial_slots(cpus, runner.cpus_per_trial)
            if node_id not in self.free and node_id not in runner.lost_nodes and slots:
                self.remotes[node_id] = runner._pinned(runner._fit, node_id)
                rest = dict(self.free)
                self.free.clear()
                self.free[node_id] = slots
                self.free.update(rest)

    def lose(self, batch: list[tuple[TrialSpec, int]], exc: BaseException, node_id: str | None) -> None:
        """A task whose worker or node went away: its trials first in line again, and a dead
        node's slots gone for good."""
        for spec, retries in reversed(batch):
            if retries >= self.runner.max_retries:
                raise RayscaleError(
                    f"config {spec.index} was lost {retries + 1} times ({type(exc).__name__}); giving up", 3
                ) from None
            self.queue.appendleft((spec, retries + 1))
        if node_id is not None and not _alive(node_id):
            del self.free[node_id]
            self.runner.lost_nodes.add(node_id)
            if not self.free:
                raise RayscaleError("every selected node died; no node is left to run trials", 3) from None
        else:
            self.free[node_id] += 1


def expected_costs(
    specs: Sequence[TrialSpec], dataset: Dataset, sequential: Sequence[TrialRecord] | None
) -> tuple[CostSource, dict[tuple[int, int | None], float] | None, float]:
    """(source, costs or None for the formula, pilot seconds) for the longest-first order.

    The formula where it applies (:func:`rayscale.work.grid.configs.cost_formula_applies`); else each config's
    measured fit seconds in the sequential round, when one ran; else a pilot in the driver that
    fits one config of each :func:`rayscale.work.grid.configs.shape` and gives its seconds to the shape."""
    if cost_formula_applies(specs[0].estimator):
        return "formula", None, 0.0
    if sequential:
        return "sequential", {(t.index, t.fold): t.fit_s for t in sequential}, 0.0
    data = Work.of(dataset)
    started = time.perf_counter()
    timed: dict[tuple[tuple[str, str], ...], float] = {}
    for spec in specs:
        if shape(spec) not in timed:
            timed[shape(spec)] = fit_and_score(replace(spec, fold=None), data)["fit_s"]
    costs = {(s.index, s.fold): timed[shape(s)] for s in specs}
    return "pilot", costs, time.perf_counter() - started


def _seconds_per_cost(records: Sequence[TrialRecord]) -> float | None:
    """The median seconds a trial spends in its task (its fit and its scoring) per cost unit of
    ``records``: what sizes the batches."""
    ratios = sorted((r.fit_s + r.predict_s) / r.cost for r in records if r.cost > 0)
    return ratios[len(ratios) // 2] if ratios else None


def fit_batch(specs: list[TrialSpec], data: Work) -> list[dict[str, Any]]:
    """Several trials in one task, one after another; a trial that raises is returned as its
    error, so the driver names the config that failed."""
    out: list[dict[str, Any]] = []
    for spec in specs:
        try:
            out.append(fit_and_score(spec, data))
        except Exception as exc:  # the model's own error, reported for this config
            out.append({"error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
    return out


def mismatches(a: Sequence[TrialRecord], b: Sequence[TrialRecord], rel_tol: float = 1e-9) -> list[str]:
    """Tasks whose metrics differ between two runs of the same grid (empty when identical)."""

    def key(t: TrialRecord) -> tuple[int, int | None]:
        return t.index, t.fold

    def name(k: tuple[int, int | None]) -> str:
        return f"config {k[0]}" + ("" if k[1] is None else f" fold {k[1]}")

    by_key = {key(t): t for t in b}
    problems = []
    for t in a:
        other = by_key.get(key(t))
        if other is None:
            problems.append(f"{name(key(t))} missing from the second run")
            continue
        for metric in sorted(set(t.metrics) | set(other.metrics)):
            x, y = t.metrics.get(metric), other.metrics.get(metric)
            if x is None or y is None or not math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-12):
                problems.append(f"{name(key(t))}: {metric} {x!r} != {y!r}")
    problems += [
        f"{name(k)} missing from the first run" for k in sorted(set(by_key) - {key(t) for t in a}, key=str)
    ]
    return problems


def _alive(node_id: str) -> bool:
    import ray

    return any(node["NodeID"] == node_id and node.get("Alive") for node in ray.nodes())
