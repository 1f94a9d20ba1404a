"""Process-wide state of the fake CuPy: the counters, the current stream, the capture guard.

Every operation of the fake goes through :func:`guard` (refused while the current stream
captures, as CUDA refuses host syncs, allocations and library calls during stream capture) and
:meth:`Stats.add` (counted, with the caller's file:line, so a failing test can say where).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import threading
import weakref
from typing import Any

import array_api_compat

__all__ = [
    "CUDARuntimeError", "CaptureError", "Event", "MemoryPool", "Stats", "current_stream", "guard",
    "stats",
]  # fmt: skip

KINDS = ("sync", "h2d", "kernel", "graph", "graph_kernels", "op")
_SKIP = (os.path.dirname(__file__), os.path.dirname(array_api_compat.__file__))
_EMULATOR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "emulator.py")


def caller() -> str:
    """file:line of the first frame outside the fake CuPy and array-api-compat."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(_SKIP) and name != _EMULATOR:
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


@dataclasses.dataclass(frozen=True)
class Event:
    """One counted operation: its kind (a key of :data:`KINDS`), what it was, and where."""

    kind: str
    what: str
    where: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.what} at {self.where}"


class Stats:
    """What a real CUDA run of the same code would have done, counted.

    ``sync``: host reads that block on the device; ``h2d``: host-to-device copies; ``kernel``:
    raw kernels launched eagerly; ``graph``: graph launches, ``graph_kernels`` the kernels they
    replayed; ``op``: any other operation producing or writing a device array (one or more CUDA
    kernels or library calls in real CuPy). Shape-only metadata and views count as nothing.
    """

    def __init__(self, max_events: int = 10_000) -> None:
        self._lock = threading.Lock()
        self.events: collections.deque[Event] = collections.deque(maxlen=max_events)
        self.counts = dict.fromkeys(KINDS, 0)

    def reset(self) -> None:
        with self._lock:
            self.counts = dict.fromkeys(KINDS, 0)
            self.events.clear()

    def add(self, kind: str, what: str, n: int = 1) -> None:
        where = caller()
        with self._lock:
            self.counts[kind] += n
            self.events.append(Event(kind, what, where))

    def snapshot(self) -> dict[str, int]:
        """The counters now, as a plain dict (compare two snapshots for a difference)."""
        with self._lock:
            return dict(self.counts)

    def __getitem__(self, kind: str) -> int:
        return self.counts[kind]

    def where(self, kind: str) -> list[str]:
        """The recorded events of one kind, as "what at file:line" lines."""
        return [f"{e.what} at {e.where}" for e in self.events if e.kind == kind]

    def __repr__(self) -> str:
        return f"Stats({self.snapshot()})"


stats = Stats()


class CUDARuntimeError(RuntimeError):
    """An error the CUDA runtime would report (invalid device, capture misuse, ...)."""

    __module__ = "cupy_backends.cuda.api.runtime"  # where CuPy's lives: gpumlp checks "cupy*"


class CaptureError(CUDARuntimeError):
    """An operation other than a raw-kernel launch on a stream that is capturing."""


class _Local(threading.local):
    def __init__(self) -> None:
        self.current: Any = None  # the stream made current by `with stream:` or `use()`
        self.saved: list[Any] = []  # what each open `with stream:` replaced


_local = _Local()
null_stream: Any = None  # set by _cuda: the default stream


def current_stream() -> Any:
    """The calling thread's current stream (``Stream.null`` when none was made current)."""
    return _local.current or null_stream


def enter_stream(stream: Any) -> None:
    _local.saved.append(_local.current)
    _local.current = stream


def exit_stream() -> None:
    _local.current = _local.saved.pop()


def use_stream(stream: Any) -> None:
    _local.current = stream


def guard(what: str) -> None:
    """Refuse ``what`` while the current stream captures, invalidating the capture as CUDA does.

    Raises
    ------
    CaptureError
        "operation not permitted when stream is capturing", naming the operation and caller.
    """
    stream = current_stream()
    if stream is not None and stream.is_capturing():
        stream._invalidate(what)
        raise CaptureError(
            "cudaErrorStreamCaptureUnsupported: operation not permitted when stream is "
            f"capturing: {what} at {caller()} "
            "(only raw-kernel launches may be captured)"
        )


class MemoryPool:
    """``cupy.get_default_memory_pool()``: bytes of live fake arrays (``used``) and of dead ones
    the pool would keep cached (``free``, until :meth:`free_all_blocks`). ``set_limit`` makes
    allocations past the limit raise ``OutOfMemoryError``, to test out-of-memory handling."""

    __module__ = "cupy.cuda.memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used = self._free = 0
        self._live: set[int] = set()
        self._limit = 0

    def track(self, a: Any) -> None:
        """Account the buffer under the new NumPy array ``a`` (once per buffer)."""
        root = a
        while root.base is not None and hasattr(root.base, "base"):
            root = root.base
        n = int(root.nbytes)
        with self._lock:
            if id(root) in self._live:
                return
            if self._limit and self._used + n > self._limit:
                from ._cuda import OutOfMemoryError

                raise OutOfMemoryError(n, self._used, self._limit)
            self._live.add(id(root))
            self._used += n
        weakref.finalize(root, self._release, id(root), n)

    def _release(self, key: int, n: int) -> None:
        with self._lock:
            self._live.discard(key)
            self._used -= n
            self._free += n

    def used_bytes(self) -> int:
        return self._used

    def free_bytes(self) -> int:
        return self._free

    def total_bytes(self) -> int:
        return self._used + self._free

    def free_all_blocks(self, stream: Any = None) -> None:
        self._free = 0

    def n_free_blocks(self) -> int:
        return 0

    def set_limit(self, size: int | None = None, fraction: float | None = None) -> None:
        self._limit = int(size or 0)

    def get_limit(self) -> int:
        return self._limit


memory_pool = MemoryPool()
namespaces: dict[str, Any] = {}  # "numpy", "numpy.linalg", ... -> the fake module standing in
