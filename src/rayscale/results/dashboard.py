"""The Grafana dashboard's panels as data, derived from run bundles (``rayscale dashboard`` draws
them where Grafana is not at hand): every series and quantile computed here, once."""

from __future__ import annotations

from dataclasses import dataclass, field

from rayscale.options.commands import GRID_PARALLEL, GRID_SEQUENTIAL, TUNE
from rayscale.results.bundle import all_trials
from rayscale.results.schema import Result, TrialRecord
from rayscale.results.stats import Stats

QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class Panels:
    speedup: list[tuple[int, float, int]] = field(default_factory=list)  # nodes, speedup, cluster CPUs
    efficiency: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # phase → (nodes, value)
    wall: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    bounds: list[tuple[str, float, float]] = field(default_factory=list)  # run label, wall, lower bound
    durations: dict[str, tuple[float, ...]] = field(default_factory=dict)  # phase → p50, p95, p99
    queue: dict[str, tuple[float, float]] = field(default_factory=dict)  # phase → mean, p95
    throughput: list[tuple[str, float]] = field(default_factory=list)  # run label, trials / s
    best: list[tuple[str, float]] = field(default_factory=list)  # run label (metric), best score


def _by_node_count(runs: list[Result], panels: Panels) -> None:
    for r in runs:
        n = r.cluster.nodes if r.cluster else 1
        grid, tune = r.grid, r.tune
        if grid and grid.speedup is not None:
            panels.speedup.append((n, grid.speedup, grid.cpus))
        if grid and grid.parallel_efficiency is not None:
            panels.efficiency.setdefault(GRID_PARALLEL.key, []).append((n, grid.parallel_efficiency))
        if tune:
            panels.efficiency.setdefault(TUNE.key, []).append((n, tune.parallel_efficiency))
        for key, wall in (
            (GRID_SEQUENTIAL.key, grid.sequential.wall_s if grid and grid.sequential else None),
            (GRID_PARALLEL.key, grid.parallel.wall_s if grid and grid.parallel else None),
            (TUNE.key, tune.wall_s if tune else None),
        ):
            if wall is not None:
                panels.wall.setdefault(key, []).append((n, wall))


def _by_run(runs: list[Result], panels: Panels) -> None:
    for r in runs:
        short = r.run_id[-6:]
        grid, tune = r.grid, r.tune
        if grid and grid.parallel and grid.lower_bound_s is not None:
            panels.bounds.append((f"grid {short}", grid.parallel.wall_s, grid.lower_bound_s))
            panels.throughput.append((f"grid {short}", len(grid.parallel.trials) / grid.parallel.wall_s))
            panels.best.append((f"grid {short} ({grid.metric})", grid.best_score))
        if tune:
            panels.bounds.append((f"tune {short}", tune.wall_s, tune.compute_bound_s))
            panels.throughput.append((f"tune {short}", len(tune.trials) / tune.wall_s))
            panels.best.append((f"tune {short} ({tune.metric})", tune.best_score))


def panels(results: list[Result]) -> Panels:
    """The dashboard's panels over ``results``, in node-count order."""
    runs = sorted(results, key=lambda r: (r.cluster.nodes if r.cluster else 1, r.run_id))
    out = Panels()
    _by_node_count(runs, out)
    _by_run(runs, out)
    durations: dict[str, list[float]] = {}
    queues: dict[str, list[float]] = {}
    for r in runs:
        for phase, trials in all_trials(r):
            durations.setdefault(phase, []).extend(t.duration_s for t in trials)
            records = [t.queue_s for t in trials if isinstance(t, TrialRecord)]
            if records:
                queues.setdefault(phase, []).extend(records)
    out.durations = {p: tuple(Stats(v).quantile(q) for q in QUANTILES) for p, v in durations.items()}
    out.queue = {p: (Stats(v).mean, Stats(v).quantile(0.95)) for p, v in queues.items()}
    return out
