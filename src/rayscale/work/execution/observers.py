"""The run loop's observers that work keeps (:mod:`rayscale.work.execution.loop`): the journal and
the metrics. What the user sees is a view's (:mod:`rayscale.views.progress`), passed in by the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from pydantic import BaseModel

from rayscale.errors import TrialFailed, first_line
from rayscale.results.schema import Trial
from rayscale.work.execution.journal import Journal
from rayscale.work.execution.loop import Callback, Phase, PhaseSummary, RunEnd
from rayscale.work.execution.prometheus import RunMetrics


class JournalCallback(Callback):
    """Keeps ``run.json`` and ``trials.jsonl``; opened only when work starts."""

    def __init__(self, open_journal: Callable[[], Journal]) -> None:
        self._open = open_journal
        self.journal: Journal | None = None

    def on_run_start(self) -> None:
        self.journal = self._open()

    def on_trial(self, phase: Phase[Any], trial: Trial, round_: int) -> None:
        assert self.journal is not None
        self.journal.trial(phase.key, trial, round_)

    def on_phase_end(
        self, phase: Phase[Any], result: BaseModel, summary: PhaseSummary, resumed: bool
    ) -> None:
        assert self.journal is not None
        if not resumed:
            self.journal.phase_done(phase.key, result)

    def on_run_end(self, end: RunEnd) -> None:
        if self.journal is not None:  # a run refused before any work has no journal
            self.journal.finish(end.status, error=None if end.error is None else first_line(end.error))


class MetricsCallback(Callback):
    """Records each phase's summary, pushes it as the phase ends, and counts failed trials."""

    def __init__(self, metrics: RunMetrics) -> None:
        self.metrics = metrics

    def on_phase_end(
        self, phase: Phase[Any], result: BaseModel, summary: PhaseSummary, resumed: bool
    ) -> None:
        self.metrics.record_phase(phase.key, **{f.name: getattr(summary, f.name) for f in fields(summary)})
        self.metrics.push_phase(phase.key)

    def on_run_end(self, end: RunEnd) -> None:
        if end.status == "failed":
            error, cluster = end.error, end.cluster
            self.metrics.record_failure(
                error.phase if isinstance(error, TrialFailed) else end.phase or "setup",
                cluster.cpus if cluster else 1,
                cluster.nodes if cluster else 1,
                trials=error.trials if isinstance(error, TrialFailed) else 0,
            )
            self.metrics.push_all()
        elif end.status == "complete":
            self.metrics.succeeded()
        self.metrics.close()
