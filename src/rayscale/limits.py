"""``--max-wall``: stop a run or a scale sweep cleanly after a wall-clock budget.

KubeRay's ``activeDeadlineSeconds`` on a RayJob that selects an existing cluster only marks the
RayJob failed; the driver on the head goes on (and ``rayscale scale --kuberay`` goes on resizing).
rayscale's own limit ends the driver from inside: a SIGALRM raises :class:`WallLimitReached` in the
main thread, which unwinds through the run loop like any failure (``on_run_end("failed")``, the
journal kept, KubeRay replicas restored by their ``finally``) and exits 3 with one line.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from rayscale.errors import RayscaleError


class WallLimitReached(RayscaleError):
    def __init__(self, seconds: float, after: str) -> None:
        super().__init__(f"--max-wall {seconds:g}s reached; stopped. {after}", 3)


@contextmanager
def wall_limit(seconds: float | None, after: str = "") -> Iterator[None]:
    """Raise :class:`WallLimitReached` in the main thread once ``seconds`` have passed inside the
    block (``None``: no limit). ``after`` tells the user what was kept and how to go on."""
    if seconds is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise RayscaleError("--max-wall works only when rayscale runs in the main thread", 3)

    def expire(signum: int, frame: FrameType | None) -> None:
        raise WallLimitReached(seconds, after)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
