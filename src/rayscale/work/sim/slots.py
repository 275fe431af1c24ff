"""The slots a simulation hands trials to (``rayscale predict``): the list schedule over slots of
unequal speed, the order the runner's dispatch fills them in, what a worker node's slot runs at
against the measured head's, and each slot's dispatch gap."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from statistics import fmean
from typing import Any

from rayscale.results.scaling import Emulation
from rayscale.results.schema import TrialRecord, TuneTrial


def worker_gaps(trials: Sequence[TrialRecord] | Sequence[TuneTrial]) -> list[float]:
    """Each idle time of a worker between the end of one of its trials and the start of its next
    (the dispatch latency a slot pays per task)."""
    by_worker: dict[tuple[str, int], list[Any]] = {}
    for t in trials:
        by_worker.setdefault((t.node_id, t.pid), []).append(t)
    return [
        max(0.0, b.start_ts - a.end_ts)
        for tasks in by_worker.values()
        for a, b in itertools.pairwise(sorted(tasks, key=lambda t: t.start_ts))
    ]


def worker_gap(trials: Sequence[TrialRecord] | Sequence[TuneTrial]) -> float:
    """The mean of :func:`worker_gaps` (the mean, since a makespan adds them up); 0 when no worker
    ran two."""
    gaps = worker_gaps(trials)
    return fmean(gaps) if gaps else 0.0


def list_schedule(
    durations: Sequence[float],
    slots: int,
    gap_s: float = 0.0,
    speeds: Sequence[float] | None = None,
    order: Sequence[int] | None = None,
) -> float:
    """Makespan of handing ``durations`` out in order, each to the earliest free slot (of those
    free together, the first in ``order``, by default the lowest numbered: ``order[k]`` is the slot
    that takes the k-th of the tasks handed out at once), a slot waiting ``gap_s`` before each task
    it runs (the dispatch latency); a task on slot i takes its duration × ``speeds[i]`` (1 for
    every slot without them)."""
    if slots < 1:
        raise ValueError("slots must be at least 1")
    factor = list(speeds) if speeds is not None else [1.0] * slots
    ranked = list(order) if order is not None else list(range(slots))
    if len(factor) != slots or sorted(ranked) != list(range(slots)):
        raise ValueError("speeds must have one factor per slot and order every slot once")
    rank = {slot: k for k, slot in enumerate(ranked)}
    free = [(0.0, rank[i], i) for i in range(slots)]
    heapq.heapify(free)
    end = 0.0
    for d in durations:
        at, k, i = heapq.heappop(free)
        finish = at + gap_s + d * factor[i]
        end = max(end, finish)
        heapq.heappush(free, (finish, k, i))
    return end


def dispatch_order(slots: int, per_node: int) -> list[int]:
    """The order in which the slots, all free at the start, take the first tasks (for
    :func:`list_schedule`): the runner's own dispatch hands the longest configs to the workers'
    slots first and the head's (0 … ``per_node`` − 1, slower where it also runs the cluster's
    processes) last (:class:`rayscale.work.grid.runners.RayGridRunner`)."""
    return [*range(per_node, slots), *range(min(per_node, slots))]


def worker_speed(emulation: Emulation | None, demand: float) -> float:
    """What a trial's time on a worker node is, against its time on the measured one-node head
    (a factor on durations). Every isolated node gets the same CPU limit; the head also runs the
    cluster's processes (GCS, autoscaler monitor, dashboard process, client server), a worker only
    a node's own (raylet, agents, log monitor: taken to be what the head's own used), so
    trials there get more of it, up to ``demand`` (the node's trial slots × CPUs per trial). 1
    where the measurement has no such split (not isolated, or more than one node)."""
    if emulation is None or emulation.cluster_cpu is None or len(emulation.ray_cpu) != 1:
        return 1.0
    own = next(iter(emulation.ray_cpu.values()))
    head = min(demand, emulation.cpu_limit - own - emulation.cluster_cpu)
    worker = min(demand, emulation.cpu_limit - own)
    return head / worker if head > 0 and worker > 0 else 1.0


def slot_speeds(slots: int, per_node: int, speed: float) -> list[float]:
    """Each slot's factor: the head's first (its node's slots, as measured), then the workers'."""
    return [1.0 if i < per_node else speed for i in range(slots)]


def capacity(speeds: Sequence[float]) -> float:
    return sum(1.0 / f for f in speeds)
