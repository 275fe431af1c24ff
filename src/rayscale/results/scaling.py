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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, computed_field
from scipy.optimize import minimize_scalar, nnls

from rayscale.results.base import StrictModel
from rayscale.results.schema import (
    BundleHeader,
    Round,
    Rounds,
    TrialRecord,
    TuneTrial,
    breakdown,
)
from rayscale.results.stats import Stats

# -- the scaling bundle's models ----------------------------------------------------------------


class StragglerRecord(StrictModel):
    index: int
    node: str
    node_id: str
    fit_s: float
    expected_s: float


class Emulation(StrictModel):
    """How ``--isolate`` shaped a point's nodes, and whether the host kept up
    (:mod:`rayscale.work.cluster.isolated`)."""

    isolated: bool = True
    cpu_limit: float  # cores per node: the CFS quota of its cgroup
    cfs_period_us: int
    link_mbps: float | None = None  # each node's link, each way
    link_delay_ms: float | None = None
    host_idle: float | None  # share of the host's CPU time idle while trials ran
    node_cpu: dict[str, float] = Field(
        default_factory=dict
    )  # cores each node (by address) got while a trial ran on it
    # share of CFS periods each node was throttled in, trials running
    node_throttled: dict[str, float] = Field(default_factory=dict)
    # cores each node's own Ray processes used (raylet, agents; not workers), trials running
    ray_cpu: dict[str, float] = Field(default_factory=dict)
    cluster_cpu: float | None = None  # cores the head's cluster processes used (GCS, autoscaler)
    faithful: bool
    why: str | None = None  # what made it unfaithful


class ScalePoint(Rounds):
    """One phase at one node count: every round, and what the analysis derives.

    ``speedup`` is T(smallest node count) × its nodes / T(N), i.e. against one node;
    ``parallel_efficiency`` is that speedup / N (speedup / CPUs at one CPU per node).
    """

    phase: Literal["grid_parallel", "tune"]
    nodes: int
    cpus: int
    lower_bound_s: float
    speedup: float
    parallel_efficiency: float
    karp_flatt: float | None
    node_hours: float
    cost_per_trial: float | None
    connect_s: float
    warmup_s: float
    resize_s: float | None = None  # --kuberay: patch to every new raylet alive
    first_trial_s: float | None = None  # --kuberay: patch to the first trial on a node that joined
    emulation: Emulation | None = None  # --isolate: the nodes' CPU limit and link, and fidelity
    trials_per_node: dict[str, int]
    stragglers: list[StragglerRecord]
    breakdown: dict[str, float] = Field(default_factory=dict)
    trials: list[TrialRecord] | list[TuneTrial]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def schedule_efficiency(self) -> float:
        return self.lower_bound_s / self.wall_s

    @property
    def round_speedups(self) -> list[float]:
        """Each round's speedup against the same base as ``speedup``: the spread behind it."""
        work = self.speedup * self.wall_s  # T(smallest node count) × its nodes
        return [work / w for w in self.rounds_s]


class ScaleFit(StrictModel):
    phase: str
    points: int  # node counts fitted; two points make an exact interpolation, not a prediction
    amdahl_serial_fraction: float
    amdahl_rmse: float
    usl_sigma: float
    usl_kappa: float
    usl_rmse: float
    usl_peak_nodes: float | None


class Cheapest(StrictModel):
    phase: str
    nodes: int
    cost: float
    wall_s: float


class ScaleResult(BundleHeader):
    """A node-count sweep: the same work on 1..N nodes, with scaling-law fits and cost."""

    kind: Literal["scale"] = "scale"
    mode: Literal["local", "kuberay", "address"]
    cpus_per_node: int
    node_counts: list[int]
    points: list[ScalePoint]
    fits: list[ScaleFit]
    price_per_node_hour: float | None = None
    deadline_s: float | None = None
    cheapest: list[Cheapest] = Field(default_factory=list)


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


