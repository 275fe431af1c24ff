"""The forecast ``rayscale predict`` makes, as a versioned result like the run and scale bundles:
typed points (grid and Tune alike), the costs it assumed, the cheapest node count; ``to_json()``."""

from __future__ import annotations

from pydantic import Field, computed_field

from rayscale.options.commands import GRID_PARALLEL, TUNE
from rayscale.results.base import StrictModel

# What a point's predicted range (``predicted_min_s`` to ``predicted_max_s``) is over, by phase.
RANGE_OVER = {
    # forecasts made before the runner dispatched the grid itself; one order now, no range
    GRID_PARALLEL.key: "the grid's wall is its mean (min–max) over where Ray places the first tasks",
    TUNE.key: (
        "the sweep's wall is its median (min–max) over the start-up and tail (fit() to the first trial, "
        "and the last trial to the end) of each round of the point it is predicted from"
    ),
}


class ForecastCosts(StrictModel):
    """What a forecast adds around the measured work (all optional)."""

    cpus_per_node: int
    provision_s: float = 0.0  # a new node's pod start (KubeRay), paid once before the work
    bandwidth_mbps: float | None = None  # None: the data's transfer is not modelled
    price_per_node_hour: float | None = None
    deadline_s: float | None = None


class ForecastPoint(StrictModel):
    """One phase predicted at one node count (and, where it was measured, what was measured)."""

    phase: str  # a phase key: grid_parallel or tune
    nodes: int
    slots: int
    predicted_wall_s: float  # one warm round (grid) or the sweep (tune), as the bundle's wall
    # the wall's range (RANGE_OVER): tune over the start-up and tail of each measured round (the
    # wall takes their median); the grid's has none (one dispatch order)
    predicted_min_s: float | None = None
    predicted_max_s: float | None = None
    predicted_total_s: float  # provisioning + transfer + warm-up + the wall
    # grid: the data's transfer to the other nodes + the warm-up (what a measured warm-up holds)
    predicted_warmup_s: float | None = None
    speedup: float  # against the same work on one slot
    parallel_efficiency: float  # speedup / CPUs
    schedule_efficiency: float  # lower bound / wall
    cost: float | None
    measured_wall_s: float | None = None
    measured_min_s: float | None = None
    measured_max_s: float | None = None
    measured_warmup_s: float | None = None  # grid: the warm-up measured at this node count
    rounds_run: int | None = None  # tune: boosting rounds the replayed sweep ran
    best_score: float | None = None  # tune: the replayed sweep's best, on ``metric``
    metric: str | None = None  # tune: what ASHA judged (``val_`` prefixed on a validation split)
    stopped_early: int | None = None  # tune: trials ASHA stopped in the replay
    extrapolated_reports: int | None = None  # tune: reports ASHA asked for beyond those recorded

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_pct(self) -> float | None:
        if self.measured_wall_s is None:
            return None
        return 100.0 * (self.predicted_wall_s - self.measured_wall_s) / self.measured_wall_s

    @property
    def predicted_range(self) -> tuple[float, float] | None:
        """The predicted wall's (min, max), where they differ (what it is over: ``RANGE_OVER``)."""
        low, high = self.predicted_min_s, self.predicted_max_s
        return (low, high) if low is not None and high is not None and low != high else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def warmup_error_pct(self) -> float | None:
        if self.measured_warmup_s is None or self.predicted_warmup_s is None:
            return None
        return 100.0 * (self.predicted_warmup_s - self.measured_warmup_s) / self.measured_warmup_s


class Forecast(StrictModel):
    """``rayscale predict``: each phase at other node counts, from its smallest measured point."""

    validated: bool  # every measured point predicted from the smallest
    base: dict[str, int]  # phase -> the node count predicted from
    costs: ForecastCosts
    points: list[ForecastPoint]
    cheapest: dict[str, int | None]  # phase -> the cheapest node count within the deadline
    # phase -> a trial's time on a worker node against the measured node's
    # (rayscale.work.sim.slots.worker_speed)
    worker_speed: dict[str, float] = Field(default_factory=dict)

    def of_phase(self, phase: str) -> list[ForecastPoint]:
        return sorted((p for p in self.points if p.phase == phase), key=lambda p: p.nodes)

    def cheapest_point(self, phase: str) -> ForecastPoint | None:
        nodes = self.cheapest.get(phase)
        return next((p for p in self.of_phase(phase) if p.nodes == nodes), None)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"
