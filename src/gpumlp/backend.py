"""Array backends: resolve the namespace ``xp``, move arrays between host and device, and reach
CuPy's own services (kernel modules, streams, memory, versions).

This is the only module that imports CuPy, and it does so lazily: ``import gpumlp`` never
touches CuPy or CUDA. Everything else receives ``xp`` (an array-API namespace, wrapped by
array-api-compat where needed) and never imports NumPy or CuPy for its math.

Conventions
-----------
- A *backend* is ``"auto"``, ``"numpy"``, ``"cupy"`` or an array-API namespace module
  (``array_api_strict``, ``jax.numpy``, ``array_api_compat.torch``, ...). ``"auto"`` uses CuPy
  when it imports and a CUDA device is usable, else NumPy; ``GPUMLP_BACKEND`` replaces
  ``"auto"`` as the default.
- The *host* is always NumPy: initial weights, permutations and checkpoints live there.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, cast

import array_api_compat
import numpy as np

from .arraytypes import Array, Namespace
from .errors import BackendUnavailableError

__all__ = [
    "BACKEND_NAMES",
    "DTYPES",
    "NAMESPACES",
    "Array",
    "Namespace",
    "backend_name",
    "compile_cuda",
    "cuda_info",
    "cupy_module",
    "cupy_status",
    "dtype_name",
    "get_namespace",
    "import_namespace",
    "index_dtype",
    "is_cupy",
    "on_namespace",
    "resolve_dtype",
    "to_device",
    "to_host",
    "use_fp32_matmul",
    "writable",
]

logger = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "numpy", "cupy")
DTYPES = ("float32", "float64")
NAMESPACES = {"array_api_strict": "array_api_strict", "jax": "jax.numpy",
              "torch": "array_api_compat.torch"}  # fmt: skip
"""Other array namespaces known by name (imported only when asked for, never from the current
directory): the strict reference namespace, JAX's and PyTorch's."""


def import_namespace(name: str) -> ModuleType:
    """Import the namespace module of a name in :data:`NAMESPACES`, with the current directory
    left off ``sys.path`` (a file there must not stand in for the real module).

    Raises ValueError for an unknown name, BackendUnavailableError when it is not installed.
    """
    if name not in NAMESPACES:
        known = [*BACKEND_NAMES, *NAMESPACES]
        raise ValueError(f"backend {name!r} is not known; expected one of {known}")
    cwd = {"", ".", os.getcwd()}
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if p not in cwd and os.path.abspath(p) != os.getcwd()]
    try:
        return importlib.import_module(NAMESPACES[name])
    except ImportError as exc:
        raise BackendUnavailableError(f"backend {name!r} is not installed: {exc}") from None
    finally:
        sys.path[:] = saved


def cupy_module(sub: str = "") -> ModuleType:
    """The ``cupy`` module itself, for the CuPy fast path (imported here, and only here), or
    its submodule ``sub`` (``"cuda.nccl"``; ImportError where CuPy has none)."""
    import cupy

    return cast(ModuleType, importlib.import_module(f"cupy.{sub}") if sub else cupy)


@functools.cache
def cupy_status() -> tuple[bool, str]:
    """``(usable, reason)``: whether CuPy imports, sees a CUDA device and can run a kernel on
    it, and in one line the device's name, else the cause."""
    try:
        cupy = cupy_module()
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
    """The array namespace ``xp`` (array-api-compat's wrapper for NumPy, CuPy and PyTorch) of
    ``backend``: a name of :data:`BACKEND_NAMES` or :data:`NAMESPACES`, or a namespace module.
    ``None`` and ``"auto"`` read ``GPUMLP_BACKEND`` first, then pick CuPy when usable, else
    NumPy (logged once, with the reason). ValueError for an unknown name, TypeError for a module
    that is no namespace, BackendUnavailableError when ``"cupy"`` cannot run (saying why)."""
    if isinstance(backend, ModuleType):
        name = backend.__name__
        if name in ("numpy", "cupy"):
            return get_namespace(name)
        if not hasattr(backend, "asarray") or not hasattr(backend, "matmul"):
            raise TypeError(
                f"backend: module {name!r} is not an array-API namespace (no asarray/matmul)"
            )
        return cast(Namespace, array_api_compat.array_namespace(backend.asarray(0.0)))
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

        return cast(Namespace, xp_numpy)
    if backend == "cupy":
        usable, reason = cupy_status()
        if not usable:
            raise BackendUnavailableError(f"backend='cupy' cannot run: {reason}")
        import array_api_compat.cupy as xp_cupy

        return cast(Namespace, xp_cupy)
    if backend in NAMESPACES:
        return get_namespace(import_namespace(backend))
    raise ValueError(
        f"backend must be one of {[*BACKEND_NAMES, *NAMESPACES]} or a namespace module, "
        f"got {backend!r}"
    )


@functools.cache
def _auto_namespace() -> Namespace:
    usable, reason = cupy_status()
    logger.info("backend auto: using %s (%s)", "CuPy" if usable else "NumPy", reason)
    return get_namespace("cupy" if usable else "numpy")


