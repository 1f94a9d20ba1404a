"""``cupy.cuda`` of the fake: one device, streams with graph capture, runtime, raw kernels.

Everything runs synchronously on the host. A stream that captures records the raw-kernel
launches made while it is current (arguments as a CUDA graph bakes them: buffers by reference,
scalars by value) instead of running them; ``end_capture`` returns a :class:`Graph` whose
``launch`` replays them in order. Anything else on a capturing stream raises (see
:func:`._state.guard`) and invalidates the capture, as CUDA does.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .. import emulator
from . import _state
from ._state import CUDARuntimeError, guard, stats

__all__ = [
    "CUDARuntimeError", "Device", "Event", "Graph", "MemoryPointer", "OutOfMemoryError",
    "RawKernel", "RawModule", "Stream", "UnownedMemory", "get_current_stream",
]  # fmt: skip

RUNTIME_VERSION = 13000


class OutOfMemoryError(MemoryError):
    """``cupy.cuda.memory.OutOfMemoryError``: the fake pool's limit (``set_limit``) was hit."""

    __module__ = "cupy.cuda.memory"

    def __init__(self, size: int, total: int, limit: int = 0) -> None:
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: "
                         f"{total:,} bytes, limit set to: {limit:,} bytes).")  # fmt: skip


class UnownedMemory:
    """An allocation (host memory in the fake): ``ptr``, ``size``, ``device_id``."""

    __module__ = "cupy.cuda.memory"

    def __init__(self, ptr: int, size: int, owner: Any, device_id: int = -1) -> None:
        self.ptr, self.size, self.device_id = ptr, size, max(device_id, 0)


class MemoryPointer:
    """``ndarray.data``: ``mem`` (the allocation: its ``ptr`` and ``size``) and the address."""

    __module__ = "cupy.cuda.memory"

    def __init__(self, mem: Any, offset: int) -> None:
        self.mem, self.ptr, self.device_id = mem, mem.ptr + offset, mem.device_id


