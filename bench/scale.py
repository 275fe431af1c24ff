"""Node-count scaling benchmark on real local multi-node Ray clusters (one raylet per node).

Runs `rayscale scale --local-cluster` on the seed grid over friedman1 data sized so every fit
takes at least 0.5 s, for each node count, and records the scaling bundle (scale.json +
scaling.png) and a summary JSON under bench/results/.

Target (issue 6): parallel efficiency ≥ 0.90 of ideal at 2 nodes on this machine.

    python bench/scale.py [--nodes 1,2] [--cpus-per-node 1] [--rows 5000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from rayscale.options.commands import RunOptions, ScaleOptions, parse_nodes
from rayscale.views.report import show_scale
from rayscale.work import environment
from rayscale.work.scale import run_scale

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_EFFICIENCY_AT_2 = 0.90


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument(
        "--rows", type=int, default=7000, help="friedman1 rows (every seed-grid fit ≥ 0.5 s at 7000)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--phases", default="grid-ray")
    args = parser.parse_args()

    stamp = f"{datetime.now(timezone.utc):%Y%m%d}-{environment.capture()['hostname']}"
    name = f"scale-{stamp}-{args.cpus_per_node}cpu-n{args.nodes.replace(',', '-')}"
    out = RESULTS / name
    if out.exists():
        shutil.rmtree(out)  # a re-run of the same benchmark on the same day replaces its own record
    run = RunOptions(
        dataset=f"friedman1:{args.rows}",
        grid="seed",
        repeats=args.repeats,
        phases=tuple(args.phases.split(",")),
        output=out,
    )
    opts = ScaleOptions(
        nodes=parse_nodes(args.nodes), cpus_per_node=args.cpus_per_node, local_cluster=True, run=run
    )
    result, bundle = run_scale(opts)
    show_scale(result, bundle, json_out=False)
    grid = {p.nodes: p for p in result.points if p.phase == "grid_parallel"}
    fastest_fit = min(t.duration_s for p in grid.values() for t in p.trials)
    summary = {
        "benchmark": "scale",
        "created_utc": result.created_utc,
        "environment": result.environment,
        "bundle": str(bundle.relative_to(RESULTS.parent.parent)),
        "dataset": result.dataset,
        "cpus_per_node": result.cpus_per_node,
        "shortest_fit_s": fastest_fit,
        "points": [
            {
                k: getattr(p, k)
                for k in (
                    "phase",
                    "nodes",
                    "cpus",
                    "wall_s",
                    "wall_min_s",
                    "wall_max_s",
                    "speedup",
                    "parallel_efficiency",
                    "schedule_efficiency",
                    "breakdown",
                    "karp_flatt",
                    "lower_bound_s",
                )
            }
            | {"stragglers": len(p.stragglers), "trials_per_node": p.trials_per_node}
            for p in result.points
        ],
        "fits": [f.model_dump() for f in result.fits],
        "targets": {"efficiency_at_2_nodes_ge_0.90": grid[2].parallel_efficiency >= TARGET_EFFICIENCY_AT_2}
        if 2 in grid
        else {},
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    Console().print(f"shortest fit {fastest_fit:.2f}s; targets {summary['targets']}; written {path}")


if __name__ == "__main__":
    main()
