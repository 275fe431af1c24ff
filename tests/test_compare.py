"""``rayscale compare``: figures of two bundles and regression thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayscale.bundle import SCALE_FILE, write_scale_bundle
from rayscale.compare import compare, figures, parse_thresholds
from rayscale.errors import RayscaleError
from rayscale.schema import Round, ScalePoint, ScaleResult


def _scale(walls: dict[int, float], noise: float = 0.01) -> ScaleResult:
    """A scaling bundle whose every point has three rounds: the wall ×(1 − noise, 1, 1 + noise)."""
    base = walls[1]
    points = [
        ScalePoint(
            phase="grid_parallel",
            nodes=n,
            cpus=n,
            rounds=[
                Round(wall_s=w * f, busy_s=w * n * 0.9, longest_s=w * 0.1, span_s=w * 0.95)
                for f in (1 - noise, 1.0, 1 + noise)
            ],
            lower_bound_s=w * 0.9,
            speedup=base / w,
            parallel_efficiency=base / w / n,
            karp_flatt=None,
            node_hours=w * n / 3600,
            cost_per_trial=None,
            connect_s=1.0,
            warmup_s=0.5,
            trials_per_node={},
            stragglers=[],
            trials=[],
        )
        for n, w in walls.items()
    ]
    return ScaleResult(
        run_id="r",
        created_utc="t",
        command=[],
        environment={},
        options={},
        dataset={},
        mode="local",
        cpus_per_node=1,
        node_counts=sorted(walls),
        points=points,
        fits=[],
    )


def write_scale_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A baseline with 1.9x at 2 nodes and a candidate with 1.6x (about 16 % worse)."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_scale_bundle(_scale({1: 10.0, 2: 10.0 / 1.9}), a)
    write_scale_bundle(_scale({1: 10.0, 2: 10.0 / 1.6}), b)
    return a / SCALE_FILE, b / SCALE_FILE


def test_scale_figures_name_phase_and_nodes() -> None:
    f = figures(_scale({1: 10.0, 2: 5.0}))
    assert f["grid_parallel.speedup@2"] == 2.0 and f["speedup"] == 2.0 and f["parallel_efficiency"] == 1.0
    assert f["wall_s"] == 5.0 and f["grid_parallel.wall_s@1"] == 10.0


def test_regressions_follow_each_figures_direction() -> None:
    a, b = _scale({1: 10.0, 2: 5.0}), _scale({1: 10.0, 2: 6.0})
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
        compare(_scale({1: 1.0, 2: 0.5}), _scale({1: 1.0, 2: 0.5}), {"latency": 5})
