"""A counting stand-in for a namespace (NumPy, an array-API namespace) and a memory probe, for
the tests that keep the NumPy fast path's step as cheap as its module docstring says.

``sys.setprofile`` does not see ufunc calls (they are C calls of C objects), so the step's
namespace is replaced instead: :class:`CountingNamespace` hands out its module's attributes,
each function and ufunc wrapped to count its calls by name (a ufunc's methods as
``"add.reduce"``), and classes, dtypes and constants as they are. It also records which of
the called functions are Python code (``np.sum``, ``np.take``: wrappers that cost more than
the C call they make) and which calls were given no ``out=`` (each makes a new array).
:func:`traced` measures what a block of code leaves allocated and the most it held at once.
"""

from __future__ import annotations

import collections
import contextlib
import tracemalloc
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Calls", "CountingNamespace", "Traced", "traced"]


@dataclass
class Calls:
    """What a :class:`CountingNamespace` saw: calls by name, and the names of the Python-level
    functions and of the calls without ``out=`` among them."""

    count: collections.Counter[str] = field(default_factory=collections.Counter)
    python: set[str] = field(default_factory=set)
    no_out: collections.Counter[str] = field(default_factory=collections.Counter)

    def clear(self) -> None:
        self.count.clear()
        self.python.clear()
        self.no_out.clear()

    def total(self, prefix: str = "") -> int:
        """Calls of the names that start with ``prefix`` (all by default)."""
        return sum(n for name, n in self.count.items() if name.startswith(prefix))

    def see(self, name: str, fn: Any, kwargs: dict[str, Any], *, makes_array: bool) -> None:
        self.count[name] += 1
        if _is_python(fn):
            self.python.add(name)
        if makes_array and kwargs.get("out") is None:
            self.no_out[name] += 1


def _is_python(fn: Any) -> bool:
    """True for a function written in Python, also behind NumPy's ``__array_function__``
    dispatcher (``np.sum``, ``np.take``), False for C functions and ufuncs."""
    fn = getattr(fn, "_implementation", fn)
    return isinstance(fn, types.FunctionType)


class _CountingUfunc:
    """A ufunc whose calls and methods (``reduce``, ``accumulate``, ...) are counted."""

    def __init__(self, ufunc: np.ufunc, calls: Calls, name: str) -> None:
        self._ufunc, self._calls, self._name = ufunc, calls, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._calls.see(self._name, self._ufunc, kwargs, makes_array=True)
        return self._ufunc(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._ufunc, attr)
        if not callable(value):
            return value
        name, calls = f"{self._name}.{attr}", self._calls

        def method(*args: Any, **kwargs: Any) -> Any:
            calls.see(name, value, kwargs, makes_array=True)
            return value(*args, **kwargs)

        return method


class CountingNamespace:
    """``module`` with its functions and ufuncs counted into ``calls`` as ``prefix + name``."""

    def __init__(self, module: Any, calls: Calls, prefix: str = "") -> None:
        self._module, self._calls, self._prefix = module, calls, prefix

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._module, attr)
        name = self._prefix + attr
        if isinstance(value, np.ufunc):
            return _CountingUfunc(value, self._calls, name)
        if not callable(value) or isinstance(value, type):
            return value  # dtypes, classes (finfo), constants
        calls = self._calls

        def function(*args: Any, **kwargs: Any) -> Any:
            calls.see(name, value, kwargs, makes_array=False)
            return value(*args, **kwargs)

        return function


@dataclass
class Traced:
    """Bytes and blocks a block of code left allocated, and the most bytes it held at once
    above its start."""

    left_bytes: int = 0
    left_blocks: int = 0
    peak_bytes: int = 0


@contextlib.contextmanager
def traced() -> Iterator[Traced]:
    """Trace the allocations of the ``with`` block (:mod:`tracemalloc`, which NumPy's array
    buffers report to as well as Python's objects)."""
    result = Traced()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(ignore)
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        yield result
        _, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot().filter_traces(ignore)
    finally:
        tracemalloc.stop()
    diff = after.compare_to(before, "filename")
    result.left_bytes = sum(d.size_diff for d in diff)
    result.left_blocks = sum(d.count_diff for d in diff)
    result.peak_bytes = peak - start
