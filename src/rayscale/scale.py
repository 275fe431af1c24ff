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
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from rayscale import environment, scaling
from rayscale.bundle import (
    SCALE_FILE,
    check_output_dir,
    new_run_id,
    redacted_command,
    stored_options,
    utc_now,
    write_scale_bundle,
)
from rayscale.callbacks import CallbackList, MetricsCallback, ProgressCallback, stderr_console
from rayscale.cluster import (
    check_cpus_per_trial,
    check_reachable,
    cpu_nodes,
    local_cluster,
    ray_session,
    validate_address,
)
from rayscale.errors import RayscaleError
from rayscale.limits import check_max_wall, wall_limit
from rayscale.metrics import RunMetrics, validate_gateway, workload_label
from rayscale.options import RunOptions, parse_phases
from rayscale.phases import Context, GridParallel, TuneSweep, build, run_phases
from rayscale.pipeline import load_work
from rayscale.schema import (
    Cheapest,
    ClusterInfo,
    Round,
    ScaleFit,
    ScalePoint,
    ScaleResult,
    StragglerRecord,
    Trial,
    TrialRecord,
    TuneTrial,
    breakdown,
    lower_bound,
)

SCALE_PHASES = ("grid-ray", "tune")
RAMP_POLL_S = 1.0


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
    from rayscale.tune import check_options

    run = opts.run
    if sum([opts.local_cluster, bool(opts.kuberay)]) > 1:
        raise RayscaleError("choose one of --local-cluster and --kuberay")
    if opts.mode == "address" and not validate_address(run.address):
        raise RayscaleError("rayscale scale needs --local-cluster, --kuberay NAME, or --address of a cluster")
    if opts.local_cluster and run.address:
        raise RayscaleError("--local-cluster starts its own cluster; drop --address")
    if opts.cpus_per_node < 1:
        raise RayscaleError(f"--cpus-per-node must be at least 1, got {opts.cpus_per_node}")
    if opts.local_cluster:
        check_cpus_per_trial(run.cpus_per_trial, opts.cpus_per_node, "--cpus-per-node")
    if run.repeats < 1:
        raise RayscaleError(f"--repeats must be at least 1, got {run.repeats}")
    check_max_wall(run.max_wall)
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
class Measured:
    """One phase at one node count, as measured: its rounds and the representative trials."""

    phase: str
    nodes: int
    cpus: int
    slots: int
    rounds: list[Round]
    trials: list[TrialRecord] | list[TuneTrial]
    lower_bound_s: float
    connect_s: float
    warmup_s: float
    resize_s: float | None
    first_trial_s: float | None = None


@dataclass(frozen=True)
class Ramp:
    """One ``--kuberay`` resize, timed from the patch on the wall clock (trials carry wall times)."""

    patched_ts: float
    alive_s: float  # patch → Ray sees every node of the new count alive
    joined: frozenset[str]  # Ray node ids that joined in this resize

    def first_trial_s(self, trials: Iterable[Trial]) -> float | None:
        """Patch → the first trial to start on a node that joined; None when none joined."""
        starts = [t.start_ts for t in trials if t.node_id in self.joined]
        return min(starts) - self.patched_ts if starts else None


