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

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rayscale.errors import RayscaleError
from rayscale.options.commands import GRID_PARALLEL, TUNE, ScaleOptions, check_output_dir
from rayscale.options.files import SCALE_FILE
from rayscale.results.bundle import new_run_id, redacted_command, stored_options, utc_now, write_scale_bundle
from rayscale.results.scaling import Emulation, Measurement, ScaleResult, analyse
from rayscale.results.schema import ClusterInfo, Round, Trial, trial_slots
from rayscale.work import environment
from rayscale.work.cluster.isolated_host import check_isolation
from rayscale.work.cluster.local import local_cluster
from rayscale.work.cluster.session import check_reachable, cpu_nodes, other_jobs_warning, ray_session
from rayscale.work.data import Dataset
from rayscale.work.execution.loop import Callback, CallbackList, Context, run_phases
from rayscale.work.execution.observers import MetricsCallback
from rayscale.work.execution.phases import build
from rayscale.work.execution.prometheus import RunMetrics, workload_label
from rayscale.work.execution.workload import load_work
from rayscale.work.grid.configs import TrialSpec
from rayscale.work.stopping import stop_on_sigterm, wall_limit

if TYPE_CHECKING:
    from rayscale.work.cluster.isolated import IsolatedCluster

RAMP_POLL_S = 1.0


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
def _sessions(opts: ScaleOptions, run_id: str, kept: str, shown: Callback) -> Iterator[Any]:
    """Yield a function n → context manager of (cluster info, pinned nodes or None, resize ramp or
    None, the isolated cluster or None)."""
    if opts.mode == "local":

        @contextmanager
        def local(n: int) -> Iterator[tuple[ClusterInfo, None, None, IsolatedCluster | None]]:
            if opts.isolate:
                from rayscale.work.cluster.isolated import Isolation, isolated_cluster

                isolation = Isolation.of(opts)
                with isolated_cluster(
                    n, opts.cpus_per_node, isolation, run_id, kept, shown.on_head_lost
                ) as cluster:
                    assert cluster.info is not None
                    yield cluster.info, None, None, cluster
                return
            with local_cluster(n, opts.cpus_per_node) as info:
                if info.nodes != n:
                    raise RayscaleError(f"the local cluster has {info.nodes} node(s), expected {n}", 3)
                yield info, None, None, None

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
            def subset(n: int) -> Iterator[tuple[ClusterInfo, list[tuple[str, int]], None, None]]:
                chosen = [(node["NodeID"], int(node["Resources"]["CPU"])) for node in available[:n]]
                chosen_cpus = sum(c for _, c in chosen)
                yield info.model_copy(update={"nodes": n, "cpus": chosen_cpus}), chosen, None, None

            yield subset
            return
        from rayscale.work.cluster.kuberay import KubeRayScaler, current_namespace, default_api

        assert opts.kuberay is not None
        namespace = opts.namespace or current_namespace()
        # Poll every second: the ramp is a measurement, and its resolution is the poll interval.
        scaler = KubeRayScaler(
            opts.kuberay, namespace, default_api(), timeout_s=opts.wait_timeout_s, poll_s=RAMP_POLL_S
        )
        head_counts = any(n.get("Resources", {}).get("node:__internal_head__") for n in cpu_nodes())
        with scaler.restored():

            @contextmanager
            def resized(n: int) -> Iterator[tuple[ClusterInfo, None, Ramp, None]]:
                before = {node["NodeID"] for node in cpu_nodes()}
                patched = time.time()
                scaler.set_workers(n - 1 if head_counts else n)
                scaler.wait_for(n, lambda: len(cpu_nodes()))
                ramp = Ramp(
                    patched, time.time() - patched, frozenset(x["NodeID"] for x in cpu_nodes()) - before
                )
                cpus = sum(int(node["Resources"]["CPU"]) for node in cpu_nodes())
                yield info.model_copy(update={"nodes": n, "cpus": cpus}), None, ramp, None

            yield resized


