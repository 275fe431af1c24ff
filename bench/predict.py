"""`rayscale predict`, held to its targets: measured points predicted from the smallest one, and
the simulator's speed.

1. **Validation**: `rayscale scale --nodes 1,2 --local-cluster --dataset friedman1:2000 --phases
   grid-ray,tune` (real raylets on this machine), then `rayscale predict --validate`: every
   measured point predicted from the 1-node point alone; the 2-node errors against the targets
   (grid within 10 %, Tune within 15 %). Then a forecast of the same bundle to 1,024 nodes (the
   README's plot). ``--bundle`` reuses a scale bundle already made.
2. **Speed**: 10,000 trials (durations drawn from the measured 1-node grid) on 1..1,024 nodes,
   one call, timed; and one simulation at 1,024 nodes alone (target: under 5 s).

With ``--isolated`` (root; docs/scale-and-predict.md, "Isolated nodes") the validation sweeps
isolated 1,2,4,8-node clusters instead (``--isolate --cpu-limit 0.2``: each node its own network
namespace and 0.2-core cgroup), and adds the transfer model: ``friedman1:200000:20`` on 1,2,4
isolated nodes behind ``--link-mbps 100`` (a 4-config grid of short fits), predicted from its
1-node point with ``--bandwidth-mbps 100`` (target: within 15 %).

    python bench/predict.py [--repeats 5] [--bundle DIR] [--isolated]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from _results import RESULTS, header, write  # bench/_results.py
from rayscale.options.commands import GRID_PARALLEL
from rayscale.results.bundle import load_any
from rayscale.results.forecast import ForecastCosts
from rayscale.work.predict import measured_points
from rayscale.work.sim.grid_forecast import GridTrace, predict_grid

TARGETS = {GRID_PARALLEL.key: 10.0, "tune": 15.0}
TRANSFER_TARGET = 15.0  # the data's transfer + warm-up against the measured warm-up
ISOLATED = ["--isolate", "--cpu-limit", "0.2"]
TRANSFER = ["--dataset", "friedman1:200000:20", "--nodes", "1,2,4", "--link-mbps", "100"]
# short fits (seconds at 0.2 core on 160,000 rows), so that the data's 32 MB weigh
TRANSFER_GRID = "product:\n  n_estimators: [5, 10]\n  max_depth: [1, 2]\n"


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


def _checks(validation: dict, prefix: str = "", warmups: bool = False) -> dict:
    """Every predicted point above the base against its target; with ``warmups``, each grid
    point's predicted transfer + warm-up against its measured warm-up too."""
    checks = {}
    for p in validation["points"]:
        if p["nodes"] > validation["base"][p["phase"]]:
            checks[f"{prefix}{p['phase']}@{p['nodes']}"] = {
                "predicted_wall_s": p["predicted_wall_s"],
                "measured_wall_s": p["measured_wall_s"],
                "error_pct": p["error_pct"],
                "target_pct": TARGETS[p["phase"]],
                "met": abs(p["error_pct"]) <= TARGETS[p["phase"]],
            }
            if warmups and p["warmup_error_pct"] is not None:
                checks[f"{prefix}warm-up@{p['nodes']}"] = {
                    "predicted_wall_s": p["predicted_warmup_s"],
                    "measured_wall_s": p["measured_warmup_s"],
                    "error_pct": p["warmup_error_pct"],
                    "target_pct": TRANSFER_TARGET,
                    "met": abs(p["warmup_error_pct"]) <= TRANSFER_TARGET,
                }
    return checks


def _transfer(bundle: Path, repeats: int, measure: bool = True) -> dict:
    """The data's transfer: a large dataset on isolated nodes behind a 100 Mbit/s link, predicted
    from its 1-node point with the same bandwidth (its walls, and each warm-up, which holds the
    data's way to the node); ``measure=False`` predicts a bundle already made."""
    if measure:
        grid = Path(tempfile.mkdtemp()) / "transfer-grid.yaml"
        grid.write_text(TRANSFER_GRID)
        _rayscale(
            "scale", "--local-cluster", *ISOLATED, *TRANSFER, "--grid", str(grid),
            "--repeats", str(repeats), "--output", str(bundle),
        )  # fmt: skip
    args = ["--validate", "--bandwidth-mbps", "100", "--json", "--plot", str(bundle / "validate.png")]
    validation = json.loads(_rayscale("predict", str(bundle), *args))
    return {"validation": validation, "checks": _checks(validation, "transfer ", warmups=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per node count and phase")
    parser.add_argument(
        "--bundle", type=Path, default=None, help="a scale bundle already made (and its -transfer beside it)"
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON [bench/results/predict-<date>.json]")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="isolated 1,2,4,8 nodes at 0.2 core each, and the transfer model",
    )
    args = parser.parse_args()
    console = Console(width=150)
    report = header("predict")
    bundle = args.bundle
    if bundle is None:
        bundle = (
            RESULTS
            / f"predict-{report['created_utc'][:10].replace('-', '')}-{report['environment']['hostname']}"
        )
        nodes, shape = ("1,2,4,8", ISOLATED) if args.isolated else ("1,2", [])
        console.log(f"rayscale scale --nodes {nodes} --local-cluster {' '.join(shape)} … → {bundle}")
        _rayscale(
            "scale", "--nodes", nodes, "--local-cluster", *shape, "--dataset", "friedman1:2000",
            "--phases", "grid-ray,tune", "--repeats", str(args.repeats), "--output", str(bundle),
        )  # fmt: skip
    validation = json.loads(
        _rayscale("predict", str(bundle), "--validate", "--json", "--plot", str(bundle / "validate.png"))
    )
    checks = _checks(validation)
    if args.isolated:
        transfer = bundle.with_name(bundle.name + "-transfer")
        console.log(
            f"rayscale scale {' '.join(TRANSFER)} --local-cluster {' '.join(ISOLATED)} … → {transfer}"
        )
        report["transfer"] = _transfer(transfer, args.repeats, measure=args.bundle is None)
        checks |= report["transfer"]["checks"]
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
