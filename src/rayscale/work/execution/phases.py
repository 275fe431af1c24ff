"""The phases of a run: the grid fitted sequentially in the driver, the grid as Ray tasks, and the Ray
Tune sweep. Each is a :class:`rayscale.work.execution.loop.Phase`; ``rayscale run`` and ``rayscale
scale`` build the same objects with :func:`build`, and
:func:`rayscale.work.execution.loop.run_phases` drives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rayscale.options.commands import GRID_PARALLEL, GRID_SEQUENTIAL, TUNE, RunOptions
from rayscale.options.space import count_trials
from rayscale.results.schema import (
    CostSource,
    ParallelPhase,
    Round,
    SequentialPhase,
    TrialRecord,
    TuneResult,
    best_of,
)
from rayscale.results.stats import Stats
from rayscale.work.execution.loop import Context, Phase, PhaseSummary
from rayscale.work.grid.runners import (
    RayGridRunner,
    RayProcesses,
    expected_costs,
    run_sequential,
    warm_driver,
)
from rayscale.work.tune.outcomes import with_outcomes
from rayscale.work.tune.sweep import run_sweep


@dataclass(frozen=True)
class GridRound:
    wall_s: float
    trials: list[TrialRecord]
    ray_cpu_s: float | None = None
    tasks: int | None = None

    def to_round(self) -> Round:
        return Round.of(self.wall_s, self.trials, ray_cpu_s=self.ray_cpu_s, tasks=self.tasks)


def _best(trials: list[TrialRecord], ctx: Context) -> dict[str, Any]:
    """The summary's best: by the selection metric, and the lowest RMSE of a regression."""
    chosen = best_of(trials, ctx.metric)
    rmses = [t.rmse for t in trials if t.rmse is not None]
    return {
        "best_score": (chosen.cv_metrics or chosen.metrics)[ctx.metric],
        "metric": ctx.metric,
        "best_rmse": min(rmses) if rmses else None,
    }


def _representative(outcomes: list[GridRound]) -> tuple[list[Round], list[TrialRecord]]:
    """Every round's summary, and the trials of the round nearest the median wall."""
    rounds = [o.to_round() for o in outcomes]
    return rounds, outcomes[Stats([r.wall_s for r in rounds]).nearest_to_median()].trials


class GridSequential(Phase[SequentialPhase]):
    names = GRID_SEQUENTIAL
    result_type = SequentialPhase

    def __init__(self) -> None:
        self.warmup_s = 0.0

    def warm_up(self, ctx: Context) -> None:
        self.warmup_s = warm_driver(ctx.dataset, ctx.specs[0].estimator)

    def run_round(self, ctx: Context, round_: int) -> GridRound:
        wall, trials = run_sequential(ctx.specs, ctx.dataset, on_trial=self._on_trial(ctx, round_))
        return GridRound(wall, trials)

    def result(self, ctx: Context, outcomes: list[GridRound]) -> SequentialPhase:
        rounds, trials = _representative(outcomes)
        return SequentialPhase(rounds=rounds, trials=trials, warmup_s=self.warmup_s)

    def summary(self, result: SequentialPhase, ctx: Context) -> PhaseSummary:
        return PhaseSummary(
            trials=result.trials,
            wall_s=result.wall_s,
            lower_bound_s=result.median("busy_s"),
            cpus=1,
            nodes=1,
            **_best(result.trials, ctx),
        )


