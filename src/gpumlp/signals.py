"""Signals handled like Ctrl-C, and a window in which further interrupts wait.

``gpumlp train`` treats SIGTERM (``timeout``, ``docker stop``, batch schedulers) and SIGHUP (a
closed terminal) as it treats Ctrl-C: :func:`interrupts_from_signals` turns them into an
:class:`Interrupt` (a KeyboardInterrupt carrying the signal number), so training stops after
the last finished epoch and saves it. While that emergency save runs, :func:`deferred` holds
further interrupts back: a second press is noted and ignored; a third ends the process at once
(the save's files are written atomically, so none is left half-written).

Handlers can only be installed from the main thread; elsewhere both are no-ops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["EXIT_CODES", "Interrupt", "deferred", "interrupts_from_signals", "name"]

EXIT_CODES: dict[int, int] = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143,
                             int(signal.SIGHUP): 129}  # fmt: skip
"""The shell's exit code for a process stopped by each signal (128 + its number)."""


class Interrupt(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, raised where the program was, as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupt(signum)


@contextlib.contextmanager
def interrupts_from_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupt`; handlers are restored."""
    if not _main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred() -> Iterator[list[int]]:
    """Hold interrupts back within the block (yields the list of signals that arrived).

    The first one arriving is noted with a line on stderr; one more ends the process at once
    with that signal's exit code.
    """
    arrived: list[int] = []
    if not _main_thread():
        yield arrived
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        arrived.append(signum)
        if len(arrived) >= 2:
            os._exit(EXIT_CODES.get(signum, 128 + signum))
        print(
            "gpumlp: saving the last finished epoch; interrupt again to quit without waiting",
            file=sys.stderr,
            flush=True,
        )

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, hold) for s in sigs}
    try:
        yield arrived
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def name(signum: int) -> str:
    """``"Ctrl-C"`` for SIGINT, else the signal's name (``"SIGTERM"``)."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
