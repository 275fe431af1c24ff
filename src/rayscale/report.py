"""Human views of a result: rich tables on the terminal and PNG plots in the bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from rayscale.bundle import all_trials
from rayscale.schema import GridResult, Result, ScaleResult, TrialRecord, TuneTrial
from rayscale.stats import NOISY_HALF_WIDTH, half_width, repeats_to_narrow

if TYPE_CHECKING:
    from rayscale.compare import Row
    from rayscale.journal import Partial
    from rayscale.predict import Costs, Forecast

PLOTS = ("rmse_vs_trees.png", "r2_vs_trees.png", "timeline.png")
TUNE_PLOTS = ("tune_timeline.png", "tune_rmse_vs_rounds.png")
WATERFALL = "speedup_waterfall.png"
FACTOR_LABELS = {
    "baseline": "baseline's own overhead (sequential wall / Σ fit)",
    "contention": "contention (Σ sequential fit / Σ parallel fit)",
    "granularity": "granularity (Σ fit / (CPUs × lower bound))",
    "schedule": "schedule (lower bound / makespan)",
    "dispatch": "dispatch (makespan / parallel wall)",
}


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f}s"


def plural(count: float, word: str) -> str:
    return f"{count:g} {word}{'' if count == 1 else 's'}"


def _table(title: str, *columns: str, caption: str | None = None) -> Table:
    """A table whose cells wrap (never cut to '…') on a narrow or piped terminal."""
    table = Table(title=title, caption=caption, header_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 or column == "detail" else "right", overflow="fold")
    return table


def _spread(timing: object) -> str:
    t = timing  # a Rounds: SequentialPhase, ParallelPhase or ScalePoint
    n = len(t.rounds)  # type: ignore[attr-defined]
    if n == 1:
        return "one round"
    return (
        f"median of {n} rounds; min {_s(t.wall_min_s)}, max {_s(t.wall_max_s)}, "  # type: ignore[attr-defined]
        f"MAD {_s(t.wall_mad_s)}"  # type: ignore[attr-defined]
    )


def timing_table(result: Result) -> Table:
    grid = result.grid
    assert grid is not None
    table = _table("Timing results", "figure", "value", "detail")
    seq, par = grid.sequential, grid.parallel
    if seq:
        table.add_row("Sequential time", _s(seq.wall_s), _spread(seq))
    if par:
        table.add_row("Parallel time (warm)", _s(par.wall_s), _spread(par))
    if grid.speedup is not None and grid.speedup_ci is not None:
        low, high = grid.speedup_ci
        table.add_row(
            "Speedup", f"{grid.speedup:.2f}x", f"sequential / parallel; 95% CI {low:.2f}–{high:.2f}"
        )
        table.add_row("Time saved", _s(grid.time_saved_s), f"{grid.time_saved_pct:.1f}%")
    if grid.parallel_efficiency is not None and grid.parallel_efficiency_ci is not None:
        low, high = grid.parallel_efficiency_ci
        table.add_row(
            "Parallel efficiency",
            f"{grid.parallel_efficiency:.2f}",
            f"speedup / {plural(grid.cpus, 'CPU')}; 95% CI {low:.2f}–{high:.2f}",
        )
    if par and grid.lower_bound_s is not None and grid.schedule_efficiency is not None:
        table.add_row(
            "Makespan lower bound",
            _s(grid.lower_bound_s),
            f"max(Σ fit / {plural(grid.slots, 'trial slot')}, longest fit)",
        )
        table.add_row("Schedule efficiency", f"{grid.schedule_efficiency:.2f}", "lower bound / parallel time")
        table.add_row(
            "Cold start",
            _s(par.connect_s + par.warmup_s),
            f"connect {_s(par.connect_s)} + warm-up {_s(par.warmup_s)}, not in the timings",
        )
    if grid.ray_cpu_share is not None:
        table.add_row(
            "Ray's own CPU", f"{grid.ray_cpu_share:.1%}", "raylet, GCS, agents; share of CPU × wall"
        )
    table.add_row(
        "Cluster", plural(grid.cpus, "CPU"), f"{plural(grid.nodes, 'node')}, {grid.configs} configs"
    )
    return table


def breakdown_table(grid: GridResult) -> Table:
    """Where the missing speedup went: factors multiplying to the parallel efficiency."""
    assert grid.breakdown is not None and grid.speedup is not None
    table = _table("Where the speedup went", "factor", "×", "running speedup")
    running = float(grid.cpus)
    table.add_row(f"ideal ({plural(grid.cpus, 'CPU')})", "", f"{running:.2f}x")
    for name, value in grid.breakdown.items():
        running *= value
        table.add_row(FACTOR_LABELS.get(name, name), f"{value:.3f}", f"{running:.2f}x")
    table.add_row("measured speedup", "", f"{grid.speedup:.2f}x")
    return table


def noise_line(grid: GridResult) -> str | None:
    """One line when the speedup's interval is wide, with the repeats that would narrow it."""
    if grid.speedup is None or grid.speedup_ci is None or grid.sequential is None:
        return None
    width = half_width(grid.speedup_ci, grid.speedup)
    if width <= NOISY_HALF_WIDTH:
        return None
    rounds = len(grid.sequential.rounds)
    need = repeats_to_narrow(grid.speedup_ci, grid.speedup, rounds)
    return (
        f"noisy machine: the speedup's 95% CI is ±{width:.0%} of it over {rounds} paired rounds; "
        f"about --repeats {need} would bring it within ±{NOISY_HALF_WIDTH:.0%}"
    )


