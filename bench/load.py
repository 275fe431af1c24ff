"""Load benchmark: a 2,000-config grid on the local Ray cluster against a 200-config one.

Each config is a tiny GradientBoostingRegressor fit (1–5 trees of depth 1–2) on friedman1:20000, whose
1.6 MB of training data a per-trial copy would multiply into gigabytes. The fixed cost per trial (task
submission, scheduling, argument passing, collection) is what gets measured:

    overhead per trial = (wall − Σ fit / slots) × slots / trials

Target (issue 7): overhead per trial stays flat from 200 to 2,000 configs, and the driver's memory
stays bounded (the data lives in the object store once; trials get references, not copies).

``--against-joblib`` (issue 24) runs the tiny-trial case side by side instead: 2,000 configs of 1–8
depth-1 trees on diabetes, rayscale's Ray runner (tiny trials batched) against joblib (loky, one worker
per CPU, its default auto-batching), interleaved rounds, the paired ratio of their walls with its
bootstrap interval, and each one's overhead per trial. Targets: Ray's wall ≤ joblib's, and Ray's
overhead ≤ 1 ms per trial. ``--batch-s 0.05,0.2`` runs one Ray runner per task size, side by side
(the default, ``rayscale.work.grid.runners.BATCH_S``, first).

    python bench/load.py [--sizes 200,2000] [--repeats 3] [--against-joblib [--batch-s S,...]]
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

from rich.console import Console
from rich.table import Table

from _results import RESULTS, header, write  # bench/_results.py
from rayscale.results.stats import Stats, paired_ratio, verdict
from rayscale.work.cluster.session import ray_session
from rayscale.work.data import Work, load_dataset
from rayscale.work.grid.configs import TrialSpec
from rayscale.work.grid.runners import BATCH_S, RayGridRunner
from rayscale.work.grid.trials import fit_and_score

FLAT_WITHIN = 1.25  # the 2,000-config overhead per trial within 25 % of the 200-config one


def rss_bytes() -> int:
    """The driver's resident memory now (Linux /proc), else its peak so far."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tiny_grid(size: int) -> list[TrialSpec]:
    return [
        TrialSpec(
            i, {"n_estimators": 1 + i % 5, "max_depth": 1 + i % 2, "learning_rate": 0.1, "random_state": i}
        )
        for i in range(size)
    ]


def tiny_trees(size: int) -> list[TrialSpec]:
    """The tiny-trial case: 1–8 depth-1 trees."""
    return [
        TrialSpec(i, {"n_estimators": 1 + i % 8, "max_depth": 1, "learning_rate": 0.1, "random_state": i})
        for i in range(size)
    ]