def _meminfo() -> tuple[int, int]:
    """(free, total) bytes: MemAvailable and MemTotal of /proc/meminfo, else sysconf."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"], info["MemTotal"]
    except (OSError, KeyError, ValueError, IndexError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, total


class Device:
    """The one device, id 0 ("CPU emulation", compute capability 9.0)."""

    __module__ = "cupy.cuda.device"

    def __init__(self, device: int | Device | None = None) -> None:
        self.id = device.id if isinstance(device, Device) else 0 if device is None else int(device)

    def __enter__(self) -> Device:
        self.use()
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def use(self) -> None:
        if self.id != 0:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    def synchronize(self) -> None:
        guard("Device.synchronize")
        stats.add("sync", "Device.synchronize")

    compute_capability = property(lambda self: "90")

    @property
    def attributes(self) -> dict[str, int]:
        """The device attributes gpumlp reads (an H100's shared-memory limits)."""
        return {"MaxSharedMemoryPerBlock": emulator.STATIC_SHARED_LIMIT,
                "MaxSharedMemoryPerBlockOptin": emulator.DYNAMIC_SHARED_OPTIN}  # fmt: skip

    mem_info = property(lambda self: _meminfo())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("cuda", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


class Graph:
    """A captured sequence of raw-kernel launches; ``launch`` replays them in order."""

    __module__ = "cupy.cuda.graph"

    def __init__(self, launches: list[tuple]) -> None:
        self._launches = launches

    def launch(self, stream: Stream | None = None) -> None:
        guard("Graph.launch (a graph launch inside a capture is not emulated)")
        stats.add("graph", f"Graph.launch ({len(self._launches)} kernels)")
        for fn, grid, block, args, shared_mem in self._launches:
            fn(grid, block, args, shared_mem=shared_mem)
        stats.add("graph_kernels", "Graph.launch", len(self._launches))

    def upload(self, stream: Stream | None = None) -> None:
        return None


class Stream:
    """A stream: ``with stream:`` makes it current; ``begin_capture``/``end_capture`` record."""

    __module__ = "cupy.cuda.stream"

    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False,
                 priority: int | None = None) -> None:  # fmt: skip
        self._null, self.is_non_blocking = null, non_blocking
        self._capture: list[tuple] | None = None
        self._invalid: str | None = None

    ptr = property(lambda self: 0 if self._null else id(self))
    done = property(lambda self: True)

    def __enter__(self) -> Stream:
        _state.enter_stream(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _state.exit_stream()

    def use(self) -> Stream:
        _state.use_stream(self)
        return self

    def synchronize(self) -> None:
        guard("Stream.synchronize")
        stats.add("sync", "Stream.synchronize")

    def record(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event: Event) -> None:
        return None

    def begin_capture(self, mode: Any = None) -> None:
        if self._null:
            raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported: the null stream cannot "
                                   "be captured")  # fmt: skip
        if self._capture is not None:
            raise CUDARuntimeError("cudaErrorIllegalState: the stream is already capturing")
        self._capture, self._invalid = [], None

    def end_capture(self) -> Graph:
        if self._capture is None:
            raise CUDARuntimeError("cudaErrorIllegalState: the stream is not capturing")
        launches, self._capture = self._capture, None
        if self._invalid is not None:
            raise CUDARuntimeError("cudaErrorStreamCaptureInvalidated: the capture was "
                                   f"invalidated by {self._invalid}")  # fmt: skip
        return Graph(launches)

    def is_capturing(self) -> bool:
        return self._capture is not None

    def _invalidate(self, what: str) -> None:
        self._invalid = self._invalid or what

    def _record(self, launch: tuple) -> None:
        assert self._capture is not None
        self._capture.append(launch)

    def __repr__(self) -> str:
        return f"<Stream {self.ptr:#x} (device 0)>"


Stream.null = Stream(null=True)
_state.null_stream = Stream.null


def get_current_stream(device_id: int = -1) -> Stream:
    return _state.current_stream()


class Event:
    """A timing event; ``record`` stamps the host clock (everything ran already)."""

    __module__ = "cupy.cuda.stream"

    def __init__(self, block: bool = False, disable_timing: bool = False,
                 interprocess: bool = False) -> None:  # fmt: skip
        self._t: float | None = None

    done = property(lambda self: True)

    def record(self, stream: Stream | None = None) -> None:
        self._t = time.perf_counter()

    def synchronize(self) -> None:
        guard("Event.synchronize")
        stats.add("sync", "Event.synchronize")


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    """Milliseconds between two recorded events."""
    return ((end_event._t or 0.0) - (start_event._t or 0.0)) * 1000.0


class RawKernel:
    """A kernel of an emulated module: ``kernel(grid, block, args, shared_mem=0)``.

    Runs at once (``stats["kernel"]``), or is recorded when the current stream captures.
    Arguments are checked against the C signature (:class:`..emulator.EmulatedFunction`);
    host NumPy arrays are refused, as CuPy refuses them.
    """

    __module__ = "cupy._core.raw"

    def __init__(self, code: str, name: str, options: tuple = (), backend: str = "nvrtc",
                 translate_cucomplex: bool = False, *, enable_cooperative_groups: bool = False,
                 jitify: Any = None, _function: Any = None) -> None:  # fmt: skip
        if _function is None:
            _function = RawModule(code=code, options=options).get_function(name)._fn
        self._fn = _function
        self.name = _function.name

    def __call__(self, grid: Any, block: Any, args: tuple, *, shared_mem: int = 0,
                 enable_cooperative_groups: bool = False) -> None:  # fmt: skip
        for i, arg in enumerate(args if isinstance(args, tuple) else ()):
            if isinstance(arg, np.ndarray):
                raise TypeError(f"{self.name}: argument {i}: Unsupported type {type(arg)} "
                                "(a host array; kernels take device arrays)")  # fmt: skip
        stream = _state.current_stream()
        if stream.is_capturing():
            self._fn.check(grid, block, args, shared_mem=shared_mem)
            baked = tuple(a.__cuda_emu_array__() if hasattr(a, "__cuda_emu_array__") else a
                          for a in args)  # fmt: skip
            stream._record((self._fn, grid, block, baked, shared_mem))
            return
        self._fn(grid, block, args, shared_mem=shared_mem)
        stats.add("kernel", self.name)

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        """The dynamic shared memory a launch may ask for (48 KB until raised, at most 227 KB)."""
        return int(self._fn.max_dynamic_shared_size_bytes)

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        self._fn.max_dynamic_shared_size_bytes = value

    def __repr__(self) -> str:
        return f"<fake RawKernel {self.name}>"


class RawModule:
    """``cupy.RawModule(code=..., options=...)``, compiled for the CPU by the emulator."""

    __module__ = "cupy._core.raw"

    def __init__(self, code: str | None = None, *, path: str | None = None,
                 options: tuple = (), backend: str = "nvrtc", translate_cucomplex: bool = False,
                 enable_cooperative_groups: bool = False, name_expressions: Any = None,
                 jitify: Any = None) -> None:  # fmt: skip
        if code is None:
            raise NotImplementedError("fake RawModule: only CUDA C source (code=) is emulated, "
                                      f"not a compiled module (path={path!r})")  # fmt: skip
        self._module = emulator.compile_module(code, tuple(options))

    def get_function(self, name: str) -> RawKernel:
        return RawKernel("", name, _function=self._module.get_function(name))
