"""``--max-wall`` and SIGTERM: stop a run or a scale sweep cleanly, from inside the driver.

KubeRay's ``activeDeadlineSeconds`` on a RayJob that selects an existing cluster only marks the
RayJob failed; the driver on the head goes on (and ``rayscale scale --kuberay`` goes on resizing).
rayscale's own limit ends the driver from inside: a SIGALRM raises :class:`WallLimitReached` in the
main thread, which unwinds through the run loop like any failure (``on_run_end("failed")``, the
journal kept, KubeRay replicas restored by their ``finally``) and exits 3 with one line.

Deleting a running RayJob makes KubeRay stop the job: Ray sends the driver SIGTERM, and SIGKILL
``RAY_JOB_STOP_WAIT_TIME_S`` (3 s by default) later. :func:`stop_on_sigterm` turns the first
SIGTERM into :class:`Stopped`, unwinding the same way; later ones are ignored, so that a second
signal cannot cut a restore short. ``ray.init`` installs Ray's own SIGTERM handlers (Python's, and
a native one that prints a stack dump), so :func:`sigterm_deferred` puts rayscale's back after each
connect.
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


class Stopped(RayscaleError):
    def __init__(self, after: str) -> None:
        super().__init__(f"SIGTERM received (the job was stopped); stopped. {after}", 3)


def underlying_stop(exc: BaseException) -> BaseException:
    """The :class:`Stopped` behind ``exc`` when a SIGTERM raised it inside Ray's own C code (a
    ``ray.wait`` checking for signals surfaces it as ``SystemError``) or inside Tune's controller
    (which raises a ``TuneError`` while handling it), else ``exc`` itself."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, Stopped):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return exc


class _Stop:
    """The SIGTERM handler of one :func:`stop_on_sigterm` block."""

    def __init__(self, after: str) -> None:
        self.after = after
        self.fired = False
        self.held = 0  # > 0 inside sigterm_deferred: a signal is kept for its end
        self.pending = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.fired:  # already unwinding: let the restore finish
            return
        if self.held:
            self.pending = True
            return
        self.fire()

    def fire(self) -> None:
        self.fired = True
        raise Stopped(self.after)

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)


_active: list[_Stop] = []


@contextmanager
def stop_on_sigterm(after: str = "") -> Iterator[None]:
    """Raise :class:`Stopped` in the main thread on the first SIGTERM inside the block; ``after``
    tells the user what was kept. Outside the main thread (nothing can be raised there) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = _Stop(after)
    previous = signal.getsignal(signal.SIGTERM)
    _active.append(stop)
    stop.install()
    try:
        yield
    finally:
        _active.remove(stop)
        signal.signal(signal.SIGTERM, previous if callable(previous) else signal.SIG_DFL)


@contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Hold SIGTERM back while a library (``ray.init``) installs handlers of its own, then put the
    innermost :func:`stop_on_sigterm` handler back and stop at the block's end if a SIGTERM came
    meanwhile: whatever the block started is then whole, and torn down as such. Ray's Python
    handler exits with status 15; one that ran in the meantime becomes :class:`Stopped` too."""
    if not _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    stop = _active[-1]
    stop.held += 1
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    except SystemExit as exc:
        if exc.code != signal.SIGTERM:
            raise
        stop.pending = True
    finally:
        stop.install()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        stop.held -= 1
        if stop.pending and not stop.held and not stop.fired:
            stop.pending = False
            stop.fire()
