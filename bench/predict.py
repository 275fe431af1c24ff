"""`rayscale predict`, held to its targets: measured points predicted from the smallest one, and
the simulator's speed.

1. **Validation**: `rayscale scale --nodes 1,2 --local-cluster --dataset friedman1:2000 --phases
   grid-ray,tune` (real raylets on this machine), then `rayscale predict --validate`: every
   measured point predicted from the 1-node point alone; the 2-node errors against the targets
   (grid within 10 %, Tune within 15 %). Then a forecast of the same bundle to 1,024 nodes (the
   README's plot). ``--bundle`` reuses a scale bundle already made.
2. **Speed**: 10,000 trials (durations drawn from the measured 1-node grid) on 1..1,024 nodes,
   one call, timed; and one simulation at 1,024 nodes alone (target: under 5 s).

    python bench/predict.py [--repeats 5] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from _results import RESULTS, header, write  # bench/_results.py
from rayscale.bundle import load_any
from rayscale.forecast import ForecastCosts
from rayscale.options import GRID_PARALLEL
from rayscale.predict import GridTrace, measured_points, predict_grid

TARGETS = {GRID_PARALLEL.key: 10.0, "tune": 15.0}


def _rayscale(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rayscale", *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"rayscale {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def _speed(bundle: Path) -> dict:
    """10,000 trials drawn from the bundle's smallest grid point, simulated on 1..1,024 nodes."""
    base = min(
        (s for s in measured_points(load_any(bundle)) if s.measured.phase == GRID_PARALLEL.key),
        key=lambda s: s.measured.nodes,
    )
    assert isinstance(base.trace, GridTrace)
    rng = random.Random(42)
    picks = [rng.randrange(len(base.trace.durations)) for _ in range(10_000)]
    big = base.trace.with_costs([base.trace.costs[i] for i in picks])
    nodes = [2**k for k in range(11)]
    started = time.perf_counter()
    points = predict_grid(big, nodes, ForecastCosts(cpus_per_node=base.cpus_per_node))
    all_s = time.perf_counter() - started
    started = time.perf_counter()
    predict_grid(big, [1024], ForecastCosts(cpus_per_node=base.cpus_per_node))
    one_s = time.perf_counter() - started
    return {
        "trials": len(big.durations),
        "node_counts": nodes,
        "seconds_1_to_1024": all_s,
        "seconds_at_1024": one_s,
        "target_s": 5.0,
        "walls": {p.nodes: p.predicted_wall_s for p in points},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per node count and phase")
    parser.add_argument("--bundle", type=Path, default=None, help="a scale bundle already made")
    parser.add_argument("--output", type=Path, default=None, help="JSON [bench/results/predict-<date>.json]")
    args = parser.parse_args()
    console = Console(width=150)
    report = header("predict")
    bundle = args.bundle
    if bundle is None:
        bundle = (
            RESULTS
            / f"predict-{report['created_utc'][:10].replace('-', '')}-{report['environment']['hostname']}"
        )
        console.log(f"rayscale scale --nodes 1,2 --local-cluster … → {bundle}")
        _rayscale(
            "scale", "--nodes", "1,2", "--local-cluster", "--dataset", "friedman1:2000",
            "--phases", "grid-ray,tune", "--repeats", str(args.repeats), "--output", str(bundle),
        )  # fmt: skip
    validation = json.loads(
        _rayscale("predict", str(bundle), "--validate", "--json", "--plot", str(bundle / "validate.png"))
    )
    checks = {}
    for p in validation["points"]:
        if p["nodes"] > validation["base"][p["phase"]]:
            checks[f"{p['phase']}@{p['nodes']}"] = {
                "predicted_wall_s": p["predicted_wall_s"],
                "measured_wall_s": p["measured_wall_s"],
                "error_pct": p["error_pct"],
                "target_pct": TARGETS[p["phase"]],
                "met": abs(p["error_pct"]) <= TARGETS[p["phase"]],
            }
    wide = ["--nodes", "1..1024", "--price-per-node-hour", "0.50", "--deadline", "60", "--provision-s", "45"]
    wide += ["--bandwidth-mbps", "1000", "--json", "--plot", str(bundle / "forecast.png")]
    forecast = json.loads(_rayscale("predict", str(bundle), *wide))
    console.log("speed: 10,000 trials on 1..1,024 nodes")
    report |= {
        "bundle": str(
            bundle.relative_to(RESULTS.parent.parent)
            if bundle.is_relative_to(RESULTS.parent.parent)
            else bundle
        ),
        "validation": validation,
        "checks": checks,
        "forecast": forecast,
        "speed": _speed(bundle),
    }
    for name, c in checks.items():
        console.print(
            f"{name}: predicted {c['predicted_wall_s']:.2f}s, measured {c['measured_wall_s']:.2f}s, "
            f"error {c['error_pct']:+.1f}% (target ±{c['target_pct']:g}%: {'met' if c['met'] else 'NOT met'})"
        )
    speed = report["speed"]
    console.print(
        f"speed: {speed['trials']:,} trials on 1..1,024 nodes in {speed['seconds_1_to_1024']:.3f}s; "
        f"1,024 nodes alone {speed['seconds_at_1024']:.3f}s (target < 5 s)"
    )
    console.print(f"written {write(report, args.output)}")


if __name__ == "__main__":
    main()
