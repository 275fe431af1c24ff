"""Fixed costs of an embedded Ray: part by part, and `rayscale run` end to end, before and after.

Two measurements, each sample a fresh process (as `make run` is), the variants interleaved sample
by sample so that drift on the machine hits them alike:

**Profile** (``--samples`` per variant) of rayscale's own code, started three ways, each change on
its own: ``ray-defaults`` (Ray's own local start), ``lean`` (what rayscale does: no dashboard
process, autoscaler monitor or log monitor; minimal agents) and ``lean-nice0`` (lean, and workers
at the driver's priority, ``RAY_worker_niceness=0`` instead of Ray's 15; not adopted). Per sample:

* ``import_ray_s``: ``import ray``;
* ``init_s``: ``ray_session`` connect (GCS, raylet, agents started and registered);
* ``first_task_s``: the first no-op task (a worker process started and connected);
* ``warmup_s``: rayscale's warm-up (one task per trial slot importing scikit-learn, fitting a tiny
  model); ``cold_start_s`` = ``init_s`` + ``warmup_s``, what a user waits before the first round;
* ``idle_cpu_share`` / ``round_cpu_share``: CPU seconds of Ray's own processes (raylet, GCS,
  monitors, agents) over 5 s idle and over one parallel round of the seed grid, as a share of
  CPUs × wall;
* ``contention``: Σ sequential fit / Σ Ray fit on that round (1.0: fits as fast inside Ray), and
  ``pool_contention``: the same for a plain ``ProcessPoolExecutor`` of as many processes (no Ray):
  the machine's own floor for two fits side by side;
* ``tune_first_trial_s``: Tune's ``fit()`` to its first trial starting (a 2-trial XGBoost sweep);
* ``import_xgboost_s``: ``import xgboost`` in a fresh interpreter (what each Tune actor pays).

**End to end** (``--runs`` per tree): ``rayscale run`` with default options, from the source
tree at ``--before`` (rayscale as it was) and at ``--after`` (default HEAD), each a git worktree
so that edits made while the benchmark runs cannot leak in; total wall, and the run's own cold
start, Tune start-up, contention and Ray CPU share. The profiles run the ``--after`` tree too.

    python bench/startup.py [--samples 5] [--runs 5] [--before 3b9a2e3] [--after HEAD]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rayscale.results.bundle import load_result
from rayscale.results.stats import Stats, paired_ratio

ROOT = Path(__file__).resolve().parents[1]
# Variant -> (ray_session's lean, environment for Ray). "lean" is what rayscale does; "lean-nice0"
# also runs the workers at the driver's priority (Ray's worker_niceness 0 instead of 15): measured
# on its own, no difference, so not adopted.
PROFILES = {
    "ray-defaults": (False, {}),
    "lean": (True, {}),
    "lean-nice0": (True, {"RAY_worker_niceness": "0"}),
}
PROFILE_FIGURES = (
    "init_s",
    "warmup_s",
    "cold_start_s",
    "tune_first_trial_s",
    "round_cpu_share",
    "idle_cpu_share",
)
# Ray's own CPU share is left out here: before this change it did not count the raylet's agents.
RUN_FIGURES = ("total_s", "cold_start_s", "tune_first_trial_s", "contention")


def _profile(lean: bool) -> dict:
    """One fresh-process profile (run as a child: `startup.py --child VARIANT`)."""
    out: dict = {}
    started = time.perf_counter()
    import ray

    out["import_ray_s"] = time.perf_counter() - started
    from rayscale.work.cluster.session import ray_session
    from rayscale.work.data import load_dataset
    from rayscale.work.grid.configs import load_grid
    from rayscale.work.grid.runners import RayGridRunner, RayProcesses, run_sequential, warm_driver

    dataset = load_dataset("diabetes")
    specs = load_grid("seed")
    with ray_session("", lean=lean) as cluster:
        out["init_s"] = cluster.connect_s
        started = time.perf_counter()
        ray.get(ray.remote(lambda: None).remote())
        out["first_task_s"] = time.perf_counter() - started
        runner = RayGridRunner(dataset, cpus_per_trial=1, cluster_cpus=cluster.cpus)
        out["warmup_s"] = runner.warm_up()
        out["cold_start_s"] = out["init_s"] + out["warmup_s"]
        processes = RayProcesses.find()
        assert processes is not None
        before, mark = processes.cpu_s(), time.perf_counter()
        time.sleep(5)
        out["idle_cpu_share"] = (processes.cpu_s() - before) / (cluster.cpus * (time.perf_counter() - mark))
        warm_driver(dataset)
        _, seq_trials = run_sequential(specs, dataset)
        before = processes.cpu_s()
        wall, ray_trials = runner.run(specs)
        out["round_cpu_share"] = (processes.cpu_s() - before) / (cluster.cpus * wall)
        seq_fit = sum(t.fit_s for t in seq_trials)
        out["contention"] = seq_fit / sum(t.fit_s for t in ray_trials)
        out["pool_contention"] = seq_fit / _pool_fit_s(specs, dataset, cluster.cpus)
        out["tune_first_trial_s"] = _tune_first_trial(dataset, cluster.cpus)
    return out


def _pool_fit_s(specs, dataset, processes: int) -> float:
    """Σ fit of the same grid in a plain process pool (each worker warmed first), no Ray."""
    from concurrent.futures import ProcessPoolExecutor

    from rayscale.work.data import Work
    from rayscale.work.grid.runners import warm_driver
    from rayscale.work.grid.trials import fit_and_score

    data = Work.of(dataset)
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(warm_driver, [dataset] * processes))
        outcomes = pool.map(fit_and_score, specs, [data] * len(specs))
        return sum(o["fit_s"] for o in outcomes)


def _tune_first_trial(dataset, cpus: int) -> float:
    from rayscale.options.commands import TuneOptions
    from rayscale.work.tune.sweep import run_sweep

    with tempfile.TemporaryDirectory() as scratch:
        opts = TuneOptions(space={"max_depth": [2, 3]}, max_rounds=20, scheduler="none", report_every=10)
        return run_sweep(dataset, opts, cpus, Path(scratch)).startup_s


def _import_xgboost_s() -> float:
    code = "import time; t = time.perf_counter(); import xgboost; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _child(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out


def _end_to_end(src: Path, bundle: Path) -> dict:
    """One `rayscale run` (default options) with rayscale imported from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    _child(["-m", "rayscale", "run", "--output", str(bundle)], env)
    total = time.perf_counter() - started
    result = load_result(bundle / "result.json")
    grid, tune = result.grid, result.tune
    assert grid is not None and grid.parallel is not None and grid.breakdown is not None and tune is not None
    return {
        "total_s": total,
        "cold_start_s": grid.parallel.connect_s + grid.parallel.warmup_s,
        "connect_s": grid.parallel.connect_s,
        "warmup_s": grid.parallel.warmup_s,
        "tune_first_trial_s": tune.startup_s,
        "contention": grid.breakdown["contention"],
        "ray_cpu_share": grid.ray_cpu_share,
        "speedup": grid.speedup,
        "sequential_s": grid.sequential.wall_s if grid.sequential else None,
        "parallel_s": grid.parallel.wall_s,
    }


