"""What isolation costs: ``rayscale scale --isolate`` against a plain local cluster at the same CPUs,
side by side (root).

The same grid (``friedman1:1000``, the seed grid) at 1 and 2 nodes of 1 CPU each, on a plain
``--local-cluster`` (raylets sharing the machine's loopback and every core) and on an isolated one
(``--isolate --cpu-limit 1``: each node its own network namespace, bridge link and 1-core cgroup;
``--nodes 1 --cpu-limit 2`` isolates without a limit that binds, to cost the namespaces alone),
alternating plain and isolated ``--pairs`` times. Per node count: each side's grid wall (median of
its rounds), their paired ratio with its interval, the cluster's start, and what the fidelity check
saw (host idle, each node's CPU against its limit). Isolation may cost what the fidelity check
explains (Ray's own processes inside the nodes' limits, no idle host left), and nothing beyond.

    sudo python bench/isolate.py [--pairs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from _results import RESULTS, header, write  # bench/_results.py
from rayscale.results.stats import Stats, paired_ratio, significant

SCALE = ["--local-cluster", "--dataset", "friedman1:1000", "--phases", "grid-ray"]


def _scale(out: Path, repeats: int, isolated: bool, nodes: str, cpu_limit: float) -> dict:
    extra = ["--isolate", "--cpu-limit", f"{cpu_limit:g}"] if isolated else []
    cmd = [
        sys.executable,
        "-m",
        "rayscale",
        "scale",
        "--nodes",
        nodes,
        *SCALE,
        *extra,
        "--repeats",
        str(repeats),
    ]
    done = subprocess.run([*cmd, "--output", str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads((out / "scale.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument(
        "--cpu-limit", type=float, default=1.0, help="each isolated node's cores (2 on 1 node: no real limit)"
    )
    args = parser.parse_args()
    console = Console(width=140)
    report = header("isolate")
    sides: dict[str, list[dict]] = {"plain": [], "isolated": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for side in ("plain", "isolated"):
                console.log(f"pair {i + 1}: {side}")
                out = Path(tmp) / f"{side}{i}"
                sides[side].append(_scale(out, args.repeats, side == "isolated", args.nodes, args.cpu_limit))
    by_nodes = {}
    for n in [int(x) for x in args.nodes.split(",")]:

        def point(bundle: dict, n: int = n) -> dict:
            return next(p for p in bundle["points"] if p["nodes"] == n)

        plain = [r for b in sides["plain"] for r in point(b)["rounds_s"]]
        iso = [r for b in sides["isolated"] for r in point(b)["rounds_s"]]
        ratio, ci = paired_ratio(iso, plain)  # isolated wall / plain wall: > 1, isolation costs
        said = "no significant difference"
        if significant(ci):
            said = "isolated slower" if ci[0] > 1 else "isolated faster"
        by_nodes[n] = {
            "plain_rounds_s": plain,
            "isolated_rounds_s": iso,
            "plain_wall_s": Stats(plain).median,
            "isolated_wall_s": Stats(iso).median,
            "isolated_over_plain": {"ratio": ratio, "ci": ci, "verdict": said},
            "plain_connect_s": [point(b).get("connect_s") for b in sides["plain"]],
            "isolated_connect_s": [point(b).get("connect_s") for b in sides["isolated"]],
            "emulation": [point(b).get("emulation") for b in sides["isolated"]],
        }
        e = by_nodes[n]["emulation"][-1] or {}
        console.print(
            f"{n} node(s): plain {Stats(plain).median:.2f}s, isolated {Stats(iso).median:.2f}s, "
            f"isolated/plain {ratio:.3f} (95% CI {ci[0]:.3f}–{ci[1]:.3f}, {said}); "
            f"fidelity: faithful {e.get('faithful')}, host idle {e.get('host_idle', 0):.0%}, "
            f"node CPU {e.get('node_cpu')} {e.get('why') or ''}"
        )
    report |= {
        "command": SCALE, "nodes": args.nodes, "cpu_limit": args.cpu_limit, "repeats": args.repeats,
        "pairs": args.pairs, "by_nodes": by_nodes,
    }  # fmt: skip
    suffix = (
        "" if args.cpu_limit == 1.0 and args.nodes == "1,2" else f"-n{args.nodes}-limit{args.cpu_limit:g}"
    )
    stamp = f"{report['created_utc'][:10].replace('-', '')}-{report['environment']['hostname']}"
    console.print(f"written {write(report, RESULTS / f'isolate-{stamp}{suffix}.json')}")


if __name__ == "__main__":
    main()
