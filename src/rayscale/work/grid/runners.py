"""The grid's two runners: sequential in the driver, and on Ray, one task per config (per config
and fold with ``--cv``) on slots the runner keeps busy itself (:class:`RayGridRunner`).

Both call :func:`rayscale.work.grid.trials.fit_and_score`, so the only difference between them
is where and when each fit runs; their metrics must agree exactly (:func:`mismatches`).
"""

from __future__ import annotations

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
from rayscale.results.schema import CostSource, TrialRecord, trial_slots
from rayscale.work.cluster.session import RAY_AGENTS
from rayscale.work.data import Dataset, Work
from rayscale.work.grid.configs import (
    DEFAULT_ESTIMATOR,
    TrialSpec,
    cost_formula_applies,
    shape,
)
from rayscale.work.grid.trials import fit_and_score, fit_batch, warm_fit
from rayscale.work.grid.workers import Slot, WorkerPool

OnTrial = Callable[[TrialRecord], None]
Batch = list[tuple[TrialSpec, int]]  # a task's trials, each with the times it was lost before
TINY_S = 0.01  # a trial predicted to take less (fit and scoring) goes with others into one task
BATCH_S = 0.2  # about how long such a task runs (joblib's smallest ideal batch duration; bench/load.py)
JOIN_POLL_S = 1.0  # how often a round looks for nodes that joined, while configs remain
UNLIMITED = 1 << 30  # Ray's queue, after the pilot: every task submitted at once
AHEAD_S = 0.1  # a slot expected to free within this takes its next config in waiting
TAIL = 2  # the last TAIL configs per slot go to free slots only (bench/dispatch.py)


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
        "RayActorError",  # a slot's actor died (ActorDiedError), or its node did
        "ActorUnavailableError",
        "ActorUnschedulableError",
    )
    return tuple(getattr(rex, name) for name in names if hasattr(rex, name))


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
    warm_fit(Work.of(dataset), 0.0, estimator)
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


def _remote_fit() -> Any:
    import ray

    # Ray's own retries are off: the runner retries system failures itself, so it can count them.
    return ray.remote(max_retries=0)(fit_batch)


