"""Fixed costs of an embedded Ray, profiled: what a user pays before the first trial, and what Ray's
own processes cost while idle and during a round.

Each sample is a fresh process (as `make run` is), and the variants interleave sample by sample so
that drift hits them alike. A variant is a set of environment variables applied before Ray starts;
``default`` is rayscale as shipped. Per sample it records:

* ``import_ray_s``: ``import ray``;
* ``init_s``: ``ray.init`` of an embedded Ray (GCS, raylet, agents started and registered);
* ``first_task_s``: the first no-op task (a worker process started and connected);
* ``warmup_s``: one task per CPU importing scikit-learn and fitting a tiny model (rayscale's warm-up);
* ``tune_first_trial_s``: Tune's ``fit()`` to its first trial starting (a 2-trial XGBoost sweep);
* ``idle_cpu_share`` / ``round_cpu_share``: CPU seconds of Ray's own processes (raylet, GCS, agents)
  over 5 s idle and over one parallel round of the seed grid, as a share of CPUs × wall;
* ``contention``: Σ sequential fit / Σ Ray fit on that round (1.0: fits as fast inside Ray);
* ``import_xgboost_s``: ``import xgboost`` in a fresh interpreter (what each Tune actor pays).

    python bench/startup.py [--samples 5] [--variants default,reporter-slow]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Candidate settings, each measured against the default in the same run.
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    # The dashboard agent's reporter polls every process of the node (psutil) every 2.5 s by default.
    "reporter-slow": {
        "RAY_DASHBOARD_REPORTER_UPDATE_INTERVAL_MS": "60000",
        "REPORTER_UPDATE_INTERVAL_MS": "60000",
    },
}


def _sample() -> dict:
    """One fresh-process measurement (run as a child: `startup.py --child`)."""
    out: dict = {}
    started = time.perf_counter()
    import ray

    out["import_ray_s"] = time.perf_counter() - started
    import logging

    from rayscale.datasets import load_dataset
    from rayscale.grids import load_grid
    from rayscale.runners import RayGridRunner, RayProcesses, run_sequential, warm_driver

    dataset = load_dataset("diabetes")
    specs = load_grid("seed")
    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    out["init_s"] = time.perf_counter() - started
    cpus = int(ray.cluster_resources()["CPU"])
    started = time.perf_counter()
    ray.get(ray.remote(lambda: None).remote())
    out["first_task_s"] = time.perf_counter() - started
    runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=cpus)
    out["warmup_s"] = runner.warm_up()
    processes = RayProcesses.find()
    assert processes is not None
    before, mark = processes.cpu_s(), time.perf_counter()
    time.sleep(5)
    out["idle_cpu_share"] = (processes.cpu_s() - before) / (cpus * (time.perf_counter() - mark))
    warm_driver(dataset)
    _, seq_trials = run_sequential(specs, dataset)
    before = processes.cpu_s()
    wall, ray_trials = runner.run(specs)
    out["round_cpu_share"] = (processes.cpu_s() - before) / (cpus * wall)
    out["contention"] = sum(t.fit_s for t in seq_trials) / sum(t.fit_s for t in ray_trials)
    out["tune_first_trial_s"] = _tune_first_trial(dataset)
    ray.shutdown()
    return out


def _tune_first_trial(dataset) -> float:
    from rayscale.tune import TuneOptions, run_sweep

    with_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"rayscale-startup-{os.getpid()}"
    opts = TuneOptions(space={"max_depth": [2, 3]}, max_rounds=20, scheduler="none", report_every=10)
    result = run_sweep(dataset, opts, 2, with_dir)
    return result.startup_s


def _import_xgboost_s() -> float:
    code = "import time; t = time.perf_counter(); import xgboost; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(_sample()))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--output", type=Path, default=None, help="JSON [bench/results/startup-<date>.json]")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from _results import header, write  # bench/_results.py
    from rayscale.stats import Stats, paired_ratio

    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    console = Console(width=150)
    report = header("startup")
    samples: dict[str, list[dict]] = {v: [] for v in chosen}
    for i in range(args.samples):
        for variant in chosen:
            console.log(f"sample {i + 1}/{args.samples}: {variant}")
            env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **VARIANTS[variant]}
            out = subprocess.run(
                [sys.executable, __file__, "--child"], capture_output=True, text=True, env=env, check=False
            )
            if out.returncode != 0:
                raise SystemExit(f"{variant} sample failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["import_xgboost_s"] = _import_xgboost_s()
            samples[variant].append(row)
    figures = list(samples[chosen[0]][0])
    summary = {
        v: {
            f: {"median": Stats([s[f] for s in rows]).median, "values": [s[f] for s in rows]} for f in figures
        }
        for v, rows in samples.items()
    }
    versus = {}
    for variant in chosen[1:]:
        versus[variant] = {}
        for f in ("init_s", "warmup_s", "tune_first_trial_s", "round_cpu_share", "idle_cpu_share"):
            ratio, ci = paired_ratio([s[f] for s in samples[variant]], [s[f] for s in samples[chosen[0]]])
            versus[variant][f] = {"ratio_to_default": ratio, "ci": ci}
    report |= {
        "variants": {v: VARIANTS[v] for v in chosen},
        "samples": samples,
        "medians": summary,
        "versus_default": versus,
    }
    table = Table(title=f"bench/startup.py — medians of {args.samples} fresh processes per variant")
    table.add_column("figure")
    for v in chosen:
        table.add_column(v, justify="right")
    for f in figures:
        unit = "%" if f.endswith("share") else "" if f == "contention" else "s"
        cells = []
        for v in chosen:
            m = summary[v][f]["median"]
            cells.append(f"{m:.1%}" if unit == "%" else f"{m:.3f}" if not unit else f"{m:.2f}s")
        table.add_row(f, *cells)
    console.print(table)
    for variant, figs in versus.items():
        for f, v in figs.items():
            low, high = v["ci"]
            console.print(
                f"{variant} / default, {f}: {v['ratio_to_default']:.3f} (95% CI {low:.3f}–{high:.3f})"
            )
    console.print(f"written {write(report, args.output)}")


if __name__ == "__main__":
    main()
