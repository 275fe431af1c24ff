"""The one stats model: every median, spread and interval rayscale prints comes from here.

A :class:`Stats` holds every round's value (nothing is thrown away) and derives the figures
from them, as pytest-benchmark's ``Stats`` and pyperf's ``Run`` do:

* ``median`` is the true median (the mean of the two middle values for an even count);
* ``mad`` is the median absolute deviation, unscaled;
* ``ci`` is a seeded percentile bootstrap of the median (95 % by default).

A ratio of two timings measured in interleaved rounds (sequential, parallel, sequential, …)
is :func:`paired_ratio`: the ratio of the medians, with a bootstrap that resamples *pairs*,
so that drift hitting both rounds of a pair cancels instead of widening the interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 20261123
NOISY_HALF_WIDTH = 0.05  # a CI half-width above 5 % of the estimate is called noisy


@dataclass(frozen=True)
class Stats:
    """Figures derived from the values of all rounds of one timing."""

    values: tuple[float, ...]

    def __init__(self, values: Sequence[float]) -> None:
        if len(values) == 0:  # any sequence, numpy arrays included
            raise ValueError("a timing needs at least one round")
        object.__setattr__(self, "values", tuple(float(v) for v in values))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    @property
    def mean(self) -> float:
        return float(statistics.fmean(self.values))

    @property
    def stdev(self) -> float:
        """Sample standard deviation; 0 for a single round."""
        return float(statistics.stdev(self.values)) if self.n > 1 else 0.0

    @property
    def mad(self) -> float:
        centre = self.median
        return float(statistics.median(abs(v - centre) for v in self.values))

    def quantile(self, q: float) -> float:
        """The nearest-rank ``q`` quantile (an observed value: p95 of 20 trials is the 19th)."""
        ordered = sorted(self.values)
        return ordered[min(self.n - 1, max(0, round(q * (self.n - 1))))]

    def nearest_to_median(self) -> int:
        """Index of the round closest to the median (the first of equals): the one whose trials
        are shown beside the timing."""
        centre = self.median
        return min(range(self.n), key=lambda i: (abs(self.values[i] - centre), i))

    def ci(self, confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float]:
        """Percentile-bootstrap interval of the median."""
        return bootstrap([self.values], lambda a: np.median(a[0], axis=-1), confidence, seed, batched=True)


def bootstrap(
    samples: Sequence[Sequence[float]],
    statistic: Callable[[list[np.ndarray]], float | np.ndarray],
    confidence: float = CONFIDENCE,
    seed: int = SEED,
    resamples: int = RESAMPLES,
    batched: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap of ``statistic`` over the rows of ``samples`` resampled *together*
    (the same row indices for every sample, so pairs stay pairs). A single row gives a
    zero-width interval at the statistic's value."""
    arrays = [np.asarray(s, dtype=float) for s in samples]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("paired samples must have the same length")
    if n == 1:
        value = float(np.ravel(statistic([a[None, :] for a in arrays]) if batched else statistic(arrays))[0])
        return value, value
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(resamples, n))
    if batched:
        values = np.asarray(statistic([a[index] for a in arrays]), dtype=float)
    else:
        values = np.array([statistic([a[row] for a in arrays]) for row in index], dtype=float)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_ratio(
    numerator: Sequence[float], denominator: Sequence[float], seed: int = SEED
) -> tuple[float, tuple[float, float]]:
    """median(numerator) / median(denominator) over paired rounds, and its bootstrap CI."""
    point = statistics.median(numerator) / statistics.median(denominator)

    def ratio(a: list[np.ndarray]) -> np.ndarray:
        return np.median(a[0], axis=-1) / np.median(a[1], axis=-1)

    return float(point), bootstrap([numerator, denominator], ratio, seed=seed, batched=True)


def ratio_ci(
    baseline: Sequence[float], candidate: Sequence[float], confidence: float = CONFIDENCE, seed: int = SEED
) -> tuple[float, float]:
    """Bootstrap interval of median(candidate) / median(baseline) for two independent samples
    (two bundles' rounds: nothing pairs them)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    rng = np.random.default_rng(seed)
    ratios = np.median(b[rng.integers(0, len(b), size=(RESAMPLES, len(b)))], axis=1) / np.median(
        a[rng.integers(0, len(a), size=(RESAMPLES, len(a)))], axis=1
    )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return float(low), float(high)


def half_width(ci: tuple[float, float], estimate: float) -> float:
    """The CI's half-width relative to ``estimate`` (0.05 = ±5 %)."""
    return (ci[1] - ci[0]) / 2.0 / abs(estimate) if estimate else math.inf


def repeats_to_narrow(ci: tuple[float, float], estimate: float, rounds: int) -> int:
    """Rounds needed to bring the half-width under :data:`NOISY_HALF_WIDTH` (it shrinks as 1/√n)."""
    width = half_width(ci, estimate)
    if width <= NOISY_HALF_WIDTH or not math.isfinite(width):
        return rounds
    return math.ceil(rounds * (width / NOISY_HALF_WIDTH) ** 2 - 1e-9)  # 20.000000000000004 is 20


def significant(ci: tuple[float, float], no_change: float = 1.0) -> bool:
    """Whether a ratio's interval excludes ``no_change``: the difference is beyond the noise."""
    return ci[0] > no_change or ci[1] < no_change


def verdict(ci: tuple[float, float], no_change: float = 1.0) -> str:
    """'faster' when the whole interval of a time ratio (other / this) lies above 1, 'slower'
    when below, else 'no significant difference'."""
    if not significant(ci, no_change):
        return "no significant difference"
    return "faster" if ci[0] > no_change else "slower"
