"""The NumPy-shaped part of the fake CuPy: every public NumPy function and ufunc, wrapped.

Wrapped functions run NumPy on the fake arrays' buffers through :func:`._call.call`. Dtypes,
scalar types, ``finfo``/``iinfo`` and constants are NumPy's own objects, as in CuPy. Functions
with CuPy-specific rules are defined here by hand: host data comes in only through
``asarray``/``array``/``asanyarray`` (one h2d copy each), ``ascontiguousarray`` and ``copyto``
take device arrays, and the functions whose output shape depends on the data sync.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

from ._array import ndarray
from ._call import Seen, call, unwrap
from ._state import guard, memory_pool, stats

__all__ = [
    "Generator", "ascontiguousarray", "asnumpy", "copyto", "default_rng", "from_dlpack",
    "get_array_module", "populate", "ufunc", "where",
]  # fmt: skip

# Output shape depends on the data: CuPy reads a count back first.
_SYNC = {"nonzero", "argwhere", "flatnonzero", "unique", "unique_all", "unique_counts",
         "unique_inverse", "unique_values", "compress", "extract", "bincount"}  # fmt: skip
# Host output: CuPy copies to the host first.
_TO_HOST = {"save", "savez", "savez_compressed", "savetxt", "array2string", "array_repr",
            "array_str"}  # fmt: skip
_WRITES = {"put", "place", "putmask", "fill_diagonal", "put_along_axis"}  # write argument 0
_ALLOC = {"empty", "empty_like"}  # an allocation, no kernel
# Only look at dtypes, shapes or identity: host arrays are fine.
_HOST_OK = {"result_type", "can_cast", "min_scalar_type", "shape", "ndim", "size", "isscalar",
            "iscomplexobj", "isrealobj", "may_share_memory", "shares_memory", "isdtype",
            "issubdtype", "iterable", "common_type", "mintypecode"}  # fmt: skip
_FROM_HOST = {"asarray", "array", "asanyarray", "frombuffer", "fromfile", "fromfunction",
              "fromiter", "fromstring", "loadtxt", "genfromtxt", "load"}  # fmt: skip
_HOST_ONLY_CONSTANTS = {"mgrid", "ogrid", "r_", "c_"}  # they build NumPy arrays
# NumPy names CuPy 14 does not have (tests/test_fakecupy_surface.py checks against CuPy): the
# fake must not offer them, and array_api_compat.cupy takes CuPy's vecdot, unstack or
# linalg.vector_norm only where CuPy has one.
_NOT_IN_CUPY = {
    "False_", "ScalarType", "True_", "asmatrix", "block", "bmat", "busday_count", "busday_offset",
    "bytes_", "character", "clongdouble", "complex256", "datetime64", "datetime_as_string",
    "datetime_data", "einsum_path", "flexible", "float128", "frompyfunc", "fromregex", "geomspace",
    "get_include", "getbufsize", "geterr", "geterrcall", "histogram_bin_edges", "info", "insert",
    "is_busday", "isnat", "little_endian", "longdouble", "matvec", "nanpercentile", "nanquantile",
    "nested_iters", "object_", "polyder", "polydiv", "polyint", "record", "sctypeDict",
    "setbufsize", "seterr", "seterrcall", "show_runtime", "spacing", "str_", "test",
    "timedelta64", "typecodes", "unstack", "vecdot", "vecmat", "void",
    "linalg.diagonal", "linalg.matrix_norm", "linalg.multi_dot", "linalg.outer", "linalg.svdvals",
    "linalg.tensordot", "linalg.trace", "linalg.vecdot", "linalg.vector_norm",
    "random.get_state", "random.set_state",
}  # fmt: skip


class ufunc:
    """A NumPy ufunc over fake arrays: call, ``reduce``, ``accumulate``, ``outer``, ``at``."""

    __module__ = "cupy._core._kernel"

    def __init__(self, u: np.ufunc) -> None:
        self._u = u
        self.__name__ = u.__name__
        self.__doc__ = u.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return call(self.__name__, self._u, args, kwargs)

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        return call(f"{self.__name__}.reduce", self._u.reduce, args, kwargs)

    def accumulate(self, *args: Any, **kwargs: Any) -> Any:
        return call(f"{self.__name__}.accumulate", self._u.accumulate, args, kwargs)

    def reduceat(self, *args: Any, **kwargs: Any) -> Any:
        return call(f"{self.__name__}.reduceat", self._u.reduceat, args, kwargs)

    def outer(self, *args: Any, **kwargs: Any) -> Any:
        return call(f"{self.__name__}.outer", self._u.outer, args, kwargs)

    def at(self, *args: Any, **kwargs: Any) -> Any:
        return call(f"{self.__name__}.at", self._u.at, args, kwargs, kind="write")

    def __getattr__(self, name: str) -> Any:  # nin, nout, types, identity, signature, ...
        return getattr(self._u, name)

    def __repr__(self) -> str:
        return f"<ufunc '{self.__name__}'>"


def _function(qualname: str, fn: Any, kind: str = "op", host_ok: bool = False) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(qualname, fn, args, kwargs, kind=kind, host_ok=host_ok)

    wrapper.__module__ = "cupy"
    return wrapper


def _from_host(name: str, fn: Any) -> Any:
    """asarray & co.: device data passes through (``asarray(x)`` is ``x``); anything else is
    one host-to-device copy into memory of its own."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen = Seen()
        unwrap((args, tuple(kwargs.values())), seen)
        if seen.inputs:
            return call(name, fn, args, kwargs, host_ok=True)
        if kwargs.get("copy") is False:
            raise ValueError("Unable to avoid copy while creating an array as requested")
        guard(f"cupy.{name} from the host")
        res = fn(*args, **kwargs)
        if not isinstance(res, np.ndarray):  # np.load of an .npz archive: stays on the host
            return res
        shared = any(np.may_share_memory(res, h) for h in seen.host)
        if shared or not res.flags.owndata or not res.flags.writeable:
            res = np.array(res, copy=True)  # device memory of its own, never the host's
        stats.add("h2d", f"cupy.{name}")
        memory_pool.track(res)
        return ndarray._of(res)

    wrapper.__module__ = "cupy"
    return wrapper


