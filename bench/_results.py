"""What every bench script writes: a header (benchmark, time, environment with the machine's state
before and after) and the JSON file under bench/results/, named <benchmark>-<date>-<host>.json."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rayscale.work import environment

RESULTS = Path(__file__).resolve().parent / "results"


def header(benchmark: str) -> dict[str, Any]:
    """The start of a report; call it before measuring (it records the machine's state then)."""
    return {
        "benchmark": benchmark,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": {**environment.capture(), "before": environment.machine_state()},
    }


def write(report: dict[str, Any], output: Path | None = None) -> Path:
    """Record the machine's state after the measurement and write the report; return its path."""
    report["environment"]["after"] = environment.machine_state()
    stamp = f"{datetime.now(timezone.utc):%Y%m%d}-{report['environment']['hostname']}"
    path = output or RESULTS / f"{report['benchmark']}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Pydantic models (rounds, trials) are written as their JSON form.
    path.write_text(json.dumps(report, indent=2, default=lambda o: o.model_dump(mode="json")) + "\n")
    return path
