"""The phases of a run as objects: each has a name, ``run_round(ctx, round)``, ``result(ctx,
outcomes)`` and ``load(saved)`` for resuming, and ``figures(result, ctx)`` for the metrics.

:func:`rayscale.pipeline.run_phases` drives them; ``rayscale run`` and ``rayscale scale`` build
the same objects. Phases of one ``group`` run their rounds interleaved (sequential, parallel,
sequential, parallel, …) so that drift on the machine hits both alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from rich.console import Console

from rayscale.callbacks import Callback
from rayscale.datasets import Dataset
from rayscale.grids import TrialSpec
from rayscale.options import RunOptions
from rayscale.runners import RayGridRunner, RayProcesses, mismatches, run_sequential, warm_driver
from rayscale.schema import (
    ClusterInfo,
    GridResult,
    ParallelPhase,
    Round,
    SequentialPhase,
    TrialRecord,
    TuneResult,
)
from rayscale.stats import Stats

R = TypeVar("R", bound=BaseModel)


@dataclass
class Context:
    """What the phases of one run (or one node count of a scale) share."""

    opts: RunOptions
    dataset: Dataset
    phases: list[Phase[Any]]
    specs: list[TrialSpec]
    out_dir: Path
    callbacks: Callback
    console: Console
    cluster: ClusterInfo | None = None
    pinned: list[tuple[str, int]] | None = None  # scale --address: trials confined to these nodes
    tune_repeats: int = 1  # run: one sweep; scale: --repeats sweeps per node count
    results: dict[str, Any] = field(default_factory=dict)  # finished phases, by name
    outcomes: dict[str, list[Any]] = field(default_factory=dict)  # every round of each phase run here
    resumed: set[str] = field(default_factory=set)  # phases loaded from an interrupted run
    current: str | None = None  # the phase whose round is under way

    def grid(self) -> GridResult | None:
        """The grid figures of the phases finished so far."""
        seq, par = self.results.get(GridSequential.name), self.results.get(GridParallel.name)
        if seq is None and par is None:
            return None
        cluster = self.cluster
        return GridResult(
            configs=len(self.specs),
            cpus=cluster.cpus if cluster else 1,
            nodes=cluster.nodes if cluster else 1,
            cpus_per_trial=self.opts.cpus_per_trial,
            sequential=seq,
            parallel=par,
            mismatches=_mismatches(seq, par),
            selected_on="validation" if self.opts.validation_size else "test",
        )


def _mismatches(seq: SequentialPhase | None, par: ParallelPhase | None) -> list[str]:
    return mismatches(seq.trials, par.trials) if seq and par else []


@dataclass(frozen=True)
class Figures:
    """What the metrics export of a finished phase."""

    trials: list[Any]
    wall_s: float
    lower_bound_s: float | None
    cpus: int
    nodes: int
    best_rmse: float
    speedup: float | None = None
    parallel_efficiency: float | None = None
    schedule_efficiency: float | None = None
    breakdown: dict[str, float] | None = None


class Phase(ABC, Generic[R]):
    name: str
    option: str  # its name in --phases
    label: str  # on the progress bar
    group: str  # phases of one group interleave their rounds
    result_type: type[R]

    def rounds(self, ctx: Context) -> int:
        return ctx.opts.repeats

    def trials_per_round(self, ctx: Context) -> int:
        return len(ctx.specs)

    def warm_up(self, ctx: Context) -> None:
        """Pay the one-off costs (imports, worker start) before the timed rounds."""

    @abstractmethod
    def run_round(self, ctx: Context, round_: int) -> Any: ...

    @abstractmethod
    def result(self, ctx: Context, outcomes: list[Any]) -> R: ...

    @abstractmethod
    def figures(self, result: R, ctx: Context) -> Figures: ...

    def load(self, saved: dict[str, Any]) -> R:
        return self.result_type.model_validate(saved)

    def _on_trial(self, ctx: Context, round_: int) -> Any:
        return lambda trial: ctx.callbacks.on_trial(self, trial, round_)


@dataclass(frozen=True)
class GridRound:
    wall_s: float
    trials: list[TrialRecord]
    ray_cpu_s: float | None = None

    def summary(self) -> Round:
        return Round.of(self.wall_s, self.trials, ray_cpu_s=self.ray_cpu_s)


def _representative(outcomes: list[GridRound]) -> tuple[list[Round], list[TrialRecord]]:
    """Every round's summary, and the trials of the round nearest the median wall."""
    rounds = [o.summary() for o in outcomes]
    return rounds, outcomes[Stats([r.wall_s for r in rounds]).nearest_to_median()].trials


