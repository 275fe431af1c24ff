"""Terminal views: rich tables of a run, a scaling sweep, a forecast and a compare.

A view only formats: every figure here is one the results (:mod:`rayscale.results.schema`,
:mod:`rayscale.results.forecast`, :mod:`rayscale.results.compare`) already derive.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rayscale.options.commands import TUNE
from rayscale.options.scoring import direction
from rayscale.results.bundle import Partial
from rayscale.results.compare import Row
from rayscale.results.forecast import RANGE_OVER, Forecast, ForecastPoint
from rayscale.results.scaling import ScaleResult
from rayscale.results.schema import AshaOutcomes, GridResult, Result, swept_params
from rayscale.results.stats import NOISY_HALF_WIDTH, half_width, repeats_to_narrow
from rayscale.views.text import plural

FACTOR_LABELS = {
    "baseline": "baseline's own overhead (sequential wall / Σ fit)",
    "contention": "contention (Σ sequential fit / Σ parallel fit)",
    "granularity": "granularity (Σ fit / (CPUs × lower bound))",
    "schedule": "schedule (lower bound / makespan)",
    "dispatch": "dispatch (makespan / parallel wall)",
}


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f}s"


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
    if par:
        table.add_row(
            "Longest-first order", par.cost_source, COST_SOURCES[par.cost_source].format(_s(par.pilot_s))
        )
    tasks = [r.tasks for r in par.rounds if r.tasks] if par else []
    if tasks and max(tasks) < len(par.trials):  # type: ignore[union-attr]
        trials = len(par.trials)  # type: ignore[union-attr]
        table.add_row(
            "Ray tasks",
            str(max(tasks)),
            f"{trials} trials, {trials / max(tasks):.1f} per task (tiny fits batched)",
        )
    if grid.ray_cpu_share is not None:
        table.add_row(
            "Ray's own CPU", f"{grid.ray_cpu_share:.1%}", "raylet, GCS, agents; share of CPU × wall"
        )
    table.add_row(
        "Cluster", plural(grid.cpus, "CPU"), f"{plural(grid.nodes, 'node')}, {grid.configs} configs"
    )
    return table


COST_SOURCES = {
    "formula": "expected cost: trees × depth × rows × features × subsample",
    "sequential": "each config's fit time in the sequential round (no formula for this estimator)",
    "pilot": "one fit per config shape, timed in the driver ({}, before the rounds)",
}


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
    folds = result.dataset.get("cv_folds")
    caption = {
        "validation": f"selected on the validation split by {grid.metric}, "
        "scored on the untouched test split",
        "cv": f"selected on the mean {grid.metric} of {folds}-fold CV, refit on the training split, "
        "scored once on the untouched test split",
        "test": f"selected by {grid.metric} and scored on the same hold-out (optimistic)",
    }[grid.selected_on]
    table = _table("Best model", "figure", "value", caption=caption)
    for name in sorted(swept_params(grid.reference.trials)):
        table.add_row(name, str(best.params.get(name, "default")))
    for name, value in best.metrics.items():
        table.add_row(score_label(name), _score(name, value))
    for name, value in best.cv_metrics.items():
        table.add_row(f"CV mean {score_label(name)}", _score(name, value))
    if best.val_rmse is not None:
        table.add_row("validation RMSE", f"{best.val_rmse:.2f}")
    return table


SCORE_LABELS = {"rmse": "RMSE", "r2": "R²", "mae": "MAE", "f1_macro": "F1 (macro)", "roc_auc": "ROC AUC"}


def score_label(metric: str) -> str:
    return SCORE_LABELS.get(metric, metric.replace("_", " "))


def _score(metric: str, value: float) -> str:
    """RMSE and MAE in the target's units to 2 places; shares (R², accuracy, …) to 4."""
    return f"{value:.2f}" if metric in ("rmse", "mae") else f"{value:.4f}"


def tune_table(result: Result) -> Table:
    tune = result.tune
    assert tune is not None
    table = _table(f"Tune sweep ({tune.model_name}, {tune.scheduler})", "figure", "value", "detail")
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
        f"{tune.unit.capitalize()} run",
        f"{tune.rounds_run}",
        f"{share:.0%} of {tune.rounds_budget} ({len(tune.trials)} × {tune.max_rounds})",
    )
    table.add_row("Tune wall", _s(tune.wall_s), f"of which start-up {_s(tune.startup_s)}")
    table.add_row("Σ compute", _s(tune.compute_s), "time spent training, all trials")
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


def asha_line(asha: AshaOutcomes, metric: str) -> str:
    """ASHA's answer on this run beside its distribution over replays of the sweep."""
    q = asha.best_quantiles
    label = score_label(metric)
    found = "it" if asha.observed_found else "not it"
    return (
        f"ASHA found {label} {_score(metric, asha.observed)} on this run ({found}); over {asha.replays} "
        f"replays of its reports it finds the full-budget best ({_score(metric, asha.full_budget_best)}) "
        f"in {asha.found_share:.0%} (median {_score(metric, q['median'])}, p5–p95 "
        f"{_score(metric, q['p5'])}–{_score(metric, q['p95'])}, median {asha.rounds_median:.0f} rounds)"
    )


