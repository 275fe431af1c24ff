"""``rayscale scale``: the same work on 1..N nodes, into one scaling bundle.

Three ways to get N nodes:

* ``--local-cluster``: a real multi-node Ray cluster on this machine (a head and N−1 worker
  raylets, each with ``--cpus-per-node`` CPUs), started for each N and torn down afterwards;
* ``--kuberay NAME``: resize the RayCluster's worker group (head + N−1 workers), wait until Ray
  reports N nodes, run, and restore the original replicas afterwards;
* ``--address``: an existing cluster, of which only the first N nodes are used (trials pinned with
  node affinity), so one cluster measures 1..N without resizing.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from rayscale import environment, scaling, summary
from rayscale.cluster import check_reachable, cpu_nodes, local_cluster, ray_session, validate_address
from rayscale.datasets import Dataset, load_dataset
from rayscale.errors import RayscaleError
from rayscale.grids import TrialSpec, load_grid
from rayscale.metrics import RunMetrics, validate_gateway, workload_label
from rayscale.pipeline import RunOptions, parse_phases, pick_round, progress_bar
from rayscale.results import (
    Cheapest,
    ClusterInfo,
    ScaleFit,
    ScalePoint,
    ScaleResult,
    StragglerRecord,
    TrialRecord,
    TuneTrial,
    check_output_dir,
    new_run_id,
    utc_now,
    write_scale_bundle,
)
from rayscale.runners import RayGridRunner
from rayscale.tune import check_options, run_sweep

SCALE_PHASES = ("grid-ray", "tune")


@dataclass
class ScaleOptions:
    nodes: tuple[int, ...]
    cpus_per_node: int = 1
    local_cluster: bool = False
    kuberay: str | None = None
    namespace: str = ""  # empty: the pod's own namespace, else "default"
    wait_timeout_s: float = 600.0
    price_per_node_hour: float | None = None
    deadline_s: float | None = None
    run: RunOptions = field(default_factory=lambda: RunOptions(phases=("grid-ray",)))
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    @property
    def mode(self) -> str:
        return "local" if self.local_cluster else "kuberay" if self.kuberay else "address"


def parse_nodes(text: str) -> tuple[int, ...]:
    """``1,2,4`` → (1, 2, 4); whole positive numbers, no duplicates."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise RayscaleError(f"--nodes {text!r} must be a comma list of node counts, e.g. 1,2,4")
    counts = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise RayscaleError(f"--nodes: {part!r} is not a whole number") from None
        if value < 1:
            raise RayscaleError(f"--nodes: node counts must be at least 1, got {value}")
        if value in counts:
            raise RayscaleError(f"--nodes: {value} is listed twice")
        counts.append(value)
    return tuple(sorted(counts))


def _validate(opts: ScaleOptions) -> None:
    run = opts.run
    if sum([opts.local_cluster, bool(opts.kuberay)]) > 1:
        raise RayscaleError("choose one of --local-cluster and --kuberay")
    if opts.mode == "address" and not validate_address(run.address):
        raise RayscaleError("rayscale scale needs --local-cluster, --kuberay NAME, or --address of a cluster")
    if opts.local_cluster and run.address:
        raise RayscaleError("--local-cluster starts its own cluster; drop --address")
    if opts.cpus_per_node < 1:
        raise RayscaleError(f"--cpus-per-node must be at least 1, got {opts.cpus_per_node}")
    if run.cpus_per_trial > opts.cpus_per_node and opts.local_cluster:
        raise RayscaleError(
            f"--cpus-per-trial {run.cpus_per_trial} is more than --cpus-per-node {opts.cpus_per_node}: "
            "no trial could ever be scheduled"
        )
    if run.repeats < 1:
        raise RayscaleError(f"--repeats must be at least 1, got {run.repeats}")
    for phase in run.phases:
        if phase not in SCALE_PHASES:
            raise RayscaleError(f"rayscale scale runs {', '.join(SCALE_PHASES)}; not {phase!r}")
    if opts.mode == "address" and "tune" in run.phases:
        raise RayscaleError(
            "the tune phase cannot be confined to a subset of nodes; use --local-cluster or --kuberay"
        )
    if "tune" in run.phases:
        check_options(run.tune)
    if opts.price_per_node_hour is not None and opts.price_per_node_hour <= 0:
        raise RayscaleError(f"--price-per-node-hour must be positive, got {opts.price_per_node_hour}")
    if opts.deadline_s is not None and opts.deadline_s <= 0:
        raise RayscaleError(f"--deadline must be positive seconds, got {opts.deadline_s}")
    validate_gateway(run.push_gateway)
    if run.output is not None:
        check_output_dir(run.output)
    if opts.mode != "local":
        check_reachable(run.address)


