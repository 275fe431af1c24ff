"""Scaling analysis: speedup and efficiency over node counts, scaling-law fits, stragglers, cost.

Given the wall time T(N) of the same work on N nodes:

* speedup S(N) = T(1) / T(N), efficiency E(N) = S(N) / N;
* Karp–Flatt serial fraction e(N) = (1/S − 1/N) / (1 − 1/N), per point (N > 1);
* Amdahl: S(N) = 1 / (f + (1 − f) / N), the serial fraction f fitted by least squares;
* Universal Scalability Law: S(N) = N / (1 + σ(N − 1) + κ N (N − 1)), with σ (contention) and
  κ (coherency) fitted by non-negative least squares; with κ > 0 the speedup peaks at
  N* = sqrt((1 − σ) / κ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar, nnls

from rayscale.schema import TrialRecord
from rayscale.stats import Stats


@dataclass(frozen=True)
class AmdahlFit:
    serial_fraction: float
    rmse: float

    def predict(self, nodes: float) -> float:
        return 1.0 / (self.serial_fraction + (1.0 - self.serial_fraction) / nodes)


@dataclass(frozen=True)
class USLFit:
    sigma: float
    kappa: float
    rmse: float

    def predict(self, nodes: float) -> float:
        return nodes / (1.0 + self.sigma * (nodes - 1.0) + self.kappa * nodes * (nodes - 1.0))

    @property
    def peak_nodes(self) -> float | None:
        """Node count of the highest speedup, or None when the curve never turns down (κ = 0)."""
        if self.kappa <= 0 or self.sigma >= 1:
            return None
        return math.sqrt((1.0 - self.sigma) / self.kappa)


def speedups(nodes: Sequence[int], walls: Sequence[float]) -> list[float]:
    """S(N) = T(1) / T(N); the smallest node count stands in for 1 when 1 was not measured."""
    _check(nodes, walls)
    base_nodes = min(nodes)
    base = walls[list(nodes).index(base_nodes)] * base_nodes
    return [base / w for w in walls]


def karp_flatt(speedup: float, nodes: int) -> float | None:
    """The experimentally determined serial fraction; undefined at N = 1."""
    if nodes <= 1 or speedup <= 0:
        return None
    return (1.0 / speedup - 1.0 / nodes) / (1.0 - 1.0 / nodes)


def fit_amdahl(nodes: Sequence[int], speedup: Sequence[float]) -> AmdahlFit:
    """Least-squares serial fraction f in [0, 1]."""
    _check(nodes, speedup)
    n, s = np.asarray(nodes, float), np.asarray(speedup, float)

    def loss(f: float) -> float:
        return float(np.sum((1.0 / (f + (1.0 - f) / n) - s) ** 2))

    best = minimize_scalar(loss, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-10})
    f = float(best.x)
    return AmdahlFit(serial_fraction=f, rmse=math.sqrt(loss(f) / len(n)))


def fit_usl(nodes: Sequence[int], speedup: Sequence[float]) -> USLFit:
    """σ, κ ≥ 0 by non-negative least squares on the USL's linear form N/S − 1 = σ(N−1) + κN(N−1)."""
    _check(nodes, speedup)
    n, s = np.asarray(nodes, float), np.asarray(speedup, float)
    design = np.column_stack([n - 1.0, n * (n - 1.0)])
    (sigma, kappa), _ = nnls(design, n / s - 1.0)
    fit = USLFit(sigma=float(sigma), kappa=float(kappa), rmse=0.0)
    residual = np.array([fit.predict(x) for x in n]) - s
    return USLFit(sigma=fit.sigma, kappa=fit.kappa, rmse=float(math.sqrt(np.mean(residual**2))))


@dataclass(frozen=True)
class Straggler:
    index: int
    node: str
    node_id: str
    fit_s: float
    expected_s: float


def stragglers(trials: Sequence[TrialRecord], mads: float = 3.0) -> list[Straggler]:
    """Trials slower than the cost model predicts by more than ``mads`` MADs.

    The model is time = k × cost with k the median seconds per cost unit. A trial's log-ratio of
    measured to expected time is compared with the median log-ratio; the spread is the median
    absolute deviation (scaled to σ for normal data). Only slow outliers count.
    """
    usable = [t for t in trials if t.cost > 0 and t.fit_s > 0]
    if len(usable) < 4:
        return []
    k = Stats([t.fit_s / t.cost for t in usable]).median
    logs = Stats([math.log(t.fit_s / (k * t.cost)) for t in usable])
    centre, mad = logs.median, 1.4826 * logs.mad
    if mad == 0:
        return []
    return [
        Straggler(t.index, t.node, t.node_id, t.fit_s, k * t.cost)
        for t, x in zip(usable, logs.values, strict=True)
        if (x - centre) / mad > mads
    ]


def node_hours(wall_s: float, nodes: int) -> float:
    return wall_s * nodes / 3600.0


def cheapest_meeting_deadline(
    points: Sequence[tuple[int, float]], price_per_node_hour: float, deadline_s: float
) -> tuple[int, float] | None:
    """(nodes, cost) of the cheapest measured node count whose wall meets ``deadline_s``."""
    feasible = [(n, node_hours(w, n) * price_per_node_hour) for n, w in points if w <= deadline_s]
    return min(feasible, key=lambda p: (p[1], p[0])) if feasible else None


def _check(nodes: Sequence[int], values: Sequence[float]) -> None:
    if len(nodes) != len(values) or not nodes:
        raise ValueError("need one value per node count")
    if any(n < 1 for n in nodes) or any(v <= 0 for v in values):
        raise ValueError("node counts and values must be positive")
