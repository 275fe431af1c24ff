"""Every slot busy on every cluster shape: the grid's own dispatch against Ray's queueing, on
isolated clusters (root).

On each shape (``--isolate`` nodes of 1 CPU at 0.2 core for 1, 2, 4 and 8 nodes, at 0.4 core for 1,
2 and 4) and each grid (the seed grid on ``friedman1:200``, short trials, and on ``friedman1:1000``,
long ones), one cluster runs both dispatches round after round, alternating which goes first:
``own`` (rayscale's: a freed slot takes the next-longest config at once, the workers' slots first)
and ``ray`` (before: every task submitted at once, Ray queueing each behind a worker). A pilot round
of each comes first, untimed. Per point: the measured wall (median, all rounds), the lower bound and
schedule efficiency (bound / wall), the greedy longest-first list schedule of the same measured
trial durations on the same slots (what predict models) and the wall against it, the dispatch factor
(span / wall), trials per node, the longest time a node sat idle while a config had not started, and
the ratio own / ray over paired rounds with its interval. ``predict`` is checked as
``rayscale predict --validate`` does it: each node count's wall predicted from the same core's
1-node ``own`` rounds (:func:`rayscale.work.sim.grid_forecast.predict_grid`, the worker speed from
the 1-node point's emulation). ``--tune`` also runs the seed sweep (diabetes, 32 trials) at 1 and 4
nodes × 0.4 core: trials per node, the sweep's start-up and tail, its prediction from 1 node.

    sudo python bench/dispatch.py [--rounds 3] [--tune]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

from rich.console import Console
from rich.table import Table

from _results import header, write  # bench/_results.py
from rayscale.options.commands import TuneOptions
from rayscale.results.forecast import ForecastCosts
from rayscale.results.scaling import Emulation
from rayscale.results.schema import Round, TrialRecord, lower_bound
from rayscale.results.stats import Stats, paired_ratio
from rayscale.work.cluster.isolated import Isolation, isolated_cluster
from rayscale.work.data import load_dataset
from rayscale.work.grid.configs import load_grid
from rayscale.work.grid.runners import RayGridRunner
from rayscale.work.sim.grid_forecast import GridTrace, predict_grid
from rayscale.work.sim.slots import list_schedule, worker_gap, worker_speed
from rayscale.work.sim.tune_replay import TuneTrace, predict_tune, replay_tune
from rayscale.work.tune.sweep import run_sweep

SHAPES = ((0.2, (1, 2, 4, 8)), (0.4, (1, 2, 4)))
GRIDS = {"short": "friedman1:200", "long": "friedman1:1000"}
DISPATCH = {"own": True, "ray": False}  # RayGridRunner(own_dispatch=...)


def idle_while_work_remained(trials: list[TrialRecord]) -> float:
    """The longest time a node sat idle while some config had not started yet."""
    last_start = max(t.start_ts for t in trials)
    idle = [0.0]
    for node in {t.node for t in trials}:
        mine = sorted((t for t in trials if t.node == node), key=lambda t: t.start_ts)
        nexts = [t.start_ts for t in mine[1:]] + [last_start]
        idle += [
            min(b, last_start) - a.end_ts for a, b in zip(mine, nexts, strict=True) if a.end_ts < last_start
        ]
    return max(idle)


def _figures(rounds: list[tuple[float, list[TrialRecord]]], slots: int) -> dict[str, Any]:
    walls = [w for w, _ in rounds]
    timed = [Round.of(w, t) for w, t in rounds]
    bounds = [lower_bound(r.busy_s, r.longest_s, slots) for r in timed]
    ordered = [
        [t.duration_s for t in sorted(trials, key=lambda t: (-t.cost, t.index))] for _, trials in rounds
    ]
    gaps = [worker_gap(trials) for _, trials in rounds]
    greedy = [list_schedule(durations, slots) for durations in ordered]
    # with each round's measured dispatch gap, as predict models a slot's pause between two tasks
    greedy_gap = [list_schedule(d, slots, g) for d, g in zip(ordered, gaps, strict=True)]
    last = rounds[-1][1]
    return {
        "walls_s": walls,
        "wall_s": median(walls),
        "bound_s": median(bounds),
        "schedule_efficiency": median(bounds) / median(walls),
        "greedy_s": median(greedy),
        "wall_over_greedy": median(w / g for w, g in zip(walls, greedy, strict=True)),
        "greedy_efficiency": median(b / g for b, g in zip(bounds, greedy, strict=True)),
        "gap_s": median(gaps),
        "wall_over_greedy_with_gap": median(w / g for w, g in zip(walls, greedy_gap, strict=True)),
        "dispatch": median(r.span_s / r.wall_s for r in timed),
        "idle_while_work_remained_s": max(idle_while_work_remained(t) for _, t in rounds),
        "trials_per_node": sorted(sum(t.node == n for t in last) for n in {t.node for t in last}),
        "rounds": timed,
        "trials": [trials for _, trials in rounds],
    }


def grid_point(nodes: int, core: float, grid: str, rounds: int, console: Console) -> dict[str, Any]:
    dataset = load_dataset(GRIDS[grid])
    specs = load_grid("seed")
    measured: dict[str, list[tuple[float, list[TrialRecord]]]] = {name: [] for name in DISPATCH}
    with isolated_cluster(nodes, 1, Isolation(core), f"d-{os.urandom(3).hex()}") as cluster:
        runners = {
            name: RayGridRunner(dataset, 1, nodes, own_dispatch=flag) for name, flag in DISPATCH.items()
        }
        warmups: dict[str, list[float]] = {name: [] for name in DISPATCH}

        def timed(name: str) -> tuple[float, list[TrialRecord]]:
            # own's actors hold every CPU while they live: each round starts them (untimed) and
            # stops them, so that the other dispatch's tasks can run between
            warmup_s = runners[name].warm_up()
            try:
                wall, trials = runners[name].run(specs)
            finally:
                runners[name].close()
            warmups[name].append(warmup_s)
            return wall, trials

        for name in DISPATCH:
            timed(name)  # the pilot: the batches sized, every worker's imports done
        for r in range(rounds):
            for name in DISPATCH if r % 2 == 0 else reversed(DISPATCH):
                measured[name].append(timed(name))
        warmup_s = warmups["own"][0]
        every = [t for rounds_ in measured.values() for _, trials in rounds_ for t in trials]
        emulation = cluster.fidelity.emulation(every, 1)
    out: dict[str, Any] = {"nodes": nodes, "core": core, "grid": grid, "warmup_s": warmup_s}
    out["emulation"] = emulation
    for name, rounds_ in measured.items():
        out[name] = _figures(rounds_, nodes)
    out["dataset"] = dataset.describe()
    ratio, ci = paired_ratio(out["own"]["walls_s"], out["ray"]["walls_s"])
    out["own_over_ray"] = {"ratio": ratio, "ci": ci}
    own = out["own"]
    console.log(
        f"{grid} {nodes}×{core:g}: own {own['wall_s']:.2f}s (eff {own['schedule_efficiency']:.3f}, "
        f"/greedy {own['wall_over_greedy']:.3f} (with gap {own['wall_over_greedy_with_gap']:.3f}, "
        f"gap {1000 * own['gap_s']:.0f}ms), idle≤{own['idle_while_work_remained_s']:.2f}s, "
        f"per node {own['trials_per_node']}), ray {out['ray']['wall_s']:.2f}s "
        f"(eff {out['ray']['schedule_efficiency']:.3f}); own/ray {ratio:.3f} {ci[0]:.3f}–{ci[1]:.3f}; "
        f"faithful {emulation.faithful} {emulation.why or ''}"
    )
    return out


def add_predictions(points: list[dict[str, Any]]) -> None:
    """Each point's wall predicted from the same core and grid's 1-node ``own`` rounds, as
    ``predict --validate`` does from a scale bundle: every round, and the trials of the round
    nearest the median wall (what the bundle keeps)."""
    for base in (p for p in points if p["nodes"] == 1):
        own = base["own"]
        rounds = [Round.model_validate(r) for r in own["rounds"]]
        kept = own["trials"][Stats([r.wall_s for r in rounds]).nearest_to_median()]
        trials = [TrialRecord.model_validate(t) for t in kept]
        speed = worker_speed(Emulation.model_validate(base["emulation"]), 1.0)
        trace = GridTrace.of(trials, rounds, base["warmup_s"], 1.0, base["dataset"], speed)
        for p in points:
            if p["core"] == base["core"] and p["grid"] == base["grid"]:
                (forecast,) = predict_grid(trace, [p["nodes"]], ForecastCosts(cpus_per_node=1))
                p["predicted_wall_s"] = forecast.predicted_wall_s
                p["predict_error_pct"] = 100 * (forecast.predicted_wall_s / p["own"]["wall_s"] - 1)


def tune_points(rounds: int, console: Console) -> list[dict[str, Any]]:
    """The seed sweep at 1 and 4 nodes × 0.4 core: where its trials ran, and its prediction."""
    dataset = load_dataset("diabetes")
    opts = TuneOptions(asha_replays=0)
    out = []
    for nodes in (1, 4):
        sweeps: list[Any] = []
        warmed: list[Any] = []
        with isolated_cluster(nodes, 1, Isolation(0.4), f"t-{os.urandom(3).hex()}") as cluster:
            for r in range(rounds):
                # at 4 nodes, alternating: a sweep after a worker per node was started and had
                # imported XGBoost (does the head's actor start late only for want of one?)
                for warm in ((False, True) if r % 2 == 0 else (True, False)) if nodes > 1 else (False,):
                    warmup_s = _warm_every_node() if warm else 0.0
                    with tempfile.TemporaryDirectory() as tmp:
                        sweep = run_sweep(dataset, opts, nodes, Path(tmp))
                    (warmed if warm else sweeps).append(sweep)
                    if warm:
                        console.log(f"warmed ({warmup_s:.2f}s) sweep: {sweep.wall_s:.2f}s {_spread(sweep)}")
            every = [t for s in sweeps for t in s.trials]
            emulation = cluster.fidelity.emulation(every, 1)
        walls = [s.wall_s for s in sweeps]
        spans = [max(t.end_ts for t in s.trials) - min(t.start_ts for t in s.trials) for s in sweeps]
        per_node = [
            sorted(sum(t.node == n for t in s.trials) for n in {t.node for t in s.trials}) for s in sweeps
        ]
        tail = [max(t.end_ts for t in s.trials) - sorted(t.end_ts for t in s.trials)[-nodes] for s in sweeps]
        point = {
            "nodes": nodes,
            "core": 0.4,
            "walls_s": walls,
            "wall_s": median(walls),
            "fixed_s": median(w - s for w, s in zip(walls, spans, strict=True)),
            "trials_per_node": per_node,
            "tail_s": median(tail),  # the last trial's end after the other slots' last ends
            "emulation": emulation,
            "sweeps": sweeps,
            "first_starts_s": [_spread(s)["first_starts_s"] for s in sweeps],
            "warmed": [{"wall_s": s.wall_s, **_spread(s)} for s in warmed],
        }
        console.log(
            f"tune {nodes}×0.4: {point['wall_s']:.2f}s (fixed {point['fixed_s']:.2f}s), per node {per_node}, "
            f"faithful {emulation.faithful} {emulation.why or ''}"
        )
        out.append(point)
    base = out[0]
    options = {"tune": dataclasses.asdict(opts)}
    rounds_ = [Round.of(s.wall_s, s.trials) for s in base["sweeps"]]
    speed = worker_speed(base["emulation"], 1.0)
    trace = TuneTrace.of(base["sweeps"][-1].trials, options, rounds_, speed)
    alone = replay_tune(trace, 1).wall_s
    for p in out:
        forecast = predict_tune(trace, p["nodes"], ForecastCosts(cpus_per_node=1), alone)
        p["predicted_wall_s"] = forecast.predicted_wall_s
        p["predict_error_pct"] = 100 * (forecast.predicted_wall_s / p["wall_s"] - 1)
        p["sweeps"] = [{"wall_s": s.wall_s, "trials": s.trials} for s in p["sweeps"]]
    return out


def _warm_every_node() -> float:
    """One worker per node started and XGBoost imported in it, left idle for Tune's actors."""
    import time

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from rayscale.work.cluster.session import cpu_nodes

    def warm() -> int:
        import xgboost  # noqa: F401

        import rayscale.work.tune.sweep  # noqa: F401

        time.sleep(0.3)
        return os.getpid()

    started = time.perf_counter()
    task = ray.remote(warm)
    pinned = [NodeAffinitySchedulingStrategy(n["NodeID"], soft=False) for n in cpu_nodes()]
    ray.get([task.options(num_cpus=1, scheduling_strategy=where).remote() for where in pinned])
    return time.perf_counter() - started


