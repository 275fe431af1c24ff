"""PNG views: the run's plots in its bundle, the scaling plot, the forecast plot and the dashboard.

A view only draws: the series, whiskers, fits and quantiles come from the results side
(:mod:`rayscale.results.schema`, :mod:`rayscale.results.scaling`, :mod:`rayscale.results.dashboard`,
:mod:`rayscale.results.forecast`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rayscale.options.commands import GRID_PARALLEL, GRID_SEQUENTIAL, TUNE
from rayscale.options.files import PLOTS, SCALE_PLOT, TUNE_PLOTS, WATERFALL_PLOT
from rayscale.results.dashboard import QUANTILES, Panels, panels
from rayscale.results.forecast import Forecast, ForecastPoint
from rayscale.results.scaling import Curve, ScaleResult, curves
from rayscale.results.schema import (
    GridResult,
    Result,
    TrialRecord,
    TuneResult,
    TuneTrial,
    config_scores,
    swept_params,
)
from rayscale.views.text import plural

METRIC_LABELS = {"rmse": "RMSE", "r2": "R²", "mae": "MAE", "accuracy": "accuracy", "log_loss": "log loss"}


def _axis(trials: list[TrialRecord]) -> str:
    """The parameter the per-parameter plots run along: the number of trees where there is one."""
    varying = swept_params(trials)
    if any("n_estimators" in t.params for t in trials) or not varying:
        return "n_estimators"
    numeric = [n for n in varying if all(isinstance(t.params.get(n), int | float) for t in trials)]
    return (numeric or varying)[0]


def _metric_plot(grid: GridResult, metric: str, path: Path) -> None:
    """``metric`` of every config along one parameter; one line per combination of the other
    swept parameters (no zig-zag through mixed configs), titled with what co-varies."""
    import matplotlib.pyplot as plt

    trials = grid.reference.trials
    x = _axis(trials)
    label = METRIC_LABELS.get(metric, metric.replace("_", " "))
    scores = config_scores(trials, metric)
    others = [n for n in swept_params(trials) if n != x]
    lines: dict[tuple, list[tuple[int, dict[str, Any], float]]] = {}
    for score in scores:
        lines.setdefault(tuple(score[1].get(n) for n in others), []).append(score)
    fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=110)
    for key, group in sorted(lines.items(), key=lambda kv: repr(kv[0])):
        group.sort(key=lambda s: repr(s[1].get(x, 100)))
        name = ", ".join(f"{n}={v}" for n, v in zip(others, key, strict=True)) or "all configs"
        ax.plot(
            [s[1].get(x, 100) for s in group],
            [s[2] for s in group],
            marker="o",
            label=name if len(lines) <= 12 else None,
        )
    top = next(s for s in scores if s[0] == grid.best.index)
    ax.scatter(
        [top[1].get(x, 100)],
        [top[2]],
        s=160,
        facecolors="none",
        edgecolors="black",
        linewidths=1.5,
        label="best",
        zorder=5,
    )
    what = "number of trees" if x == "n_estimators" else x
    ax.set_xlabel(f"{what} ({x})" if x == "n_estimators" else x)
    ax.set_ylabel(label + (" (mean over CV folds)" if grid.selected_on == "cv" else ""))
    covary = f"; one line per {', '.join(others)}" if others else ""
    ax.set_title(f"{label} vs {what}{covary}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def metric_plots(grid: GridResult) -> list[str]:
    """The per-parameter plots' file names: the seed's RMSE and R² vs trees for a regression."""
    if grid.task == "regression" and grid.metric in ("rmse", "r2"):
        return list(PLOTS[:2])
    second = "balanced_accuracy" if grid.metric != "balanced_accuracy" else "accuracy"
    metrics = [grid.metric, second if grid.task == "classification" else "rmse"]
    x = _axis(grid.reference.trials)
    return [f"{m}_vs_{'trees' if x == 'n_estimators' else x}.png" for m in metrics]


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


def _tune_rounds_plot(tune: TuneResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    trials, metric = tune.trials, tune.metric
    label = METRIC_LABELS.get(metric, metric.replace("_", " "))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for stopped, kind, marker in ((False, "ran to max rounds", "o"), (True, "stopped early (ASHA)", "x")):
        group = [t for t in trials if t.stopped_early == stopped]
        if group:
            ax.scatter(
                [t.rounds for t in group], [t.metrics[metric] for t in group], marker=marker, label=kind
            )
    ax.axhline(
        tune.baseline.metrics[metric],
        color="grey",
        linestyle="--",
        label=f"baseline ({tune.model_name} defaults)",
    )
    ax.set_xlabel(f"{tune.unit} run")
    ax.set_ylabel(f"{label} at the last report")
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
    """The selection metric vs a parameter (for a regression the first seed's RMSE and R² vs
    number of trees), trial timelines, the speedup waterfall, Tune's rounds."""
    import matplotlib

    matplotlib.use("Agg")
    paths: list[Path] = []
    grid = result.grid
    if grid is not None:
        phase = GRID_PARALLEL.key if grid.parallel else GRID_SEQUENTIAL.key
        trials = grid.reference.trials
        paths = [out_dir / name for name in metric_plots(grid)]
        for path in paths:
            _metric_plot(grid, path.name.partition("_vs_")[0], path)
        paths.append(out_dir / PLOTS[2])
        _timeline_plot(phase, trials, paths[-1], grid.lower_bound_s)
        if grid.breakdown is not None:
            paths.append(waterfall_plot(grid, out_dir / WATERFALL_PLOT))
    if result.tune is not None:
        tune = result.tune
        timeline, rounds = (out_dir / name for name in TUNE_PLOTS)
        started = min(t.start_ts for t in tune.trials) - tune.startup_s
        _timeline_plot(TUNE.key, tune.trials, timeline, tune.compute_bound_s, started_ts=started)
        _tune_rounds_plot(tune, rounds)
        paths += [timeline, rounds]
    return paths


