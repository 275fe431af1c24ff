"""``rayscale predict``: a trace-driven what-if simulation of a measured bundle at other node counts.

Each measured phase's smallest point is replayed at the node counts asked for: the grid as the
runner schedules it (:mod:`rayscale.work.sim.grid_forecast`), the Tune sweep through Ray Tune's own
ASHA (:mod:`rayscale.work.sim.tune_replay`); with ``--validate``, every measured point is predicted
from the smallest and shown beside what was measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import median
from typing import Any

from rayscale.errors import RayscaleError
from rayscale.options.commands import GRID_PARALLEL, TUNE, PredictOptions
from rayscale.results.bundle import load_any
from rayscale.results.forecast import Forecast, ForecastCosts, ForecastPoint
from rayscale.results.scaling import Measurement, ScaleResult, cheapest_meeting_deadline
from rayscale.results.schema import Result, Round, TrialRecord, TuneTrial, trial_slots
from rayscale.work.grid.configs import load_grid
from rayscale.work.sim.grid_forecast import GridTrace, predict_grid
from rayscale.work.sim.slots import worker_speed
from rayscale.work.sim.tune_replay import TuneTrace, predict_tune, replay_tune


@dataclass(frozen=True)
class _Source:
    """One measured point and the trace its simulation replays."""

    measured: Measurement
    cpus_per_node: int
    trace: GridTrace | TuneTrace


def measured_points(bundle: Result | ScaleResult) -> list[_Source]:
    """Every phase-and-node-count a bundle measured (a run bundle: one per phase), with its trace."""
    if isinstance(bundle, ScaleResult):
        run = bundle.options.get("run") or {}
        cpus_per_trial = float(run.get("cpus_per_trial") or 1)
        out = []
        per_node = bundle.cpus_per_node
        for p in bundle.points:
            m = Measurement.of(p, trial_slots(p.cpus, cpus_per_trial))
            demand = trial_slots(per_node, cpus_per_trial) * cpus_per_trial
            trace = _trace(m, cpus_per_trial, run, bundle.dataset, worker_speed(m.emulation, demand))
            out.append(_Source(m, per_node, trace))
        return out
    sources: list[_Source] = []
    grid, tune = bundle.grid, bundle.tune
    if grid is not None and grid.parallel is not None and grid.lower_bound_s is not None:
        par = grid.parallel
        m = Measurement(
            GRID_PARALLEL.key,
            grid.nodes,
            grid.cpus,
            grid.slots,
            par.rounds,
            par.trials,
            grid.lower_bound_s,
            warmup_s=par.warmup_s,
        )
        per_node = max(1, grid.cpus // max(1, grid.nodes))
        sources.append(_Source(m, per_node, _trace(m, par.cpus_per_trial, bundle.options, bundle.dataset)))
    if tune is not None:
        nodes = bundle.cluster.nodes if bundle.cluster else 1
        rounds = [Round.of(tune.wall_s, tune.trials)]
        m = Measurement(
            TUNE.key, nodes, tune.cpus, tune.max_concurrent, rounds, tune.trials, tune.lower_bound_s
        )
        per_node = max(1, tune.cpus // max(1, nodes))
        sources.append(_Source(m, per_node, _trace(m, tune.cpus_per_trial, bundle.options, bundle.dataset)))
    return sources


def _trace(
    m: Measurement,
    cpus_per_trial: float,
    options: dict[str, Any],
    dataset: dict[str, Any],
    speed: float = 1.0,
) -> GridTrace | TuneTrace:
    """What the simulation replays of a measurement (``options``: the stored run options;
    ``speed``: :func:`worker_speed`)."""
    if m.phase == TUNE.key:
        return TuneTrace.of([t for t in m.trials if isinstance(t, TuneTrial)], options, m.rounds, speed)
    records = [t for t in m.trials if isinstance(t, TrialRecord)]
    return GridTrace.of(records, m.rounds, m.warmup_s, cpus_per_trial, dataset, speed)


def _predict_phase(
    mine: list[_Source], nodes: Sequence[int], costs: ForecastCosts, validate: bool
) -> list[ForecastPoint]:
    """One phase at ``nodes`` (or, validating, at every measured node count) from its smallest point."""
    trace = mine[0].trace
    alone_s = replay_tune(trace, 1).wall_s if isinstance(trace, TuneTrace) else 0.0
    by_nodes = {s.measured.nodes: s for s in mine}
    points = []
    for n in [s.measured.nodes for s in mine] if validate else nodes:
        seen = by_nodes.get(n)
        # Validation predicts each point on its own node size; a forecast shows what was measured
        # only where the node size is the one asked for.
        at = costs.model_copy(update={"cpus_per_node": seen.cpus_per_node}) if validate and seen else costs
        if seen is not None and seen.cpus_per_node != at.cpus_per_node:
            seen = None
        if isinstance(trace, GridTrace):
            p = predict_grid(trace, [n], at)[0]
        else:
            p = predict_tune(trace, n, at, alone_s)
        if seen is not None:
            walls = seen.measured.walls
            p = p.model_copy(
                update={
                    "measured_wall_s": walls.median,
                    "measured_warmup_s": seen.measured.warmup_s if p.phase == GRID_PARALLEL.key else None,
                    "measured_min_s": walls.min,
                    "measured_max_s": walls.max,
                }
            )
        points.append(p)
    return points


def forecast(
    measured: list[_Source],
    nodes: Sequence[int],
    costs: ForecastCosts,
    validate: bool = False,
    grid_costs: Sequence[float] | None = None,
) -> Forecast:
    """Predict each phase at ``nodes`` from its smallest ``measured`` point (:func:`measured_points`);
    with ``validate``, predict every measured point instead and attach what was measured. With
    ``grid_costs`` (the cost model's figure for each config of another grid) the grid phase runs
    those configs, timed by the cost model fitted to the measured trials."""
    if grid_costs is not None:
        measured = [
            replace(s, trace=s.trace.with_costs(grid_costs)) if isinstance(s.trace, GridTrace) else s
            for s in measured
        ]
    if not measured:
        raise RayscaleError("the bundle has no grid-parallel or Tune phase to predict from")
    points: list[ForecastPoint] = []
    base: dict[str, int] = {}
    for phase in (GRID_PARALLEL.key, TUNE.key):
        mine = sorted((s for s in measured if s.measured.phase == phase), key=lambda s: s.measured.nodes)
        if not mine:
            continue
        if validate and len(mine) < 2:
            raise RayscaleError(
                f"--validate needs a scale bundle with two or more node counts; the {phase} phase "
                f"has {len(mine)}"
            )
        base[phase] = mine[0].measured.nodes
        points += _predict_phase(mine, nodes, costs, validate)
    cheapest = {phase: _cheapest([p for p in points if p.phase == phase], costs) for phase in base}
    speeds = {
        s.measured.phase: s.trace.worker_speed
        for s in measured
        if s.measured.nodes == base.get(s.measured.phase) and s.trace.worker_speed != 1.0
    }
    return Forecast(
        validated=validate, base=base, costs=costs, points=points, cheapest=cheapest, worker_speed=speeds
    )


def _cheapest(points: list[ForecastPoint], costs: ForecastCosts) -> int | None:
    if costs.price_per_node_hour is None or costs.deadline_s is None:
        return None
    walls = [(p.nodes, p.predicted_total_s) for p in points]
    best = cheapest_meeting_deadline(walls, costs.price_per_node_hour, costs.deadline_s)
    return None if best is None else best[0]


def run_forecast(opts: PredictOptions) -> Forecast:
    """``rayscale predict``: check the options, load the bundle, simulate. The plot is the caller's."""
    opts.validate()
    bundle = load_any(opts.bundle)
    measured = measured_points(bundle)
    provision_s = opts.provision_s
    if provision_s is None:
        ramps = [p.resize_s for p in getattr(bundle, "points", []) if p.resize_s is not None]
        provision_s = median(ramps) if ramps else 0.0
    costs = ForecastCosts(
        cpus_per_node=opts.cpus_per_node or min((s.cpus_per_node for s in measured), default=1),
        provision_s=provision_s,
        bandwidth_mbps=opts.bandwidth_mbps,
        price_per_node_hour=opts.price_per_node_hour,
        deadline_s=opts.deadline_s,
    )
    grid_costs = None
    if opts.grid is not None:
        n, f = int(bundle.dataset.get("n_train") or 0), int(bundle.dataset.get("n_features") or 0)
        grid_costs = [spec.cost(n, f) for spec in load_grid(opts.grid)]
    return forecast(measured, opts.nodes, costs, opts.validate_points, grid_costs)
