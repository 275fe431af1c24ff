"""The run loop and its contract: phases, the context they share, and the observers' hooks.

As in Ray Tune (``callback.py`` holds the contract, the loop imports it), this module holds only the
contract and the one loop; the phases are in :mod:`rayscale.work.execution.phases`, the observers
(journal, metrics) in :mod:`rayscale.work.execution.observers`. :func:`run_phases` calls, in order:
``on_run_start`` once work is about to start (nothing is written before it, so a refused run leaves
nothing), ``on_round_start``, ``on_trial`` for every finished trial, ``on_round_end``,
``on_phase_end`` for every phase (also for one loaded on resume); the caller ends the run with
:meth:`Context.end`, which calls ``on_run_end`` exactly once: "complete", "inconsistent" or "failed"
— a failure by exception and a lost head alike. Observers get what they need with each event and
keep no reference to the context.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from rayscale.options.commands import GRID_PARALLEL, GRID_SEQUENTIAL, PhaseName, RunOptions
from rayscale.options.scoring import check_metric
from rayscale.results.schema import BestModel, ClusterInfo, GridResult, Trial
from rayscale.work.data import Dataset
from rayscale.work.grid.configs import TrialSpec
from rayscale.work.grid.runners import mismatches
from rayscale.work.stopping import underlying_stop

R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class PhaseSummary:
    """What the metrics export of a finished phase."""

    trials: Sequence[Trial]
    wall_s: float
    lower_bound_s: float | None
    cpus: int
    nodes: int
    best_rmse: float | None  # regression only
    best_score: float  # by the selection metric
    metric: str
    speedup: float | None = None
    parallel_efficiency: float | None = None
    schedule_efficiency: float | None = None
    breakdown: dict[str, float] | None = None


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, and where: the phase under way and the cluster it ran on."""

    status: str  # "complete", "inconsistent" or "failed"
    error: BaseException | None = None
    phase: str | None = None
    cluster: ClusterInfo | None = None


class Callback(Protocol):
    """The observer contract: every hook does nothing; an observer subclasses this and overrides
    the ones it needs, or (a view, :mod:`rayscale.views.progress`, which cannot import work)
    provides every hook itself. Work never prints: a warning, a wait and a lost head reach the
    user through the last three hooks."""

    def on_run_start(self) -> None:
        return None

    def on_round_start(self, phase: Phase[Any], round_: int, rounds: int, trials: int) -> None:
        return None

    def on_trial(self, phase: Phase[Any], trial: Trial, round_: int) -> None:
        return None

    def on_round_end(self, phase: Phase[Any], round_: int) -> None:
        return None

    def on_phase_end(
        self, phase: Phase[Any], result: BaseModel, summary: PhaseSummary, resumed: bool
    ) -> None:
        return None

    def on_run_end(self, end: RunEnd) -> None:
        return None

    def on_warning(self, line: str) -> None:
        """A line the user should read (``warning: …``); the run goes on."""
        return None

    def on_wait(self, what: str, waiting: bool) -> None:
        """A wait without trials to count begins (``waiting``) or ends, e.g. warming up workers."""
        return None

    def on_head_lost(self, message: str) -> None:
        """The Ray head stopped answering: the process ends with exit 3 once this returns. Called
        on the watch thread, the main one blocked in Ray."""
        return None