@dataclass
class _Raw:
    phase: Literal["grid_parallel", "tune"]
    nodes: int
    cpus: int
    walls: list[float]
    trials: list[TrialRecord] | list[TuneTrial]
    lower_bound_s: float
    connect_s: float
    warmup_s: float


@contextmanager
def _sessions(opts: ScaleOptions) -> Iterator[Any]:
    """Yield a function n → context manager of (cluster info, pinned nodes or None)."""
    if opts.mode == "local":

        @contextmanager
        def local(n: int) -> Iterator[tuple[ClusterInfo, None]]:
            with local_cluster(n, opts.cpus_per_node) as info:
                if info.nodes != n:
                    raise RayscaleError(f"the local cluster has {info.nodes} node(s), expected {n}", 3)
                yield info, None

        yield local
        return
    with ray_session(opts.run.address) as info:
        if opts.mode == "address":
            available = cpu_nodes()
            if len(available) < max(opts.nodes):
                raise RayscaleError(
                    f"--nodes asks for {max(opts.nodes)} node(s); the cluster has {len(available)}", 3
                )

            @contextmanager
            def subset(n: int) -> Iterator[tuple[ClusterInfo, list[tuple[str, int]]]]:
                chosen = [(node["NodeID"], int(node["Resources"]["CPU"])) for node in available[:n]]
                yield info.model_copy(update={"nodes": n, "cpus": sum(c for _, c in chosen)}), chosen

            yield subset
            return
        from rayscale.kuberay import KubeRayScaler, current_namespace, default_api

        assert opts.kuberay is not None
        namespace = opts.namespace or current_namespace()
        scaler = KubeRayScaler(opts.kuberay, namespace, default_api(), timeout_s=opts.wait_timeout_s)
        head_counts = any(n.get("Resources", {}).get("node:__internal_head__") for n in cpu_nodes())
        with scaler.restored():

            @contextmanager
            def resized(n: int) -> Iterator[tuple[ClusterInfo, None]]:
                scaler.set_workers(n - 1 if head_counts else n)
                waited = scaler.wait_for(n, lambda: len(cpu_nodes()))
                cpus = sum(int(node["Resources"]["CPU"]) for node in cpu_nodes())
                yield info.model_copy(update={"nodes": n, "cpus": cpus, "connect_s": waited}), None

            yield resized