def best_table(result: Result) -> Table:
    grid = result.grid
    assert grid is not None
    best = grid.best
    caption = (
        "selected on the validation split, scored on the untouched test split"
        if grid.selected_on == "validation"
        else "selected and scored on the same hold-out (optimistic)"
    )
    table = _table("Best model", "figure", "value", caption=caption)
    for name in sorted(swept(grid.reference.trials)):
        table.add_row(name, str(best.params.get(name, "default")))
    table.add_row("RMSE", f"{best.rmse:.2f}")
    table.add_row("R²", f"{best.r2:.4f}")
    table.add_row("MAE", f"{best.mae:.2f}")
    if best.val_rmse is not None:
        table.add_row("validation RMSE", f"{best.val_rmse:.2f}")
    return table


def swept(trials: list[TrialRecord] | list[TuneTrial]) -> list[str]:
    """Parameters that take more than one value across the trials (all of them for a single config)."""
    names = sorted({name for t in trials for name in t.params})
    varying = [n for n in names if len({repr(t.params.get(n)) for t in trials}) > 1]
    return varying or [n for n in names if n != "random_state"]


def tune_table(result: Result) -> Table:
    tune = result.tune
    assert tune is not None
    table = _table(f"Tune sweep (XGBoost, {tune.scheduler})", "figure", "value", "detail")
    table.add_row(
        "Trials",
        str(len(tune.trials)),
        f"{tune.sampling} sampling, {tune.max_concurrent} at a time, "
        f"{plural(tune.cpus_per_trial, 'CPU')} each",
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
    used = min(tune.cpus, tune.max_concurrent * tune.cpus_per_trial)
    table.add_row("Compute bound", _s(tune.compute_bound_s), f"Σ compute / {plural(used, 'CPU')} in use")
    table.add_row(
        "Overhead", _s(tune.overhead_s), f"wall − compute bound; reports every {tune.report_every} rounds"
    )
    table.add_row(
        "Parallel efficiency",
        f"{tune.parallel_efficiency:.2f}",
        f"Σ compute / ({plural(tune.cpus, 'CPU')} × wall); "
        f"{tune.parallel_efficiency_after_startup:.2f} after start-up",
    )
    table.add_row(
        "Plain loop (est.)",
        _s(tune.plain_loop_s),
        f"every config to {tune.max_rounds} rounds in one process, at its trial's s/round",
    )
    return table


def baseline_table(result: Result) -> Table:
    tune = result.tune
    assert tune is not None
    table = _table("Baseline vs tuned (XGBoost)", "metric", "baseline (defaults)", "Ray Tune best")
    table.add_row("RMSE", f"{tune.baseline.rmse:.2f}", f"{tune.best.rmse:.2f}")
    table.add_row("R²", f"{tune.baseline.r2:.4f}", f"{tune.best.r2:.4f}")
    table.add_row("MAE", f"{tune.baseline.mae:.2f}", f"{tune.best.mae:.2f}")
    change = tune.improvement_pct
    table.add_row(
        "change",
        "",
        f"{change:.1f}% lower RMSE" if change >= 0 else f"{-change:.1f}% higher RMSE (tuned is worse)",
    )
    best = ", ".join(f"{k}={v}" for k, v in sorted(tune.best.params.items()))
    table.add_row("best config", "", f"{best}, rounds={tune.best.rounds}")
    return table


def compare_table(title: str, rows: list[Row]) -> Table:
    table = _table(title, "figure", "A", "B", "change", "verdict")
    for row in rows:
        change = row.change_pct
        table.add_row(
            row.figure,
            "—" if row.a is None else f"{row.a:.4g}",
            "—" if row.b is None else f"{row.b:.4g}",
            "—" if change is None else f"{change:+.1f}%",
            row.verdict,
        )
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
    d = result.dataset
    validation = f" / {d['n_val']} validation" if d.get("n_val") else ""
    features = f", {d['n_features']} features" if "n_features" in d else ""
    console.print(
        f"[bold]rayscale[/] run {result.run_id} · dataset {d['spec']} "
        f"({d['n_train']} train{validation} / {d['n_test']} test rows{features})",
        highlight=False,
    )
    grid = result.grid
    if grid is not None:
        console.print(timing_table(result))
        if grid.breakdown is not None:
            console.print(breakdown_table(grid))
        for line in (noise_line(grid), grid.end_to_end.sentence() if grid.end_to_end else None):
            if line:
                console.print(line, highlight=False)
        console.print(best_table(result))
        if grid.mismatches:
            console.print(
                f"[red]error:[/] {len(grid.mismatches)} config(s) differ between runs: {grid.mismatches[0]}"
            )
    tune = result.tune
    if tune is not None:
        console.print(tune_table(result))
        console.print(tune.end_to_end.sentence("Tune (vs the plain loop)", "start-up"), highlight=False)
        console.print(baseline_table(result))
    if bundle is not None:
        console.print(f"bundle: {bundle}")


def _metric_plot(trials: list[TrialRecord], metric: str, label: str, path: Path, best_index: int) -> None:
    """One line per combination of the other swept parameters (no zig-zag through mixed configs)."""
    import matplotlib.pyplot as plt

    others = [n for n in swept(trials) if n != "n_estimators"]
    lines: dict[tuple, list[TrialRecord]] = {}
    for t in trials:
        lines.setdefault(tuple(t.params.get(n) for n in others), []).append(t)
    fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=110)
    for key, group in sorted(lines.items(), key=lambda kv: repr(kv[0])):
        group.sort(key=lambda t: t.params.get("n_estimators", 100))
        name = ", ".join(f"{n}={v}" for n, v in zip(others, key, strict=True)) or "all configs"
        ax.plot(
            [t.params.get("n_estimators", 100) for t in group],
            [getattr(t, metric) for t in group],
            marker="o",
            label=name if len(lines) <= 12 else None,
        )
    top = next(t for t in trials if t.index == best_index)
    ax.scatter(
        [top.params.get("n_estimators", 100)],
        [getattr(top, metric)],
        s=160,
        facecolors="none",
        edgecolors="black",
        linewidths=1.5,
        label="best",
        zorder=5,
    )
    ax.set_xlabel("number of trees (n_estimators)")
    ax.set_ylabel(label)
    covary = f"; one line per {', '.join(others)}" if others else ""
    ax.set_title(f"{label} vs number of trees{covary}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _timeline_plot(
    phase: str,
    trials: list[TrialRecord] | list[TuneTrial],
    path: Path,
    lower_bound_s: float | None,
    started_ts: float | None = None,
) -> None:
    """Trials per worker; colours by max_depth with a legend; with ``started_ts`` (Tune's fit())
    the axis starts there and the start-up before the first trial is shaded."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    first = min(t.start_ts for t in trials)
    t0 = started_ts if started_ts is not None else first
    workers = sorted({(t.node, t.node_id[:8], t.pid) for t in trials})
    rows = {w: i for i, w in enumerate(workers)}
    fig, ax = plt.subplots(figsize=(8.5, 1.4 + 0.45 * len(workers)), dpi=110)
    cmap = plt.get_cmap("viridis")
    depths = sorted({t.params.get("max_depth") or 0 for t in trials})
    colour = {d: cmap(i / max(1, len(depths) - 1)) for i, d in enumerate(depths)}
    for t in trials:
        row = rows[(t.node, t.node_id[:8], t.pid)]
        shade = colour[t.params.get("max_depth") or 0]
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
    handles: list = [Patch(color=colour[d], label=f"max_depth={d or 'default'}") for d in depths]
    if started_ts is not None and first > t0:
        ax.axvspan(0, first - t0, color="grey", alpha=0.25)
        handles.append(Patch(color="grey", alpha=0.25, label=f"Tune start-up {first - t0:.2f}s"))
    if lower_bound_s:
        offset = first - t0
        handles.append(
            ax.axvline(offset + lower_bound_s, color="red", linestyle="--", linewidth=1, label="lower bound")
        )
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_yticks(range(len(workers)))
    ax.set_yticklabels([f"{node} {nid} pid {pid}".strip() for node, nid, pid in workers], fontsize=7)
    ax.set_xlabel("seconds since Tune's fit()" if started_ts is not None else "seconds since the first trial")
    ax.set_title(f"Trials per worker ({phase}); gaps are idle time, long bars stragglers", fontsize=9)
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


def waterfall_plot(grid: GridResult, path: Path) -> Path:
    """Ideal N× on the left, each factor's loss (or gain) as a step, the measured speedup on the right."""
    import matplotlib.pyplot as plt

    assert grid.breakdown is not None and grid.speedup is not None
    fig, ax = plt.subplots(figsize=(8.5, 4.4), dpi=110)
    level = float(grid.cpus)
    ax.bar(0, level, color="#4c72b0")
    ax.text(0, level, f"{level:.2f}x", ha="center", va="bottom", fontsize=8)
    labels = [f"ideal\n{plural(grid.cpus, 'CPU')}"]
    top = level
    for i, (name, factor) in enumerate(grid.breakdown.items(), start=1):
        after = level * factor
        top = max(top, after)
        ax.bar(i, after - level, bottom=level, color="#c44e52" if after < level else "#55a868")
        ax.text(i, max(level, after), f"×{factor:.3f}", ha="center", va="bottom", fontsize=8)
        labels.append(name)
        level = after
    end = len(grid.breakdown) + 1
    ax.bar(end, grid.speedup, color="#8172b2")
    ax.text(end, grid.speedup, f"{grid.speedup:.2f}x", ha="center", va="bottom", fontsize=8)
    labels.append("measured\nspeedup")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("speedup")
    ax.set_title(
        f"Where the speedup went: parallel efficiency {grid.parallel_efficiency:.2f} "
        "= the product of the factors",
        fontsize=9,
    )
    ax.set_ylim(0, top * 1.1)  # headroom for the labels above the highest step
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(result: Result, out_dir: Path) -> list[Path]:
    """RMSE and R² vs number of trees (the first seed's plots), trial timelines, the speedup
    waterfall, Tune's rounds."""
    import matplotlib

    matplotlib.use("Agg")
    paths: list[Path] = []
    grid = result.grid
    if grid is not None:
        phase = "grid_parallel" if grid.parallel else "grid_sequential"
        trials = grid.reference.trials
        paths = [out_dir / name for name in PLOTS]
        _metric_plot(trials, "rmse", "RMSE", paths[0], grid.best.index)
        _metric_plot(trials, "r2", "R²", paths[1], grid.best.index)
        _timeline_plot(phase, trials, paths[2], grid.lower_bound_s)
        if grid.breakdown is not None:
            paths.append(waterfall_plot(grid, out_dir / WATERFALL))
    if result.tune is not None:
        tune = result.tune
        timeline, rounds = (out_dir / name for name in TUNE_PLOTS)
        started = min(t.start_ts for t in tune.trials) - tune.startup_s
        _timeline_plot("tune", tune.trials, timeline, tune.compute_bound_s, started_ts=started)
        _tune_rounds_plot(tune.trials, tune.baseline.rmse, rounds)
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
        if r.grid and r.grid.parallel_efficiency is not None:
            phase_eff.setdefault("grid_parallel", []).append((n, r.grid.parallel_efficiency))
        if r.tune:
            phase_eff.setdefault("tune", []).append((n, r.tune.parallel_efficiency))
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
        title="Parallel efficiency vs node count", xlabel="nodes", ylabel="speedup / CPUs", ylim=(0, 1.1)
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
        for phase, trials in all_trials(r):
            durations.setdefault(phase, []).extend(t.duration_s for t in trials)
            if phase != "tune":
                queues.setdefault(phase, []).extend(t.queue_s for t in trials if isinstance(t, TrialRecord))
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
    """One table per phase: node count against wall, speedup, efficiencies, breakdown and the fits."""
    tables = []
    for phase in dict.fromkeys(p.phase for p in result.points):
        fit = next((f for f in result.fits if f.phase == phase), None)
        caption = None
        if fit is not None:
            peak = f"{fit.usl_peak_nodes:.1f}" if fit.usl_peak_nodes is not None else "none (κ = 0)"
            exact = " (2 points: an exact interpolation, not a prediction)" if fit.points == 2 else ""
            caption = (
                f"Amdahl serial fraction {fit.amdahl_serial_fraction:.3f}; USL σ {fit.usl_sigma:.4f}, "
                f"κ {fit.usl_kappa:.5f}, peak at {peak} nodes{exact}"
            )
        points = [p for p in result.points if p.phase == phase]
        factors = list(dict.fromkeys(f for p in points for f in p.breakdown))
        table = _table(
            f"Scaling: {phase} ({result.mode}, {plural(result.cpus_per_node, 'CPU')} per node)",
            "nodes",
            "CPUs",
            "wall s",
            "min–max s",
            "speedup",
            "parallel eff.",
            "schedule eff.",
            *factors,
            "Karp–Flatt",
            "cold start s",
            "node-hours",
            "stragglers",
            caption=caption,
        )
        for p in points:
            table.add_row(
                str(p.nodes),
                str(p.cpus),
                f"{p.wall_s:.2f}",
                f"{p.wall_min_s:.2f}–{p.wall_max_s:.2f}",
                f"{p.speedup:.2f}x",
                f"{p.parallel_efficiency:.2f}",
                f"{p.schedule_efficiency:.2f}",
                *(f"{p.breakdown[f]:.3f}" if f in p.breakdown else "—" for f in factors),
                "—" if p.karp_flatt is None else f"{p.karp_flatt:.3f}",
                f"{p.connect_s + p.warmup_s:.2f}",
                f"{p.node_hours:.4f}",
                str(len(p.stragglers)),
            )
        tables.append(table)
    return tables