def _measure(ctx: Context, ramp: Ramp | None, emulation: Emulation | None) -> list[Measurement]:
    """What one node count's phases measured, from the context they ran in."""
    info = ctx.cluster
    assert info is not None
    common: dict[str, Any] = {
        "nodes": info.nodes,
        "cpus": info.cpus,
        "slots": trial_slots(info.cpus, ctx.opts.cpus_per_trial),
        "connect_s": info.connect_s,
        "resize_s": ramp.alive_s if ramp else None,
        "first_trial_s": ramp.first_trial_s(ran(ctx)) if ramp else None,
        "emulation": emulation,
    }
    out = []
    par = ctx.results.get(GRID_PARALLEL.key)
    if par is not None:
        grid = ctx.grid()
        assert grid is not None and grid.lower_bound_s is not None
        out.append(
            Measurement(
                GRID_PARALLEL.key,
                rounds=par.rounds,
                trials=par.trials,
                lower_bound_s=grid.lower_bound_s,
                warmup_s=par.warmup_s,
                **common,
            )
        )
    sweeps = ctx.outcomes.get(TUNE.key)
    if sweeps:
        chosen = ctx.results[TUNE.key]
        rounds = [Round.of(t.wall_s, t.trials) for t in sweeps]
        out.append(
            Measurement(
                TUNE.key, rounds=rounds, trials=chosen.trials, lower_bound_s=chosen.lower_bound_s, **common
            )
        )
    return out


def ran(ctx: Context) -> list[Trial]:
    """Every trial of every round of every phase this context ran."""
    return [t for outcomes in ctx.outcomes.values() for outcome in outcomes for t in outcome.trials]


@dataclass
class _Sweep:
    """One ``rayscale scale``: its options, work, bundle and what it has measured so far."""

    opts: ScaleOptions
    dataset: Dataset
    specs: list[TrialSpec]
    out_dir: Path
    header: dict[str, Any]
    observers: Sequence[Callback]
    measured: list[Measurement]

    def warn(self, line: str) -> None:
        CallbackList(self.observers).on_warning(line)

    def node_count(self, n: int, session: Callable[[int], AbstractContextManager[Any]]) -> ScaleResult:
        """Measure ``n`` nodes, then rewrite the bundle with every point so far."""
        run = self.opts.run
        metrics = RunMetrics(
            f"{self.header['run_id']}-n{n}",
            workload_label(run.dataset, run.grid),
            push_gateway=run.push_gateway,
            strict=run.strict_metrics,
            warn=self.warn,
        )
        callbacks = CallbackList([MetricsCallback(metrics), *self.observers])
        with session(n) as (info, pinned, ramp, isolated):
            ctx = Context(
                run,
                self.dataset,
                build(run),
                self.specs,
                self.out_dir / "tune" / f"n{n}",
                callbacks,
                cluster=info,
                pinned=pinned,
                tune_repeats=run.repeats,
            )
            try:
                run_phases(ctx, {})
            except BaseException as exc:
                ctx.end("failed", exc)
                raise
            ctx.end("complete")
            emulation = isolated.fidelity.emulation(ran(ctx), run.cpus_per_trial) if isolated else None
        if emulation is not None and not emulation.faithful:
            self.warn(f"warning: the isolated {n}-node point is not faithful: {emulation.why}")
        measured = _measure(ctx, ramp, emulation)
        if ramp is not None:
            metrics.record_resize(n, info.cpus, ramp.alive_s, measured[0].first_trial_s)
        self.measured += measured
        points, fits, cheapest = analyse(self.measured, self.opts.price_per_node_hour, self.opts.deadline_s)
        result = ScaleResult(
            **self.header, environment=environment.capture(), points=points, fits=fits, cheapest=cheapest
        )
        write_scale_bundle(result, self.out_dir)
        return result


def run_scale(opts: ScaleOptions, observers: Sequence[Callback] = ()) -> tuple[ScaleResult, Path]:
    """Measure every node count, writing the scaling bundle as each one finishes (a sweep cut
    short keeps its points). The plot is the caller's (a view, :mod:`rayscale.views.report`)."""
    opts.validate()
    if opts.mode != "local":
        check_reachable(opts.run.address)
    check_isolation(opts)  # the --isolate options, and whether this machine can isolate
    run, dataset, specs = load_work(opts.run)
    # a scale point keeps the sweep's timing, not its answer: no ASHA replays (rayscale.work.tune.outcomes)
    opts = replace(opts, run=replace(run, tune=replace(run.tune, asha_replays=0)))
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
    sweep = _Sweep(opts, dataset, specs, out_dir, header, observers, [])
    kept = f"Node counts measured so far are in {out_dir / SCALE_FILE}" + (
        "; the worker replicas were restored" if opts.kuberay else ""
    )
    with (
        wall_limit(run.max_wall, kept),
        stop_on_sigterm(kept),
        _sessions(opts, run_id, kept, CallbackList(observers)) as session,
    ):
        if opts.mode != "local" and (line := other_jobs_warning()):
            sweep.warn(line)
        results = [sweep.node_count(n, session) for n in opts.nodes]
    return results[-1], out_dir
