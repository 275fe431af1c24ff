"""Shared test setup.

Ray >= 2.59 enables token authentication for local clusters by default. The tests set
``RAY_AUTH_MODE=token`` on purpose — the mode users get — so every embedded Ray they start
generates and uses a token (override with ``RAYSCALE_TEST_AUTH_MODE=disabled``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from promstack import PromStack, start_prom_stack  # tests/promstack.py

os.environ["RAY_AUTH_MODE"] = os.environ.get("RAYSCALE_TEST_AUTH_MODE", "token")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.pop("RAY_ADDRESS", None)  # never attach to a cluster that happens to be running


@pytest.fixture
def small_grid(tmp_path: Path) -> Path:
    """A 4-config grid YAML whose fits take milliseconds on diabetes."""
    path = tmp_path / "grid.yaml"
    path.write_text(
        "product:\n  n_estimators: [10, 20]\n  learning_rate: [0.1]\n  max_depth: [1, 2]\n", encoding="utf-8"
    )
    return path


@pytest.fixture
def prom_stack(tmp_path: Path) -> Iterator[PromStack]:
    """A real Prometheus scraping a real Pushgateway (tests/promstack.py)."""
    yield from start_prom_stack(tmp_path)
