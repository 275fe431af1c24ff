"""ASHA's outcome over replays of one sweep, as the bundle stores it (made by
:mod:`rayscale.work.tune.outcomes`)."""

from __future__ import annotations

from pydantic import computed_field

from rayscale.results.base import StrictModel
from rayscale.results.stats import Stats


class AshaOutcomes(StrictModel):
    """ASHA's answer as a distribution: the sweep replayed ``replays`` times through Ray Tune's
    ``ASHAScheduler`` with its own reports to the full budget, each report's arrival jittered by
    the sweep's timing noise (``noise``: the spread of log seconds per round within its trials),
    its first trials' start offsets dealt in a random order, its dispatch gaps and the pending
    trial each freed slot takes drawn from the run's own (``rayscale.work.tune.outcomes.RunNoise``).

    ``best`` holds the replays' best test scores on the selection metric; ``full_budget_best``
    is the best test score had every trial run to ``max_rounds`` (``full_budget_trial``), and
    ``found_share`` the share of replays that chose that trial."""

    replays: int
    seed: int
    noise: float
    best: list[float]  # one per replay
    rounds_run: list[int]  # one per replay
    found_share: float
    full_budget_trial: str
    full_budget_best: float
    observed: float  # this run's best test score
    observed_found: bool  # whether this run chose the full-budget best
    curves_s: float  # the curves pass's wall, outside the Tune timings

    @computed_field  # type: ignore[prop-decorator]
    @property
    def best_quantiles(self) -> dict[str, float]:
        """min, p5, median, p95 and max of the replays' best."""
        stats = Stats(self.best)
        return {"min": stats.min, "p5": stats.quantile(0.05), "median": stats.median,
                "p95": stats.quantile(0.95), "max": stats.max}  # fmt: skip

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rounds_median(self) -> float:
        return Stats([float(r) for r in self.rounds_run]).median