def _dashboard_by_nodes(ax: Any, data: Panels) -> None:
    nodes, speedup, cpus = zip(*data.speedup, strict=True) if data.speedup else ((), (), ())
    ax[0].plot(nodes, speedup, "o-", label="speedup")
    ax[0].plot(nodes, cpus, "k--", label="ideal (cluster CPUs)")
    ax[0].set(title="Speedup vs node count", xlabel="nodes", ylabel="sequential / parallel")
    for name, points in data.efficiency.items():
        ax[1].plot(*zip(*points, strict=True), "o-", label=name)
    ax[1].axhline(1.0, color="k", linestyle="--", label="ideal")
    ax[1].set(
        title="Parallel efficiency vs node count", xlabel="nodes", ylabel="speedup / CPUs", ylim=(0, 1.1)
    )
    for name, points in data.wall.items():
        ax[2].plot(*zip(*points, strict=True), "o-", label=name)
    ax[2].set(title="Phase wall time vs node count", xlabel="nodes", ylabel="seconds")
    x = range(len(data.bounds))
    ax[3].bar([i - 0.2 for i in x], [w for _, w, _ in data.bounds], 0.4, label="wall")
    ax[3].bar([i + 0.2 for i in x], [b for _, _, b in data.bounds], 0.4, label="lower bound")
    ax[3].set_xticks(list(x), [label for label, _, _ in data.bounds], rotation=30, fontsize=7)
    ax[3].set(title="Makespan vs lower bound", ylabel="seconds")


def _dashboard_by_trial(ax: Any, data: Panels) -> None:
    names = list(data.durations)
    for k, (offset, q) in enumerate(zip((-0.25, 0.0, 0.25), QUANTILES, strict=True)):
        ax[4].bar(
            [i + offset for i in range(len(names))],
            [data.durations[n][k] for n in names],
            0.25,
            label=f"p{round(q * 100)}",
        )
    ax[4].set_xticks(range(len(names)), names)
    ax[4].set(title="Trial duration p50 / p95 / p99 by phase", ylabel="seconds")
    qnames = list(data.queue)
    ax[5].bar(qnames, [data.queue[n][0] for n in qnames], label="mean")
    ax[5].bar(qnames, [data.queue[n][1] for n in qnames], alpha=0.4, label="p95")
    ax[5].set(title="Queue wait (submitted → started)", ylabel="seconds")
    ax[6].bar([t for t, _ in data.throughput], [v for _, v in data.throughput])
    ax[6].set(title="Trials per second", ylabel="trials / s")
    ax[6].tick_params(axis="x", rotation=30, labelsize=7)
    ax[7].bar([t for t, _ in data.best], [v for _, v in data.best])
    ax[7].set(title="Best model per run (its selection metric)", ylabel="score")
    ax[7].tick_params(axis="x", rotation=30, labelsize=7)


