"""Validation at the public edge: every message names the argument, the value and what was expected.

Scalars (``check_int``, ``check_number``), layer sizes, host arrays and their values, and
parameters given from outside. Values are checked as the network will hold them: a finite
float64 value that overflows float32 (``1e300``) is refused naming the argument and the dtype,
never left to become inf later. Checking inputs and targets against a network's spec and moving
them to its device is :mod:`gpumlp.prepare` and :mod:`gpumlp.inputs`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal, Protocol, overload

import numpy as np

from .backend import dtype_name, to_host

__all__ = [
    "check_int",
    "check_number",
    "check_params",
    "check_sizes",
    "count_rows",
    "finite_host_array",
    "first_nonfinite",
    "host_array",
    "largest_input",
    "nonfinite_message",
    "overflow_text",
    "standardization",
]


@overload
def check_int(
    name: str, value: Any, *, minimum: int = 1, allow_none: Literal[False] = ...
) -> int: ...


@overload
def check_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool) -> int | None: ...


def check_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """Return ``value`` as an int >= ``minimum``; TypeError for non-integers (bool included).
    ``None`` is accepted (and returned) only with ``allow_none=True``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_number(
    name: str,
    value: Any,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    low: float | None = None,
    strict: bool = False,
    below: float | None = None,
) -> float:
    """Return ``value`` as a finite float, optionally >= ``low`` (> ``low`` when ``strict``)
    and < ``below``; ``positive`` is ``low=0, strict=True``, ``nonnegative`` is ``low=0``."""
    if positive or nonnegative:
        low, strict = 0, positive
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    if low is not None and (number < low or (strict and number == low)):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {number}")
    if below is not None and number >= below:
        raise ValueError(f"{name} must be < {below}, got {number}")
    return number


def check_sizes(sizes: Any) -> list[int]:
    """Validate layer sizes: a sequence (list, tuple, range, 1-D array) of at least two
    positive integers. A dict, set, string, bytes or iterator is refused (TypeError), not read
    for its keys, its order or its characters, nor drained."""
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence | np.ndarray):
        raise TypeError(
            "sizes must be a sequence (a list or tuple) of integers such as [784, 30, 10], got "
            f"a {type(sizes).__name__}: {sizes!r:.100}"
        )
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must have at least 2 entries (input and output), got {sizes!r}")
    for i, n in enumerate(sizes):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"sizes[{i}] must be an integer, got {n!r}")
        if n < 1:
            raise ValueError(f"sizes[{i}] must be >= 1, got {n}")
    return [int(n) for n in sizes]


def host_array(name: str, value: Any) -> np.ndarray[Any, Any]:
    """``value`` as a real numeric host array (no copy when it already is one); TypeError or
    ValueError naming ``name`` for None, ragged, complex or non-numeric input."""
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        arr = to_host(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} is not a rectangular numeric array: {exc}") from None
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} holds non-numeric objects ({exc})") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real-valued, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def finite_host_array(
    name: str, value: Any, dtype: Any = None, *, width: int = 1
) -> np.ndarray[Any, Any]:
    """``value`` as a real, finite NumPy array (cast to ``dtype`` when given); TypeError or
    ValueError naming ``name`` otherwise. An array already in ``dtype`` comes back as it is (a
    float32 memory-mapped file is never copied). The values are checked as ``dtype`` holds
    them, a block of rows at a time, before the cast: a finite float64 value that overflows
    float32 (1e300) is refused here, naming the value and the dtype, instead of becoming inf;
    so is one past :func:`largest_input` of ``width`` inputs (``width`` > 1 for inputs X)."""
    arr = host_array(name, value)
    target = None if dtype is None else np.dtype(dtype_name(dtype))
    if (bad := first_nonfinite(arr, target, width=width)) is not None:
        raise ValueError(nonfinite_message(name, arr, bad, target, width=width))
    if target is None or arr.dtype == target:
        return arr
    return arr.astype(target)


def largest_input(dtype: Any, width: int) -> float:
    """The largest magnitude an input of a layer ``width`` inputs wide may have in ``dtype``:
    past it, a sum Σ_j w_j·x_j of the first layer overflows even with weights of 1."""
    return float(np.finfo(dtype_name(dtype)).max) / width


def overflow_text(value: Any, dtype: Any, width: int, wider: str) -> str:
    """Why the finite ``value`` does not fit ``dtype`` (the network's): it overflows it, or it
    passes :func:`largest_input` of ``width`` inputs; and what to do (``wider`` says how to ask
    for float64: "use dtype='float64'")."""
    target = np.dtype(dtype_name(dtype))
    why = f"which overflows {target.name}, the network's dtype"
    if width > 1 and np.isfinite(_cast(np.asarray(value), target)):
        why = (
            f"past ±{largest_input(target, width):.3g}, where the first layer's sums over "
            f"{width} inputs overflow {target.name}, the network's dtype"
        )
    return f"{why}: scale the data" + (f", or {wider}" if target.name != "float64" else "")


def nonfinite_message(
    name: str, arr: Rows, bad: tuple[int, ...], dtype: Any = None, *,
    width: int = 1,
) -> str:  # fmt: skip
    """What is wrong with ``arr[bad]``, the first value :func:`first_nonfinite` found: NaN or
    inf in the data, or a finite value that overflows ``dtype`` (the network's), alone or in
    the first layer's sums over ``width`` inputs."""
    value = arr[bad]
    if dtype is None or not np.isfinite(value):
        return f"{name} contains NaN or inf (first at index {bad})"
    why = overflow_text(value, dtype, width, "use dtype='float64'")
    return f"{name} holds {value!r} at index {bad}, {why}"


_BLOCK_BYTES = 1 << 22  # what first_nonfinite looks at in one go (a copy, read from a file
# that is read as it is used, files/npyview); its mask is a quarter


