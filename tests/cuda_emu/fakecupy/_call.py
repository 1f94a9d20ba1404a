"""The one call path every operation of the fake CuPy takes: unwrap, run NumPy, wrap, count.

``call`` unwraps fake arrays (in lists and tuples too) to their NumPy buffers, refuses host
arrays where CuPy refuses them, runs the NumPy function, wraps array results (scalars become 0-d
arrays, as CuPy keeps reductions on the device; an input handed back keeps its identity), and
counts what happened (:mod:`._state`). The array type is registered by ``_array``, which imports
this module: ``ARRAY`` below.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._state import guard, memory_pool, stats

__all__ = ["ARRAY", "Seen", "call", "host_read", "unwrap", "wrap"]

ARRAY: Any = None  # the fake cupy.ndarray class, set by _array


class Seen:
    """The arrays met while unwrapping one call's arguments."""

    __slots__ = ("host", "inputs")

    def __init__(self) -> None:
        self.inputs: dict[int, Any] = {}  # id(NumPy buffer) -> the fake array holding it
        self.host: list[np.ndarray] = []


def unwrap(obj: Any, seen: Seen) -> Any:
    """Fake arrays (also inside lists and tuples) -> their NumPy arrays."""
    t = type(obj)
    if t is ARRAY:
        seen.inputs[id(obj._a)] = obj
        return obj._a
    if t is list or t is tuple:
        return t(unwrap(o, seen) for o in obj)
    if isinstance(obj, np.ndarray):
        seen.host.append(obj)
    return obj


def wrap(res: Any, seen: Seen) -> tuple[Any, bool]:
    """NumPy results -> fake arrays; True when a new device array was made (not a view)."""
    if isinstance(res, np.ndarray):
        same = seen.inputs.get(id(res))
        if same is not None:  # an input handed back (asarray, astype(copy=False), x += 1)
            return same, False
        view = res.base is not None and any(
            np.may_share_memory(res, w._a) for w in seen.inputs.values()
        )
        if not view:
            memory_pool.track(res)
        return ARRAY._of(res), not view
    if isinstance(res, np.generic):  # CuPy keeps reductions on the device, as 0-d arrays
        arr = np.asarray(res)
        memory_pool.track(arr)
        return ARRAY._of(arr), True
    if isinstance(res, list | tuple):
        pairs = [wrap(r, seen) for r in res]
        items = [p[0] for p in pairs]
        if type(res) in (list, tuple):
            rebuilt = type(res)(items)
        else:  # a NamedTuple such as linalg's SVDResult
            rebuilt = type(res)(*items)
        return rebuilt, any(p[1] for p in pairs)
    return res, False


def call(name: str, fn: Any, args: tuple = (), kwargs: dict | None = None, *,
         kind: str = "op", host_ok: bool = False) -> Any:  # fmt: skip
    """Run the NumPy function ``fn`` on unwrapped arguments, with CuPy's rules and counters.

    ``kind``: "op" (may produce arrays), "write" (writes an argument in place), "sync" (reads
    device data on the host first), "alloc" (allocates without a kernel: not counted as op).
    ``host_ok`` lets NumPy arrays in (functions that take host data or only look at dtypes).
    """
    kwargs = kwargs or {}
    seen = Seen()
    uargs = unwrap(args, seen)
    ukw = {k: unwrap(v, seen) for k, v in kwargs.items()}
    if seen.host and not host_ok:
        raise TypeError(f"cupy.{name}: Unsupported type {type(seen.host[0])}: device arrays "
                        "only (copy host data in with cupy.asarray)")  # fmt: skip
    writes = kind == "write" or kwargs.get("out") is not None
    if writes or kind == "sync":
        guard(f"cupy.{name}")
    if kind == "sync":
        stats.add("sync", f"cupy.{name}")
    out, new = wrap(fn(*uargs, **ukw), seen)
    if new:
        guard(f"cupy.{name}")  # an allocation
    if (new and kind != "alloc") or writes:
        stats.add("op", f"cupy.{name}")
    return out


def host_read(what: str) -> None:
    """Count a host read of device data (refused during a capture)."""
    guard(what)
    stats.add("sync", what)
