"""Synthetic records for unit tests of the math (real runs make their own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayscale.options.files import SCALE_FILE
from rayscale.results.bundle import write_scale_bundle
from rayscale.results.scaling import ScalePoint, ScaleResult
from rayscale.results.schema import Round, TrialRecord


def trial(index: int, rmse: float = 50.0, start: float = 0.0, end: float = 1.0, **fields: Any) -> TrialRecord:
    """A grid trial that fitted from ``start`` to ``end``; any field can be overridden."""
    values: dict[str, Any] = {
        "index": index,
        "params": {"n_estimators": 10 + index},
        "cost": 1.0,
        "rmse": rmse,
        "r2": 0.5,
        "mae": 40.0,
        "fit_s": end - start,
        "predict_s": 0.001,
        "queue_s": 0.0,
        "node": "10.0.0.1",
        "node_id": "n1",
        "pid": 1,
        "start_ts": start,
        "end_ts": end,
    }
    return TrialRecord(**(values | fields))


def scale_result(walls: dict[int, float], noise: float = 0.01) -> ScaleResult:
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
    write_scale_bundle(scale_result({1: 10.0, 2: 10.0 / 1.9}), a)
    write_scale_bundle(scale_result({1: 10.0, 2: 10.0 / 1.6}), b)
    return a / SCALE_FILE, b / SCALE_FILE