def _worktree(ref: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="rayscale-tree-")) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref],
        check=True,
        capture_output=True,
    )
    return path


def _compare(samples: dict[str, list[dict]], first: str, second: str, figures: tuple[str, ...]) -> dict:
    """Medians of each figure, and the paired ratio second / first with its 95 % CI."""
    out = {}
    for f in figures:
        a, b = [s[f] for s in samples[first]], [s[f] for s in samples[second]]
        ratio, ci = paired_ratio(b, a)
        out[f] = {first: Stats(a).median, second: Stats(b).median, "ratio": ratio, "ci": ci}
    return out


def _table(title: str, compared: dict, first: str, second: str):
    from rich.table import Table

    table = Table(title=title)
    for column in ("figure", first, second, f"{second} / {first} (95% CI)"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for f, v in compared.items():
        share = f.endswith("share")
        cell = (
            (lambda x: f"{x:.1%}")
            if share
            else (lambda x: f"{x:.3f}")
            if f.endswith("contention")
            else (lambda x: f"{x:.2f}s")
        )
        low, high = v["ci"]
        table.add_row(f, cell(v[first]), cell(v[second]), f"{v['ratio']:.3f} ({low:.3f}–{high:.3f})")
    return table


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(_profile(PROFILES[sys.argv[2]][0])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="profiles per start-up variant (0: none)")
    parser.add_argument("--runs", type=int, default=5, help="`rayscale run`s per source tree (0: none)")
    parser.add_argument("--before", default="3b9a2e3", help="the commit whose rayscale is 'before'")
    parser.add_argument("--after", default="HEAD", help="the commit whose rayscale is 'after'")
    parser.add_argument("--output", type=Path, default=None, help="JSON [bench/results/startup-<date>.json]")
    args = parser.parse_args()

    from rich.console import Console

    from _results import header, write  # bench/_results.py

    console = Console(width=150)
    report = header("startup")
    trees = {"before": _worktree(args.before), "after": _worktree(args.after)}
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(trees["after"] / "src")}
    profiles: dict[str, list[dict]] = {v: [] for v in PROFILES}
    runs: dict[str, list[dict]] = {t: [] for t in trees}
    scratch = Path(tempfile.mkdtemp(prefix="rayscale-startup-"))
    try:
        for i in range(args.samples):
            for variant in PROFILES:
                console.log(f"profile {i + 1}/{args.samples}: {variant}")
                child = [str(trees["after"] / "bench" / "startup.py"), "--child", variant]
                row = json.loads(_child(child, env | PROFILES[variant][1]).stdout.strip().splitlines()[-1])
                row["import_xgboost_s"] = _import_xgboost_s()
                profiles[variant].append(row)
        for i in range(args.runs):
            for name, src in trees.items():
                console.log(f"rayscale run {i + 1}/{args.runs}: {name}")
                runs[name].append(_end_to_end(src / "src", scratch / f"{name}-{i}"))
    finally:
        for tree in trees.values():
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )
    profile_figures = (*PROFILE_FIGURES, "first_task_s", "import_ray_s", "contention", "pool_contention")
    pairs = [("ray-defaults", "lean"), ("lean", "lean-nice0")] if args.samples else []
    report |= {
        "before": args.before,
        "after": args.after,
        "profiles": profiles,
        "profile_compared": {f"{b} vs {a}": _compare(profiles, a, b, profile_figures) for a, b in pairs},
        "runs": runs,
        "runs_compared": _compare(runs, "before", "after", RUN_FIGURES) if args.runs else {},
    }
    for a, b in pairs:
        title = f"Profile, {b} vs {a}: medians of {args.samples} fresh processes"
        console.print(_table(title, report["profile_compared"][f"{b} vs {a}"], a, b))
    if args.runs:
        title = f"rayscale run, {args.before} vs {args.after}: medians of {args.runs}"
        console.print(_table(title, report["runs_compared"], "before", "after"))
    console.print(f"written {write(report, args.output)}")


if __name__ == "__main__":
    main()
