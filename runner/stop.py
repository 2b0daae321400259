"""Graceful stops: Ctrl-C (SIGINT) and SIGTERM ask the run to stop, and the training loops (a
single run's, a vmapped group's, a sweep's) finish the epoch in flight, keep what they have and
return. An XLA call cannot be cut short, and Python runs a signal handler only between bytecodes,
so "at once" means at the end of the epoch that is computing. A second signal while the first
is being honoured raises KeyboardInterrupt at once (the loops still keep every finished epoch).

Exit codes follow the shell's convention: 128 + the signal number (130 for SIGINT, 143 for
SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import threading

_requested: int | None = None
_shield = 0  # > 0 while bookkeeping that must not be cut in half runs


def install() -> None:
    """Handle SIGINT and SIGTERM from now on (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def _handler(signum, frame) -> None:
    global _requested
    if _requested is not None and not _shield:
        raise KeyboardInterrupt
    if _requested is None:
        _requested = signum


@contextlib.contextmanager
def shielded():
    """A block that a second signal does not cut short (an epoch's bookkeeping, writing the
    run's files): the stop is remembered and honoured after it."""
    global _shield
    _shield += 1
    try:
        yield
    finally:
        _shield -= 1


def request(signum: int = signal.SIGINT) -> None:
    """Ask for a stop as the signal would (tests; launchers that learn of a stop elsewhere)."""
    global _requested
    if _requested is None:
        _requested = signum


def note_interrupt() -> None:
    """A KeyboardInterrupt got through (a second Ctrl-C, or no handler installed): remember it
    as a SIGINT stop, so that the callers above know why the loop ended."""
    request(signal.SIGINT)


def requested() -> bool:
    return _requested is not None


def signal_name() -> str | None:
    return None if _requested is None else signal.Signals(_requested).name


def exit_code() -> int:
    return 128 + int(_requested or signal.SIGINT)


def reset() -> None:
    """Forget a stop (a new command in the same process: tests)."""
    global _requested
    _requested = None
