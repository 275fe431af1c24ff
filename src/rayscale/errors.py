"""The one exception type the CLI turns into a one-line error and a non-zero exit."""

from __future__ import annotations


class RayscaleError(Exception):
    """Bad input or an environment problem, described in one line for the user.

    ``exit_code`` follows the documented convention: 2 for bad input (the default),
    3 for an environment problem (cluster unreachable, output not writable, a trial failed,
    ``--max-wall`` reached),
    4 for a benchmark whose results are inconsistent, 5 for a failed push under
    ``--strict-metrics``.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TrialFailed(RayscaleError):
    """``trials`` trial(s) of ``phase`` failed (an error in the model, not a lost worker)."""

    def __init__(self, message: str, phase: str, trials: int = 1) -> None:
        super().__init__(message, 3)
        self.phase = phase
        self.trials = trials


def first_line(error: BaseException, typed: bool = False) -> str:
    """The error's first line (its type's name when it has no message): what a journal records;
    ``typed`` puts the type's name before it (``OSError: …``), as a warning about a failed push does."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0]}" if typed else lines[0]