def ascontiguousarray(a: Any, dtype: Any = None) -> Any:
    """C-contiguous ``a`` (itself when it already is, of that dtype); device arrays only."""
    if not isinstance(a, ndarray):
        raise TypeError("Argument 'a' has incorrect type (expected "
                        f"cupy._core.core._ndarray_base, got {type(a).__module__}."
                        f"{type(a).__qualname__})")  # fmt: skip
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    if a.flags.c_contiguous and a.dtype == dtype:
        return a
    return call("ascontiguousarray", lambda x: np.array(x, dtype=dtype, order="C"), (a,))


def copyto(dst: Any, src: Any, casting: str = "same_kind", where: Any = None) -> None:
    """CuPy's copyto: ``src`` a device array or a scalar (a host array only of size 1)."""
    if not isinstance(dst, ndarray):
        raise TypeError(f"copyto: dst must be a cupy.ndarray, got {type(dst)}")
    if isinstance(src, np.ndarray):
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        src = src.item()
    kwargs = {"casting": casting} if where is None else {"casting": casting, "where": where}
    call("copyto", np.copyto, (dst, src), kwargs, kind="write")


def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    """``where(c, x, y)`` selects on the device; ``where(c)`` is ``nonzero`` (a sync)."""
    if x is None and y is None:
        return call("where", np.where, (condition,), kind="sync")
    if x is None or y is None:
        raise ValueError("Must provide both 'x' and 'y' or neither.")
    return call("where", np.where, (condition, x, y))


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None, *,
            blocking: bool = True) -> np.ndarray:  # fmt: skip
    """A host copy of a device array (a sync); host data passes through ``numpy.asarray``."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    return np.asarray(a, order=order)


def get_array_module(*args: Any) -> Any:
    from ._state import namespaces

    return namespaces["numpy"] if any(isinstance(a, ndarray) for a in args) else np


def from_dlpack(array: Any, *, device: Any = None, copy: bool | None = None) -> Any:
    if isinstance(array, ndarray):
        return ndarray._of(array._a[...])
    raise TypeError(f"fake cupy.from_dlpack takes device arrays, got {type(array)}")


def populate(ns: types.ModuleType, source: types.ModuleType, prefix: str = "") -> list[str]:
    """Put wrapped versions of ``source``'s public names into ``ns``; returns the names."""
    names, made = [], {}  # id(NumPy object) -> its wrapper: aliases (acos, arccos) stay one
    for name in getattr(source, "__all__", None) or dir(source):
        obj = getattr(source, name, None)
        if name.startswith("_") or obj is None or name in _HOST_ONLY_CONSTANTS:
            continue
        if prefix + name in _NOT_IN_CUPY:
            continue
        if isinstance(obj, types.ModuleType):
            continue
        if id(obj) in made:  # an alias (acos of arccos): one wrapper, as in CuPy
            value: Any = made[id(obj)]
        elif isinstance(obj, np.ufunc):
            value = made[id(obj)] = ufunc(obj)
        elif isinstance(obj, type):
            if obj is np.ndarray:
                value = ndarray
            elif obj is np.ufunc:
                value = ufunc
            elif issubclass(obj, np.generic | np.dtype | Exception) or obj in (np.finfo, np.iinfo):
                value = obj  # CuPy uses NumPy's dtypes and scalar types
            else:
                continue
        elif callable(obj):
            qual = prefix + name
            if name in _FROM_HOST:
                value = _from_host(qual, obj)
            elif name in _SYNC or name in _TO_HOST:
                value = _function(qual, obj, "sync")
            elif name in _WRITES:
                value = _function(qual, obj, "write")
            else:
                kind = "alloc" if name in _ALLOC else "op"
                value = _function(qual, obj, kind, host_ok=name in _HOST_OK)
            made[id(obj)] = value
        else:
            value = obj
        setattr(ns, name, value)
        names.append(name)
    return names


class Generator:
    """``cupy.random.default_rng(seed)``: NumPy's generator, drawing into device arrays.

    The streams are NumPy's (PCG64), not CuPy's (XORWOW): same seed, different numbers.
    """

    __module__ = "cupy.random._generator_api"

    def __init__(self, bit_generator: Any) -> None:
        self._g = np.random.default_rng(bit_generator)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._g, name)
        if name.startswith("_") or not callable(attr):
            return attr
        kind = "write" if name in ("shuffle", "permuted") else "op"
        return lambda *args, **kwargs: call(f"random.Generator.{name}", attr, args, kwargs,
                                            kind=kind)  # fmt: skip


def default_rng(seed: Any = None) -> Generator:
    return Generator(seed)