def baseline_table(result: Result) -> Table:
    tune = result.tune
    assert tune is not None
    table = _table(f"Baseline vs tuned ({tune.model_name})", "metric", "baseline (defaults)", "Ray Tune best")
    for name, value in tune.baseline.metrics.items():
        best = tune.best.metrics.get(name)
        label = score_label(name)
        table.add_row(label, _score(name, value), "" if best is None else _score(name, best))
    change = tune.improvement_pct
    label = score_label(tune.metric)
    word = ("lower", "higher") if direction(tune.metric) == "min" else ("higher", "lower")
    table.add_row(
        "change",
        "",
        f"{change:.1f}% {word[0]} {label}"
        if change >= 0
        else f"{-change:.1f}% {word[1]} {label} (tuned is worse)",
    )
    config = ", ".join(f"{k}={v}" for k, v in sorted(tune.best.params.items()))
    table.add_row("best config", "", f"{config}, rounds={tune.best.rounds}")
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
    classes = f", {len(d['classes'])} classes" if d.get("classes") else ""
    task = f" · {d['task']} ({d['task_reason'].removeprefix('auto: ')})" if d.get("task") else ""
    console.print(
        f"[bold]rayscale[/] run {result.run_id} · dataset {d['spec']} "
        f"({d['n_train']} train{validation} / {d['n_test']} test rows{features}{classes}){task}",
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
        if tune.asha_outcomes is not None:
            console.print(asha_line(tune.asha_outcomes, tune.metric), highlight=False)
        console.print(baseline_table(result))
    if bundle is not None:
        console.print(f"bundle: {bundle}")


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


def _forecast_row(p: ForecastPoint, priced: bool) -> list[str]:
    row = [
        str(p.nodes),
        f"{p.predicted_wall_s:.2f}s ({p.predicted_range[0]:.2f}–{p.predicted_range[1]:.2f})"
        if p.predicted_range
        else f"{p.predicted_wall_s:.2f}s",
        f"{p.measured_wall_s:.2f}s ({p.measured_min_s:.2f}–{p.measured_max_s:.2f})"
        if p.measured_wall_s is not None
        else "",
        f"{p.error_pct:+.1f}%" if p.error_pct is not None else "",
        f"{p.predicted_total_s:.2f}s",
        f"{p.speedup:.2f}x",
    ]
    if p.phase == TUNE.key:
        row += [str(p.rounds_run), f"{p.best_score:.4g} {p.metric}", str(p.extrapolated_reports)]
    else:
        row += [f"{p.parallel_efficiency:.2f}", f"{p.schedule_efficiency:.2f}"]
    return row + ([f"{p.cost:.4f}" if p.cost is not None else ""] if priced else [])


def forecast_tables(forecast: Forecast) -> list[Table]:
    """One table per phase: predicted (and, where measured, measured) wall per node count."""
    priced = forecast.costs.price_per_node_hour is not None
    tables = []
    for phase, base in forecast.base.items():
        what = "each point predicted from" if forecast.validated else "predicted from"
        table = Table(title=f"{phase}: {what} the {plural(base, 'node')} point")
        columns = ["nodes", "wall", "measured", "error", "total", "speedup"]
        columns += ["rounds", "best", "extrap."] if phase == TUNE.key else ["par. eff.", "sched. eff."]
        columns += ["cost"] if priced else []
        for name in columns:
            table.add_column(name, justify="right")
        for p in forecast.of_phase(phase):
            table.add_row(*_forecast_row(p, priced))
        tables.append(table)
    return tables


def print_forecast(forecast: Forecast, console: Console, plot: Path | None) -> None:
    costs = forecast.costs
    for table in forecast_tables(forecast):
        console.print(table)
    console.print(
        "wall: one warm round (grid) or the sweep (tune), as the bundle measures them; measured: "
        "median (min–max) of its rounds; speedup: against the same grid, or the same sweep replayed, on one "
        "slot; total adds "
        f"provisioning ({costs.provision_s:g}s, once, when nodes are added), the data's transfer"
        f"{'' if costs.bandwidth_mbps else ' (not modelled: no --bandwidth-mbps)'} and the warm-up",
        highlight=False,
    )
    for phase, speed in forecast.worker_speed.items():
        console.print(
            f"{phase}: a trial on a worker node takes {speed:.2f}× its time on the measured head "
            "(the head's limit also ran the cluster's Ray processes, a worker's runs only its own)",
            highlight=False,
        )
    for phase in forecast.base:
        if any(p.predicted_range for p in forecast.of_phase(phase)):
            console.print(f"{phase}: {RANGE_OVER[phase]}", highlight=False)
    if costs.deadline_s is not None and costs.price_per_node_hour is not None:
        for phase in forecast.cheapest:
            p = forecast.cheapest_point(phase)
            if p is None:
                line = f"{phase}: no node count meets the {costs.deadline_s:g}s deadline"
            else:
                line = cheapest_line(
                    phase,
                    p.nodes,
                    p.cost or 0.0,
                    p.predicted_total_s,
                    costs.price_per_node_hour,
                    costs.deadline_s,
                )
            console.print(line, highlight=False)
    if plot is not None:
        console.print(f"plot: {plot}", highlight=False)
