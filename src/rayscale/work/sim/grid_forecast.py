"""The grid phase's forecast: the measured trials replayed as the runner schedules them.

Every trial is submitted longest-expected first and handed to the earliest free slot (a list
schedule over N × C/cpus-per-trial slots, :func:`~rayscale.work.sim.slots.list_schedule`), each
taking the duration it took when measured (or, for configs not measured, the cost model fitted to
those that were), a slot waiting the measured dispatch gap between two tasks, and the round ending
the measured collect time after its last task. Before the round: the node's provisioning delay,
the data's transfer (the head sends a copy to each other node through its own link: N − 1 ×
object size / bandwidth) and the per-node warm-up.

Isolated nodes (``--isolate``) all get the same CPU limit, but the head spends part of its own on
the cluster's Ray processes (GCS, autoscaler monitor, dashboard process, client server), which a
worker node does not run; the sampler measures that split at the one-node base point, and a trial
on a worker node takes its measured time × :func:`~rayscale.work.sim.slots.worker_speed` (the
head's slots keep the measured pace). The runner hands the first, longest, configs to the workers'
slots and the head's last (:func:`~rayscale.work.sim.slots.dispatch_order`), and so does the
simulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import median
from typing import Any

from rayscale.errors import RayscaleError
from rayscale.options.commands import GRID_PARALLEL
from rayscale.results.forecast import ForecastCosts, ForecastPoint
from rayscale.results.scaling import node_hours
from rayscale.results.schema import Round, TrialRecord, lower_bound, trial_slots
from rayscale.work.sim.slots import capacity, dispatch_order, list_schedule, slot_speeds, worker_gap


@dataclass(frozen=True)
class GridTrace:
    """What the grid simulation needs from one measured parallel phase."""

    durations: list[float]  # each trial's task time, in submission order (longest expected first)
    costs: list[float]  # the cost model's figure for each, same order
    gap_s: float  # mean idle time of a worker between two of its tasks
    collect_s: float  # median round wall − span (the driver collecting the last results)
    warmup_s: float
    cpus_per_trial: float
    data_bytes: int
    worker_speed: float = 1.0  # a trial's time on a worker node against the measured node's

    @classmethod
    def of(
        cls,
        trials: Sequence[TrialRecord],
        rounds: list[Round],
        warmup_s: float,
        cpus_per_trial: float,
        dataset: dict[str, Any],
        worker_speed: float = 1.0,
    ) -> GridTrace:
        ordered = sorted(trials, key=lambda t: (-t.cost, t.index))
        rows = sum(int(dataset.get(k) or 0) for k in ("n_train", "n_test", "n_val"))
        return cls(
            durations=[t.end_ts - t.start_ts for t in ordered],
            costs=[t.cost for t in ordered],
            gap_s=worker_gap(trials),
            collect_s=median(max(0.0, r.wall_s - r.span_s) for r in rounds) if rounds else 0.0,
            warmup_s=warmup_s,
            cpus_per_trial=cpus_per_trial,
            data_bytes=rows * (int(dataset.get("n_features") or 0) + 1) * 8,
            worker_speed=worker_speed,
        )

    def seconds_per_cost(self) -> float:
        """The cost model fitted to the measured trials (duration = k × cost, least squares)."""
        den = sum(c * c for c in self.costs)
        return sum(c * d for c, d in zip(self.costs, self.durations, strict=True)) / den if den else 0.0

    def with_costs(self, costs: Sequence[float]) -> GridTrace:
        """The same machine running other configs: durations from the fitted cost model."""
        k = self.seconds_per_cost()
        ordered = sorted(costs, reverse=True)
        return replace(self, durations=[k * c for c in ordered], costs=ordered)


def slots_for(nodes: int, costs: ForecastCosts, cpus_per_trial: float) -> int:
    per_node = trial_slots(costs.cpus_per_node, cpus_per_trial)
    if per_node < 1:
        raise RayscaleError(
            f"--cpus-per-node {costs.cpus_per_node} cannot fit one trial of {cpus_per_trial:g} CPUs"
        )
    return nodes * per_node


def transfer_s(data_bytes: int, costs: ForecastCosts, nodes: int) -> float:
    """The data's way to the other nodes: the head holds its only copy and sends one to each of
    the ``nodes`` − 1 others through its own link (0 without ``--bandwidth-mbps``, or on one)."""
    if not costs.bandwidth_mbps:
        return 0.0
    return (nodes - 1) * data_bytes * 8 / (costs.bandwidth_mbps * 1e6)


def node_cost(nodes: int, total_s: float, costs: ForecastCosts) -> float | None:
    if costs.price_per_node_hour is None:
        return None
    return node_hours(total_s, nodes) * costs.price_per_node_hour


def predict_grid(trace: GridTrace, nodes: Sequence[int], costs: ForecastCosts) -> list[ForecastPoint]:
    work = sum(trace.durations)
    points = []
    for n in nodes:
        slots = slots_for(n, costs, trace.cpus_per_trial)
        per_node = slots // n
        speeds = slot_speeds(slots, per_node, trace.worker_speed)
        order = dispatch_order(slots, per_node)
        wall = list_schedule(trace.durations, slots, trace.gap_s, speeds, order) + trace.collect_s
        bound = lower_bound(work, max(trace.durations, default=0.0) * min(speeds), capacity(speeds))
        warmup = transfer_s(trace.data_bytes, costs, n) + trace.warmup_s
        total = (costs.provision_s if n > 1 else 0.0) + warmup + wall
        speedup = work / wall
        points.append(
            ForecastPoint(
                phase=GRID_PARALLEL.key,
                nodes=n,
                slots=slots,
                predicted_wall_s=wall,
                predicted_total_s=total,
                predicted_warmup_s=warmup,
                speedup=speedup,
                parallel_efficiency=speedup / (n * costs.cpus_per_node),
                schedule_efficiency=bound / wall,
                cost=node_cost(n, total, costs),
            )
        )
    return points