def against_joblib(size: int, repeats: int, batch_sizes: list[float]) -> dict:
    """Ray runner (one per task size in ``batch_sizes``, the default first) and joblib on the same
    tiny trials, rounds interleaved."""
    import time

    from joblib import Parallel, delayed

    dataset = load_dataset("diabetes")
    specs = tiny_trees(size)
    data = Work.of(dataset)
    jl_walls, jl_over = [], []
    variants: dict[float, dict[str, list]] = {b: {"walls": [], "over": [], "tasks": []} for b in batch_sizes}
    with ray_session("") as cluster, Parallel(n_jobs=cluster.cpus, backend="loky") as pool:
        runners = {
            b: RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=cluster.cpus, batch_s=b)
            for b in batch_sizes
        }
        for runner in runners.values():
            runner.warm_up()
            runner.run(specs)  # times the first trials (sizes the batches), as a run's first round does
        pool(delayed(fit_and_score)(s, data) for s in specs[:50])  # start and import in its workers
        for _ in range(repeats):
            for b, runner in runners.items():
                wall, trials = runner.run(specs)
                assert sorted(t.index for t in trials) == list(range(size))
                v = variants[b]
                v["walls"].append(wall)
                v["over"].append((wall - sum(t.fit_s for t in trials) / runner.slots) * runner.slots / size)
                v["tasks"].append(runner.tasks)
            started = time.perf_counter()
            outcomes = pool(delayed(fit_and_score)(s, data) for s in specs)
            jl_wall = time.perf_counter() - started
            jl_walls.append(jl_wall)
            jl_over.append((jl_wall - sum(o["fit_s"] for o in outcomes) / cluster.cpus) * cluster.cpus / size)
        slots = next(iter(runners.values())).slots
    out: dict = {
        "configs": size,
        "slots": slots,
        "joblib_walls_s": jl_walls,
        "joblib_wall_s": Stats(jl_walls).median,
        "joblib_overhead_per_trial_ms": 1000 * Stats(jl_over).median,
        "ray": {},
    }
    for b, v in variants.items():
        ratio, ci = paired_ratio(jl_walls, v["walls"])  # joblib's time over Ray's: > 1, Ray is faster
        out["ray"][f"{b:g}"] = {
            "batch_s": b,
            "walls_s": v["walls"],
            "wall_s": Stats(v["walls"]).median,
            "joblib_over_ray": {"ratio": ratio, "ci": ci, "verdict": verdict(ci)},
            "overhead_per_trial_ms": 1000 * Stats(v["over"]).median,
            "tasks_per_round": v["tasks"],
            "trials_per_task": size / Stats(v["tasks"]).median,
            "targets": {
                "ray_wall_at_most_joblib": Stats(v["walls"]).median <= Stats(jl_walls).median,
                "ray_wall_at_most_joblib_by_the_interval": ci[0] >= 1.0,
                "overhead_at_most_1ms": 1000 * Stats(v["over"]).median <= 1.0,
            },
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against-joblib", action="store_true")
    parser.add_argument(
        "--batch-s", default=f"{BATCH_S:g}", help="task sizes of tiny trials to compare, the default first"
    )
    args = parser.parse_args()
    if args.against_joblib:
        started = header("load")
        sizes = [float(b) for b in args.batch_s.split(",")]
        result = against_joblib(int(args.sizes.split(",")[-1]), args.repeats, sizes)
        Console(width=120).print(result)
        stamp = f"{started['created_utc'][:10].replace('-', '')}-{started['environment']['hostname']}"
        path = write({**started, "against_joblib": result}, RESULTS / f"load-{stamp}-joblib.json")
        Console().print(f"written {path}")
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    started = header("load")
    dataset = load_dataset("friedman1:20000")
    data_mb = (dataset.X_train.nbytes + dataset.y_train.nbytes + dataset.X_test.nbytes) / 2**20
    rows = []
    with ray_session("") as cluster:
        runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=cluster.cpus)
        runner.warm_up()
        runner.run(tiny_grid(50))  # warm the submission path too
        for size in sizes:
            specs = tiny_grid(size)
            overheads, walls, rss = [], [], []
            for _ in range(args.repeats):
                wall, trials = runner.run(specs)
                assert sorted(t.index for t in trials) == list(range(size))
                fit = sum(t.fit_s for t in trials)
                overheads.append((wall - fit / runner.slots) * runner.slots / size)
                walls.append(wall)
                rss.append(rss_bytes())
            rows.append(
                {
                    "configs": size,
                    "slots": runner.slots,
                    "wall_s": Stats(walls).median,
                    "overhead_per_trial_ms": 1000 * Stats(overheads).median,
                    "trials_per_s": size / Stats(walls).median,
                    "driver_rss_mb": max(rss) / 2**20,
                }
            )
    small, large = rows[0], rows[-1]
    report = {
        **started,
        "rows": rows,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "dataset": dataset.describe() | {"megabytes": data_mb},
        "targets": {
            "overhead_flat_within_25pct": large["overhead_per_trial_ms"]
            <= FLAT_WITHIN * small["overhead_per_trial_ms"],
            "driver_memory_growth_mb": large["driver_rss_mb"] - small["driver_rss_mb"],
            # Copies of the data per extra trial would add (large − small) × data_mb.
            "growth_below_one_data_copy_per_10_trials": large["driver_rss_mb"] - small["driver_rss_mb"]
            < (large["configs"] - small["configs"]) * data_mb / 10,
        },
    }
    table = Table(title="bench/load.py")
    for column in ("configs", "wall s", "overhead / trial ms", "trials / s", "driver RSS MB"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["configs"]),
            f"{r['wall_s']:.2f}",
            f"{r['overhead_per_trial_ms']:.2f}",
            f"{r['trials_per_s']:.0f}",
            f"{r['driver_rss_mb']:.0f}",
        )
    console = Console(width=120)
    console.print(table)
    console.print(f"targets: {report['targets']}")
    console.print(f"written {write(report)}")


if __name__ == "__main__":
    main()
