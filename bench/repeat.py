"""Repeatability: N fresh `rayscale run`s (default options), their speedup CIs side by side.

Each run is a separate process with its own embedded Ray, as `make run` is. The check is the one a
user would make: do the runs' 95 % speedup intervals overlap (one range common to all)?

    python bench/repeat.py [--runs 5] [--bundles DIR ...]   # --bundles: summarise runs already made
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from _results import header, write  # bench/_results.py
from rayscale.results.bundle import load_result


def _run(out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rayscale", "run", "--output", str(out)], check=True, capture_output=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bundles", type=Path, nargs="*", help="summarise these run bundles instead")
    parser.add_argument("--note", default="", help="how the given bundles were made, kept in the JSON")
    parser.add_argument("--output", type=Path, default=None, help="JSON [bench/results/repeat-<date>.json]")
    args = parser.parse_args()
    report = header("repeat")
    walls: list[float | None] = []
    bundles = list(args.bundles or [])
    if not bundles:
        tmp = Path(tempfile.mkdtemp(prefix="rayscale-repeat-"))
        for i in range(args.runs):
            bundles.append(tmp / f"run{i + 1}")
            walls.append(_run(bundles[-1]))
    runs = []
    for i, bundle in enumerate(bundles):
        result = load_result(bundle / "result.json")
        grid, tune = result.grid, result.tune
        assert grid is not None and grid.speedup_ci is not None and grid.breakdown is not None
        assert grid.parallel is not None
        runs.append(
            {
                "run_id": result.run_id,
                "wall_s": walls[i] if i < len(walls) else None,
                "speedup": grid.speedup,
                "speedup_ci": grid.speedup_ci,
                "parallel_efficiency": grid.parallel_efficiency,
                "contention": grid.breakdown["contention"],
                "ray_cpu_share": grid.ray_cpu_share,
                "cold_start_s": grid.parallel.connect_s + grid.parallel.warmup_s,
                "tune_startup_s": tune.startup_s if tune else None,
            }
        )
    low, high = max(r["speedup_ci"][0] for r in runs), min(r["speedup_ci"][1] for r in runs)
    report |= {
        "source": args.note or ("fresh runs by this script" if walls else "given bundles"),
        "runs": runs,
        "common_speedup_range": [low, high] if low <= high else None,
        "all_overlap": low <= high,
    }
    console = Console(width=120)
    table = Table(title="bench/repeat.py — fresh `rayscale run`s, default options")
    for column in (
        "run",
        "speedup (95% CI)",
        "par. eff.",
        "contention",
        "Ray CPU",
        "cold start",
        "Tune start-up",
    ):
        table.add_column(column, justify="right")
    for i, r in enumerate(runs, 1):
        table.add_row(
            str(i),
            f"{r['speedup']:.2f}x ({r['speedup_ci'][0]:.2f}–{r['speedup_ci'][1]:.2f})",
            f"{r['parallel_efficiency']:.2f}",
            f"{r['contention']:.3f}",
            f"{r['ray_cpu_share']:.1%}",
            f"{r['cold_start_s']:.2f}s",
            f"{r['tune_startup_s']:.2f}s",
        )
    console.print(table)
    console.print(
        f"all intervals overlap: {report['all_overlap']}"
        + (f" (common range {low:.2f}–{high:.2f})" if low <= high else "")
    )
    console.print(f"written {write(report, args.output)}")


if __name__ == "__main__":
    main()