def stragglers(
    trials: Sequence[TrialRecord], mads: float = 3.0, slower: float = 1.5
) -> list[StragglerRecord]:
    """Trials slower than the cost model predicts by more than ``mads`` MADs and by at least
    ``slower`` times.

    The model is time = k × cost with k the median seconds per cost unit. A trial's log-ratio of
    measured to expected time is compared with the median log-ratio; the spread is the median
    absolute deviation (scaled to σ for normal data). Only slow outliers count. The cost model fits
    so tightly that 3 MADs can be a few percent; the ``slower`` floor keeps a node that is merely
    a little slower (a head whose Ray processes share its CPU) from being named beside a sick one.
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
        StragglerRecord(index=t.index, node=t.node, node_id=t.node_id, fit_s=t.fit_s, expected_s=k * t.cost)
        for t, x in zip(usable, logs.values, strict=True)
        if (x - centre) / mad > mads and x - centre >= math.log(slower)
    ]


def node_hours(wall_s: float, nodes: int) -> float:
    return wall_s * nodes / 3600.0


def cheapest_meeting_deadline(
    points: Sequence[tuple[int, float]], price_per_node_hour: float, deadline_s: float
) -> tuple[int, float] | None:
    """(nodes, cost) of the cheapest node count whose wall meets ``deadline_s`` (measured by
    ``rayscale scale``, or predicted by ``rayscale predict``); fewer nodes win a tie."""
    feasible = [(n, node_hours(w, n) * price_per_node_hour) for n, w in points if w <= deadline_s]
    return min(feasible, key=lambda p: (p[1], p[0])) if feasible else None


def _check(nodes: Sequence[int], values: Sequence[float]) -> None:
    if len(nodes) != len(values) or not nodes:
        raise ValueError("need one value per node count")
    if any(n < 1 for n in nodes) or any(v <= 0 for v in values):
        raise ValueError("node counts and values must be positive")


# -- from measurements to a scaling result ------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One phase at one node count, as measured: every round and the representative trials.
    ``rayscale scale`` analyses these into points; ``rayscale predict`` replays them."""

    phase: str
    nodes: int
    cpus: int
    slots: int
    rounds: list[Round]
    trials: list[TrialRecord] | list[TuneTrial]
    lower_bound_s: float
    connect_s: float = 0.0
    warmup_s: float = 0.0
    resize_s: float | None = None
    first_trial_s: float | None = None
    emulation: Emulation | None = None

    @property
    def walls(self) -> Stats:
        return Stats([r.wall_s for r in self.rounds])

    @classmethod
    def of(cls, point: ScalePoint, slots: int) -> Measurement:
        """A stored scale point read back as what was measured."""
        return cls(
            phase=point.phase,
            nodes=point.nodes,
            cpus=point.cpus,
            slots=slots,
            rounds=point.rounds,
            trials=point.trials,
            lower_bound_s=point.lower_bound_s,
            connect_s=point.connect_s,
            warmup_s=point.warmup_s,
            resize_s=point.resize_s,
            first_trial_s=point.first_trial_s,
            emulation=point.emulation,
        )


def _point(m: Measurement, base: Measurement, speedup: float, price: float | None) -> ScalePoint:
    wall = m.walls.median
    hours = node_hours(wall, m.nodes)
    records = [t for t in m.trials if isinstance(t, TrialRecord)]
    return ScalePoint(
        phase=m.phase,  # type: ignore[arg-type]
        nodes=m.nodes,
        cpus=m.cpus,
        rounds=m.rounds,
        lower_bound_s=m.lower_bound_s,
        speedup=speedup,
        parallel_efficiency=speedup / m.nodes,
        karp_flatt=karp_flatt(speedup, m.nodes),
        node_hours=hours,
        cost_per_trial=hours * price / len(m.trials) if price else None,
        connect_s=m.connect_s,
        warmup_s=m.warmup_s,
        resize_s=m.resize_s,
        first_trial_s=m.first_trial_s,
        emulation=m.emulation,
        trials_per_node=dict(Counter(t.node_id for t in m.trials)),
        stragglers=stragglers(records),
        breakdown=breakdown(
            Rounds(rounds=base.rounds),
            Rounds(rounds=m.rounds),
            m.cpus,
            m.slots,
            base.walls.median,
            wall,
            base_cpus=base.cpus,
        ),
        trials=m.trials,
    )


