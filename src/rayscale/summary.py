"""Figures derived from trial records: makespan lower bound, efficiency, speedup, best model."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rayscale.results import BestModel, TrialRecord

METRICS = ("rmse", "r2", "mae")


def lower_bound(fit_seconds: Sequence[float], cpus: int) -> float:
    """No schedule on ``cpus`` CPUs can finish sooner than max(Σ fit / CPUs, longest fit)."""
    if cpus <= 0:
        raise ValueError("cpus must be positive")
    if not fit_seconds:
        return 0.0
    return max(sum(fit_seconds) / cpus, max(fit_seconds))


def efficiency(bound_s: float, wall_s: float) -> float:
    """Share of the ideal a run achieved: 1.0 means it finished at the lower bound."""
    return bound_s / wall_s if wall_s > 0 else 0.0


def speedup(sequential_s: float, parallel_s: float) -> float:
    return sequential_s / parallel_s if parallel_s > 0 else math.inf


def makespan(trials: Sequence[TrialRecord]) -> float:
    """First start to last end across the trials (the cluster's busy window)."""
    if not trials:
        return 0.0
    return max(t.end_ts for t in trials) - min(t.start_ts for t in trials)


def best(trials: Sequence[TrialRecord]) -> BestModel:
    """Lowest RMSE; ties go to the earlier config so the choice is deterministic."""
    top = min(trials, key=lambda t: (t.rmse, t.index))
    return BestModel(index=top.index, params=top.params, rmse=top.rmse, r2=top.r2, mae=top.mae)


def mismatches(a: Sequence[TrialRecord], b: Sequence[TrialRecord], rel_tol: float = 1e-9) -> list[str]:
    """Configs whose metrics differ between two runs of the same grid (empty when identical)."""
    by_index = {t.index: t for t in b}
    problems = []
    for t in a:
        other = by_index.get(t.index)
        if other is None:
            problems.append(f"config {t.index} missing from the second run")
            continue
        for name in METRICS:
            x, y = getattr(t, name), getattr(other, name)
            if not math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-12):
                problems.append(f"config {t.index}: {name} {x!r} != {y!r}")
    problems += [
        f"config {i} missing from the first run" for i in sorted(set(by_index) - {t.index for t in a})
    ]
    return problems
