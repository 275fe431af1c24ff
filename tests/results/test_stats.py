"""The stats model: medians, spreads and bootstrap intervals checked against known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rayscale.results.stats import (
    Stats,
    bootstrap,
    half_width,
    paired_ratio,
    ratio_ci,
    repeats_to_narrow,
    verdict,
)


def test_figures_of_a_known_sample() -> None:
    s = Stats([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    assert s.median == 3.5  # mean of the two middle values, not the lower one
    assert (s.min, s.max, s.n) == (1.0, 9.0, 6)
    assert s.mean == pytest.approx(23 / 6)
    assert s.stdev == pytest.approx(float(np.std(s.values, ddof=1)))
    assert s.mad == 2.0  # |deviations| 0.5 2.5 0.5 2.5 1.5 5.5 → median 2.0
    assert s.nearest_to_median() == 0
    assert Stats([7.0]).stdev == 0.0 and Stats([7.0]).ci() == (7.0, 7.0)
    with pytest.raises(ValueError):
        Stats([])


@pytest.mark.parametrize(
    ("draw", "true_median"),
    [
        (lambda rng, n: rng.normal(10.0, 2.0, n), 10.0),
        (lambda rng, n: rng.exponential(1.0, n), math.log(2.0)),
        (lambda rng, n: rng.lognormal(0.0, 0.5, n), 1.0),
    ],
    ids=["normal", "exponential", "lognormal"],
)
def test_the_median_ci_covers_the_true_median_about_95_percent_of_the_time(draw, true_median) -> None:
    rng = np.random.default_rng(7)
    samples = 300
    covered = sum(
        low <= true_median <= high for low, high in (Stats(draw(rng, 41)).ci(seed=i) for i in range(samples))
    )
    # The percentile bootstrap of a median is close to nominal at n = 41; 300 samples give a
    # binomial standard error of 1.3 points, so 88–99 % is a generous but falsifiable band.
    assert 0.88 <= covered / samples <= 0.99, covered / samples


def test_the_ci_narrows_as_one_over_root_n() -> None:
    rng = np.random.default_rng(11)
    widths = {
        n: np.mean([np.subtract(*Stats(rng.normal(0, 1, n)).ci()[::-1]) for _ in range(40)])
        for n in (25, 400)
    }
    # Asymptotic width of a 95 % median CI for N(0, 1): 2 × 1.96 × 1.2533 / √n.
    for n, width in widths.items():
        assert width == pytest.approx(2 * 1.96 * 1.2533 / math.sqrt(n), rel=0.25), (n, width)
    assert widths[25] / widths[400] == pytest.approx(4.0, rel=0.25)


def test_the_bootstrap_is_seeded() -> None:
    values = list(np.random.default_rng(5).normal(10, 1, 25))
    assert Stats(values).ci() == Stats(values).ci()
    assert Stats(values).ci(seed=1) != Stats(values).ci(seed=2)


def test_pairing_cancels_drift_that_hits_both_rounds_of_a_pair() -> None:
    drift = np.random.default_rng(3).uniform(0.5, 2.0, 15)  # the machine's speed, round by round
    sequential, parallel = 4.0 * drift, 2.0 * drift
    ratio, (low, high) = paired_ratio(list(sequential), list(parallel))
    assert ratio == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)
    # Taken as two independent samples, the same rounds say far less.
    low_i, high_i = ratio_ci(list(parallel), list(sequential))
    assert high_i - low_i > 0.5


def test_paired_samples_must_pair() -> None:
    with pytest.raises(ValueError, match="same length"):
        bootstrap([[1.0, 2.0], [1.0]], lambda a: float(np.median(a[0])))


@pytest.mark.parametrize(
    ("ci", "said"),
    [((1.02, 1.3), "faster"), ((0.7, 0.97), "slower"), ((0.95, 1.05), "no significant difference")],
)
def test_verdict_follows_the_interval(ci: tuple[float, float], said: str) -> None:
    assert verdict(ci) == said


def test_half_width_and_the_repeats_that_would_narrow_it() -> None:
    assert half_width((1.8, 2.2), 2.0) == pytest.approx(0.1)
    assert repeats_to_narrow((1.8, 2.2), 2.0, 5) == 20  # ±10 % → ±5 % needs 4× the rounds
    assert repeats_to_narrow((1.95, 2.05), 2.0, 5) == 5  # already within ±5 %
