"""Signals handled like Ctrl-C, and windows in which further interrupts wait.

``gpumlp train`` treats SIGTERM (``timeout``, ``docker stop``, batch schedulers) and SIGHUP (a
closed terminal) as it treats Ctrl-C: training stops after the last finished epoch, which is
saved, and the process exits with the shell's code for the signal (130, 143, 129).

- :func:`stop_on_signals` is the command's scope: the first SIGINT, SIGTERM or SIGHUP raises an
  :class:`Interrupt` where the program was, and from that moment the process is *stopping*:
  every later signal is held until the process exits, so nothing that saves the finished
  epochs (checkpoint, history, the message, the interpreter's own shutdown) can be cut short
  by a second press. The first held signal is noted on stderr; the next one ends the process
  at once with its exit code. Every file is written atomically, so that leaves at most hidden
  temp files, which the next run in the folder removes.
- :func:`interrupts_from_signals` (the library's scope, e.g. one trial of a sweep): within the
  block SIGTERM and SIGHUP raise :class:`Interrupt` as Ctrl-C raises KeyboardInterrupt.
- :func:`handled_by` gives the three signals to a handler of the caller's within a block (a
  sweep worker's, which lets them wait while it talks to its storage).
- :func:`deferred` holds interrupts back while files are written: outside
  :func:`stop_on_signals` a signal that arrives in the window is delivered when it closes;
  inside it, such a signal starts the stopping.

A signal ignored when they start (``nohup`` ignores SIGHUP) stays ignored. Handlers can only be
installed from the main thread; elsewhere these are no-ops.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = [
    "EXIT_CODES",
    "Interrupt",
    "deferred",
    "exit_code",
    "handled_by",
    "interrupts_from_signals",
    "name",
    "signum_of",
    "stop_on_signals",
]

EXIT_CODES: dict[int, int] = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143,
                             int(signal.SIGHUP): 129}  # fmt: skip
"""The shell's exit code for a process stopped by each signal (128 + its number)."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NOTE = b"gpumlp: saving the finished epochs; interrupt again to quit without waiting\n"

# The process-wide state of stop_on_signals: whether its scope is open, and, once the process
# is stopping, the signals held since (None until then).
_scoped = False
_held: list[int] | None = None

Callback = Callable[[int, FrameType | None], None]
Handler = Callback | signal.Handlers


class Interrupt(KeyboardInterrupt):
    """A signal (SIGTERM, SIGHUP, or SIGINT under :func:`stop_on_signals`) raised where the
    program was, as Ctrl-C raises KeyboardInterrupt; ``signum`` names it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupt(signum)


def _install(handler: Handler, signums: tuple[signal.Signals, ...]) -> dict[int, Any]:
    """Set ``handler`` for each signal not ignored (``nohup`` ignores SIGHUP, a shell's
    background job SIGINT: they stay so); returns the handlers replaced, to restore."""
    old = {}
    for s in signums:
        if signal.getsignal(s) is not signal.SIG_IGN:
            old[int(s)] = signal.signal(s, handler)
    return old


def _restore(old: dict[int, Any]) -> None:
    for s, handler in old.items():
        signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _holder(held: list[int]) -> Callback:
    """A handler that holds signals in ``held``: the first is noted, the next ends the process."""

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)
        if len(held) >= 2:
            os._exit(exit_code(signum))
        # os.write, not print: this may run inside a print to stderr, which is not reentrant.
        with contextlib.suppress(OSError):
            os.write(2, _NOTE)

    return hold


def _stop(signum: int, frame: FrameType | None) -> None:
    """The first signal in :func:`stop_on_signals`: hold every later one, raise this one."""
    if _held is not None:  # a second signal that came before this handler had replaced itself
        _holder(_held)(signum, frame)
        return
    _stopping([])
    raise Interrupt(signum)


def _stopping(held: list[int]) -> None:
    """From now on the process is stopping: signals are held (in ``held``) until it exits."""
    global _held
    _held = held
    _install(_holder(held), _SIGNALS)
    atexit.unregister(_ignore_at_exit)
    atexit.register(_ignore_at_exit)


def _ignore_at_exit() -> None:
    # The interpreter's shutdown gives signals with Python handlers back their default action,
    # which a last press would then meet: ignore them instead, the process is all but gone.
    if _held is not None and _main_thread():
        _install(signal.SIG_IGN, _SIGNALS)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """The scope of a command that saves its work when stopped (module docstring).

    Leaving it, the handlers in place before are restored, unless the process is stopping:
    then signals stay held until it exits (an interrupt during the interpreter's shutdown
    would print a traceback), and are ignored in its last moments.
    """
    global _scoped, _held
    if not _main_thread() or _scoped:
        yield
        return
    old = _install(_stop, _SIGNALS)
    _scoped, _held = True, None
    try:
        yield
    finally:
        _scoped = False
        if _held is None:
            _restore(old)


@contextlib.contextmanager
def handled_by(handler: Callback, signums: tuple[signal.Signals, ...] = _SIGNALS) -> Iterator[None]:
    """Within the block ``handler`` takes ``signums`` (default SIGINT, SIGTERM, SIGHUP; those
    ignored stay so); the handlers before are restored after. Off the main thread, nothing."""
    if not _main_thread():
        yield
        return
    old = _install(handler, signums)
    try:
        yield
    finally:
        _restore(old)


@contextlib.contextmanager
def interrupts_from_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupt`; handlers are restored.
    (Inside :func:`stop_on_signals`, which does this and more, it does nothing.)"""
    if _scoped:
        yield
        return
    with handled_by(_raise, (signal.SIGTERM, signal.SIGHUP)):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[list[int]]:
    """Hold interrupts back within the block (yields the list of signals that arrived).

    The first one arriving is noted with a line on stderr; one more ends the process at once
    with that signal's exit code. Inside :func:`stop_on_signals`, signals that arrived keep
    being held after the block (the process is stopping). Outside it, the first one is
    delivered when the block ends, to the handler in place before, unless the block is ending
    with an exception (which stops the work anyway): held, never lost.
    """
    if _held is not None or not _main_thread():
        yield _held if _held is not None else []
        return
    held: list[int] = []
    old = _install(_holder(held), _SIGNALS)
    ended = False
    try:
        yield held
        ended = True
    finally:
        if _scoped and held:
            _stopping(held)
        else:
            _restore(old)
            if held and ended:
                signal.raise_signal(held[0])


def signum_of(exc: BaseException) -> int:
    """The signal a KeyboardInterrupt stands for: an :class:`Interrupt`'s, else SIGINT."""
    return int(getattr(exc, "signum", signal.SIGINT))


def exit_code(signum: int) -> int:
    """The shell's exit code for a process stopped by ``signum``: 128 + its number."""
    return EXIT_CODES.get(signum, 128 + signum)


def name(signum: int) -> str:
    """``"Ctrl-C"`` for SIGINT, else the signal's name (``"SIGTERM"``)."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
