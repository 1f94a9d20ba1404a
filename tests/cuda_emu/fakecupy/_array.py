"""The fake ``cupy.ndarray``.

``ndarray`` wraps one NumPy array (the "device buffer") without subclassing ``numpy.ndarray``
(array-api-compat would take a subclass for a NumPy array). Views share memory as NumPy views
do; results NumPy gives as scalars come back as 0-d arrays, as CuPy keeps them on the device;
host arrays are refused where CuPy refuses them, and implicit conversion to NumPy raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _call
from ._call import Seen, call, unwrap, wrap
from ._call import host_read as _host_read
from ._state import guard, memory_pool, namespaces, stats

__all__ = ["ndarray"]


def _is_basic(items: tuple) -> bool:
    return all(
        k is None or k is Ellipsis or isinstance(k, slice)
        or (isinstance(k, int | np.integer) and not isinstance(k, bool | np.bool_))
        for k in items
    )  # fmt: skip


def _index(self: ndarray, key: Any, seen: Seen) -> Any:
    """Unwrap an index; count the sync a boolean mask costs CuPy and the copy of host indices."""
    items = key if type(key) is tuple else (key,)
    seen.inputs[id(self._a)] = self
    ukey = unwrap(key, seen)
    uitems = ukey if type(ukey) is tuple else (ukey,)
    if _is_basic(items):
        return (*uitems, Ellipsis) if Ellipsis not in items else ukey  # ints give 0-d views
    if any(isinstance(k, np.ndarray | list) for k in items):
        guard("index array from the host")
        stats.add("h2d", "index array from the host")
    masks = [k for k in uitems if isinstance(k, np.ndarray | list) and np.asarray(k).dtype == bool]
    if masks or any(isinstance(k, bool | np.bool_) for k in uitems):
        _host_read("boolean mask indexing (CuPy counts the True entries on the host)")
    return ukey


class ndarray:
    """A device array of the fake CuPy: one NumPy array, reached only through CuPy's API."""

    __slots__ = ("__weakref__", "_a")
    __module__ = "cupy"
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, shape: Any, dtype: Any = float, memptr: Any = None, strides: Any = None,
                 order: str = "C") -> None:  # fmt: skip
        if memptr is not None or strides is not None:
            raise NotImplementedError("fake cupy.ndarray: memptr/strides are not emulated")
        guard("cupy.ndarray")
        self._a = np.empty(shape, dtype, order=order)
        memory_pool.track(self._a)

    @classmethod
    def _of(cls, a: np.ndarray) -> ndarray:
        obj = object.__new__(cls)
        obj._a = a
        return obj

    def __cuda_emu_array__(self) -> np.ndarray:
        """The buffer, for the emulator's kernel launches (not part of CuPy)."""
        return self._a

    # -- metadata: never a sync ----------------------------------------------------------------
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._of(self._a.T))
    mT = property(lambda self: ndarray._of(self._a.mT))

    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @shape.setter
    def shape(self, value: Any) -> None:
        self._a.shape = value

    @property
    def real(self) -> ndarray:
        return call("ndarray.real", lambda a: a.real, (self,))

    @property
    def imag(self) -> ndarray:
        return call("ndarray.imag", lambda a: a.imag, (self,))

    @property
    def base(self) -> ndarray | None:
        b = self._a.base
        return ndarray._of(b) if isinstance(b, np.ndarray) else None

    @property
    def device(self) -> Any:
        from ._cuda import Device

        return Device(0)

    @property
    def data(self) -> Any:
        from ._cuda import MemoryPointer, UnownedMemory

        return MemoryPointer(UnownedMemory(self._a.ctypes.data, self._a.nbytes, self), 0)

    def __len__(self) -> int:
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self) -> Any:
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    # -- host reads: each one a sync ---------------------------------------------------------------
    def get(self, stream: Any = None, order: str = "C", out: Any = None,
            blocking: bool = True) -> np.ndarray:  # fmt: skip
        _host_read("ndarray.get")
        if out is not None:
            np.copyto(out, self._a)
            return out
        return np.array(self._a, order=order, copy=True)

    def item(self, *args: Any) -> Any:
        _host_read("ndarray.item")
        return self._a.item(*args)

    def tolist(self) -> Any:
        _host_read("ndarray.tolist")
        return self._a.tolist()

    def __bool__(self) -> bool:
        _host_read("ndarray.__bool__")
        return bool(self._a)

    def __float__(self) -> float:
        _host_read("ndarray.__float__")
        return float(self._a)

    def __int__(self) -> int:
        _host_read("ndarray.__int__")
        return int(self._a)

    def __complex__(self) -> complex:
        _host_read("ndarray.__complex__")
        return complex(self._a)

    def __repr__(self) -> str:
        _host_read("ndarray.__repr__")
        return repr(self._a)

    def __str__(self) -> str:
        _host_read("ndarray.__str__")
        return str(self._a)

    def __format__(self, spec: str) -> str:
        _host_read("ndarray.__format__")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __reduce__(self) -> tuple:
        _host_read("ndarray.__reduce__ (pickling)")
        return (namespaces["numpy"].asarray, (self._a.copy(),))

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")  # fmt: skip

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)  # kDLCUDA, device 0: host consumers must refuse, as with real CuPy

    def __dlpack__(self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: bool | None = None) -> Any:  # fmt: skip
        if dl_device is not None and next(iter(dl_device)) == 1 and copy:  # kDLCPU
            _host_read("ndarray.__dlpack__ to the host")
            return self._a.copy().__dlpack__()
        raise BufferError("fake CuPy: device memory cannot be exported to a host consumer "
                          "without a copy (pass copy=True)")  # fmt: skip

    # -- writes ----------------------------------------------------------------------------------
    def set(self, arr: np.ndarray, stream: Any = None) -> None:
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        guard("ndarray.set")
        stats.add("h2d", "ndarray.set")
        self._a[...] = arr

    def __getitem__(self, key: Any) -> Any:
        seen = Seen()
        out, new = wrap(self._a[_index(self, key, seen)], seen)
        if new:
            guard("ndarray.__getitem__")
            stats.add("op", "ndarray.__getitem__ (gather)")
        return out

    def __setitem__(self, key: Any, value: Any) -> None:
        seen = Seen()
        ukey = _index(self, key, seen)
        if isinstance(value, np.ndarray | list):
            guard("ndarray.__setitem__ from the host")
            stats.add("h2d", "ndarray.__setitem__ from the host")
        guard("ndarray.__setitem__")
        stats.add("op", "ndarray.__setitem__")
        self._a[ukey] = unwrap(value, Seen())

    def __copy__(self) -> ndarray:
        return self.copy()

    def __deepcopy__(self, memo: Any) -> ndarray:
        return self.copy()

    # -- NumPy calling into the fake (np.exp(x), np.concatenate([x, y])) -------------------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        ours = getattr(namespaces["numpy"], ufunc.__name__, None)
        if ours is None:
            return NotImplemented
        fn = ours if method == "__call__" else getattr(ours, method)
        return fn(*inputs, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        ns = namespaces.get(func.__module__)
        ours = getattr(ns, func.__name__, None) if ns is not None else None
        return NotImplemented if ours is None else ours(*args, **kwargs)


def _binary(dunder: str) -> Any:
    fn = getattr(np.ndarray, dunder)
    kind = "write" if dunder.startswith("__i") else "op"  # x += y writes x's buffer

    def method(self: ndarray, other: Any) -> Any:
        if isinstance(other, np.ndarray):  # CuPy never mixes host arrays into device math
            raise TypeError(f"Unsupported type {type(other)}")
        if not isinstance(other, ndarray | np.generic | int | float | complex):
            return NotImplemented
        return call(f"ndarray.{dunder}", fn, (self, other), kind=kind)

    method.__name__ = dunder
    return method


def _unary(dunder: str) -> Any:
    fn = getattr(np.ndarray, dunder)
    return lambda self: call(f"ndarray.{dunder}", fn, (self,))


def _method(name: str, kind: str) -> Any:
    fn = getattr(np.ndarray, name)

    def method(self: ndarray, *args: Any, **kwargs: Any) -> Any:
        return call(f"ndarray.{name}", fn, (self, *args), kwargs, kind=kind)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = fn.__doc__
    return method


for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
            "xor", "lshift", "rshift"):  # fmt: skip
    for _d in (f"__{_op}__", f"__r{_op}__", f"__i{_op}__"):
        if _d != "__imatmul__":  # CuPy has none: x @= y makes a new array
            setattr(ndarray, _d, _binary(_d))
for _d in ("__divmod__", "__rdivmod__", "__lt__", "__le__", "__eq__", "__ne__", "__gt__",
           "__ge__"):  # fmt: skip
    setattr(ndarray, _d, _binary(_d))
for _d in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _d, _unary(_d))
_METHODS = dict.fromkeys(
    "all any argmax argmin argpartition argsort astype choose clip conj conjugate copy cumprod "
    "cumsum diagonal dot flatten max mean min prod ravel repeat reshape round squeeze std sum "
    "swapaxes take trace transpose var view".split(),
    "op",
)
_METHODS.update(compress="sync", nonzero="sync", fill="write", sort="write", partition="write",
                put="write")  # fmt: skip
for _name, _kind in _METHODS.items():
    setattr(ndarray, _name, _method(_name, _kind))
_call.ARRAY = ndarray
