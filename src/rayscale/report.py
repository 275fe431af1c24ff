"""Human views of a result: rich tables on the terminal and PNG plots in the bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from rayscale.results import Result, ScaleResult, TrialRecord, TuneTrial, iter_trials

if TYPE_CHECKING:
    from rayscale.journal import Partial

PLOTS = ("rmse_vs_trees.png", "r2_vs_trees.png", "timeline.png")
TUNE_PLOTS = ("tune_timeline.png", "tune_rmse_vs_rounds.png")


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f}s"


def timing_table(result: Result) -> Table:
    grid = result.grid
    assert grid is not None
    table = Table(title="Timing results", show_header=True, header_style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("detail")
    seq, par = grid.sequential, grid.parallel
    if seq:
        table.add_row(
            "Sequential time",
            _s(seq.wall_s),
            f"median of {len(seq.walls_s)}; min {_s(seq.wall_min_s)}, max {_s(seq.wall_max_s)}",
        )
    if par:
        table.add_row(
            "Parallel time (warm)",
            _s(par.wall_s),
            f"median of {len(par.walls_s)}; min {_s(par.wall_min_s)}, max {_s(par.wall_max_s)}",
        )
    if grid.speedup is not None:
        table.add_row("Speedup", f"{grid.speedup:.2f}x", "sequential / parallel")
        table.add_row("Time saved", _s(grid.time_saved_s), f"{grid.time_saved_pct:.1f}%")
    if par and grid.lower_bound_s is not None and grid.efficiency is not None:
        table.add_row("Makespan lower bound", _s(grid.lower_bound_s), "max(Σ fit / CPUs, longest fit)")
        table.add_row("Parallel efficiency", f"{grid.efficiency:.2f}", "lower bound / parallel time")
        table.add_row(
            "Cold start",
            _s(par.connect_s + par.warmup_s),
            f"connect {_s(par.connect_s)} + warm-up {_s(par.warmup_s)}, not in the timings",
        )
    table.add_row("Cluster", f"{grid.cpus} CPUs", f"{grid.nodes} node(s), {grid.configs} configs")
    return table


def best_table(result: Result) -> Table:
    grid = result.grid
    assert grid is not None
    best = grid.best
    table = Table(title="Best model", show_header=True, header_style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name in ("n_estimators", "learning_rate", "max_depth"):
        table.add_row(name, str(best.params.get(name, "default")))
    table.add_row("RMSE", f"{best.rmse:.2f}")
    table.add_row("R²", f"{best.r2:.4f}")
    table.add_row("MAE", f"{best.mae:.2f}")
    return table


def tune_table(result: Result) -> Table:
    tune = result.tune
    assert tune is not None
    table = Table(title=f"Tune sweep (XGBoost, {tune.scheduler})", show_header=True, header_style="bold")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("detail")
    table.add_row(
        "Trials",
        str(len(tune.trials)),
        f"{tune.sampling} sampling, {tune.max_concurrent} at a time, {tune.cpus_per_trial} CPU(s) each",
    )
    table.add_row(
        "Stopped early",
        str(tune.stopped_early),
        f"grace {tune.grace_period}, reduction {tune.reduction_factor}" if tune.scheduler == "asha" else "",
    )
    share = tune.rounds_run / tune.rounds_budget if tune.rounds_budget else 0.0
    table.add_row(
        "Boosting rounds run",
        f"{tune.rounds_run}",
        f"{share:.0%} of {tune.rounds_budget} ({len(tune.trials)} × {tune.max_rounds})",
    )
    table.add_row("Tune wall", _s(tune.wall_s), f"of which start-up {_s(tune.startup_s)}")
    table.add_row("Σ compute", _s(tune.compute_s), "time inside boosting, all trials")
    table.add_row("Compute bound", _s(tune.compute_bound_s), f"Σ compute / {tune.cpus} CPUs")
    table.add_row(
        "Overhead", _s(tune.overhead_s), f"wall − compute bound; reports every {tune.report_every} rounds"
    )
    return table


def baseline_table(result: Result) -> Table:
    tune = result.tune
    assert tune is not None
    table = Table(title="Baseline vs tuned (XGBoost)", show_header=True, header_style="bold")
    for column in ("metric", "baseline (defaults)", "Ray Tune best"):
        table.add_column(column, justify="right")
    table.add_row("RMSE", f"{tune.baseline.rmse:.2f}", f"{tune.best.rmse:.2f}")
    table.add_row("R²", f"{tune.baseline.r2:.4f}", f"{tune.best.r2:.4f}")
    table.add_row("MAE", f"{tune.baseline.mae:.2f}", f"{tune.best.mae:.2f}")
    table.add_row("improvement", "", f"{tune.improvement_pct:.1f}% lower RMSE")
    best = ", ".join(f"{k}={v}" for k, v in sorted(tune.best.params.items()))
    table.add_row("best config", "", best)
    return table


def print_partial(partial: Partial, console: Console, as_json: bool = False) -> None:
    """What a bundle without result.json holds, clearly marked PARTIAL."""
    m = partial.manifest
    if as_json:
        document = {"status": "partial", "run": m, "trials": partial.trials, "torn_lines": partial.torn_lines}
        console.print_json(json.dumps(document, default=str))
        return
    console.print(
        f"[bold yellow]PARTIAL[/] bundle {partial.path}: run {m.get('run_id')} is "
        f"{m.get('status', 'unknown')} (started {m.get('started_utc')}); no result.json",
        highlight=False,
    )
    done = ", ".join(m.get("phases_done", [])) or "none"
    recorded = ", ".join(f"{phase} {count}" for phase, count in partial.trials.items()) or "none"
    console.print(f"phases finished: {done}; trials recorded: {recorded}", highlight=False)
    if m.get("error"):
        console.print(f"error: {m['error']}", highlight=False, markup=False)
    if partial.torn_lines:
        console.print(f"{partial.torn_lines} line(s) cut short by the crash were skipped", highlight=False)


def print_report(result: Result, console: Console, bundle: Path | None = None) -> None:
    console.print(
        f"[bold]rayscale[/] run {result.run_id} · dataset {result.dataset['spec']} "
        f"({result.dataset['n_train']} train / {result.dataset['n_test']} test rows)"
    )
    if result.grid is not None:
        console.print(timing_table(result))
        console.print(best_table(result))
        if not result.grid.consistent:
            console.print(
                f"[red]error:[/] {len(result.grid.mismatches)} config(s) differ between runs: "
                f"{result.grid.mismatches[0]}"
            )
    if result.tune is not None:
        console.print(tune_table(result))
        console.print(baseline_table(result))
    if bundle is not None:
        console.print(f"bundle: {bundle}")


def _metric_plot(trials: list[TrialRecord], metric: str, label: str, path: Path, best_index: int) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    depths = sorted({t.params.get("max_depth") for t in trials}, key=lambda d: (d is None, d))
    for depth in depths:
        group = sorted(
            (t for t in trials if t.params.get("max_depth") == depth),
            key=lambda t: t.params.get("n_estimators", 100),
        )
        ax.plot(
            [t.params.get("n_estimators", 100) for t in group],
            [getattr(t, metric) for t in group],
            marker="o",
            label=f"max_depth={depth}",
        )
    top = next(t for t in trials if t.index == best_index)
    ax.scatter(
        [top.params.get("n_estimators", 100)],
        [getattr(top, metric)],
        s=160,
        facecolors="none",
        edgecolors="black",
        linewidths=1.5,
        label="best (lowest RMSE)",
        zorder=5,
    )
    ax.set_xlabel("number of trees (n_estimators)")
    ax.set_ylabel(label)
    ax.set_title(f"{label} vs number of trees")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _timeline_plot(
    phase: str, trials: list[TrialRecord] | list[TuneTrial], path: Path, lower_bound_s: float | None
) -> None:
    import matplotlib.pyplot as plt

    t0 = min(t.start_ts for t in trials)
    workers = sorted({(t.node, t.node_id[:8], t.pid) for t in trials})
    rows = {w: i for i, w in enumerate(workers)}
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(workers)), dpi=110)
    cmap = plt.get_cmap("viridis")
    depths = sorted({t.params.get("max_depth") or 0 for t in trials})
    for t in trials:
        row = rows[(t.node, t.node_id[:8], t.pid)]
        shade = cmap(depths.index(t.params.get("max_depth") or 0) / max(1, len(depths) - 1))
        ax.barh(row, t.end_ts - t.start_ts, left=t.start_ts - t0, height=0.7, color=shade, edgecolor="white")
        ax.text(
            t.start_ts - t0 + (t.end_ts - t.start_ts) / 2,
            row,
            str(t.index),
            ha="center",
            va="center",
            fontsize=6,
            color="white",
        )
    if lower_bound_s:
        ax.axvline(lower_bound_s, color="red", linestyle="--", linewidth=1, label="makespan lower bound")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_yticks(range(len(workers)))
    ax.set_yticklabels([f"{node} {nid} pid {pid}".strip() for node, nid, pid in workers], fontsize=7)
    ax.set_xlabel("seconds since the first trial started")
    ax.set_title(f"Trials per worker ({phase}); gaps are idle time, long bars stragglers")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _tune_rounds_plot(trials: list[TuneTrial], baseline_rmse: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for stopped, label, marker in ((False, "ran to max rounds", "o"), (True, "stopped early (ASHA)", "x")):
        group = [t for t in trials if t.stopped_early == stopped]
        if group:
            ax.scatter([t.rounds for t in group], [t.rmse for t in group], marker=marker, label=label)
    ax.axhline(baseline_rmse, color="grey", linestyle="--", label="baseline (XGBoost defaults)")
    ax.set_xlabel("boosting rounds run")
    ax.set_ylabel("RMSE at the last report")
    ax.set_title("Tune trials: where each stopped and how good it was")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(result: Result, out_dir: Path) -> list[Path]:
    """RMSE and R² vs number of trees (the first seed's plots), trial timelines, Tune's rounds."""
    import matplotlib

    matplotlib.use("Agg")
    paths: list[Path] = []
    phases = iter_trials(result)
    if result.grid is not None and phases:
        phase, trials = phases[-1]  # the parallel phase when it ran, else the sequential one
        paths = [out_dir / name for name in PLOTS]
        _metric_plot(trials, "rmse", "RMSE", paths[0], result.grid.best.index)
        _metric_plot(trials, "r2", "R²", paths[1], result.grid.best.index)
        bound = result.grid.lower_bound_s if phase == "grid_parallel" else None
        _timeline_plot(phase, trials, paths[2], bound)
    if result.tune is not None:
        timeline, rounds = (out_dir / name for name in TUNE_PLOTS)
        _timeline_plot("tune", result.tune.trials, timeline, result.tune.compute_bound_s)
        _tune_rounds_plot(result.tune.trials, result.tune.baseline.rmse, rounds)
        paths += [timeline, rounds]
    return paths


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def dashboard_png(results: list[Result], path: Path) -> Path:
    """The Grafana dashboard's panels drawn from result bundles (for docs, where Grafana is absent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(results, key=lambda r: (r.cluster.nodes if r.cluster else 1, r.run_id))
    nodes = [r.cluster.nodes if r.cluster else 1 for r in runs]
    fig, axes = plt.subplots(4, 2, figsize=(13, 14), dpi=100)
    ax = axes.flat

    grid_runs = [
        (n, r.grid) for n, r in zip(nodes, runs, strict=True) if r.grid and r.grid.speedup is not None
    ]
    ax[0].plot([n for n, _ in grid_runs], [g.speedup for _, g in grid_runs], "o-", label="speedup")
    ax[0].plot([n for n, _ in grid_runs], [g.cpus for _, g in grid_runs], "k--", label="ideal (cluster CPUs)")
    ax[0].set(title="Speedup vs node count", xlabel="nodes", ylabel="sequential / parallel")

    phase_eff: dict[str, list[tuple[int, float]]] = {}
    phase_wall: dict[str, list[tuple[int, float]]] = {}
    for n, r in zip(nodes, runs, strict=True):
        if r.grid and r.grid.parallel and r.grid.efficiency is not None:
            phase_eff.setdefault("grid_parallel", []).append((n, r.grid.efficiency))
        if r.tune:
            phase_eff.setdefault("tune", []).append((n, r.tune.compute_bound_s / r.tune.wall_s))
        for name, wall in (
            ("grid_sequential", r.grid.sequential.wall_s if r.grid and r.grid.sequential else None),
            ("grid_parallel", r.grid.parallel.wall_s if r.grid and r.grid.parallel else None),
            ("tune", r.tune.wall_s if r.tune else None),
        ):
            if wall is not None:
                phase_wall.setdefault(name, []).append((n, wall))
    for name, points in phase_eff.items():
        ax[1].plot(*zip(*points, strict=True), "o-", label=name)
    ax[1].axhline(1.0, color="k", linestyle="--", label="ideal")
    ax[1].set(
        title="Parallel efficiency vs node count", xlabel="nodes", ylabel="lower bound / wall", ylim=(0, 1.1)
    )
    for name, points in phase_wall.items():
        ax[2].plot(*zip(*points, strict=True), "o-", label=name)
    ax[2].set(title="Phase wall time vs node count", xlabel="nodes", ylabel="seconds")

    labels, walls, bounds = [], [], []
    for r in runs:
        if r.grid and r.grid.parallel and r.grid.lower_bound_s is not None:
            labels.append(f"grid {r.run_id[-6:]}")
            walls.append(r.grid.parallel.wall_s)
            bounds.append(r.grid.lower_bound_s)
        if r.tune:
            labels.append(f"tune {r.run_id[-6:]}")
            walls.append(r.tune.wall_s)
            bounds.append(r.tune.compute_bound_s)
    x = range(len(labels))
    ax[3].bar([i - 0.2 for i in x], walls, 0.4, label="wall")
    ax[3].bar([i + 0.2 for i in x], bounds, 0.4, label="lower bound")
    ax[3].set_xticks(list(x), labels, rotation=30, fontsize=7)
    ax[3].set(title="Makespan vs lower bound", ylabel="seconds")

    durations: dict[str, list[float]] = {}
    queues: dict[str, list[float]] = {}
    throughput: list[tuple[str, float]] = []
    best: list[tuple[str, float]] = []
    for r in runs:
        for phase, trials in iter_trials(r):
            durations.setdefault(phase, []).extend(t.fit_s for t in trials)
            queues.setdefault(phase, []).extend(t.queue_s for t in trials)
        if r.tune:
            durations.setdefault("tune", []).extend(t.compute_s for t in r.tune.trials)
        if r.grid and r.grid.parallel:
            throughput.append((f"grid {r.run_id[-6:]}", len(r.grid.parallel.trials) / r.grid.parallel.wall_s))
            best.append((f"grid {r.run_id[-6:]}", r.grid.best.rmse))
        if r.tune:
            throughput.append((f"tune {r.run_id[-6:]}", len(r.tune.trials) / r.tune.wall_s))
            best.append((f"tune {r.run_id[-6:]}", r.tune.best.rmse))
    names = list(durations)
    for offset, q in ((-0.25, 0.5), (0.0, 0.95), (0.25, 0.99)):
        ax[4].bar(
            [i + offset for i in range(len(names))],
            [_quantile(durations[n], q) for n in names],
            0.25,
            label=f"p{round(q * 100)}",
        )
    ax[4].set_xticks(range(len(names)), names)
    ax[4].set(title="Trial duration p50 / p95 / p99 by phase", ylabel="seconds")
    qnames = list(queues)
    ax[5].bar(qnames, [sum(queues[n]) / len(queues[n]) for n in qnames], label="mean")
    ax[5].bar(qnames, [_quantile(queues[n], 0.95) for n in qnames], alpha=0.4, label="p95")
    ax[5].set(title="Queue wait (submitted → started)", ylabel="seconds")
    ax[6].bar([t for t, _ in throughput], [v for _, v in throughput])
    ax[6].set(title="Trials per second", ylabel="trials / s")
    ax[6].tick_params(axis="x", rotation=30, labelsize=7)
    ax[7].bar([t for t, _ in best], [v for _, v in best])
    ax[7].set(title="Best RMSE per run", ylabel="RMSE")
    ax[7].tick_params(axis="x", rotation=30, labelsize=7)
    for a in ax:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.suptitle("rayscale — scaling dashboard (rendered from result bundles)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def scale_tables(result: ScaleResult) -> list[Table]:
    """One table per phase: node count against wall, speedup, efficiency and the fits."""
    tables = []
    for phase in dict.fromkeys(p.phase for p in result.points):
        fit = next((f for f in result.fits if f.phase == phase), None)
        caption = None
        if fit is not None:
            peak = f"{fit.usl_peak_nodes:.1f}" if fit.usl_peak_nodes is not None else "none (κ = 0)"
            caption = (
                f"Amdahl serial fraction {fit.amdahl_serial_fraction:.3f}; USL σ {fit.usl_sigma:.4f}, "
                f"κ {fit.usl_kappa:.5f}, predicted peak at {peak} nodes"
            )
        table = Table(
            title=f"Scaling: {phase} ({result.mode}, {result.cpus_per_node} CPU(s) per node)",
            caption=caption,
            header_style="bold",
        )
        for column in (
            "nodes",
            "CPUs",
            "wall (min–max)",
            "speedup",
            "efficiency",
            "vs lower bound",
            "Karp–Flatt",
            "node-hours",
            "stragglers",
        ):
            table.add_column(column, justify="right")
        for p in (p for p in result.points if p.phase == phase):
            table.add_row(
                str(p.nodes),
                str(p.cpus),
                f"{p.wall_s:.2f}s ({p.wall_min_s:.2f}–{p.wall_max_s:.2f})",
                f"{p.speedup:.2f}x",
                f"{p.efficiency:.2f}",
                f"{p.efficiency_vs_bound:.2f}",
                "—" if p.karp_flatt is None else f"{p.karp_flatt:.3f}",
                f"{p.node_hours:.4f}",
                str(len(p.stragglers)),
            )
        tables.append(table)
    return tables


def print_scale_report(result: ScaleResult, console: Console, bundle: Path | None = None) -> None:
    console.print(
        f"[bold]rayscale[/] scale {result.run_id} · dataset {result.dataset['spec']} · "
        f"nodes {', '.join(map(str, result.node_counts))}"
    )
    for table in scale_tables(result):
        console.print(table)
    for c in result.cheapest:
        console.print(
            f"cheapest {c.phase} meeting the {result.deadline_s:g}s deadline: {c.nodes} node(s), "
            f"{c.cost:.4f} at {result.price_per_node_hour:g}/node-hour ({c.wall_s:.2f}s)"
        )
    if bundle is not None:
        console.print(f"bundle: {bundle}")


def write_scale_plot(result: ScaleResult, out_dir: Path) -> Path:
    """speedup vs nodes (ideal, Amdahl and USL fits), efficiency vs nodes, wall vs nodes; min–max whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rayscale.scaling import AmdahlFit, USLFit

    fig, (ax_s, ax_e, ax_w) = plt.subplots(1, 3, figsize=(16, 4.8), dpi=100)
    top = max(result.node_counts)
    grid = np.linspace(1, max(top, 2), 200)
    ax_s.plot(grid, grid, "k--", linewidth=1, label="ideal")
    for phase in dict.fromkeys(p.phase for p in result.points):
        pts = sorted((p for p in result.points if p.phase == phase), key=lambda p: p.nodes)
        n = [p.nodes for p in pts]
        base = pts[0].wall_s * pts[0].nodes
        low = [p.speedup - base / p.wall_max_s for p in pts]
        high = [base / p.wall_min_s - p.speedup for p in pts]
        ax_s.errorbar(
            n, [p.speedup for p in pts], yerr=[low, high], fmt="o-", capsize=4, label=f"{phase} measured"
        )
        fit = next((f for f in result.fits if f.phase == phase), None)
        if fit is not None:
            amdahl = AmdahlFit(fit.amdahl_serial_fraction, fit.amdahl_rmse)
            usl = USLFit(fit.usl_sigma, fit.usl_kappa, fit.usl_rmse)
            ax_s.plot(
                grid,
                [amdahl.predict(x) for x in grid],
                ":",
                label=f"{phase} Amdahl f={amdahl.serial_fraction:.3f}",
            )
            ax_s.plot(
                grid,
                [usl.predict(x) for x in grid],
                "-.",
                label=f"{phase} USL σ={usl.sigma:.3f} κ={usl.kappa:.4f}",
            )
        eff_low = [p.efficiency - base / p.wall_max_s / p.nodes for p in pts]
        eff_high = [base / p.wall_min_s / p.nodes - p.efficiency for p in pts]
        ax_e.errorbar(
            n, [p.efficiency for p in pts], yerr=[eff_low, eff_high], fmt="o-", capsize=4, label=phase
        )
        ax_e.plot(n, [p.efficiency_vs_bound for p in pts], "x--", label=f"{phase} vs lower bound")
        ax_w.errorbar(
            n,
            [p.wall_s for p in pts],
            yerr=[[p.wall_s - p.wall_min_s for p in pts], [p.wall_max_s - p.wall_s for p in pts]],
            fmt="o-",
            capsize=4,
            label=f"{phase} wall",
        )
        ax_w.plot(n, [p.lower_bound_s for p in pts], "x--", label=f"{phase} lower bound")
    ax_e.axhline(1.0, color="k", linestyle="--", linewidth=1)
    ax_s.set(title="Speedup vs nodes", xlabel="nodes", ylabel="T(1) / T(N)")
    ax_e.set(title="Parallel efficiency vs nodes", xlabel="nodes", ylabel="speedup / N", ylim=(0, 1.1))
    ax_w.set(title="Wall time vs nodes", xlabel="nodes", ylabel="seconds")
    for ax in (ax_s, ax_e, ax_w):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_xticks(result.node_counts)
    fig.suptitle(
        f"rayscale scale · {result.dataset['spec']} · {result.cpus_per_node} CPU(s) per node · "
        f"{result.mode}; whiskers: min–max over repeats"
    )
    fig.tight_layout()
    path = out_dir / "scaling.png"
    fig.savefig(path)
    plt.close(fig)
    return path
