"""``rayscale compare``: figures of two bundles and regression thresholds."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from factories import scale_result, trial  # tests/factories.py
from rayscale.errors import RayscaleError
from rayscale.options.commands import parse_thresholds
from rayscale.results.compare import Comparison, compare, figures
from rayscale.results.schema import GridResult, ParallelPhase, Result, Round, SequentialPhase
from rayscale.views.report import write_junit


def test_scale_figures_name_phase_and_nodes() -> None:
    f = figures(scale_result({1: 10.0, 2: 5.0}))
    assert f["grid_parallel.speedup@2"] == 2.0 and f["speedup"] == 2.0 and f["parallel_efficiency"] == 1.0
    assert f["wall_s"] == 5.0 and f["grid_parallel.wall_s@1"] == 10.0


def test_regressions_follow_each_figures_direction() -> None:
    a, b = scale_result({1: 10.0, 2: 5.0}), scale_result({1: 10.0, 2: 6.0})
    rows, failures = compare(a, b, {"speedup": 10.0, "wall_s": 25.0})
    assert failures == ["speedup regressed 16.7% (limit 10%): 2 → 1.667"]  # wall +20 % is inside 25 %
    by_name = {r.figure: r for r in rows}
    assert by_name["wall_s"].regression_pct() == pytest.approx(20.0)
    assert by_name["speedup"].regression_pct() == pytest.approx(100 / 6)
    # An improvement is never a regression.
    assert compare(b, a, {"speedup": 0.0, "wall_s": 0.0})[1] == []


@pytest.mark.parametrize("bad", ["speedup", "speedup:", "speedup:fast", ":5%", "speedup:-1%"])
def test_bad_thresholds(bad: str) -> None:
    with pytest.raises(RayscaleError, match="is not FIGURE:PERCENT"):
        parse_thresholds([bad])


def test_unknown_figure() -> None:
    with pytest.raises(RayscaleError, match="not a figure both bundles have"):
        compare(scale_result({1: 1.0, 2: 0.5}), scale_result({1: 1.0, 2: 0.5}), {"latency": 5})


def _run(seed: int, slower: float = 1.0, noise: float = 0.1) -> Result:
    """A grid run bundle with 5 noisy interleaved rounds (uniform ±noise); ``slower`` multiplies
    every parallel round's times."""
    rng = np.random.default_rng(seed)
    trials = [trial(i, rmse=50.0 + i, start=float(i), end=float(i) + 1.0, node="n") for i in range(4)]

    def rounds(wall: float, factor: float) -> list[Round]:
        return [
            Round(wall_s=w, busy_s=w * 0.9, longest_s=w / 4, span_s=w * 0.95)
            for w in wall * factor * rng.uniform(1 - noise, 1 + noise, 5)
        ]

    grid = GridResult(
        configs=4,
        cpus=2,
        nodes=1,
        sequential=SequentialPhase(rounds=rounds(4.0, 1.0), trials=trials),
        parallel=ParallelPhase(
            rounds=rounds(2.2, slower), trials=trials, connect_s=1.0, warmup_s=1.0, cpus_per_trial=1
        ),
    )
    return Result(
        run_id=f"r{seed}",
        created_utc="t",
        command=[],
        environment={},
        options={"grid": "seed"},
        dataset={"spec": "diabetes"},
        grid=grid,
    )


GATES = {"speedup": 5.0, "parallel_efficiency": 5.0, "wall_s": 5.0, "schedule_efficiency": 5.0}


@pytest.mark.parametrize("seed", range(20))
def test_identical_bundles_never_fail(seed: int) -> None:
    bundle = _run(seed)
    rows, failures = compare(bundle, bundle, {name: 0.0 for name in GATES})
    assert failures == []
    assert {r.verdict for r in rows} <= {"within noise", "—"}


@pytest.mark.parametrize("seed", range(20))
def test_parallel_rounds_all_one_and_a_half_times_slower_always_fail(seed: int) -> None:
    a, b = _run(seed), _run(seed + 1000, slower=1.5)
    rows, failures = compare(a, b, GATES)
    assert [f.split()[0] for f in failures] == ["speedup", "parallel_efficiency", "wall_s"]
    verdicts = {r.figure: r.verdict for r in rows}
    assert verdicts["speedup"] == verdicts["wall_s"] == "worse"
    assert verdicts["schedule_efficiency"] == "within noise"  # the schedule itself did not change


def test_a_small_noisy_difference_is_within_noise() -> None:
    a, b = _run(1, noise=0.2), _run(2, slower=1.03, noise=0.2)
    rows, failures = compare(a, b, {"wall_s": 1.0})
    assert failures == []
    assert next(r for r in rows if r.figure == "wall_s").verdict == "within noise"


def test_bundles_of_different_datasets_are_not_compared_unless_asked() -> None:
    a, b = _run(1), _run(2).model_copy(update={"dataset": {"spec": "friedman1:5000"}})
    with pytest.raises(RayscaleError, match="datasets differ"):
        compare(a, b, {})
    assert compare(a, b, {}, allow_different=True)[0]


def test_junit_lists_one_case_per_gate(tmp_path: Path) -> None:
    a, b = _run(1), _run(2, slower=1.5)
    gates = {"speedup": 5.0, "schedule_efficiency": 5.0}
    rows, failures = compare(a, b, gates)
    write_junit(tmp_path / "verdicts.xml", Comparison("a → b", rows, gates, failures))
    suite = ElementTree.parse(tmp_path / "verdicts.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["speedup:5%"].find("failure") is not None
    assert cases["schedule_efficiency:5%"].find("failure") is None
