"""A NumPy-backed stand-in for the ``cupy`` module, with kernels run by the CPU emulator.

:func:`install` puts one process-wide fake module into ``sys.modules`` as ``cupy`` (with its
submodules), so that ``array_api_compat.cupy`` imports against it and gpumlp's CuPy code runs
unchanged: arrays are :class:`ndarray` proxies over NumPy arrays, ``RawModule`` kernels are
compiled and run by :mod:`cuda_emu.emulator`, and everything is synchronous. :data:`stats`
counts what a real GPU run would do (syncs, host-to-device copies, kernels, graph launches,
other device operations); see :class:`._state.Stats`. Streams can capture raw-kernel launches
into graphs (:mod:`._cuda`). The module is a singleton so array-api-compat's caches stay valid;
:func:`uninstall` restores whatever was there before (a real CuPy included).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import types
from collections.abc import Iterator

import numpy as np

from . import _cuda, _numpy_api, _runtime, _state
from ._array import ndarray
from ._state import CaptureError, Stats, memory_pool, stats

__all__ = [
    "CaptureError", "Stats", "install", "installed", "is_installed", "module", "ndarray",
    "stats", "uninstall",
]  # fmt: skip

VERSION = "14.0.0+fake"


def _submodule(name: str, doc: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name, doc)
    for key, value in attrs.items():
        setattr(mod, key, value)
    mod.__all__ = [k for k in attrs if not k.startswith("_")]
    return mod


@functools.cache
def _modules() -> dict[str, types.ModuleType]:
    """The fake's modules by import name (built once: the singleton)."""
    cp = types.ModuleType("cupy", __doc__)
    names = _numpy_api.populate(cp, np)
    special = {
        "ascontiguousarray": _numpy_api.ascontiguousarray,
        "copyto": _numpy_api.copyto,
        "where": _numpy_api.where,
        "asnumpy": _numpy_api.asnumpy,
        "get_array_module": _numpy_api.get_array_module,
        "from_dlpack": _numpy_api.from_dlpack,
        "RawModule": _cuda.RawModule,
        "RawKernel": _cuda.RawKernel,
        "get_default_memory_pool": lambda: memory_pool,
        "get_default_pinned_memory_pool": functools.cache(_state.MemoryPool),
        "is_available": lambda: True,
    }
    for key, value in special.items():
        setattr(cp, key, value)
    linalg = types.ModuleType("cupy.linalg")
    linalg.__all__ = _numpy_api.populate(linalg, np.linalg, "linalg.")
    fft = types.ModuleType("cupy.fft")
    fft.__all__ = _numpy_api.populate(fft, np.fft, "fft.")
    random = types.ModuleType("cupy.random")
    random.__all__ = [*_numpy_api.populate(random, np.random, "random."), "Generator"]
    random.default_rng, random.Generator = _numpy_api.default_rng, _numpy_api.Generator
    runtime = _submodule("cupy.cuda.runtime", _runtime.__doc__ or "",
                         **{k: getattr(_runtime, k) for k in _runtime.__all__})  # fmt: skip
    memory = _submodule("cupy.cuda.memory", "Memory pool of the fake.",
                        OutOfMemoryError=_cuda.OutOfMemoryError, MemoryPool=_state.MemoryPool,
                        MemoryPointer=_cuda.MemoryPointer,
                        UnownedMemory=_cuda.UnownedMemory)  # fmt: skip
    device = _submodule("cupy.cuda.device", "Devices of the fake.", Device=_cuda.Device,
                        get_device_id=lambda: 0)  # fmt: skip
    stream = _submodule("cupy.cuda.stream", "Streams of the fake.", Stream=_cuda.Stream,
                        Event=_cuda.Event, get_current_stream=_cuda.get_current_stream,
                        get_elapsed_time=_cuda.get_elapsed_time)  # fmt: skip
    graph = _submodule("cupy.cuda.graph", "CUDA graphs of the fake.", Graph=_cuda.Graph)
    cuda = _submodule(
        "cupy.cuda", _cuda.__doc__ or "", runtime=runtime, memory=memory, device=device,
        stream=stream, graph=graph, Device=_cuda.Device, Stream=_cuda.Stream,
        Event=_cuda.Event, Graph=_cuda.Graph,
        MemoryPool=_state.MemoryPool, MemoryPointer=_cuda.MemoryPointer,
        UnownedMemory=_cuda.UnownedMemory,
        get_current_stream=_cuda.get_current_stream, get_elapsed_time=_cuda.get_elapsed_time,
        get_device_id=lambda: 0, is_available=lambda: True,
    )  # fmt: skip
    submodules = {"linalg": linalg, "fft": fft, "random": random, "cuda": cuda}
    for key, value in submodules.items():
        setattr(cp, key, value)
    cp.__version__ = VERSION
    cp.__path__ = []  # a package, so `import cupy._core` fails with ModuleNotFoundError
    cp.__all__ = sorted([*names, *special, *submodules])
    cp.stats = stats  # not in __all__: `from cupy import *` must not export it
    _state.namespaces.update(
        {"numpy": cp, "numpy.linalg": linalg, "numpy.fft": fft, "numpy.random": random}
    )
    mods = {"cupy": cp}
    for mod in (linalg, fft, random, cuda, runtime, memory, device, stream, graph):
        mods[mod.__name__] = mod
    return mods


def module() -> types.ModuleType:
    """The fake ``cupy`` module (the same object every time; installed or not)."""
    return _modules()["cupy"]


_lock = threading.RLock()
_depth = 0
_saved: dict[str, types.ModuleType] = {}
_saved_attr: list[object] = []  # array_api_compat.cupy as it was, if it was an attribute
_COMPAT = "array_api_compat.cupy"


def _ours(name: str) -> bool:
    return name == "cupy" or name.startswith("cupy.") or name == _COMPAT or (
        name.startswith(_COMPAT + "."))  # fmt: skip


def _clear_compat_caches() -> None:
    """array-api-compat caches class -> namespace lookups (``_cls_to_namespace``,
    ``_issubclass_fast``, ...) in lru_caches, which would keep pointing at the CuPy of before."""
    from array_api_compat.common import _helpers

    for obj in vars(_helpers).values():
        if callable(getattr(obj, "cache_clear", None)):
            obj.cache_clear()


def install() -> types.ModuleType:
    """Make ``import cupy`` give the fake (nestable; each call needs one :func:`uninstall`)."""
    global _depth
    import array_api_compat

    with _lock:
        if _depth == 0:
            _saved.clear()
            _saved.update({n: sys.modules.pop(n) for n in list(sys.modules) if _ours(n)})
            _saved_attr[:] = [array_api_compat.__dict__.pop("cupy")] if hasattr(
                array_api_compat, "cupy") else []  # fmt: skip
            sys.modules.update(_modules())
            _clear_compat_caches()
        _depth += 1
    return module()


def uninstall() -> None:
    """Undo one :func:`install`; the last one restores ``sys.modules`` and array-api-compat."""
    global _depth
    import array_api_compat

    with _lock:
        if _depth == 0:
            raise RuntimeError("the fake cupy is not installed")
        _depth -= 1
        if _depth:
            return
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        sys.modules.update(_saved)
        array_api_compat.__dict__.pop("cupy", None)
        if _saved_attr:
            array_api_compat.cupy = _saved_attr[0]
        _saved.clear()
        _clear_compat_caches()


def is_installed() -> bool:
    return sys.modules.get("cupy") is module()


@contextlib.contextmanager
def installed() -> Iterator[types.ModuleType]:
    """``with installed() as cupy:`` the fake for the block."""
    fake = install()
    try:
        yield fake
    finally:
        uninstall()
