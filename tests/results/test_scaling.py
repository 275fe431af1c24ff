"""The scaling math recovers known parameters from synthetic curves."""

from __future__ import annotations

import math

import pytest

from rayscale.results import scaling
from rayscale.results.schema import TrialRecord

NODES = [1, 2, 4, 8, 16, 32]


def test_speedup_and_efficiency() -> None:
    assert scaling.speedups([1, 2, 4], [8.0, 4.0, 2.5]) == [1.0, 2.0, 3.2]
    # Without a 1-node point the smallest count stands in: T(1) ≈ 2 × T(2).
    assert scaling.speedups([2, 4], [4.0, 2.0]) == [2.0, 4.0]


def test_karp_flatt_recovers_amdahls_serial_fraction() -> None:
    f = 0.05
    for n in (2, 4, 16):
        s = 1 / (f + (1 - f) / n)
        assert scaling.karp_flatt(s, n) == pytest.approx(f)
    assert scaling.karp_flatt(1.0, 1) is None


@pytest.mark.parametrize("f", [0.0, 0.02, 0.1, 0.3])
def test_amdahl_fit_recovers_the_serial_fraction(f: float) -> None:
    speedup = [1 / (f + (1 - f) / n) for n in NODES]
    fit = scaling.fit_amdahl(NODES, speedup)
    assert fit.serial_fraction == pytest.approx(f, abs=1e-6)
    assert fit.rmse < 1e-6
    assert fit.predict(64) == pytest.approx(1 / (f + (1 - f) / 64), rel=1e-5)


@pytest.mark.parametrize(("sigma", "kappa"), [(0.05, 0.0), (0.03, 0.002), (0.1, 0.01), (0.0, 0.0)])
def test_usl_fit_recovers_sigma_kappa_and_the_peak(sigma: float, kappa: float) -> None:
    speedup = [n / (1 + sigma * (n - 1) + kappa * n * (n - 1)) for n in NODES]
    fit = scaling.fit_usl(NODES, speedup)
    assert fit.sigma == pytest.approx(sigma, abs=1e-9)
    assert fit.kappa == pytest.approx(kappa, abs=1e-9)
    assert fit.rmse < 1e-9
    if kappa > 0:
        assert fit.peak_nodes == pytest.approx(math.sqrt((1 - sigma) / kappa))
    else:
        assert fit.peak_nodes is None


def test_usl_fit_with_noise_stays_close() -> None:
    sigma, kappa = 0.04, 0.001
    noise = [1.01, 0.99, 1.02, 0.98, 1.0, 1.01]
    speedup = [e * n / (1 + sigma * (n - 1) + kappa * n * (n - 1)) for n, e in zip(NODES, noise, strict=True)]
    fit = scaling.fit_usl(NODES, speedup)
    assert fit.sigma == pytest.approx(sigma, abs=0.02)
    assert fit.kappa == pytest.approx(kappa, abs=0.001)


def _trial(index: int, cost: float, fit_s: float, node: str = "10.0.0.1") -> TrialRecord:
    return TrialRecord(
        index=index,
        params={},
        cost=cost,
        rmse=1.0,
        r2=0.5,
        mae=1.0,
        fit_s=fit_s,
        predict_s=0.0,
        queue_s=0.0,
        node=node,
        node_id=node,
        pid=1,
        start_ts=0.0,
        end_ts=fit_s,
    )


def test_stragglers_are_slower_than_the_cost_model_and_named_by_node() -> None:
    jitter = [1.0, 1.03, 0.97, 1.02, 0.98, 1.01, 0.99, 1.04, 0.96, 1.0]
    trials = [_trial(i, cost=100.0 * (i + 1), fit_s=0.01 * (i + 1) * j) for i, j in enumerate(jitter)]
    trials.append(_trial(10, cost=300.0, fit_s=0.03 * 2.5, node="10.0.0.9"))  # 2.5× slower than predicted
    trials.append(_trial(11, cost=300.0, fit_s=0.03 * 0.5))  # fast outliers are not stragglers
    found = scaling.stragglers(trials)
    assert [(s.index, s.node) for s in found] == [(10, "10.0.0.9")]
    assert found[0].expected_s == pytest.approx(0.03, rel=0.05)
    assert scaling.stragglers(trials[:3]) == []
    # far outside the spread but only 30 % slower: a slower node, not a straggler
    mild = [*trials[:10], _trial(10, cost=300.0, fit_s=0.03 * 1.3, node="10.0.0.9")]
    assert scaling.stragglers(mild) == []
    assert [s.index for s in scaling.stragglers(mild, slower=1.2)] == [10]


def test_cost_and_the_cheapest_node_count_meeting_a_deadline() -> None:
    assert scaling.node_hours(1800, 4) == 2.0
    points = [(1, 3600.0), (2, 1900.0), (4, 1000.0), (8, 600.0)]
    # $1/node-hour: 1 node costs 1.0 but misses a 2000 s deadline; 2 nodes cost 1.056; 4 cost 1.11.
    assert scaling.cheapest_meeting_deadline(points, 1.0, 2000) == (2, pytest.approx(2 * 1900 / 3600))
    assert scaling.cheapest_meeting_deadline(points, 1.0, 100) is None


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError):
        scaling.speedups([1, 2], [1.0])
    with pytest.raises(ValueError):
        scaling.fit_usl([0, 1], [1.0, 1.0])
