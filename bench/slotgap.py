"""The gap between two trials on one slot: Ray tasks against a slot actor, one in flight or one
more waiting (root; alone on the machine).

One isolated node of 1 CPU at ``core`` (default 0.2), the seed grid on ``friedman1:200``, one after
another longest first on the one slot: pinned tasks with 1 or 2 in flight, then (the tasks' worker
gone) an actor holding the data with 1 or 2 in flight; 3 rounds of each pair alternating after a pilot.
Prints each round's wall, busy time (the trials' own seconds), busy / wall and the mean gap.

    sudo python bench/slotgap.py [core]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ray

from rayscale.work.cluster.isolated import Isolation, isolated_cluster
from rayscale.work.data import Work, load_dataset
from rayscale.work.grid.configs import TrialSpec, load_grid
from rayscale.work.grid.runners import RayGridRunner, _record
from rayscale.work.grid.trials import fit_batch
from rayscale.work.sim.slots import worker_gaps

DATASET = load_dataset("friedman1:200")
SPECS = load_grid("seed")
Submit = Callable[[list[TrialSpec]], Any]


class Fitter:
    def __init__(self, data: Work) -> None:
        self.data = data

    def fit(self, specs: list[TrialSpec]) -> list[dict[str, Any]]:
        return fit_batch(specs, self.data)


def one_round(submit: Submit, depth: int) -> tuple[float, float, float]:
    """(wall, busy, mean gap) of the grid on the one slot, ``depth`` tasks in flight."""
    queue = deque(sorted(SPECS, key=lambda s: -s.cost(DATASET.n_train, DATASET.n_features)))
    pending: dict[Any, tuple[TrialSpec, float]] = {}
    records = []
    started = time.perf_counter()

    def fill() -> None:
        while queue and len(pending) < depth:
            spec = queue.popleft()
            pending[submit([spec])] = (spec, time.time())

    fill()
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        spec, submit_ts = pending.pop(ref)
        (outcome,) = ray.get(ref)
        records.append(_record(spec, 1.0, outcome, submit_ts))
        fill()
    wall = time.perf_counter() - started
    return wall, sum(r.fit_s + r.predict_s for r in records), statistics.fmean(worker_gaps(records))


def compare(variants: dict[str, tuple[Submit, int]]) -> None:
    for submit, depth in variants.values():
        one_round(submit, depth)  # the pilot
    for r in range(3):
        for name in list(variants) if r % 2 == 0 else list(reversed(variants)):
            wall, busy, gap = one_round(*variants[name])
            print(f"{name}: wall {wall:.2f}s busy {busy:.2f}s busy/wall {busy / wall:.3f}", end=" ")
            print(f"gap {1000 * gap:.1f}ms")


def main() -> None:
    core = float(sys.argv[1]) if len(sys.argv) > 1 else 0.2
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    with isolated_cluster(1, 1, Isolation(core), f"g-{os.urandom(3).hex()}"):
        runner = RayGridRunner(DATASET, 1, 1, own_dispatch=False)
        runner.warm_up()
        pinned = NodeAffinitySchedulingStrategy(ray.nodes()[0]["NodeID"], soft=False)
        task = ray.remote(max_retries=0)(fit_batch).options(num_cpus=1, scheduling_strategy=pinned)

        def by_task(specs: list[TrialSpec]) -> Any:
            return task.remote(specs, runner.data_ref)

        compare({"task, 1 in flight": (by_task, 1), "task, 2 in flight": (by_task, 2)})
        time.sleep(2)  # the tasks' worker gone idle: the actor takes the CPU
        fitter: Any = ray.remote(Fitter)
        actor = fitter.options(num_cpus=1, scheduling_strategy=pinned).remote(runner.data_ref)
        compare({"actor, 1 in flight": (actor.fit.remote, 1), "actor, 2 in flight": (actor.fit.remote, 2)})


if __name__ == "__main__":
    main()
