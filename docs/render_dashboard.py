"""Render docs/dashboard.png from real runs: all phases on local Ray clusters of 1 and 2 nodes.

    python docs/render_dashboard.py [--nodes 1,2] [--cpus-per-node 1]

Each node count gets a real multi-raylet cluster on this machine
(rayscale.work.cluster.local.local_raylets); `rayscale run --address` runs against it and writes a
bundle under docs/runs/ (git-ignored); the dashboard's panels are then drawn from those bundles with
`rayscale dashboard`.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rayscale.options.commands import RunOptions, parse_nodes
from rayscale.views.plots import dashboard_png
from rayscale.work.cluster.local import local_raylets
from rayscale.work.run import run_benchmark

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    args = parser.parse_args()
    runs = HERE / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    results = []
    for n in parse_nodes(args.nodes):
        with local_raylets(n, args.cpus_per_node) as address:
            result, _ = run_benchmark(RunOptions(address=address, repeats=3, output=runs / f"nodes-{n}"))
            results.append(result)
    print(f"written {dashboard_png(results, HERE / 'dashboard.png')}")


if __name__ == "__main__":
    main()