class GridParallel(Phase[ParallelPhase]):
    names = GRID_PARALLEL
    result_type = ParallelPhase

    def __init__(self) -> None:
        self.runner: RayGridRunner | None = None
        self.warmup_s = 0.0
        self.ray_processes: RayProcesses | None = None
        self.cost_source: CostSource = "formula"
        self.costs: dict[tuple[int, int | None], float] | None = None
        self.pilot_s = 0.0

    def warm_up(self, ctx: Context) -> None:
        assert ctx.cluster is not None
        self.runner = RayGridRunner(
            ctx.dataset,
            ctx.opts.cpus_per_trial,
            ctx.cluster.cpus,
            nodes=ctx.pinned,
            estimator=ctx.specs[0].estimator,
        )
        ctx.callbacks.on_wait("warming up Ray workers", True)
        try:
            self.warmup_s = self.runner.warm_up()
        finally:
            ctx.callbacks.on_wait("warming up Ray workers", False)
        sequential = ctx.results.get(GRID_SEQUENTIAL.key)
        self.cost_source, self.costs, self.pilot_s = expected_costs(
            ctx.specs, ctx.dataset, sequential.trials if sequential is not None else None
        )
        self.ray_processes = RayProcesses.find() if ctx.cluster.mode == "embedded" else None

    def release(self) -> None:
        if self.runner is not None:
            self.runner.close()

    def run_round(self, ctx: Context, round_: int) -> GridRound:
        assert self.runner is not None
        before = self.ray_processes.cpu_s() if self.ray_processes else None
        wall, trials = self.runner.run(ctx.specs, on_trial=self._on_trial(ctx, round_), costs=self.costs)
        used = self.ray_processes.cpu_s() - before if self.ray_processes and before is not None else None
        return GridRound(wall, trials, used, self.runner.tasks)

    def result(self, ctx: Context, outcomes: list[GridRound]) -> ParallelPhase:
        assert ctx.cluster is not None
        rounds, trials = _representative(outcomes)
        return ParallelPhase(
            rounds=rounds,
            trials=trials,
            connect_s=ctx.cluster.connect_s,
            warmup_s=self.warmup_s,
            cpus_per_trial=ctx.opts.cpus_per_trial,
            cost_source=self.cost_source,
            pilot_s=self.pilot_s,
        )

    def summary(self, result: ParallelPhase, ctx: Context) -> PhaseSummary:
        grid = ctx.grid()
        assert grid is not None and ctx.cluster is not None
        return PhaseSummary(
            trials=result.trials,
            wall_s=result.wall_s,
            lower_bound_s=grid.lower_bound_s,
            cpus=ctx.cluster.cpus,
            nodes=ctx.cluster.nodes,
            **_best(result.trials, ctx),
            speedup=grid.speedup,
            parallel_efficiency=grid.parallel_efficiency,
            schedule_efficiency=grid.schedule_efficiency,
            breakdown=grid.breakdown,
        )


class TuneSweep(Phase[TuneResult]):
    names = TUNE
    result_type = TuneResult

    def __init__(self, finished: list[Any] | None = None) -> None:
        self.finished = finished  # trials an interrupted sweep had finished (resume)

    def rounds(self, ctx: Context) -> int:
        return ctx.tune_repeats

    def trials_per_round(self, ctx: Context) -> int:
        return count_trials(ctx.opts.tune.space, ctx.opts.tune.samples) - len(self.finished or [])

    def run_round(self, ctx: Context, round_: int) -> TuneResult:
        assert ctx.cluster is not None
        opts = ctx.opts.tune  # as load_work resolved it
        storage = ctx.out_dir if ctx.tune_repeats == 1 else ctx.out_dir / "tune" / f"r{round_}"
        result = run_sweep(
            ctx.dataset,
            opts,
            ctx.cluster.cpus,
            storage,
            on_trial=self._on_trial(ctx, round_),
            finished=self.finished,
        )
        return with_outcomes(result, ctx.dataset, opts)

    def result(self, ctx: Context, outcomes: list[TuneResult]) -> TuneResult:
        """The sweep nearest the median wall (the only one, in a run)."""
        return outcomes[Stats([o.wall_s for o in outcomes]).nearest_to_median()]

    def summary(self, result: TuneResult, ctx: Context) -> PhaseSummary:
        assert ctx.cluster is not None
        return PhaseSummary(
            trials=result.trials,
            wall_s=result.wall_s,
            lower_bound_s=result.lower_bound_s,
            cpus=result.cpus,
            nodes=ctx.cluster.nodes,
            best_rmse=result.best.rmse,
            best_score=result.best.metrics[result.metric],
            metric=result.metric,
            parallel_efficiency=result.parallel_efficiency,
        )


def build(opts: RunOptions, tune_finished: list[Any] | None = None) -> list[Phase[Any]]:
    """The phase objects for ``--phases``, in run order."""
    every: list[Phase[Any]] = [GridSequential(), GridParallel(), TuneSweep(tune_finished)]
    return [p for p in every if p.names.option in opts.phases]
