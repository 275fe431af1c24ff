"""Grid benchmark: sequential vs rayscale's Ray runner vs joblib (loky), side by side in one run.

For each workload the three methods fit the same configs in the same longest-first order,
round after round interleaved (so drift on the machine hits all three alike). All three are
warmed up first (the sequential one in the driver); the cold starts are reported apart.

Every figure comes from rayscale's stats model: Ray vs joblib is a paired ratio of the rounds
with a seeded 95 % bootstrap interval and a verdict ("faster", "slower" or "no significant
difference"), and the speedup breakdown (contention, granularity, schedule, dispatch, the
baseline's own overhead) is given for both parallel runners.

    python bench/grid.py [--repeats 9] [--heavy-repeats 9] [--heavy-rows 5000] [--workloads seed,heavy]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from joblib import Parallel, delayed
from rich.console import Console
from rich.table import Table

from _results import header, write  # bench/_results.py
from rayscale.results.schema import Round, Rounds, breakdown, lower_bound
from rayscale.results.stats import Stats, paired_ratio, verdict
from rayscale.work.cluster.session import ray_session
from rayscale.work.data import Work, load_dataset
from rayscale.work.grid.configs import load_grid
from rayscale.work.grid.runners import (
    RayGridRunner,
    RayProcesses,
    fit_and_score,
    mismatches,
    run_sequential,
    warm_driver,
)

FACTORS = ("baseline", "contention", "granularity", "schedule", "dispatch")


def _joblib_round(pool: Parallel, specs, data) -> Round:
    started = time.perf_counter()
    outcomes = pool(delayed(fit_and_score)(s, data) for s in specs)
    wall = time.perf_counter() - started
    fits = [o["fit_s"] for o in outcomes]
    span = max(o["end_ts"] for o in outcomes) - min(o["start_ts"] for o in outcomes)
    return Round(wall_s=wall, busy_s=sum(fits), longest_s=max(fits), span_s=span)


def _figures(seq: Rounds, par: Rounds, cpus: int) -> dict:
    speedup, ci = paired_ratio(seq.rounds_s, par.rounds_s)
    factors = breakdown(seq, par, cpus, cpus, seq.wall_s, par.wall_s)
    bound = lower_bound(par.median("busy_s"), par.median("longest_s"), cpus)
    return {
        "wall_s": par.wall_s,
        "wall_mad_s": par.wall_mad_s,
        "rounds_s": par.rounds_s,
        "speedup": speedup,
        "speedup_ci": ci,
        "parallel_efficiency": speedup / cpus,
        "schedule_efficiency": bound / par.wall_s,
        "lower_bound_s": bound,
        "breakdown": factors,
    }


def _verdict(ci: tuple[float, float]) -> str:
    said = verdict(ci)  # of joblib's time over Ray's: "faster" means Ray is faster
    return said if said == "no significant difference" else f"Ray is {said} than joblib"


def bench_workload(name: str, dataset_spec: str, repeats: int, console: Console) -> dict:
    dataset = load_dataset(dataset_spec)
    specs = sorted(load_grid("seed"), key=lambda s: s.cost(dataset.n_train, dataset.n_features), reverse=True)
    data = Work.of(dataset)
    seq_rounds, ray_rounds, jl_rounds = [], [], []
    consistent = True
    with ray_session("") as cluster:
        cpus = cluster.cpus
        runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=cpus)
        ray_warmup_s = runner.warm_up()
        ray_processes = RayProcesses.find()
        sequential_warmup_s = warm_driver(dataset)
        with Parallel(n_jobs=cpus, backend="loky") as pool:
            started = time.perf_counter()
            pool(delayed(fit_and_score)(s, data) for s in specs[-cpus:])  # start + import in workers
            joblib_warmup_s = time.perf_counter() - started
            for r in range(repeats):
                console.log(f"{name}: round {r + 1}/{repeats}")
                seq_wall, seq_trials = run_sequential(specs, dataset)
                seq_rounds.append(Round.of(seq_wall, seq_trials))
                before = ray_processes.cpu_s() if ray_processes else None
                ray_wall, ray_trials = runner.run(specs)
                used = ray_processes.cpu_s() - before if ray_processes and before is not None else None
                ray_rounds.append(Round.of(ray_wall, ray_trials, ray_cpu_s=used))
                jl_rounds.append(_joblib_round(pool, specs, data))
                consistent = consistent and not mismatches(seq_trials, ray_trials)
    seq, ray, jl = Rounds(rounds=seq_rounds), Rounds(rounds=ray_rounds), Rounds(rounds=jl_rounds)
    ratio, ratio_ci = paired_ratio(jl.rounds_s, ray.rounds_s)  # > 1: Ray is faster
    ray_cpu = [r.ray_cpu_s / (cpus * r.wall_s) for r in ray_rounds if r.ray_cpu_s is not None]
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
            "sequential_warmup_s": sequential_warmup_s,
        },
        "sequential": {"wall_s": seq.wall_s, "wall_mad_s": seq.wall_mad_s, "rounds_s": seq.rounds_s},
        "ray": _figures(seq, ray, cpus),
        "joblib": _figures(seq, jl, cpus),
        "ray_cpu_share": Stats(ray_cpu).median if ray_cpu else None,
        "joblib_over_ray": {"ratio": ratio, "ci": ratio_ci, "verdict": _verdict(ratio_ci)},
        "all_rounds_consistent": consistent,
        "rounds": {"sequential": seq_rounds, "ray": ray_rounds, "joblib": jl_rounds},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds for the seed workload")
    parser.add_argument("--heavy-repeats", type=int, default=9, help="timed rounds for the heavy workload")
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
    report = header("grid")
    report["workloads"] = [bench_workload(w, *workloads[w], console) for w in chosen]
    out = write(report, args.output)
    table = Table(title="bench/grid.py — medians over interleaved rounds, 95% CIs")
    for column in ("workload", "runner", "wall s", "speedup (CI)", "par. eff.", "sched. eff.", *FACTORS):
        table.add_column(column, justify="right")
    for w in report["workloads"]:
        for runner in ("ray", "joblib"):
            f = w[runner]
            low, high = f["speedup_ci"]
            table.add_row(
                w["workload"],
                runner,
                f"{f['wall_s']:.2f}",
                f"{f['speedup']:.2f}x ({low:.2f}–{high:.2f})",
                f"{f['parallel_efficiency']:.2f}",
                f"{f['schedule_efficiency']:.2f}",
                *(f"{f['breakdown'][k]:.3f}" for k in FACTORS),
            )
    console.print(table)
    for w in report["workloads"]:
        v, cold = w["joblib_over_ray"], w["cold_start"]
        share = "n/a" if w["ray_cpu_share"] is None else f"{w['ray_cpu_share']:.1%}"
        console.print(
            f"{w['workload']}: joblib/Ray {v['ratio']:.3f} (95% CI {v['ci'][0]:.3f}–{v['ci'][1]:.3f}): "
            f"{v['verdict']}; Ray's own CPU {share}; Ray cold start "
            f"{cold['ray_connect_s'] + cold['ray_warmup_s']:.2f}s; consistent: {w['all_rounds_consistent']}"
        )
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