def _spread(sweep: Any) -> dict[str, Any]:
    """Trials per node, and each node's first trial start after the sweep's first."""
    nodes = sorted({t.node for t in sweep.trials})
    first = {n: min(t.start_ts for t in sweep.trials if t.node == n) for n in nodes}
    return {
        "trials_per_node": sorted(sum(t.node == n for t in sweep.trials) for n in nodes),
        "first_starts_s": sorted(round(f - min(first.values()), 3) for f in first.values()),
    }


def _table(points: list[dict[str, Any]]) -> Table:
    table = Table(title="grid dispatch on isolated clusters (median of the rounds)")
    for column in ("grid", "core", "nodes", "own wall", "bound", "sched eff", "/greedy", "/greedy+gap",
                   "greedy eff",
                   "dispatch", "idle max", "per node", "ray wall", "ray eff", "own/ray (95% CI)",
                   "predict err"):  # fmt: skip
        table.add_column(column, justify="right")
    for p in points:
        own, ray, r = p["own"], p["ray"], p["own_over_ray"]
        table.add_row(
            p["grid"], f"{p['core']:g}", str(p["nodes"]), f"{own['wall_s']:.2f}s",
            f"{own['bound_s']:.2f}s", f"{own['schedule_efficiency']:.3f}", f"{own['wall_over_greedy']:.3f}",
            f"{own['wall_over_greedy_with_gap']:.3f}",
            f"{own['greedy_efficiency']:.3f}", f"{own['dispatch']:.3f}",
            f"{own['idle_while_work_remained_s']:.2f}s", "/".join(map(str, own["trials_per_node"])),
            f"{ray['wall_s']:.2f}s", f"{ray['schedule_efficiency']:.3f}",
            f"{r['ratio']:.3f} ({r['ci'][0]:.3f}–{r['ci'][1]:.3f})", f"{p.get('predict_error_pct', 0):+.1f}%",
        )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each dispatch per point")
    parser.add_argument("--tune", action="store_true", help="also the seed sweep at 1 and 4 nodes")
    parser.add_argument("--grids", default="short,long")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--reanalyse", type=Path, default=None, help="derive the figures again from a written report"
    )
    args = parser.parse_args()
    console = Console(width=200)
    if args.reanalyse is not None:
        report = json.loads(args.reanalyse.read_text())
        add_predictions(report["grid"])
        console.print(_table(report["grid"]))
        args.reanalyse.write_text(json.dumps(report, indent=2) + "\n")
        return
    report = header("dispatch")
    report["rounds"] = args.rounds
    points = []
    for grid in args.grids.split(","):
        for core, counts in SHAPES:
            for nodes in counts:
                points.append(grid_point(nodes, core, grid, args.rounds, console))
    report["grid"] = json.loads(json.dumps(points, default=lambda o: o.model_dump(mode="json")))
    add_predictions(report["grid"])
    if args.tune:
        report["tune"] = tune_points(args.rounds, console)
    console.print(_table(report["grid"]))
    for t in report.get("tune", []):
        console.print(
            f"tune {t['nodes']}×0.4: {t['wall_s']:.2f}s, fixed {t['fixed_s']:.2f}s, "
            f"per node {t['trials_per_node']}, first starts {t['first_starts_s']}, "
            f"warmed {[(round(w['wall_s'], 2), w['trials_per_node']) for w in t['warmed']]}, "
            f"predicted {t['predicted_wall_s']:.2f}s ({t['predict_error_pct']:+.1f}%)"
        )
    console.print(f"written {write(report, args.output)}")


if __name__ == "__main__":
    main()