class RayGridRunner:
    """Runs a grid on Ray against data put once in the object store.

    The runner dispatches itself (``own_dispatch``, on any number of nodes): every trial slot is
    a long-lived actor pinned to its node (:class:`rayscale.work.grid.workers.TrialWorker`); a
    freed slot takes the next-longest remaining config at once, the workers' slots first and the
    head's (which also runs the cluster's own processes) last. While more than ``TAIL`` configs
    per slot remain, a slot expected to free within ``AHEAD_S`` (each config's seconds in the last round,
    else the seconds per cost measured so far) also takes the next one in waiting: it starts the
    moment the running one ends, with no round trip to the driver. A node that joins mid-round
    gets slots within ``JOIN_POLL_S``; a lost slot's trials run again elsewhere, and a lost
    node's slots are gone for good.
    With ``own_dispatch=False`` (the baseline bench/dispatch.py times) every task is submitted
    at once and Ray queues each behind a busy worker while other nodes may sit idle (a 4-node
    round ran its last five configs one after another on one node). With ``nodes``
    (``[(node_id, cpus), ...]``) trials go to those nodes only.

    ``warm_up`` starts every slot's worker (each imports the estimator and reads the data) so
    that timed rounds measure the steady state; its cost is reported as ``warmup_s``. The actors
    hold their CPUs until :meth:`close`.
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
        own_dispatch: bool = True,
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
        self.slots = (
            sum(trial_slots(cpus, cpus_per_trial) for _, cpus in self.nodes)
            if self.nodes
            else trial_slots(cluster_cpus, cpus_per_trial)
        )
        self.data_ref = ray.put(Work.of(dataset))
        self.pool = WorkerPool(self.data_ref, cpus_per_trial, estimator) if own_dispatch else None
        self._task: Any = None if own_dispatch else _remote_fit().options(num_cpus=cpus_per_trial)
        self.seconds_per_cost: float | None = None  # from the fits timed so far; sizes the batches
        self.last_s: dict[tuple[int, int | None], float] = {}  # each trial's seconds in the last round
        self.tasks = 0  # batches the last round ran (fewer than its trials when batched)
        self.lost_nodes: set[str] = set()  # nodes that died under a round: never given work again
        self._seen: tuple[float, list[tuple[str, int]]] | None = None  # (when, the cluster's CPU nodes)

    def _nodes(self) -> list[tuple[str, int]]:
        """The nodes trials run on, in the order their slots take the first tasks (the workers
        first, the head last), without those lost."""
        if self.nodes is not None:
            found = self.nodes
        else:
            from rayscale.work.cluster.session import cpu_nodes

            # the GCS asked at most once a JOIN_POLL_S: a grid of tiny rounds would wait on it every round
            if self._seen is None or time.monotonic() - self._seen[0] >= JOIN_POLL_S:
                heads = [(n["NodeID"], int(n["Resources"]["CPU"])) for n in cpu_nodes()]  # the head first
                self._seen = (time.monotonic(), [*heads[1:], *heads[:1]])
            found = self._seen[1]
        return [(n, c) for n, c in found if n not in self.lost_nodes and trial_slots(c, self.cpus_per_trial)]

    def warm_up(self, hold_s: float = 0.3) -> float:
        """Every slot's worker started and warm. Without its own dispatch, every slot of every
        node holds a warm task at once, pinned to its node: a node whose first worker started in a
        round would lose its trials to the nodes already warm, and the round would time a start."""
        import ray

        started = time.perf_counter()
        if self.pool is not None:
            self.pool.slots(self._nodes())
            self.pool.wait_ready()
            return time.perf_counter() - started
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task: Any = ray.remote(warm_fit)
        ray.get([
            task.options(
                num_cpus=self.cpus_per_trial,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self.data_ref, hold_s, self.estimator)
            for node_id, cpus in self._nodes()
            for _ in range(trial_slots(cpus, self.cpus_per_trial))
        ])  # fmt: skip
        return time.perf_counter() - started

    def close(self) -> None:
        """The slots' actors stopped, their CPUs given back (the next round starts new ones)."""
        if self.pool is not None:
            self.pool.close()

    def _round_slots(self, pilot: bool) -> list[Slot]:
        if self.pool is not None:
            return self.pool.slots(self._nodes())
        task = self._task
        # Ray's queue: the pilot's one slot's worth first, then every task at once
        capacity = self.slots if pilot else UNLIMITED
        return [Slot(None, lambda specs: task.remote(specs, self.data_ref), capacity=capacity)]

    def run(
        self,
        specs: Sequence[TrialSpec],
        on_trial: OnTrial | None = None,
        costs: Mapping[tuple[int, int | None], float] | None = None,
    ) -> tuple[float, list[TrialRecord]]:
        """One timed round: longest-expected first (by ``costs``, by (index, fold), where the
        formula does not apply: :func:`expected_costs`), collected as tasks finish. Tiny trials go
        several to a task (:func:`_next_batch`); until a first fit is timed, one slot's worth goes
        first, alone, and no slot holds a task in waiting."""
        import ray

        n, f = self.dataset.n_train, self.dataset.n_features
        known = costs or {(s.index, s.fold): s.cost(n, f) for s in specs}

        def cost(spec: TrialSpec) -> float:
            return known[(spec.index, spec.fold)]

        queue = deque((spec, 0) for spec in sorted(specs, key=cost, reverse=True))
        pilot = self.seconds_per_cost is None
        slots = self._round_slots(pilot)
        most = max(1, len(specs) // (2 * (len(slots) if self.pool else self.slots)))  # 2+ tasks per slot
        round_ = _Round(
            self, queue, slots, lambda: _next_batch(queue, cost, most, self.seconds_per_cost, self.batch_s)
        )
        round_.expect = self._expect(cost)
        started = time.perf_counter()
        round_.fill()
        records: list[TrialRecord] = []
        self.tasks = 0
        polled = time.monotonic()
        while round_.pending:
            joining = self.pool is not None and self.nodes is None and bool(queue)
            wake = [t for t in (JOIN_POLL_S if joining else None, round_.next_due()) if t is not None]
            for ref in round_.finished(min(wake, default=None)):
                batch, submit_ts, slot, worker = round_.pending.pop(ref)
                self.tasks += 1
                try:
                    outcomes = ray.get(ref)
                except _system_failures() as exc:
                    # The worker or its node went away: run its trials again elsewhere, first in line
                    # (they were among the longest), on a node that is still alive.
                    round_.lose(batch, exc, slot, worker)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if exc.cause is not None else exc
                    raise TrialFailed(_failure(batch[0][0], cause), GRID_PARALLEL.key) from None
                slot.done(sum(o.get("fit_s", 0.0) + o.get("predict_s", 0.0) for o in outcomes))
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
                round_.expect = self._expect(cost)
                if self.pool is None:
                    round_.slots[0].capacity = UNLIMITED
            if joining and time.monotonic() - polled >= JOIN_POLL_S:
                polled = time.monotonic()
                round_.join()
            round_.fill()
        wall = time.perf_counter() - started
        self.seconds_per_cost = _seconds_per_cost(records)
        self.last_s = {(r.index, r.fold): r.fit_s + r.predict_s for r in records}
        records.sort(key=lambda r: (r.index, r.fold or 0))
        return wall, records

    def _expect(self, cost: Callable[[TrialSpec], float]) -> Callable[[Batch], float] | None:
        """A batch's expected seconds (own dispatch only: they decide when a slot takes its next
        config in waiting): each trial's seconds in the last round, else its cost times the
        seconds per cost, once measured."""
        k, last = self.seconds_per_cost, self.last_s
        if self.pool is None or k is None:
            return None
        return lambda batch: sum(last.get((s.index, s.fold), k * cost(s)) for s, _ in batch)


class _Round:
    """One round's dispatch: the configs not yet submitted (longest first), the slots, the tasks
    in flight (each with its batch, submit time, slot and the slot's actor when submitted)."""

    def __init__(
        self,
        runner: RayGridRunner,
        queue: deque[tuple[TrialSpec, int]],
        slots: list[Slot],
        next_batch: Callable[[], Batch],
    ) -> None:
        self.runner, self.queue, self.slots, self.next_batch = runner, queue, slots, next_batch
        self.expect: Callable[[Batch], float] | None = None
        self.pending: dict[Any, tuple[Batch, float, Slot, Any]] = {}

    def _submit(self, slot: Slot) -> None:
        batch = self.next_batch()
        if not slot.expected:
            slot.started = time.monotonic()
        slot.expected.append(self.expect(batch) if self.expect else 0.0)
        ref = slot.call([spec for spec, _ in batch])
        self.pending[ref] = (batch, time.time(), slot, slot.worker)

    def fill(self) -> None:
        """Each free slot takes the next task in turn (the workers' first, the head's last); then,
        while more than ``TAIL`` configs per slot remain, each slot expected to free within
        ``AHEAD_S`` takes the next one in waiting, the soonest first. The last configs wait for a
        slot to be free: at 0.2 core a short trial's time varies by a third from round to round,
        and one handed out early on a wrong guess waited behind a running config at the end."""
        while self.queue and (ready := [s for s in self.slots if s.depth < s.capacity]):
            for slot in ready:
                if not self.queue:
                    return
                self._submit(slot)
        now = time.monotonic()
        for slot in sorted(self._waiting_for_one(), key=Slot.busy_until):
            if slot.busy_until() - now > AHEAD_S or len(self.queue) <= TAIL * len(self.slots):
                return
            self._submit(slot)

    def _waiting_for_one(self) -> list[Slot]:
        """The slots that could take a config in waiting: every one running its only task."""
        if self.expect is None or len(self.queue) <= TAIL * len(self.slots):
            return []
        return [s for s in self.slots if s.depth == s.capacity]

    def next_due(self) -> float | None:
        """Seconds until the next slot is expected to be within ``AHEAD_S`` of free (None if no
        slot could take a config in waiting)."""
        due = [s.busy_until() - AHEAD_S for s in self._waiting_for_one()]
        return max(0.0, min(due) - time.monotonic()) if due else None

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
        assert self.runner.pool is not None
        have = {slot.node_id for slot in self.slots}
        new = [(node_id, cpus) for node_id, cpus in self.runner._nodes() if node_id not in have]
        self.slots[:0] = self.runner.pool.slots(new)

    def lose(self, batch: Batch, exc: BaseException, slot: Slot, worker: Any) -> None:
        """A task whose worker or node went away: its trials first in line again; the slot gets a
        new actor where its node is alive, and a dead node's slots are gone for good."""
        for spec, retries in reversed(batch):
            if retries >= self.runner.max_retries:
                raise RayscaleError(
                    f"config {spec.index} was lost {retries + 1} times ({type(exc).__name__}); giving up", 3
                ) from None
            self.queue.appendleft((spec, retries + 1))
        if slot not in self.slots or worker is not slot.worker:
            return  # the slot's other task, lost with it: already dealt with
        pool, node_id = self.runner.pool, slot.node_id
        if pool is None or node_id is None:
            slot.expected.popleft()  # Ray's queue: the worker is Ray's to replace (no pace)
        elif _alive(node_id):
            pool.replace(slot)
        else:
            self.slots[:] = [s for s in self.slots if s.node_id != node_id]
            pool.drop(node_id)
            self.runner.lost_nodes.add(node_id)
            if not self.slots:
                raise RayscaleError("every selected node died; no node is left to run trials", 3) from None


def _next_batch(
    queue: deque[tuple[TrialSpec, int]],
    cost: Callable[[TrialSpec], float],
    most: int,
    k: float | None,
    batch_s: float,
) -> Batch:
    """The next task's trials: one, or for tiny trials as many as make about ``batch_s``
    (joblib's auto-batching, sized from ``k``, the seconds per cost measured so far), at most ``most``."""
    batch = [queue.popleft()]
    if k is None or k * cost(batch[0][0]) >= TINY_S:
        return batch
    total = k * cost(batch[0][0])
    while (
        queue
        and len(batch) < most
        and total + k * cost(queue[0][0]) <= batch_s
        and k * cost(queue[0][0]) < TINY_S
    ):
        total += k * cost(queue[0][0])
        batch.append(queue.popleft())
    return batch


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
