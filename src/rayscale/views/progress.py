"""What a command shows while it works, on stderr: a progress bar per round, a spinner while Ray
warms up, warnings in yellow, and the one ``error:`` line of a lost head before exit 3.

:class:`ProgressCallback` is an observer of the run loop
(:class:`rayscale.work.execution.loop.Callback`): the CLI makes one and passes it to the work,
which never prints. It provides every hook itself, since a view does not import work.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ProgressCallback:
    """A rich progress bar per round, transient; without a terminal (piped), no bars or spinner."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or stderr_console()
        self._stack: ExitStack | None = None
        self._advance: Callable[[], None] = lambda: None
        self._status: Any = None

    def on_run_start(self) -> None:
        return None

    def on_round_start(self, phase: Any, round_: int, rounds: int, trials: int) -> None:
        if not self.console.is_terminal:
            return
        label = phase.names.label if rounds == 1 else f"{phase.names.label}, round {round_}/{rounds}"
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self._stack = ExitStack()
        progress = self._stack.enter_context(Progress(*columns, console=self.console, transient=True))
        task = progress.add_task(label, total=trials)
        self._advance = lambda: progress.advance(task)

    def on_trial(self, phase: Any, trial: Any, round_: int) -> None:
        self._advance()

    def on_round_end(self, phase: Any, round_: int) -> None:
        self._close()

    def on_phase_end(self, phase: Any, result: Any, summary: Any, resumed: bool) -> None:
        return None

    def on_run_end(self, end: Any) -> None:
        self._close()

    def on_warning(self, line: str) -> None:
        self.console.print(line, style="yellow", highlight=False, markup=False, soft_wrap=True)

    def on_wait(self, what: str, waiting: bool) -> None:
        if waiting and self.console.is_terminal:
            self._status = self.console.status(what)
            self._status.start()
        elif not waiting and self._status is not None:
            self._status.stop()
            self._status = None

    def on_head_lost(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)

    def _close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


def stderr_console() -> Console:
    """The console progress and warnings go to: stderr, without blank lines when it is not a terminal."""
    return Console(stderr=True, force_terminal=None if sys.stderr.isatty() else False)