class Rows(Protocol):
    """What :func:`first_nonfinite` reads: a NumPy array, or an array-like whose index gives
    arrays (:class:`~gpumlp.files.npyview.NpyRows`, a file read as it is used)."""

    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def ndim(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def itemsize(self) -> int: ...
    def __getitem__(self, key: Any, /) -> Any: ...


def first_nonfinite(arr: Rows, dtype: Any = None, *, width: int = 1) -> tuple[int, ...] | None:
    """The index of the first value of the host array ``arr`` (any shape) that is NaN or inf,
    or, with ``dtype``, that becomes inf when cast to it or, with ``width`` > 1, passes
    :func:`largest_input` (None when all are finite or it holds no floats). Looks a block of
    rows at a time, so that no temporary of ``arr``'s size is made (``arr`` may be a file larger
    than memory, read block by block as :class:`~gpumlp.files.npyview.NpyRows`)."""
    if arr.dtype.kind != "f" or arr.size == 0:
        return None
    cast = None if dtype is None else np.dtype(dtype_name(dtype))
    bound = math.inf
    if width > 1:
        bound = largest_input(cast if cast is not None and cast.kind == "f" else arr.dtype, width)
    if cast is not None and (cast.kind != "f" or cast.itemsize >= arr.dtype.itemsize):
        cast = None  # widening (or the same dtype) cannot overflow
    if arr.ndim == 0:
        one = np.asarray(arr)
        return None if _within(one if cast is None else _cast(one, cast), bound) else ()
    row_bytes = arr.itemsize * math.prod(arr.shape[1:])
    rows = max(1, _BLOCK_BYTES // max(1, row_bytes))
    for r in range(0, arr.shape[0], rows):
        block = np.asarray(arr[r : r + rows])
        values = block if cast is None else _cast(block, cast)
        if _within(values, bound):
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            bad = np.argwhere(~(np.isfinite(values) & (np.abs(values) <= bound)))[0]
        return (r + int(bad[0]), *(int(i) for i in bad[1:]))
    return None


def _within(values: np.ndarray[Any, Any], bound: float) -> bool:
    """Whether all ``values`` are finite and at most ``bound`` in magnitude (two reductions,
    no temporary of their size: NaN and inf show in the least or the largest)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    return math.isfinite(lo) and math.isfinite(hi) and -bound <= lo and hi <= bound


def _cast(arr: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(dtype)


def check_params(
    sizes: Sequence[int], weights: Sequence[Any], biases: Sequence[Any], dtype: Any
) -> list[np.ndarray[Any, Any]]:
    """Check parameters given from outside (``load_params``, a file) against ``sizes``.

    Parameters
    ----------
    sizes : the network's layer sizes
    weights : L array_likes, ``weights[l]`` shape (sizes[l+1], sizes[l])
    biases : L array_likes, ``biases[l]`` shape (sizes[l+1],), or (sizes[l+1], 1) (the book's
        column vectors)
    dtype : the network's dtype; values are checked finite after the cast to it

    Returns
    -------
    list of host arrays in dtype ``dtype``: w_0, b_0, w_1, b_1, ...

    Raises
    ------
    ValueError, TypeError
        On a wrong count or shape, non-numbers, or values not finite in ``dtype`` (the message
        names the tensor, e.g. ``weights[0]``).
    """
    n_layers = len(sizes) - 1
    weights, biases = list(weights), list(biases)
    if len(weights) != n_layers or len(biases) != n_layers:
        raise ValueError(
            f"expected {n_layers} weight and bias arrays for sizes {list(sizes)}, "
            f"got {len(weights)} weights and {len(biases)} biases"
        )
    out = []
    for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
        n_in, n_out = sizes[l], sizes[l + 1]
        w_h, b_h = host_array(f"weights[{l}]", w), host_array(f"biases[{l}]", b)
        if b_h.shape == (n_out, 1):
            b_h = b_h[:, 0]
        if w_h.shape != (n_out, n_in):
            raise ValueError(f"weights[{l}] must have shape {(n_out, n_in)}, got {w_h.shape}")
        if b_h.shape != (n_out,):
            raise ValueError(f"biases[{l}] must have shape {(n_out,)}, got {b_h.shape}")
        out += [finite_host_array(f"weights[{l}]", w_h, dtype),
                finite_host_array(f"biases[{l}]", b_h, dtype)]  # fmt: skip
    return out


def standardization(X: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Mean and standard deviation of each column of host inputs ``X`` (n, d), in float64,
    accumulated a block of rows at a time (no full-size temporary, so a memory-mapped file
    larger than memory works). A constant column gets std 1: it stays as it is."""
    n, d = X.shape
    rows = max(1, (1 << 24) // max(1, d))
    total = np.zeros(d)
    for r in range(0, n, rows):
        total += X[r : r + rows].sum(axis=0, dtype=np.float64)
    mean = total / n
    sq = np.zeros(d)
    for r in range(0, n, rows):
        diff = X[r : r + rows] - mean
        sq += np.einsum("ij,ij->j", diff, diff)
    std = np.sqrt(sq / n)
    return mean, np.where(std > 0, std, 1.0)


def count_rows(name: str, X: Any, *, pair: bool = False) -> int:
    """The number of samples in ``X`` without converting it (for estimates made before any
    copy); TypeError naming ``name`` when ``X`` is not array-like. With ``pair``, ``X`` is a
    data set ``(X, y)`` or None: its X's samples, 0 for None or what is no pair (refused
    where the pair is read)."""
    if pair:
        if not isinstance(X, tuple | list) or len(X) != 2:
            return 0
        name, X = f"{name}[0]", X[0]
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        raise TypeError(f"{name} must be an array (n_samples, n_features), got {X!r:.60}") from None