def dashboard_png(results: list[Result], path: Path) -> Path:
    """The Grafana dashboard's panels drawn from result bundles (for docs, where Grafana is absent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = panels(results)
    fig, axes = plt.subplots(4, 2, figsize=(13, 14), dpi=100)
    ax = axes.flat
    _dashboard_by_nodes(ax, data)
    _dashboard_by_trial(ax, data)
    for a in ax:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.suptitle("rayscale — scaling dashboard (rendered from result bundles)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _scale_panels(ax_s: Any, ax_e: Any, ax_w: Any, curve: Curve, c: str) -> None:
    def whiskers(values: list[float], ranges: list[tuple[float, float]]) -> list[list[float]]:
        return [
            [v - lo for v, (lo, _) in zip(values, ranges, strict=True)],
            [hi - v for v, (_, hi) in zip(values, ranges, strict=True)],
        ]

    n, phase = curve.nodes, curve.phase
    ax_s.errorbar(
        n,
        curve.speedup,
        yerr=whiskers(curve.speedup, curve.speedup_range),
        fmt="o-",
        color=c,
        capsize=4,
        label=phase,
    )
    if curve.fit is not None:
        note = " (2 points: exact)" if curve.fit.points == 2 else ""
        f = curve.fit
        ax_s.plot(
            curve.xs, curve.amdahl, ":", color=c, label=f"Amdahl f={f.amdahl_serial_fraction:.3f}{note}"
        )
        ax_s.plot(
            curve.xs,
            curve.usl,
            "-.",
            color=c,
            alpha=0.6,
            label=f"USL σ={f.usl_sigma:.3f} κ={f.usl_kappa:.4f}{note}",
        )
    for ax, values, ranges, name, bound, bound_name in (
        (ax_e, curve.efficiency, curve.efficiency_range, "parallel", curve.schedule_efficiency, "schedule"),
        (ax_w, curve.wall, curve.wall_range, "wall", curve.lower_bound, "lower bound"),
    ):
        ax.errorbar(
            n, values, yerr=whiskers(values, ranges), fmt="o-", color=c, capsize=4, label=f"{phase} {name}"
        )
        ax.plot(n, bound, "x--", color=c, label=f"{phase} {bound_name}")


def write_scale_plot(result: ScaleResult, out_dir: Path) -> Path:
    """Speedup (ideal, Amdahl and USL fits), efficiencies and wall vs nodes, min–max whiskers;
    one colour per phase across the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_e, ax_w) = plt.subplots(1, 3, figsize=(16, 4.8), dpi=100)
    drawn = curves(result)
    xs = drawn[0].xs if drawn else [1.0, 2.0]
    ax_s.plot(xs, xs, "k--", linewidth=1, label="ideal")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, curve in enumerate(drawn):
        _scale_panels(ax_s, ax_e, ax_w, curve, colours[i % len(colours)])
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
    path = out_dir / SCALE_PLOT
    fig.savefig(path)
    plt.close(fig)
    return path


def _forecast_phase(ax_w: Any, ax_c: Any, pts: list[ForecastPoint], priced: bool, c: str) -> None:
    phase, n = pts[0].phase, [p.nodes for p in pts]
    ax_w.plot(n, [p.predicted_wall_s for p in pts], "-", color=c, label=f"{phase}: predicted")
    if any(p.predicted_range for p in pts):
        low, high = zip(*(p.predicted_range or (p.predicted_wall_s,) * 2 for p in pts), strict=True)
        label = f"{phase}: predicted (min–max)"
        ax_w.fill_between(n, low, high, color=c, alpha=0.15, linewidth=0, label=label)
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
    ys = [p.cost for p in pts] if priced else [p.predicted_total_s for p in pts]
    ax_c.plot(n, ys, "o-", color=c, markersize=3, label=phase)


def write_forecast_plot(forecast: Forecast, path: Path) -> Path:
    """Predicted wall vs nodes per phase with the measured points (min–max whiskers); beside it,
    cost (or, without a price, total time) vs nodes with the deadline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    costs = forecast.costs
    fig, (ax_w, ax_c) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    priced = costs.price_per_node_hour is not None
    for i, phase in enumerate(forecast.base):
        _forecast_phase(ax_w, ax_c, forecast.of_phase(phase), priced, colours[i % len(colours)])
    if costs.deadline_s is not None and not priced:
        ax_c.axhline(
            costs.deadline_s, color="k", linestyle="--", linewidth=1, label=f"deadline {costs.deadline_s:g}s"
        )
    for i, phase in enumerate(forecast.cheapest):
        p = forecast.cheapest_point(phase)
        if p is not None and p.cost is not None:
            label = f"cheapest {phase} within {costs.deadline_s:g}s: {plural(p.nodes, 'node')}"
            ax_c.plot([p.nodes], [p.cost], "*", markersize=14, color=colours[i % len(colours)], label=label)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax in (ax_w, ax_c):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
        # Walls and totals span about a decade (label the minor ticks too); costs span several.
        ax.yaxis.set_minor_formatter(NullFormatter() if ax is ax_c and priced else plain)
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