def backend_name(xp: Namespace) -> str:
    """A short name for a namespace: ``"numpy"``, ``"cupy"``, or the module's own name."""
    name = xp.__name__
    for short in ("numpy", "cupy"):
        if name in (short, f"array_api_compat.{short}"):
            return short
    return name


def is_cupy(xp: Namespace) -> bool:
    """True when ``xp`` is CuPy (plain or array-api-compat wrapped)."""
    return backend_name(xp) == "cupy"


def writable(x: Any) -> bool:
    """True when ``x`` can be written in place (``x[...] = v``); False for the immutable arrays
    of ``jax.numpy``, whose updates must rebind instead."""
    return bool(array_api_compat.is_writeable_array(x))


def resolve_dtype(xp: Namespace, dtype: Any) -> Any:
    """Map ``"float32"``/``"float64"`` (or a dtype of those kinds) to ``xp``'s dtype object.

    Raises ValueError when ``dtype`` is not float32 or float64.
    """
    name = dtype_name(dtype)
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    with warnings.catch_warnings():  # JAX warns, then truncates, without 64-bit mode
        warnings.simplefilter("ignore")
        made = dtype_name(xp.zeros(1, dtype=getattr(xp, name)).dtype)
    if made != name:
        raise ValueError(
            f"dtype={name!r}: the {backend_name(xp)} namespace makes {made} arrays when asked "
            f"for {name} (JAX: set JAX_ENABLE_X64=1); use dtype={made!r} or turn {name} on"
        )
    return getattr(xp, name)


def index_dtype(xp: Namespace) -> Any:
    """The namespace's integer dtype for labels and counts: int64, or int32 where 64-bit
    integers are off (JAX's default)."""
    try:
        return xp.__array_namespace_info__().default_dtypes()["indexing"]
    except (AttributeError, KeyError, TypeError):
        return xp.int64


def dtype_name(dtype: Any) -> str:
    """The name of a dtype of any backend: ``"float32"``, ``"int64"``, ..."""
    if isinstance(dtype, str):
        return dtype
    try:
        return str(np.dtype(dtype).name)
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


def on_namespace(x: Any, xp: Namespace) -> bool:
    """True when ``x`` is already an array of ``xp`` (no copy needed to use it there)."""
    if not array_api_compat.is_array_api_obj(x) or isinstance(x, np.generic):
        return False
    try:
        return backend_name(array_api_compat.array_namespace(x)) == backend_name(xp)
    except TypeError:
        return False


def to_device(x: Any, xp: Namespace, dtype: Any = None) -> Array:
    """``x`` (an array-like, or an array of any backend; any shape) as an array of ``xp`` of the
    same shape, in ``dtype`` (default: ``x``'s); no copy when it is one already."""
    if not on_namespace(x, xp):
        x = to_host(x)
        if backend_name(xp) == "numpy":
            x = np.ascontiguousarray(x)
    out: Array = xp.asarray(x, dtype=dtype) if dtype is not None else xp.asarray(x)
    return out


def to_host(x: Any) -> np.ndarray[Any, Any]:
    """``x`` as a NumPy array on the host (a copy for device arrays); works for NumPy, CuPy and
    any array supporting DLPack or ``__array__``."""
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("cupy"):
        host: np.ndarray[Any, Any] = x.get()
        return host
    if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.generic):
        try:
            return np.from_dlpack(x)
        except Exception:
            pass
        try:  # array_api_strict refuses __array__ on purpose; go through a list (small arrays)
            return np.asarray(x)
        except Exception:
            return np.asarray(x.tolist() if hasattr(x, "tolist") else list(x))
    return np.asarray(x)


# -- CuPy services for the fast path --------------------------------------------------------------


def compile_cuda(
    source: str, names: Sequence[str], options: Sequence[str] = ("--std=c++14",)
) -> dict[str, Callable[..., None]]:
    """Compile CUDA C ``source`` with CuPy's NVRTC: its ``extern "C"`` kernels by name, each
    called as ``kernel(grid, block, args)`` (CuPy's RawKernel)."""
    module = cupy_module().RawModule(code=source, options=tuple(options))
    return {name: module.get_function(name) for name in names}


def use_fp32_matmul() -> None:
    """Make CuPy's float32 GEMMs plain FP32 (no TF32) in this process, for parity runs.

    CuPy reads ``CUPY_TF32`` at its first float32 GEMM; where this CuPy has the (private)
    cached compute type, it is reset too, in case a GEMM already ran.
    """
    os.environ["CUPY_TF32"] = "0"
    cupy = cupy_module()
    try:
        from cupy._core import _routines_linalg as linalg  # private API, present since CuPy 8
    except ImportError:
        return
    if hasattr(linalg, "set_compute_type"):
        linalg.set_compute_type(cupy.float32, linalg.COMPUTE_TYPE_DEFAULT)


def cuda_info() -> dict[str, str]:
    """CuPy, CUDA runtime/driver and device versions, for reports."""
    cupy = cupy_module()
    return {
        "cupy": str(cupy.__version__),
        "cuda_runtime": str(cupy.cuda.runtime.runtimeGetVersion()),
        "cuda_driver": str(cupy.cuda.runtime.driverGetVersion()),
        "device": cupy_status()[1],
        "CUPY_TF32": os.environ.get("CUPY_TF32", ""),
    }