@contextmanager
def _sessions(opts: ScaleOptions) -> Iterator[Any]:
    """Yield a function n → context manager of (cluster info, pinned nodes or None, resize ramp or None)."""
    if opts.mode == "local":

        @contextmanager
        def local(n: int) -> Iterator[tuple[ClusterInfo, None, None]]:
            with local_cluster(n, opts.cpus_per_node) as info:
                if info.nodes != n:
                    raise RayscaleError(f"the local cluster has {info.nodes} node(s), expected {n}", 3)
                yield info, None, None

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
            def subset(n: int) -> Iterator[tuple[ClusterInfo, list[tuple[str, int]], None]]:
                chosen = [(node["NodeID"], int(node["Resources"]["CPU"])) for node in available[:n]]
                yield info.model_copy(update={"nodes": n, "cpus": sum(c for _, c in chosen)}), chosen, None

            yield subset
            return
        from rayscale.kuberay import KubeRayScaler, current_namespace, default_api

        assert opts.kuberay is not None
        namespace = opts.namespace or current_namespace()
        # Poll every second: the ramp is a measurement, and its resolution is the poll interval.
        scaler = KubeRayScaler(
            opts.kuberay, namespace, default_api(), timeout_s=opts.wait_timeout_s, poll_s=RAMP_POLL_S
        )
        head_counts = any(n.get("Resources", {}).get("node:__internal_head__") for n in cpu_nodes())
        with scaler.restored():

            @contextmanager
            def resized(n: int) -> Iterator[tuple[ClusterInfo, None, Ramp]]:
                before = {node["NodeID"] for node in cpu_nodes()}
                patched = time.time()
                scaler.set_workers(n - 1 if head_counts else n)
                scaler.wait_for(n, lambda: len(cpu_nodes()))
                ramp = Ramp(
                    patched, time.time() - patched, frozenset(x["NodeID"] for x in cpu_nodes()) - before
                )
                cpus = sum(int(node["Resources"]["CPU"]) for node in cpu_nodes())
                yield info.model_copy(update={"nodes": n, "cpus": cpus}), None, ramp

            yield resized


