"""Synthetic records for unit tests of the math (real runs make their own)."""

from __future__ import annotations

from typing import Any

from rayscale.results.schema import TrialRecord


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