def _fit(phase: str, nodes: list[int], speedup: list[float]) -> ScaleFit:
    amdahl, usl = fit_amdahl(nodes, speedup), fit_usl(nodes, speedup)
    return ScaleFit(
        phase=phase,
        points=len(nodes),
        amdahl_serial_fraction=amdahl.serial_fraction,
        amdahl_rmse=amdahl.rmse,
        usl_sigma=usl.sigma,
        usl_kappa=usl.kappa,
        usl_rmse=usl.rmse,
        usl_peak_nodes=usl.peak_nodes,
    )


def analyse(
    measured: Sequence[Measurement], price: float | None, deadline: float | None
) -> tuple[list[ScalePoint], list[ScaleFit], list[Cheapest]]:
    """Speedup, efficiencies, the breakdown, Karp–Flatt, fits and cost from every phase's measurements."""
    points: list[ScalePoint] = []
    fits: list[ScaleFit] = []
    cheapest: list[Cheapest] = []
    for phase in dict.fromkeys(m.phase for m in measured):
        series = sorted((m for m in measured if m.phase == phase), key=lambda m: m.nodes)
        nodes, walls = [m.nodes for m in series], [m.walls.median for m in series]
        speedup = speedups(nodes, walls)
        points += [_point(m, series[0], s, price) for m, s in zip(series, speedup, strict=True)]
        if len(series) >= 2:
            fits.append(_fit(phase, nodes, speedup))
        if price is not None and deadline is not None:
            best = cheapest_meeting_deadline(list(zip(nodes, walls, strict=True)), price, deadline)
            if best is not None:
                wall = walls[nodes.index(best[0])]
                cheapest.append(Cheapest(phase=phase, nodes=best[0], cost=best[1], wall_s=wall))
    return points, fits, cheapest


# -- what the scaling plot draws -----------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """One phase of a scaling result as the plot draws it: the points with min–max whiskers
    (from every round) and, with two or more points, the fitted Amdahl and USL curves."""

    phase: str
    nodes: list[int]
    speedup: list[float]
    speedup_range: list[tuple[float, float]]
    efficiency: list[float]
    efficiency_range: list[tuple[float, float]]
    schedule_efficiency: list[float]
    wall: list[float]
    wall_range: list[tuple[float, float]]
    lower_bound: list[float]
    fit: ScaleFit | None
    xs: list[float]  # where the fitted curves are evaluated
    amdahl: list[float]
    usl: list[float]


def curves(result: ScaleResult, samples: int = 200) -> list[Curve]:
    top = max(max(result.node_counts), 2)
    xs = [1 + (top - 1) * i / (samples - 1) for i in range(samples)]
    out = []
    for phase in dict.fromkeys(p.phase for p in result.points):
        pts = sorted((p for p in result.points if p.phase == phase), key=lambda p: p.nodes)
        ranges = [(min(p.round_speedups), max(p.round_speedups)) for p in pts]
        fit = next((f for f in result.fits if f.phase == phase), None)
        amdahl = AmdahlFit(fit.amdahl_serial_fraction, fit.amdahl_rmse) if fit else None
        usl = USLFit(fit.usl_sigma, fit.usl_kappa, fit.usl_rmse) if fit else None
        out.append(
            Curve(
                phase=phase,
                nodes=[p.nodes for p in pts],
                speedup=[p.speedup for p in pts],
                speedup_range=ranges,
                efficiency=[p.parallel_efficiency for p in pts],
                efficiency_range=[
                    (lo / p.nodes, hi / p.nodes) for (lo, hi), p in zip(ranges, pts, strict=True)
                ],
                schedule_efficiency=[p.schedule_efficiency for p in pts],
                wall=[p.wall_s for p in pts],
                wall_range=[(p.wall_min_s, p.wall_max_s) for p in pts],
                lower_bound=[p.lower_bound_s for p in pts],
                fit=fit,
                xs=xs,
                amdahl=[amdahl.predict(x) for x in xs] if amdahl else [],
                usl=[usl.predict(x) for x in xs] if usl else [],
            )
        )
    return out
