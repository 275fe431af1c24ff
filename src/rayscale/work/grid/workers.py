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

    @property
    def depth(self) -> int:
        return len(self.expected)

    def busy_until(self) -> float:
        return self.started + sum(self.expected)


class WorkerPool:
    """Every slot's actor, by node, kept from round to round (so that no round times a worker's
    start) and given back by :meth:`close`: each holds its CPUs while it lives."""

    def __init__(self, data_ref: Any, cpus_per_trial: float, estimator: str) -> None:
        self.data_ref, self.cpus_per_trial, self.estimator = data_ref, cpus_per_trial, estimator
        self.by_node: dict[str, list[Any]] = {}

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
        """One slot per actor on ``nodes`` (started where missing), in the order of ``nodes``."""
        out = []
        for node_id, cpus in nodes:
            workers = self.by_node.setdefault(node_id, [])
            missing = trial_slots(cpus, self.cpus_per_trial) - len(workers)
            workers += [self._start(node_id) for _ in range(missing)]
            out += [Slot(node_id, worker.fit.remote, worker) for worker in workers]
        return out

    def wait_ready(self) -> None:
        import ray

        ray.get([worker.ready.remote() for workers in self.by_node.values() for worker in workers])

    def replace(self, slot: Slot) -> None:
        """A new actor in place of ``slot``'s, which died on a node still alive."""
        workers = self.by_node[slot.node_id]  # type: ignore[index]
        new = self._start(slot.node_id)  # type: ignore[arg-type]
        workers[workers.index(slot.worker)] = new
        slot.worker, slot.call = new, new.fit.remote
        slot.expected.clear()

    def drop(self, node_id: str) -> None:
        for worker in self.by_node.pop(node_id, []):
            _kill(worker)

    def close(self) -> None:
        for node_id in list(self.by_node):
            self.drop(node_id)


def _kill(worker: Any) -> None:
    import ray

    with contextlib.suppress(Exception):  # already gone, or the cluster with it
        ray.kill(worker)
