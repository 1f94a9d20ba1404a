"""Array backends: resolve the namespace ``xp`` and move arrays between host and device.

This is the only module that imports CuPy, and it does so lazily: ``import gpumlp`` never
touches CuPy or CUDA. Everything else in the package receives ``xp`` (an array-API namespace,
wrapped by array-api-compat where needed) and never imports NumPy or CuPy for its math.

Conventions
-----------
- A *backend* is ``"auto"``, ``"numpy"``, ``"cupy"`` or any array-API namespace module
  (e.g. ``array_api_strict``). ``"auto"`` uses CuPy when it imports and a CUDA device is usable,
  else NumPy. The environment variable ``GPUMLP_BACKEND`` replaces ``"auto"`` as the default.
- The *host* is always NumPy: initial weights, permutations and checkpoints live there.
"""

from __future__ import annotations

import functools
import logging
import os
from types import ModuleType
from typing import Any, TypeAlias

import array_api_compat
import numpy as np

__all__ = [
    "BACKEND_NAMES",
    "DTYPES",
    "Array",
    "BackendUnavailableError",
    "Namespace",
    "backend_name",
    "cupy_status",
    "device_uniform",
    "free_memory",
    "get_namespace",
    "is_cupy",
    "is_out_of_memory",
    "resolve_dtype",
    "to_device",
    "to_host",
]

logger = logging.getLogger(__name__)

Array: TypeAlias = Any
"""An array of some backend (numpy.ndarray, cupy.ndarray, array_api_strict Array)."""
Namespace: TypeAlias = Any
"""An array-API namespace module, as returned by :func:`get_namespace`."""