class CallbackList(Callback):
    """Calls each callback in turn; ``on_run_end`` runs once, whoever calls it first."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)
        self._ended = False

    def on_run_start(self) -> None:
        for c in self.callbacks:
            c.on_run_start()

    def on_round_start(self, phase: Phase[Any], round_: int, rounds: int, trials: int) -> None:
        for c in self.callbacks:
            c.on_round_start(phase, round_, rounds, trials)

    def on_trial(self, phase: Phase[Any], trial: Trial, round_: int) -> None:
        for c in self.callbacks:
            c.on_trial(phase, trial, round_)

    def on_round_end(self, phase: Phase[Any], round_: int) -> None:
        for c in self.callbacks:
            c.on_round_end(phase, round_)

    def on_phase_end(
        self, phase: Phase[Any], result: BaseModel, summary: PhaseSummary, resumed: bool
    ) -> None:
        for c in self.callbacks:
            c.on_phase_end(phase, result, summary, resumed)

    def on_run_end(self, end: RunEnd) -> None:
        if self._ended:
            return
        self._ended = True
        for c in self.callbacks:
            c.on_run_end(end)

    def on_warning(self, line: str) -> None:
        for c in self.callbacks:
            c.on_warning(line)

    def on_wait(self, what: str, waiting: bool) -> None:
        for c in self.callbacks:
            c.on_wait(what, waiting)

    def on_head_lost(self, message: str) -> None:
        for c in self.callbacks:
            c.on_head_lost(message)


@dataclass
class Context:
    """What the phases of one run (or one node count of a scale) share."""

    opts: RunOptions
    dataset: Dataset
    phases: list[Phase[Any]]
    specs: list[TrialSpec]
    out_dir: Path
    callbacks: Callback
    cluster: ClusterInfo | None = None
    pinned: list[tuple[str, int]] | None = None  # scale --address: trials confined to these nodes
    tune_repeats: int = 1  # run: one sweep; scale: --repeats sweeps per node count
    results: dict[str, Any] = field(default_factory=dict)  # finished phases, by key
    outcomes: dict[str, list[Any]] = field(default_factory=dict)  # every round of each phase run here
    resumed: set[str] = field(default_factory=set)  # phases loaded from an interrupted run
    current: str | None = None  # the phase whose round is under way
    refit: BestModel | None = None  # --cv: the chosen config refit on the training split

    @property
    def metric(self) -> str:
        """The selection metric: ``--metric``, else the task's default (checked against the task)."""
        return check_metric(self.opts.metric, self.dataset.task)

    def grid(self) -> GridResult | None:
        """The grid result of the phases finished so far."""
        seq, par = self.results.get(GRID_SEQUENTIAL.key), self.results.get(GRID_PARALLEL.key)
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
            mismatches=mismatches(seq.trials, par.trials) if seq and par else [],
            selected_on="cv" if self.opts.cv else "validation" if self.opts.validation_size else "test",
            task=self.dataset.task,
            metric=self.metric,
            refit=self.refit,
        )

    def end(self, status: str, error: BaseException | None = None) -> None:
        """End the run (once): every observer's ``on_run_end``."""
        self.callbacks.on_run_end(RunEnd(status, error, self.current, self.cluster))


class Phase(ABC, Generic[R]):
    """One phase: named in :data:`rayscale.options.commands.PHASES`, run in rounds, reduced to a result."""

    names: PhaseName
    result_type: type[R]

    @property
    def key(self) -> str:
        return self.names.key

    def rounds(self, ctx: Context) -> int:
        return ctx.opts.repeats

    def trials_per_round(self, ctx: Context) -> int:
        return len(ctx.specs)

    def warm_up(self, ctx: Context) -> None:
        """Pay the one-off costs (imports, worker start) before the timed rounds."""

    def release(self) -> None:
        """Give back what :meth:`warm_up` holds (workers, their CPUs) once the rounds are over."""

    @abstractmethod
    def run_round(self, ctx: Context, round_: int) -> Any: ...

    @abstractmethod
    def result(self, ctx: Context, outcomes: list[Any]) -> R: ...

    @abstractmethod
    def summary(self, result: R, ctx: Context) -> PhaseSummary: ...

    def load(self, saved: dict[str, Any]) -> R:
        return self.result_type.model_validate(saved)

    def _on_trial(self, ctx: Context, round_: int) -> Callable[[Trial], None]:
        return lambda trial: ctx.callbacks.on_trial(self, trial, round_)


def run_phases(ctx: Context, saved: dict[str, dict[str, Any]]) -> None:
    """The run loop: per group, load what a resumed run saved, warm the rest up, run their rounds
    interleaved (sequential, parallel, sequential, … so that drift on the machine hits both
    alike), then hand each result to the callbacks."""
    ctx.callbacks.on_run_start()
    try:
        _run_groups(ctx, saved)
    except Exception as exc:  # a SIGTERM's Stopped, raised inside Ray's C code or Tune's callbacks
        stop = underlying_stop(exc)
        if stop is exc:
            raise
        raise stop from None


def _run_groups(ctx: Context, saved: dict[str, dict[str, Any]]) -> None:
    for group in dict.fromkeys(p.names.group for p in ctx.phases):
        members = [p for p in ctx.phases if p.names.group == group]
        todo = [p for p in members if p.key not in saved]
        for p in members:
            if p.key in saved:
                ctx.results[p.key] = p.load(saved[p.key])
                ctx.resumed.add(p.key)
        for p in todo:
            ctx.current = p.key
            p.warm_up(ctx)
        outcomes: dict[str, list[Any]] = {p.key: [] for p in todo}
        for r in range(1, max((p.rounds(ctx) for p in todo), default=0) + 1):
            for p in (p for p in todo if r <= p.rounds(ctx)):
                ctx.current = p.key
                ctx.callbacks.on_round_start(p, r, p.rounds(ctx), p.trials_per_round(ctx))
                outcomes[p.key].append(p.run_round(ctx, r))
                ctx.callbacks.on_round_end(p, r)
        for p in todo:  # before the next group: a failed run ends its session, and the workers with it
            p.release()
        for p in todo:
            ctx.outcomes[p.key] = outcomes[p.key]
            ctx.results[p.key] = p.result(ctx, outcomes[p.key])
        for p in members:
            result = ctx.results[p.key]
            ctx.callbacks.on_phase_end(p, result, p.summary(result, ctx), p.key in ctx.resumed)