class GridSequential(Phase[SequentialPhase]):
    name, option, label, group = "grid_sequential", "grid-seq", "sequential grid", "grid"
    result_type = SequentialPhase

    def __init__(self) -> None:
        self.warmup_s = 0.0

    def warm_up(self, ctx: Context) -> None:
        self.warmup_s = warm_driver(ctx.dataset)

    def run_round(self, ctx: Context, round_: int) -> GridRound:
        wall, trials = run_sequential(ctx.specs, ctx.dataset, on_trial=self._on_trial(ctx, round_))
        return GridRound(wall, trials)

    def result(self, ctx: Context, outcomes: list[GridRound]) -> SequentialPhase:
        rounds, trials = _representative(outcomes)
        return SequentialPhase(rounds=rounds, trials=trials, warmup_s=self.warmup_s)

    def figures(self, result: SequentialPhase, ctx: Context) -> Figures:
        return Figures(
            trials=result.trials,
            wall_s=result.wall_s,
            lower_bound_s=result.median("busy_s"),
            cpus=1,
            nodes=1,
            best_rmse=min(t.rmse for t in result.trials),
        )


class GridParallel(Phase[ParallelPhase]):
    name, option, label, group = "grid_parallel", "grid-ray", "Ray grid", "grid"
    result_type = ParallelPhase

    def __init__(self) -> None:
        self.runner: RayGridRunner | None = None
        self.warmup_s = 0.0
        self.ray_processes: RayProcesses | None = None

    def warm_up(self, ctx: Context) -> None:
        assert ctx.cluster is not None
        self.runner = RayGridRunner(ctx.dataset, ctx.opts.cpus_per_trial, ctx.cluster.cpus, nodes=ctx.pinned)
        with ctx.console.status("warming up Ray workers") if ctx.console.is_terminal else nullcontext():
            self.warmup_s = self.runner.warm_up()
        self.ray_processes = RayProcesses.find() if ctx.cluster.mode == "embedded" else None

    def run_round(self, ctx: Context, round_: int) -> GridRound:
        assert self.runner is not None
        before = self.ray_processes.cpu_s() if self.ray_processes else None
        wall, trials = self.runner.run(ctx.specs, on_trial=self._on_trial(ctx, round_))
        used = self.ray_processes.cpu_s() - before if self.ray_processes and before is not None else None
        return GridRound(wall, trials, used)

    def result(self, ctx: Context, outcomes: list[GridRound]) -> ParallelPhase:
        assert ctx.cluster is not None
        rounds, trials = _representative(outcomes)
        return ParallelPhase(
            rounds=rounds,
            trials=trials,
            connect_s=ctx.cluster.connect_s,
            warmup_s=self.warmup_s,
            cpus_per_trial=ctx.opts.cpus_per_trial,
        )

    def figures(self, result: ParallelPhase, ctx: Context) -> Figures:
        grid = ctx.grid()
        assert grid is not None and ctx.cluster is not None
        return Figures(
            trials=result.trials,
            wall_s=result.wall_s,
            lower_bound_s=grid.lower_bound_s,
            cpus=ctx.cluster.cpus,
            nodes=ctx.cluster.nodes,
            best_rmse=min(t.rmse for t in result.trials),
            speedup=grid.speedup,
            parallel_efficiency=grid.parallel_efficiency,
            schedule_efficiency=grid.schedule_efficiency,
            breakdown=grid.breakdown,
        )