BACKEND_NAMES = ("auto", "numpy", "cupy")
DTYPES = ("float32", "float64")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run here (the message says why)."""


@functools.cache
def cupy_status() -> tuple[bool, str]:
    """Tell whether CuPy can run here, and why not.

    Returns
    -------
    usable : bool
        True when CuPy imports, sees at least one CUDA device and can allocate on it.
    reason : str
        A one-line explanation (the device name when usable, else the cause).
    """
    try:
        import cupy
    except ImportError as exc:
        return False, f"CuPy is not installed ({exc}); install gpumlp[cuda12] or gpumlp[cuda13]"
    except Exception as exc:  # a broken CUDA install can raise anything at import
        return False, f"CuPy failed to import: {exc}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, insufficient driver, ...
        return False, f"CuPy cannot reach a CUDA driver: {exc}"
    if n < 1:
        return False, "CuPy found no CUDA device"
    try:
        cupy.zeros(1).sum().item()
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    except Exception as exc:
        return False, f"CuPy cannot run a kernel on the CUDA device: {exc}"
    return True, f"CUDA device {name}"


def get_namespace(backend: str | ModuleType | None = "auto") -> Namespace:
    """Resolve a backend specification to an array namespace ``xp``.

    Parameters
    ----------
    backend : {"auto", "numpy", "cupy"} or module or None
        A backend name, or an array-API namespace module (``array_api_strict``, ``numpy``, ...).
        ``None`` and ``"auto"`` read ``GPUMLP_BACKEND`` first, then pick CuPy when it is usable
        and NumPy otherwise (logged once, with the reason).

    Returns
    -------
    xp : namespace
        The array-API compatible namespace (array-api-compat's wrapper for NumPy and CuPy).

    Raises
    ------
    ValueError
        For an unknown backend name.
    BackendUnavailableError
        When ``"cupy"`` is asked for explicitly but cannot run (the message says why).
    """
    if isinstance(backend, ModuleType):
        name = backend.__name__
        if name in ("numpy", "cupy"):
            return get_namespace(name)
        if not hasattr(backend, "asarray") or not hasattr(backend, "matmul"):
            raise TypeError(
                f"backend: module {name!r} is not an array-API namespace (no asarray/matmul)"
            )
        return array_api_compat.array_namespace(backend.asarray(0.0))
    if backend is None or backend == "auto":
        env = os.environ.get("GPUMLP_BACKEND", "").strip().lower()
        if env and env != "auto":
            if env not in BACKEND_NAMES:
                raise ValueError(
                    f"GPUMLP_BACKEND={env!r} is not a backend; expected one of {BACKEND_NAMES}"
                )
            return get_namespace(env)
        return _auto_namespace()
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a name or a namespace module, got {type(backend)!r}")
    if backend == "numpy":
        import array_api_compat.numpy as xp_numpy

        return xp_numpy
    if backend == "cupy":
        usable, reason = cupy_status()
        if not usable:
            raise BackendUnavailableError(f"backend='cupy' cannot run: {reason}")
        import array_api_compat.cupy as xp_cupy

        return xp_cupy
    raise ValueError(
        f"backend must be one of {BACKEND_NAMES} or a namespace module, got {backend!r}"
    )


@functools.cache
def _auto_namespace() -> Namespace:
    usable, reason = cupy_status()
    if usable:
        logger.info("backend auto: using CuPy (%s)", reason)
        return get_namespace("cupy")
    logger.info("backend auto: using NumPy (%s)", reason)
    return get_namespace("numpy")


def backend_name(xp: Namespace) -> str:
    """Return a short name for a namespace: ``"numpy"``, ``"cupy"`` or the module's name."""
    name = xp.__name__
    for short in ("numpy", "cupy"):
        if name == short or name == f"array_api_compat.{short}":
            return short
    return name


def is_cupy(xp: Namespace) -> bool:
    """True when ``xp`` is CuPy (plain or array-api-compat wrapped)."""
    return backend_name(xp) == "cupy"


# CUDA statuses that mean "out of memory" when CuPy raises them as CUDARuntimeError, CUBLASError...
_CUDA_OOM = ("cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY", "STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is an allocation failure of any backend.

    That is any ``MemoryError`` (NumPy's, and CuPy's ``OutOfMemoryError``, which subclasses it),
    or a CuPy error carrying a CUDA or cuBLAS out-of-memory status. Never imports CuPy.
    """
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__module__.startswith("cupy") and any(s in str(exc) for s in _CUDA_OOM)


def free_memory(xp: Namespace) -> int | None:
    """Bytes that new arrays of ``xp`` can still get, or None when unknown.

    On CuPy: the device's free memory plus the blocks CuPy's memory pool holds free. Otherwise
    the host's available memory (``MemAvailable`` of ``/proc/meminfo``, Linux only).
    """
    if is_cupy(xp):
        import cupy

        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def resolve_dtype(xp: Namespace, dtype: Any) -> Any:
    """Map ``"float32"``/``"float64"`` (or a dtype of those kinds) to ``xp``'s dtype object.

    Raises
    ------
    ValueError
        When ``dtype`` is not float32 or float64.
    """
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype).rsplit(".", 1)[-1]
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return getattr(xp, name)


def to_device(x: Any, xp: Namespace, dtype: Any = None) -> Array:
    """Copy a host array (or array-like, or an array of any backend) into ``xp``.

    Parameters
    ----------
    x : array_like, any shape
    xp : namespace
    dtype : xp dtype, optional
        Cast to this dtype; default keeps ``x``'s dtype.

    Returns
    -------
    array of ``xp``, same shape as ``x``.
    """
    if not _belongs_to(x, xp):
        x = to_host(x)
        if backend_name(xp) == "numpy":
            x = np.ascontiguousarray(x)
    return xp.asarray(x, dtype=dtype, copy=None) if dtype is not None else xp.asarray(x)


def to_host(x: Any) -> np.ndarray:
    """Return ``x`` as a NumPy array on the host (a copy for device arrays).

    Works for NumPy, CuPy and any array supporting DLPack or ``__array__``.
    """
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("cupy"):
        return x.get()
    if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.generic):
        try:
            return np.from_dlpack(x)
        except Exception:
            pass
        # array_api_strict refuses __array__ on purpose; go through a list for tiny arrays only
        try:
            return np.asarray(x)
        except Exception:
            return np.asarray(x.tolist() if hasattr(x, "tolist") else list(x))
    return np.asarray(x)


def _belongs_to(x: Any, xp: Namespace) -> bool:
    if not array_api_compat.is_array_api_obj(x) or isinstance(x, np.generic):
        return False
    try:
        return backend_name(array_api_compat.array_namespace(x)) == backend_name(xp)
    except TypeError:
        return False


def device_uniform(xp: Namespace, seed: int) -> Any:
    """A generator of uniform [0, 1) arrays drawn on the device, for dropout masks.

    Parameters
    ----------
    xp : namespace
    seed : int, from the host RNG (so each epoch's masks are reproducible and resumable)

    Returns
    -------
    callable ``draw(shape, dtype) -> array of xp``. NumPy and CuPy draw natively; any other
    namespace draws with NumPy and copies the result in.
    """
    name = backend_name(xp)
    if name == "cupy":
        import cupy

        gen = cupy.random.default_rng(seed)
        return lambda shape, dtype: gen.random(shape, dtype=dtype)
    gen_np = np.random.default_rng(seed)
    if name == "numpy":
        return lambda shape, dtype: gen_np.random(shape, dtype=dtype)
    return lambda shape, dtype: xp.asarray(gen_np.random(shape), dtype=dtype)
