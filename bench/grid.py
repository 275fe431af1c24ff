"""Grid benchmark: sequential vs rayscale's Ray runner vs joblib (loky), side by side in one run.

For each workload the three methods fit the same configs in the same longest-first order,
round after round interleaved (so drift on the machine hits all three alike). Ray and joblib
are warmed up first; their cold starts are measured and reported apart.

Targets (issue 2): warm Ray wall ≤ 1.10 × makespan lower bound, and ≤ joblib's wall.

    python bench/grid.py [--repeats 5] [--heavy-rows 5000] [--workloads seed,heavy]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from joblib import Parallel, delayed
from rich.console import Console
from rich.table import Table

from rayscale import environment, summary
from rayscale.cluster import ray_session
from rayscale.datasets import load_dataset
from rayscale.grids import load_grid
from rayscale.runners import RayGridRunner, arrays, fit_and_score, run_sequential

RESULTS = Path(__file__).resolve().parent / "results"
BOUND_TARGET = 1.10


def _joblib_round(pool: Parallel, specs, data) -> tuple[float, list[float]]:
    started = time.perf_counter()
    outcomes = pool(delayed(fit_and_score)(s.params, data) for s in specs)
    return time.perf_counter() - started, [o["fit_s"] for o in outcomes]


def bench_workload(name: str, dataset_spec: str, repeats: int, console: Console) -> dict:
    dataset = load_dataset(dataset_spec)
    specs = sorted(load_grid("seed"), key=lambda s: s.cost(dataset.n_train, dataset.n_features), reverse=True)
    data = arrays(dataset)
    rounds = []
    with ray_session("") as cluster:
        cpus = cluster.cpus
        runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=cpus)
        ray_warmup_s = runner.warm_up()
        with Parallel(n_jobs=cpus, backend="loky") as pool:
            started = time.perf_counter()
            pool(delayed(fit_and_score)(s.params, data) for s in specs[-cpus:])  # start + import in workers
            joblib_warmup_s = time.perf_counter() - started
            for r in range(repeats):
                console.log(f"{name}: round {r + 1}/{repeats}")
                seq_wall, seq_trials = run_sequential(specs, dataset)
                ray_wall, ray_trials = runner.run(specs)
                jl_wall, jl_fits = _joblib_round(pool, specs, data)
                ray_bound = summary.lower_bound([t.fit_s for t in ray_trials], cpus)
                rounds.append(
                    {
                        "sequential_s": seq_wall,
                        "ray_s": ray_wall,
                        "joblib_s": jl_wall,
                        "ray_lower_bound_s": ray_bound,
                        "joblib_lower_bound_s": summary.lower_bound(jl_fits, cpus),
                        "sequential_fit_lower_bound_s": summary.lower_bound(
                            [t.fit_s for t in seq_trials], cpus
                        ),
                        "ray_makespan_s": summary.makespan(ray_trials),
                        "consistent": not summary.mismatches(seq_trials, ray_trials),
                    }
                )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    ratios = [r["ray_s"] / r["ray_lower_bound_s"] for r in rounds]
    vs_joblib = [r["ray_s"] / r["joblib_s"] for r in rounds]
    return {
        "workload": name,
        "dataset": dataset.describe(),
        "configs": len(specs),
        "cpus": cpus,
        "repeats": repeats,
        "cold_start": {
            "ray_connect_s": cluster.connect_s,
            "ray_warmup_s": ray_warmup_s,
            "joblib_warmup_s": joblib_warmup_s,
        },
        "median": {k: med(k) for k in rounds[0] if k != "consistent"},
        "ray_over_lower_bound": {"median": statistics.median(ratios), "max": max(ratios)},
        "ray_over_joblib": {"median": statistics.median(vs_joblib), "max": max(vs_joblib)},
        "speedup_ray": med("sequential_s") / med("ray_s"),
        "speedup_joblib": med("sequential_s") / med("joblib_s"),
        "targets": {
            "ray_within_1.10x_lower_bound": statistics.median(ratios) <= BOUND_TARGET,
            "ray_not_slower_than_joblib": statistics.median(vs_joblib) <= 1.0,
        },
        "all_rounds_consistent": all(r["consistent"] for r in rounds),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds for the seed workload")
    parser.add_argument("--heavy-repeats", type=int, default=2, help="timed rounds for the heavy workload")
    parser.add_argument(
        "--heavy-rows", type=int, default=5000, help="friedman1 rows (≥0.5 s per fit at 5000)"
    )
    parser.add_argument("--workloads", default="seed,heavy")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON path [bench/results/grid-<date>.json]"
    )
    args = parser.parse_args()

    console = Console(width=140)
    workloads = {
        "seed": ("diabetes", args.repeats),
        "heavy": (f"friedman1:{args.heavy_rows}", args.heavy_repeats),
    }
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    report = {
        "benchmark": "grid",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment.capture(),
        "workloads": [bench_workload(w, *workloads[w], console) for w in chosen],
    }
    table = Table(title="bench/grid.py — medians over rounds")
    for column in (
        "workload",
        "seq s",
        "ray s",
        "joblib s",
        "lower bound s",
        "ray / bound",
        "ray / joblib",
        "speedup",
        "ray cold start s",
    ):
        table.add_column(column, justify="right")
    for w in report["workloads"]:
        m, cold = w["median"], w["cold_start"]
        table.add_row(
            w["workload"],
            f"{m['sequential_s']:.2f}",
            f"{m['ray_s']:.2f}",
            f"{m['joblib_s']:.2f}",
            f"{m['ray_lower_bound_s']:.2f}",
            f"{w['ray_over_lower_bound']['median']:.3f}",
            f"{w['ray_over_joblib']['median']:.3f}",
            f"{w['speedup_ray']:.2f}x",
            f"{cold['ray_connect_s'] + cold['ray_warmup_s']:.2f}",
        )
    console.print(table)
    for w in report["workloads"]:
        console.print(
            f"{w['workload']}: targets {w['targets']}, metrics consistent: {w['all_rounds_consistent']}"
        )
    out = (
        args.output
        or RESULTS / f"grid-{datetime.now(timezone.utc):%Y%m%d}-{report['environment']['hostname']}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