def _measure(
    opts: ScaleOptions,
    dataset: Dataset,
    specs: list[TrialSpec],
    n: int,
    info: ClusterInfo,
    pinned: list[tuple[str, int]] | None,
    out_dir: Path,
    console: Console,
) -> list[_Raw]:
    run = opts.run
    raws = []
    if "grid-ray" in run.phases:
        runner = RayGridRunner(dataset, run.cpus_per_trial, info.cpus, nodes=pinned)
        with console.status(f"{n} node(s): warming up"):
            warmup = runner.warm_up()
        rounds = []
        for r in range(run.repeats):
            with progress_bar(console, f"{n} node(s): grid, round {r + 1}/{run.repeats}", len(specs)) as tick:
                rounds.append(runner.run(specs, on_trial=tick))
        timing, trials = pick_round(rounds)
        bound = summary.lower_bound([t.fit_s for t in trials], info.cpus)
        raws.append(
            _Raw("grid_parallel", n, info.cpus, timing.walls_s, trials, bound, info.connect_s, warmup)
        )
    if "tune" in run.phases:
        tune_opts = replace(run.tune, cpus_per_trial=run.cpus_per_trial, seed=run.seed)
        results = []
        for r in range(run.repeats):
            with console.status(f"{n} node(s): Tune sweep, round {r + 1}/{run.repeats}"):
                storage = out_dir / "tune" / f"n{n}-r{r + 1}"
                results.append(run_sweep(dataset, tune_opts, info.cpus, storage))
        walls = [t.wall_s for t in results]
        median = sorted(walls)[(len(walls) - 1) // 2]
        chosen = next(t for t in results if t.wall_s == median)
        raws.append(
            _Raw("tune", n, info.cpus, walls, chosen.trials, chosen.compute_bound_s, info.connect_s, 0.0)
        )
    return raws


def analyse(
    raws: list[_Raw], price: float | None, deadline: float | None
) -> tuple[list[ScalePoint], list[ScaleFit], list[Cheapest]]:
    """Speedup, efficiency, Karp–Flatt, fits and cost from the raw measurements of every phase."""
    points, fits, cheapest = [], [], []
    for phase in dict.fromkeys(r.phase for r in raws):
        series = sorted((r for r in raws if r.phase == phase), key=lambda r: r.nodes)
        medians = [sorted(r.walls)[(len(r.walls) - 1) // 2] for r in series]
        node_counts = [r.nodes for r in series]
        speedup = scaling.speedups(node_counts, medians)
        for r, wall, s in zip(series, medians, speedup, strict=True):
            hours = scaling.node_hours(wall, r.nodes)
            grid_trials = [t for t in r.trials if isinstance(t, TrialRecord)]
            points.append(
                ScalePoint(
                    phase=r.phase,
                    nodes=r.nodes,
                    cpus=r.cpus,
                    walls_s=r.walls,
                    wall_s=wall,
                    wall_min_s=min(r.walls),
                    wall_max_s=max(r.walls),
                    lower_bound_s=r.lower_bound_s,
                    efficiency_vs_bound=summary.efficiency(r.lower_bound_s, wall),
                    speedup=s,
                    efficiency=s / r.nodes,
                    karp_flatt=scaling.karp_flatt(s, r.nodes),
                    node_hours=hours,
                    cost_per_trial=hours * price / len(r.trials) if price else None,
                    connect_s=r.connect_s,
                    warmup_s=r.warmup_s,
                    trials_per_node=dict(Counter(t.node_id for t in r.trials)),
                    stragglers=[StragglerRecord(**asdict(x)) for x in scaling.stragglers(grid_trials)],
                    trials=r.trials,
                )
            )
        if len(series) >= 2:
            amdahl, usl = scaling.fit_amdahl(node_counts, speedup), scaling.fit_usl(node_counts, speedup)
            fits.append(
                ScaleFit(
                    phase=r.phase,
                    amdahl_serial_fraction=amdahl.serial_fraction,
                    amdahl_rmse=amdahl.rmse,
                    usl_sigma=usl.sigma,
                    usl_kappa=usl.kappa,
                    usl_rmse=usl.rmse,
                    usl_peak_nodes=usl.peak_nodes,
                )
            )
        if price is not None and deadline is not None:
            best = scaling.cheapest_meeting_deadline(
                list(zip(node_counts, medians, strict=True)), price, deadline
            )
            if best is not None:
                wall = medians[node_counts.index(best[0])]
                cheapest.append(Cheapest(phase=phase, nodes=best[0], cost=best[1], wall_s=wall))
    return points, fits, cheapest


def run_scale(opts: ScaleOptions, console: Console | None = None) -> tuple[ScaleResult, Path]:
    """Measure every node count and write the scaling bundle (scale.json and scaling.png)."""
    console = console or Console(stderr=True)
    run = opts.run
    parse_phases(",".join(run.phases))
    _validate(opts)
    dataset = load_dataset(run.dataset, seed=run.seed, test_size=run.test_size)
    specs = load_grid(run.grid, seed=run.seed, max_trials=run.max_trials)
    run_id = new_run_id()
    out_dir = run.output or Path("results") / f"scale-{run_id}"
    check_output_dir(out_dir)
    created = utc_now()
    raws: list[_Raw] = []
    with _sessions(opts) as session:
        for n in opts.nodes:
            with session(n) as (info, pinned):
                measured = _measure(opts, dataset, specs, n, info, pinned, out_dir, console)
            raws += measured
            _push(run, run_id, n, measured)
    points, fits, cheapest = analyse(raws, opts.price_per_node_hour, opts.deadline_s)
    stored = asdict(opts)
    del stored["command"]
    result = ScaleResult(
        run_id=run_id,
        created_utc=created,
        command=opts.command,
        environment=environment.capture(),
        options=_jsonable(stored),
        dataset=dataset.describe(),
        mode=opts.mode,  # type: ignore[arg-type]
        cpus_per_node=opts.cpus_per_node,
        node_counts=list(opts.nodes),
        points=points,
        fits=fits,
        price_per_node_hour=opts.price_per_node_hour,
        deadline_s=opts.deadline_s,
        cheapest=cheapest,
    )
    write_scale_bundle(result, out_dir)
    from rayscale.report import write_scale_plot

    write_scale_plot(result, out_dir)
    return result, out_dir


def _push(run: RunOptions, run_id: str, n: int, raws: list[_Raw]) -> None:
    """Push each node count's phases, labelled with its nodes and CPUs (for Grafana's scaling panels)."""
    if not run.push_gateway:
        return
    metrics = RunMetrics(
        f"{run_id}-n{n}",
        workload_label(run.dataset, run.grid),
        push_gateway=run.push_gateway,
        strict=run.strict_metrics,
    )
    for raw in raws:
        wall = sorted(raw.walls)[(len(raw.walls) - 1) // 2]
        metrics.record_phase(
            raw.phase,
            trials=raw.trials,
            wall_s=wall,
            lower_bound_s=raw.lower_bound_s,
            cpus=raw.cpus,
            nodes=n,
            best_rmse=min(t.rmse for t in raw.trials),
            efficiency=summary.efficiency(raw.lower_bound_s, wall),
        )
        metrics.push_phase(raw.phase)


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
