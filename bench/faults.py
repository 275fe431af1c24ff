"""Faults on isolated clusters (``rayscale scale --isolate``; root): what each costs, measured.

1. **Partition**: a 3-node isolated cluster (0.5 core per node) runs a 16-config grid; node 3's
   link goes down 2 s into each round. Recorded: the round's wall against an undisturbed one,
   the retries, every config once, and the time from the partition to the lost trials'
   resubmission (Ray's health check, 1 s x 5 here, and the gRPC keepalive).
2. **Slowed node**: the same grid, node 3's CPU quota cut to a fifth after the second trial;
   recorded: the stragglers rayscale reports and the nodes they are attributed to.
3. **Lost head**: ``rayscale scale --nodes 2 --isolate``, its head's processes killed mid-grid;
   recorded: seconds to the one-line error (the head watch's 10 s), the exit code, scale.json kept.

    sudo python bench/faults.py [--rounds 3]   # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from _results import header, write  # bench/_results.py
from rayscale.results.scaling import stragglers
from rayscale.work.cluster import isolated_host as sandbox
from rayscale.work.cluster.isolated import Isolation, isolated_cluster
from rayscale.work.cluster.isolated_host import Names
from rayscale.work.data import load_dataset
from rayscale.work.grid.configs import load_grid
from rayscale.work.grid.runners import RayGridRunner

GRID = "product:\n  n_estimators: [100, 150, 200, 250]\n  max_depth: [2, 3]\n  learning_rate: [0.05, 0.1]\n"
NODES, CORES = 3, 0.5  # 1.5 of 2 cores; cut to a fifth: 0.1, the kernel's smallest quota here


def _round(runner: RayGridRunner, specs: list, fault: Callable[[], Any] | None, timed: bool = False) -> dict:
    """One timed round; ``fault`` fired 2 s in (``timed``, on a timer thread) or after the second trial."""
    marks: list[float] = []
    done: list[int] = []

    def fire() -> None:
        assert fault is not None
        fault()
        marks.append(time.time())

    timer = threading.Timer(2.0, fire) if fault is not None and timed else None
    if timer:
        timer.start()

    def on_trial(record: Any) -> None:
        done.append(record.index)
        if fault is not None and not timed and len(done) == 2:
            fire()

    wall, trials = runner.run(specs, on_trial)
    if timer:
        timer.cancel()
    retried = [t for t in trials if t.retries > 0]
    return {
        "wall_s": wall,
        "configs": len(trials),
        "every_config_once": sorted(t.index for t in trials) == list(range(len(specs))),
        "retries": sum(t.retries for t in trials),
        "detect_s": min(t.start_ts - t.queue_s for t in retried) - marks[0] if retried and marks else None,
        "stragglers": [s.model_dump() for s in stragglers(trials)],
        "trials_per_node": {n: sum(t.node == n for t in trials) for n in {t.node for t in trials}},
    }


def _cluster_fault(name: str, rounds: int, specs: list, console: Console) -> list[dict]:
    dataset = load_dataset("friedman1:2000")
    out = []
    for r in range(rounds):
        with isolated_cluster(NODES, 1, Isolation(CORES), f"bench-{os.urandom(3).hex()}") as cluster:
            runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=NODES)
            runner.warm_up()
            baseline = _round(runner, specs, None)

            def partition() -> None:
                cluster.set_link(NODES, up=False)

            def slow() -> None:
                cluster.set_cpu_limit(NODES, CORES / 5)

            if name == "partition":
                faulted = _round(runner, specs, partition, timed=True)
            else:
                faulted = _round(runner, specs, slow)
        console.log(
            f"{name} round {r + 1}: {baseline['wall_s']:.2f}s undisturbed, {faulted['wall_s']:.2f}s faulted"
        )
        out.append({"baseline": baseline, "faulted": faulted})
    return out


def _lost_head(console: Console) -> dict:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "grid.yaml").write_text(GRID)
    argv = [sys.executable, "-m", "rayscale", "scale", "--nodes", "2", "--local-cluster", "--isolate",
            "--grid", str(tmp / "grid.yaml"), "--repeats", "50", "--output", str(tmp / "s")]  # fmt: skip
    with (tmp / "stderr").open("w") as sink:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 180
    names: Names | None = None
    while names is None and time.monotonic() < deadline:
        names = next(
            (Names(s) for s in os.listdir(sandbox.STATE_DIR)
             if sandbox.read_value(sandbox.STATE_DIR / s).split(" ")[0] == str(proc.pid)),
            None,
        )  # fmt: skip
        time.sleep(0.2)
    assert names is not None, "the run started no isolated cluster"
    time.sleep(20)  # started, connected, rounds running
    controller = sandbox.CpuController.find()
    assert controller is not None
    killed = time.monotonic()
    for pid in sandbox.NodeCgroup(controller, names.netns(1)).pids():
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=120)
    took = time.monotonic() - killed
    errors = [line for line in (tmp / "stderr").read_text().splitlines() if line.startswith("error:")]
    console.log(f"lost head: exit {proc.returncode} after {took:.1f}s: {errors}")
    return {"exit_code": proc.returncode, "reported_after_s": took, "errors": errors, "target_s": 10 + 2 * 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="faulted rounds per fault")
    parser.add_argument("--output", type=Path, default=None, help="JSON [bench/results/faults-<date>.json]")
    args = parser.parse_args()
    console = Console(width=150)
    if (what := sandbox.missing(links=False, delay=False)) is not None:
        raise SystemExit(f"error: --isolate needs {what}")
    path = Path(tempfile.mkdtemp()) / "grid.yaml"
    path.write_text(GRID)
    specs = load_grid(str(path))
    report = header("faults") | {
        "nodes": NODES,
        "cpu_limit": CORES,
        "configs": len(specs),
        "ray_settings": sandbox.RAY_SETTINGS,
        "partition": _cluster_fault("partition", args.rounds, specs, console),
        "slowed": _cluster_fault("slowed", args.rounds, specs, console),
        "lost_head": _lost_head(console),
    }
    slowed = sandbox.address(NODES)
    report["slowed_attributed"] = all(
        {s["node"] for s in r["faulted"]["stragglers"]} <= {slowed} for r in report["slowed"]
    )
    console.print(json.dumps({k: report[k] for k in ("slowed_attributed",)}))
    console.print(f"written {write(report, args.output)}")


if __name__ == "__main__":
    main()