class TuneSweep(Phase[TuneResult]):
    name, option, label, group = "tune", "tune", "Tune sweep (XGBoost)", "tune"
    result_type = TuneResult

    def __init__(self, finished: list[Any] | None = None) -> None:
        self.finished = finished  # trials an interrupted sweep had finished (resume)

    def rounds(self, ctx: Context) -> int:
        return ctx.tune_repeats

    def trials_per_round(self, ctx: Context) -> int:
        from rayscale.tune import count_trials

        return count_trials(ctx.opts.tune.space, ctx.opts.tune.samples) - len(self.finished or [])

    def run_round(self, ctx: Context, round_: int) -> TuneResult:
        from rayscale.tune import run_sweep

        assert ctx.cluster is not None
        opts = replace(
            ctx.opts.tune,
            cpus_per_trial=ctx.opts.cpus_per_trial,
            seed=ctx.opts.seed,
            metric="val_rmse" if ctx.opts.validation_size else "rmse",
        )
        storage = ctx.out_dir if ctx.tune_repeats == 1 else ctx.out_dir / "tune" / f"r{round_}"
        return run_sweep(
            ctx.dataset,
            opts,
            ctx.cluster.cpus,
            storage,
            on_trial=self._on_trial(ctx, round_),
            finished=self.finished,
        )

    def result(self, ctx: Context, outcomes: list[TuneResult]) -> TuneResult:
        """The sweep nearest the median wall (the only one, in a run)."""
        return outcomes[Stats([o.wall_s for o in outcomes]).nearest_to_median()]

    def figures(self, result: TuneResult, ctx: Context) -> Figures:
        assert ctx.cluster is not None
        return Figures(
            trials=result.trials,
            wall_s=result.wall_s,
            lower_bound_s=result.lower_bound_s,
            cpus=result.cpus,
            nodes=ctx.cluster.nodes,
            best_rmse=result.best.rmse,
            parallel_efficiency=result.parallel_efficiency,
        )


def build(opts: RunOptions, tune_finished: list[Any] | None = None) -> list[Phase[Any]]:
    """The phase objects for ``--phases``, in run order."""
    every: list[Phase[Any]] = [GridSequential(), GridParallel(), TuneSweep(tune_finished)]
    return [p for p in every if p.option in opts.phases]


def run_phases(ctx: Context, saved: dict[str, dict[str, Any]]) -> None:
    """The run loop: per group, load what a resumed run saved, warm the rest up, run their rounds
    interleaved, then hand each result to the callbacks."""
    for group in dict.fromkeys(p.group for p in ctx.phases):
        members = [p for p in ctx.phases if p.group == group]
        todo = [p for p in members if p.name not in saved]
        for p in members:
            if p.name in saved:
                ctx.results[p.name] = p.load(saved[p.name])
                ctx.resumed.add(p.name)
        for p in todo:
            ctx.current = p.name
            p.warm_up(ctx)
        outcomes: dict[str, list[Any]] = {p.name: [] for p in todo}
        for r in range(1, max((p.rounds(ctx) for p in todo), default=0) + 1):
            for p in (p for p in todo if r <= p.rounds(ctx)):
                ctx.current = p.name
                ctx.callbacks.on_round_start(p, r, p.rounds(ctx), p.trials_per_round(ctx))
                outcomes[p.name].append(p.run_round(ctx, r))
                ctx.callbacks.on_round_end(p, r)
        for p in todo:
            ctx.outcomes[p.name] = outcomes[p.name]
            ctx.results[p.name] = p.result(ctx, outcomes[p.name])
        for p in members:
            ctx.callbacks.on_phase_end(p, ctx.results[p.name], ctx)