def _measure(ctx: Context, ramp: Ramp | None) -> list[Measured]:
    """What one node count's phases measured, from the context they ran in."""
    info = ctx.cluster
    assert info is not None
    resize_s = ramp.alive_s if ramp else None
    first_trial_s = ramp.first_trial_s(ran(ctx)) if ramp else None
    slots = max(1, int(info.cpus // ctx.opts.cpus_per_trial))
    out = []
    par = ctx.results.get(GridParallel.name)
    if par is not None:
        bound = lower_bound(par.median("busy_s"), par.median("longest_s"), slots)
        out.append(
            Measured(
                "grid_parallel",
                info.nodes,
                info.cpus,
                slots,
                par.rounds,
                par.trials,
                bound,
                info.connect_s,
                par.warmup_s,
                resize_s,
                first_trial_s,
            )
        )
    sweeps = ctx.outcomes.get(TuneSweep.name)
    if sweeps:
        chosen = ctx.results[TuneSweep.name]
        rounds = [Round.of(t.wall_s, t.trials) for t in sweeps]
        out.append(
            Measured(
                "tune",
                info.nodes,
                info.cpus,
                slots,
                rounds,
                chosen.trials,
                chosen.lower_bound_s,
                info.connect_s,
                0.0,
                resize_s,
                first_trial_s,
            )
        )
    return out


def ran(ctx: Context) -> list[Trial]:
    """Every trial of every round of every phase this context ran."""
    return [t for outcomes in ctx.outcomes.values() for outcome in outcomes for t in outcome.trials]


def analyse(
    raws: list[Measured], price: float | None, deadline: float | None
) -> tuple[list[ScalePoint], list[ScaleFit], list[Cheapest]]:
    """Speedup, efficiencies, the breakdown, Karp–Flatt, fits and cost from every phase's measurements."""
    points, fits, cheapest = [], [], []
    for phase in dict.fromkeys(r.phase for r in raws):
        series = sorted((r for r in raws if r.phase == phase), key=lambda r: r.nodes)
        made = [
            ScalePoint(
                phase=r.phase,  # type: ignore[arg-type]
                nodes=r.nodes,
                cpus=r.cpus,
                rounds=r.rounds,
                lower_bound_s=r.lower_bound_s,
                speedup=1.0,
                parallel_efficiency=1.0,
                karp_flatt=None,
                node_hours=0.0,
                cost_per_trial=None,
                connect_s=r.connect_s,
                warmup_s=r.warmup_s,
                resize_s=r.resize_s,
                first_trial_s=r.first_trial_s,
                trials_per_node=dict(Counter(t.node_id for t in r.trials)),
                stragglers=[
                    StragglerRecord(**asdict(x))
                    for x in scaling.stragglers([t for t in r.trials if isinstance(t, TrialRecord)])
                ],
                trials=r.trials,
            )
            for r in series
        ]
        node_counts = [p.nodes for p in made]
        medians = [p.wall_s for p in made]
        base = made[0]
        for p, r, s in zip(made, series, scaling.speedups(node_counts, medians), strict=True):
            hours = scaling.node_hours(p.wall_s, p.nodes)
            p.speedup, p.parallel_efficiency = s, s / p.nodes
            p.karp_flatt = scaling.karp_flatt(s, p.nodes)
            p.node_hours = hours
            p.cost_per_trial = hours * price / len(r.trials) if price else None
            p.breakdown = breakdown(base, p, p.cpus, r.slots, base.wall_s, p.wall_s, base_cpus=base.cpus)
        points += made
        if len(made) >= 2:
            speedup = [p.speedup for p in made]
            amdahl, usl = scaling.fit_amdahl(node_counts, speedup), scaling.fit_usl(node_counts, speedup)
            fits.append(
                ScaleFit(
                    phase=phase,
                    points=len(made),
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
    """Measure every node count, writing the scaling bundle as each one finishes (a sweep cut
    short keeps its points), then the plot."""
    console = console or stderr_console()
    run = opts.run
    parse_phases(",".join(run.phases), SCALE_PHASES)
    _validate(opts)
    dataset, specs = load_work(run)
    run_id = new_run_id()
    out_dir = run.output or Path("results") / f"scale-{run_id}"
    check_output_dir(out_dir)
    header: dict[str, Any] = {
        "run_id": run_id,
        "created_utc": utc_now(),
        "command": redacted_command(opts.command),
        "options": stored_options(opts),
        "dataset": dataset.describe(),
        "mode": opts.mode,
        "cpus_per_node": opts.cpus_per_node,
        "node_counts": list(opts.nodes),
        "price_per_node_hour": opts.price_per_node_hour,
        "deadline_s": opts.deadline_s,
    }
    raws: list[Measured] = []
    result: ScaleResult | None = None
    kept = f"Node counts measured so far are in {out_dir / SCALE_FILE}" + (
        "; the worker replicas were restored" if opts.kuberay else ""
    )
    with wall_limit(run.max_wall, kept), _sessions(opts) as session:
        for n in opts.nodes:
            metrics = RunMetrics(
                f"{run_id}-n{n}",
                workload_label(run.dataset, run.grid),
                push_gateway=run.push_gateway,
                strict=run.strict_metrics,
            )
            callbacks = CallbackList([MetricsCallback(metrics), ProgressCallback(console)])
            with session(n) as (info, pinned, ramp):
                ctx = Context(
                    run,
                    dataset,
                    build(run),
                    specs,
                    out_dir / "tune" / f"n{n}",
                    callbacks,
                    console,
                    cluster=info,
                    pinned=pinned,
                    tune_repeats=run.repeats,
                )
                try:
                    callbacks.on_run_start(ctx)
                    run_phases(ctx, {})
                except BaseException as exc:
                    callbacks.on_run_end("failed", exc)
                    raise
                callbacks.on_run_end("complete", None)
            measured = _measure(ctx, ramp)
            if ramp is not None:
                metrics.record_resize(n, info.cpus, ramp.alive_s, measured[0].first_trial_s)
            raws += measured
            points, fits, cheapest = analyse(raws, opts.price_per_node_hour, opts.deadline_s)
            result = ScaleResult(
                **header,
                environment=environment.capture(),
                points=points,
                fits=fits,
                cheapest=cheapest,
            )
            write_scale_bundle(result, out_dir)
    assert result is not None
    from rayscale.report import write_scale_plot

    write_scale_plot(result, out_dir)
    return result, out_dir
