"""The grid's trial slots on Ray: one long-lived actor per slot (:class:`TrialWorker`), pinned to
its node, that reads the data once and fits the configs it is sent one after another.

A slot that already holds its next task starts it the moment the running one ends, with no round
trip to the driver; a Ray task pays a lease and its arguments every time. On an isolated node of
0.2 core the gap between two trials on a slot was 38–50 ms with tasks and 7–10 ms with an actor
holding one task in waiting (docs/scale-and-predict.md, "Every slot busy").
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rayscale.results.schema import trial_slots
from rayscale.work.data import Work
from rayscale.work.grid.configs import TrialSpec
from rayscale.work.grid.trials import fit_batch, warm_fit


class TrialWorker:
    """One trial slot: holds the shared data, warms up (the estimator's imports and a tiny fit),
    then fits the batches sent to it in the order they come."""

    def __init__(self, data: Work, estimator: str) -> None:
        self.data = data
        warm_fit(data, 0.0, estimator)

    def fit(self, specs: list[TrialSpec]) -> list[dict[str, Any]]:
        return fit_batch(specs, self.data)

    def ready(self) -> int:
        return os.getpid()


@dataclass(eq=False)
class Slot:
    """Where a round's tasks go: one actor pinned to ``node_id`` (``capacity`` 1, and one more
    waiting behind it), or for Ray's own queue (``node_id`` None) every worker at once."""

    node_id: str | None
    call: Callable[[list[TrialSpec]], Any]  # submits a batch, returns its ObjectRef
    worker: Any = None  # the actor, where there is one
    capacity: int = 1
    expected: deque[float] = field(default_factory=deque)  # each task in flight: its expected seconds
    started: float = 0.0  # when the task now running started (taken as when the one before ended)
    paces: list[float] = field(default_factory=list)  # each task's seconds here / expected, so far

    @property
    def depth(self) -> int:
        return len(self.expected)

    @property
    def pace(self) -> float:
        """How much longer than expected this slot's tasks take (the head's, sharing its node with
        the cluster's own processes, take longer): the median so far, 1 before any."""
        return statistics.median(self.paces) if self.paces else 1.0

    def busy_until(self) -> float:
        return self.started + self.pace * sum(self.expected)

    def done(self, seconds: float) -> None:
        """The running task ended after ``seconds`` of work: the one waiting (if any) starts now."""
        expected = self.expected.popleft()
        if expected > 0 and seconds > 0:
            self.paces.append(seconds / expected)
        self.started = time.monotonic()


class WorkerPool:
    """Every slot, by node, kept from round to round with its actor (so that no round times a
    worker's start) and its pace; the actors given back by :meth:`close`: each holds its CPUs
    while it lives."""

    def __init__(self, data_ref: Any, cpus_per_trial: float, estimator: str) -> None:
        self.data_ref, self.cpus_per_trial, self.estimator = data_ref, cpus_per_trial, estimator
        self.by_node: dict[str, list[Slot]] = {}

    def _start(self, node_id: str) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return (
            ray.remote(TrialWorker)
            .options(
                num_cpus=self.cpus_per_trial,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                max_restarts=0,  # the runner starts a new one itself, and runs the lost trials again
            )
            .remote(self.data_ref, self.estimator)
        )

    def slots(self, nodes: Sequence[tuple[str, int]]) -> list[Slot]:
        """The slots of ``nodes`` (their actors started where missing), in the order of ``nodes``,
        nothing in flight."""
        out = []
        for node_id, cpus in nodes:
            mine = self.by_node.setdefault(node_id, [])
            for _ in range(trial_slots(cpus, self.cpus_per_trial) - len(mine)):
                worker = self._start(node_id)
                mine.append(Slot(node_id, worker.fit.remote, worker))
            for slot in mine:
                slot.expected.clear()
            out += mine
        return out

    def wait_ready(self) -> None:
        import ray

        ray.get([slot.worker.ready.remote() for mine in self.by_node.values() for slot in mine])

    def replace(self, slot: Slot) -> None:
        """A new actor in place of ``slot``'s, which died on a node still alive."""
        new = self._start(slot.node_id)  # type: ignore[arg-type]
        slot.worker, slot.call = new, new.fit.remote
        slot.expected.clear()

    def drop(self, node_id: str) -> None:
        for slot in self.by_node.pop(node_id, []):
            _kill(slot.worker)

    def close(self) -> None:
        for node_id in list(self.by_node):
            self.drop(node_id)


def _kill(worker: Any) -> None:
    import ray

    with contextlib.suppress(Exception):  # already gone, or the cluster with it
        ray.kill(worker)
