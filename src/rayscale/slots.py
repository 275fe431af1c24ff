"""The slots a simulation hands trials to (``rayscale predict``): the list schedule over slots of
unequal speed, where Ray places the first tasks among them, what a worker node's slot runs at
against the measured head's, and each slot's dispatch gap."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Sequence
from statistics import fmean
from typing import Any

from rayscale.scaling import Emulation
from rayscale.schema import TrialRecord, TuneTrial


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
    free together, the first in ``order``, by default the lowest numbered), a slot waiting
    ``gap_s`` before each task it runs (the dispatch latency); a task on slot i takes its duration
    × ``speeds[i]`` (1 for every slot without them)."""
    if slots < 1:
        raise ValueError("slots must be at least 1")
    factor = list(speeds) if speeds is not None else [1.0] * slots
    rank = {slot: k for k, slot in enumerate(order if order is not None else range(slots))}
    free = [(0.0, rank[i], i) for i in range(slots)]
    heapq.heapify(free)
    end = 0.0
    for d in durations:
        at, k, i = heapq.heappop(free)
        finish = at + gap_s + d * factor[i]
        end = max(end, finish)
        heapq.heappush(free, (finish, k, i))
    return end


PLACEMENTS = 32  # at most this many placements of the first tasks per grid prediction


def first_placements(slots: int, per_node: int, most: int = PLACEMENTS) -> list[list[int]]:
    """Orders in which the slots, all free at the start, take the first tasks (for
    :func:`list_schedule`), where the head's ``per_node`` slots (0 … per_node − 1) are not as fast
    as the workers'. Ray does not hand the first, longest, task to the head: the measured first
    trial ran on a worker at 2, 4 and 8 isolated nodes, the head's slot taking the second or a later
    one. A worker's slots are interchangeable, so an order is where the head's slots fall among the
    first ``slots`` tasks: every such place when there are at most ``most``, else ``most`` of them
    (evenly spread for one head slot, drawn with a fixed seed for more)."""
    if per_node >= slots:
        return [list(range(slots))]
    if per_node == 1:
        places = [[k] for k in range(slots)]
        if slots > most:
            places = [[round(j * (slots - 1) / (most - 1))] for j in range(most)]
    elif math.comb(slots, per_node) <= most:
        places = [list(c) for c in itertools.combinations(range(slots), per_node)]
    else:
        rng = random.Random(slots * 1_000 + per_node)
        places = [sorted(rng.sample(range(slots), per_node)) for _ in range(most)]
    orders = []
    for head in places:
        workers = iter(range(per_node, slots))
        heads = iter(range(per_node))
        orders.append([next(heads) if k in head else next(workers) for k in range(slots)])
    return orders


def worker_speed(emulation: Emulation | None, demand: float) -> float:
    """What a trial's time on a worker node is, against its time on the measured one-node head
    (a factor on durations). Every isolated node gets the same CPU limit; the head also runs the
    cluster's processes (GCS, autoscaler monitor), a worker only a node's own (raylet, agents), so
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
