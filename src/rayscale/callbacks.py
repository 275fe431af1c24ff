"""Observers of the run loop, in the shape of Ray Tune's ``Callback``/``CallbackList``.

The loop (:mod:`rayscale.pipeline`) calls, in order: ``on_run_start`` once work is about to
start (nothing is written before it, so a refused run leaves nothing), ``on_round_start``,
``on_trial`` for every finished trial, ``on_round_end``, ``on_phase_end`` for every phase
(also for one loaded on resume), and ``on_run_end(status, error)`` exactly once: "complete",
"inconsistent" or "failed" — a failure by exception and a lost head alike.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rayscale.errors import TrialFailed
from rayscale.schema import Trial

if TYPE_CHECKING:
    from rayscale.journal import Journal
    from rayscale.metrics import RunMetrics
    from rayscale.phases import Context, Phase


class Callback:
    """Every hook does nothing; an observer overrides the ones it needs."""

    def on_run_start(self, ctx: Context) -> None:
        pass

    def on_round_start(self, phase: Phase, round_: int, rounds: int, trials: int) -> None:
        pass

    def on_trial(self, phase: Phase, trial: Trial, round_: int) -> None:
        pass

    def on_round_end(self, phase: Phase, round_: int) -> None:
        pass

    def on_phase_end(self, phase: Phase, result: Any, ctx: Context) -> None:
        pass

    def on_run_end(self, status: str, error: BaseException | None) -> None:
        pass


class CallbackList(Callback):
    """Calls each callback in turn; ``on_run_end`` runs once, whoever calls it first."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)
        self._ended = False

    def on_run_start(self, ctx: Context) -> None:
        for c in self.callbacks:
            c.on_run_start(ctx)

    def on_round_start(self, phase: Phase, round_: int, rounds: int, trials: int) -> None:
        for c in self.callbacks:
            c.on_round_start(phase, round_, rounds, trials)

    def on_trial(self, phase: Phase, trial: Trial, round_: int) -> None:
        for c in self.callbacks:
            c.on_trial(phase, trial, round_)

    def on_round_end(self, phase: Phase, round_: int) -> None:
        for c in self.callbacks:
            c.on_round_end(phase, round_)

    def on_phase_end(self, phase: Phase, result: Any, ctx: Context) -> None:
        for c in self.callbacks:
            c.on_phase_end(phase, result, ctx)

    def on_run_end(self, status: str, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        for c in self.callbacks:
            c.on_run_end(status, error)


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class JournalCallback(Callback):
    """Keeps ``run.json`` and ``trials.jsonl``; opened only when work starts."""

    def __init__(self, open_journal: Callable[[], Journal]) -> None:
        self._open = open_journal
        self.journal: Journal | None = None

    def on_run_start(self, ctx: Context) -> None:
        self.journal = self._open()

    def on_trial(self, phase: Phase, trial: Trial, round_: int) -> None:
        assert self.journal is not None
        self.journal.trial(phase.name, trial, round_)

    def on_phase_end(self, phase: Phase, result: Any, ctx: Context) -> None:
        assert self.journal is not None
        if phase.name not in ctx.resumed:
            self.journal.phase_done(phase.name, result)

    def on_run_end(self, status: str, error: BaseException | None) -> None:
        if self.journal is not None:  # a run refused before any work has no journal
            self.journal.finish(status, error=None if error is None else first_line(error))


class MetricsCallback(Callback):
    """Records each phase's figures, pushes them as it ends, and counts failed trials."""

    def __init__(self, metrics: RunMetrics) -> None:
        self.metrics = metrics
        self.ctx: Context | None = None

    def on_run_start(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_phase_end(self, phase: Phase, result: Any, ctx: Context) -> None:
        figures = phase.figures(result, ctx)
        self.metrics.record_phase(phase.name, **{f.name: getattr(figures, f.name) for f in fields(figures)})
        self.metrics.push_phase(phase.name)

    def on_run_end(self, status: str, error: BaseException | None) -> None:
        if status == "failed":
            ctx, cluster = self.ctx, self.ctx.cluster if self.ctx else None
            failed = error.trials if isinstance(error, TrialFailed) else 0
            phase = error.phase if isinstance(error, TrialFailed) else (ctx.current if ctx else None)
            self.metrics.record_failure(
                phase or "setup",
                cluster.cpus if cluster else 1,
                cluster.nodes if cluster else 1,
                trials=failed,
            )
            self.metrics.push_all()
        elif status == "complete":
            self.metrics.succeeded()
        self.metrics.close()


class ProgressCallback(Callback):
    """A rich progress bar per round; transient, on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._stack: ExitStack | None = None
        self._advance: Callable[[], None] = lambda: None

    def on_round_start(self, phase: Phase, round_: int, rounds: int, trials: int) -> None:
        if not self.console.is_terminal:  # piped: no bars, no blank lines
            return
        label = phase.label if rounds == 1 else f"{phase.label}, round {round_}/{rounds}"
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self._stack = ExitStack()
        progress = self._stack.enter_context(Progress(*columns, console=self.console, transient=True))
        task = progress.add_task(label, total=trials)
        self._advance = lambda: progress.advance(task)

    def on_trial(self, phase: Phase, trial: Trial, round_: int) -> None:
        self._advance()

    def on_round_end(self, phase: Phase, round_: int) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def on_run_end(self, status: str, error: BaseException | None) -> None:
        self.on_round_end(None, 0)  # type: ignore[arg-type]


def stderr_console() -> Console:
    """The console progress and warnings go to: stderr, without blank lines when it is not a terminal."""
    return Console(stderr=True, force_terminal=None if sys.stderr.isatty() else False)