def karp_flatt_notes(result: ScaleResult) -> list[str]:
    """A Karp–Flatt value outside [0, 1] is not a serial fraction: say what it means."""
    notes = []
    for p in result.points:
        if p.karp_flatt is not None and not 0.0 <= p.karp_flatt <= 1.0:
            why = (
                "superlinear speedup (caches, or a slow 1-node baseline), not a negative serial part"
                if p.karp_flatt < 0
                else "the speedup is below 1: adding nodes slowed the work down"
            )
            notes.append(
                f"{p.phase} at {p.nodes} nodes: Karp–Flatt {p.karp_flatt:.3f} is outside [0, 1]: {why}"
            )
    return notes


def cheapest_line(phase: str, nodes: int, cost: float, wall_s: float, price: float, deadline_s: float) -> str:
    """The one sentence naming the cheapest node count within a deadline (scale and predict)."""
    return (
        f"cheapest {phase} meeting the {deadline_s:g}s deadline: {plural(nodes, 'node')}, "
        f"{cost:.4f} at {price:g}/node-hour ({wall_s:.2f}s)"
    )


def print_scale_report(result: ScaleResult, console: Console, bundle: Path | None = None) -> None:
    console.print(
        f"[bold]rayscale[/] scale {result.run_id} · dataset {result.dataset['spec']} · "
        f"nodes {', '.join(map(str, result.node_counts))}",
        highlight=False,
    )
    for table in scale_tables(result):
        console.print(table)
    for line in karp_flatt_notes(result):
        console.print(line, highlight=False)
    for c in result.cheapest:
        assert result.deadline_s is not None and result.price_per_node_hour is not None
        line = cheapest_line(
            c.phase, c.nodes, c.cost, c.wall_s, result.price_per_node_hour, result.deadline_s
        )
        console.print(line, highlight=False)
    if bundle is not None:
        console.print(f"bundle: {bundle}", highlight=False)


def write_scale_plot(result: ScaleResult, out_dir: Path) -> Path:
    """Speedup (ideal, Amdahl and USL fits), efficiencies and wall vs nodes, min–max whiskers;
    one colour per phase across the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rayscale.scaling import AmdahlFit, USLFit

    fig, (ax_s, ax_e, ax_w) = plt.subplots(1, 3, figsize=(16, 4.8), dpi=100)
    top = max(result.node_counts)
    xs = np.linspace(1, max(top, 2), 200)
    ax_s.plot(xs, xs, "k--", linewidth=1, label="ideal")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, phase in enumerate(dict.fromkeys(p.phase for p in result.points)):
        c = colours[i % len(colours)]
        pts = sorted((p for p in result.points if p.phase == phase), key=lambda p: p.nodes)
        n = [p.nodes for p in pts]
        base = pts[0].wall_s * pts[0].nodes
        low = [p.speedup - base / p.wall_max_s for p in pts]
        high = [base / p.wall_min_s - p.speedup for p in pts]
        ax_s.errorbar(
            n, [p.speedup for p in pts], yerr=[low, high], fmt="o-", color=c, capsize=4, label=phase
        )
        fit = next((f for f in result.fits if f.phase == phase), None)
        if fit is not None:
            amdahl = AmdahlFit(fit.amdahl_serial_fraction, fit.amdahl_rmse)
            usl = USLFit(fit.usl_sigma, fit.usl_kappa, fit.usl_rmse)
            note = " (2 points: exact)" if fit.points == 2 else ""
            ax_s.plot(
                xs,
                [amdahl.predict(x) for x in xs],
                ":",
                color=c,
                label=f"Amdahl f={amdahl.serial_fraction:.3f}{note}",
            )
            ax_s.plot(
                xs,
                [usl.predict(x) for x in xs],
                "-.",
                color=c,
                alpha=0.6,
                label=f"USL σ={usl.sigma:.3f} κ={usl.kappa:.4f}{note}",
            )
        eff_low = [p.parallel_efficiency - base / p.wall_max_s / p.nodes for p in pts]
        eff_high = [base / p.wall_min_s / p.nodes - p.parallel_efficiency for p in pts]
        ax_e.errorbar(
            n,
            [p.parallel_efficiency for p in pts],
            yerr=[eff_low, eff_high],
            fmt="o-",
            color=c,
            capsize=4,
            label=f"{phase} parallel",
        )
        ax_e.plot(n, [p.schedule_efficiency for p in pts], "x--", color=c, label=f"{phase} schedule")
        ax_w.errorbar(
            n,
            [p.wall_s for p in pts],
            yerr=[[p.wall_s - p.wall_min_s for p in pts], [p.wall_max_s - p.wall_s for p in pts]],
            fmt="o-",
            color=c,
            capsize=4,
            label=f"{phase} wall",
        )
        ax_w.plot(n, [p.lower_bound_s for p in pts], "x--", color=c, label=f"{phase} lower bound")
    ax_e.axhline(1.0, color="k", linestyle="--", linewidth=1)
    ax_s.set(title="Speedup vs nodes", xlabel="nodes", ylabel="T(1 node) / T(N)")
    ax_e.set(
        title="Efficiency vs nodes", xlabel="nodes", ylabel="speedup / N; lower bound / wall", ylim=(0, 1.1)
    )
    ax_w.set(title="Wall time vs nodes", xlabel="nodes", ylabel="seconds")
    for ax in (ax_s, ax_e, ax_w):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_xticks(result.node_counts)
    fig.suptitle(
        f"rayscale scale · {result.dataset['spec']} · {plural(result.cpus_per_node, 'CPU')} per node · "
        f"{result.mode}; whiskers: min–max over repeats"
    )
    fig.tight_layout()
    path = out_dir / "scaling.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def forecast_tables(forecast: Forecast, priced: bool) -> list[Table]:
    """One table per phase: predicted (and, where measured, measured) wall per node count."""
    tables = []
    for phase, base in forecast.base.items():
        points = [p for p in forecast.points if p.phase == phase]
        what = "each point predicted from" if forecast.validated else "predicted from"
        table = Table(title=f"{phase}: {what} the {plural(base, 'node')} point")
        columns = ["nodes", "wall", "measured", "error", "total", "speedup"]
        columns += ["rounds", "best RMSE", "extrap."] if phase == "tune" else ["par. eff.", "sched. eff."]
        columns += ["cost"] if priced else []
        for name in columns:
            table.add_column(name, justify="right")
        for p in points:
            row = [
                str(p.nodes),
                f"{p.wall_s:.2f}s",
                f"{p.measured_wall_s:.2f}s ({p.measured_min_s:.2f}–{p.measured_max_s:.2f})"
                if p.measured_wall_s is not None
                else "",
                f"{p.error_pct:+.1f}%" if p.error_pct is not None else "",
                f"{p.total_s:.2f}s",
                f"{p.speedup:.2f}x",
            ]
            if phase == "tune":
                row += [
                    str(p.extra["rounds_run"]),
                    f"{p.extra['best_rmse']:.2f}",
                    str(p.extra["extrapolated_reports"]),
                ]
            else:
                row += [f"{p.parallel_efficiency:.2f}", f"{p.schedule_efficiency:.2f}"]
            row += [f"{p.cost:.4f}" if p.cost is not None else ""] if priced else []
            table.add_row(*row)
        tables.append(table)
    return tables


def print_forecast(forecast: Forecast, costs: Costs, console: Console, plot: Path | None) -> None:
    for table in forecast_tables(forecast, costs.price_per_node_hour is not None):
        console.print(table)
    console.print(
        "wall: one warm round (grid) or the sweep (tune), as the bundle measures them; measured: "
        "median (min–max) of its rounds; speedup: against the same grid, or the same sweep replayed, on one "
        "slot; total adds "
        f"provisioning ({costs.provision_s:g}s, once, when nodes are added), the data's transfer"
        f"{'' if costs.bandwidth_mbps else ' (not modelled: no --bandwidth-mbps)'} and the warm-up",
        highlight=False,
    )
    for phase, p in forecast.cheapest.items():
        if costs.deadline_s is None or costs.price_per_node_hour is None:
            continue
        if p is None:
            console.print(f"{phase}: no node count meets the {costs.deadline_s:g}s deadline", highlight=False)
        else:
            line = cheapest_line(
                phase, p.nodes, p.cost or 0.0, p.total_s, costs.price_per_node_hour, costs.deadline_s
            )
            console.print(line, highlight=False)
    if plot is not None:
        console.print(f"plot: {plot}", highlight=False)


def write_forecast_plot(forecast: Forecast, costs: Costs, path: Path) -> Path:
    """Predicted wall vs nodes per phase with the measured points (min–max whiskers); beside it,
    cost (or, without a price, total time) vs nodes with the deadline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, (ax_w, ax_c) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    priced = costs.price_per_node_hour is not None
    for i, phase in enumerate(forecast.base):
        c = colours[i % len(colours)]
        pts = sorted((p for p in forecast.points if p.phase == phase), key=lambda p: p.nodes)
        n = [p.nodes for p in pts]
        ax_w.plot(n, [p.wall_s for p in pts], "-", color=c, label=f"{phase}: predicted")
        seen = [p for p in pts if p.measured_wall_s is not None]
        if seen:
            ax_w.errorbar(
                [p.nodes for p in seen],
                [p.measured_wall_s for p in seen],
                yerr=[
                    [p.measured_wall_s - p.measured_min_s for p in seen],  # type: ignore[operator]
                    [p.measured_max_s - p.measured_wall_s for p in seen],  # type: ignore[operator]
                ],
                fmt="o",
                color=c,
                capsize=4,
                label=f"{phase}: measured (median, min–max)",
            )
        ys = [p.cost for p in pts] if priced else [p.total_s for p in pts]
        ax_c.plot(n, ys, "o-", color=c, markersize=3, label=phase)
    if costs.deadline_s is not None and not priced:
        ax_c.axhline(
            costs.deadline_s, color="k", linestyle="--", linewidth=1, label=f"deadline {costs.deadline_s:g}s"
        )
    for i, (phase, p) in enumerate(forecast.cheapest.items()):
        if p is not None and p.cost is not None:
            label = f"cheapest {phase} within {costs.deadline_s:g}s: {plural(p.nodes, 'node')}"
            ax_c.plot([p.nodes], [p.cost], "*", markersize=14, color=colours[i % len(colours)], label=label)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax in (ax_w, ax_c):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
        # Walls span about a decade (label the minor ticks too); costs span several (decades only).
        ax.yaxis.set_minor_formatter(plain if ax is ax_w else NullFormatter())
        ax.set_xlabel("nodes")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_w.set_ylabel("wall (s)")
    ax_w.set_title("predicted vs measured wall")
    ax_c.set_ylabel(f"cost (at {costs.price_per_node_hour:g}/node-hour)" if priced else "total (s)")
    ax_c.set_title("cost vs nodes" if priced else "total time vs nodes")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
