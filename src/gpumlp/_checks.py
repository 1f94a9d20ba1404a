"""Validation at the public edge: every message names the argument, the value and what was expected.

Arrays that are already on ``xp`` are checked there (one host sync, once, at the edge); anything
else is checked on the host with NumPy before it is copied to the device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import Array, Namespace, dtype_name, index_dtype, on_namespace, to_device, to_host

__all__ = [
    "check_int",
    "check_number",
    "check_sizes",
    "count_rows",
    "finite_host_array",
    "first_nonfinite",
    "prepare_targets",
    "prepare_x",
    "standardization",
]


def check_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """Return ``value`` as an int >= ``minimum``; TypeError for non-integers (bool included)."""
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
    below: float | None = None,
) -> float:
    """Return ``value`` as a finite float, optionally > 0, >= 0 or < ``below``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if below is not None and value >= below:
        raise ValueError(f"{name} must be < {below}, got {value}")
    return value


def check_sizes(sizes: Any) -> list[int]:
    """Validate layer sizes: a sequence of at least two positive integers."""
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence | np.ndarray):
        raise TypeError(
            f"sizes must be a sequence of integers such as [784, 30, 10], got {sizes!r}"
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


def _host_array(name: str, value: Any) -> np.ndarray:
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


def finite_host_array(name: str, value: Any, dtype: Any = None) -> np.ndarray[Any, Any]:
    """``value`` as a real, finite NumPy array (cast to ``dtype`` when given); TypeError or
    ValueError naming ``name`` otherwise. An array already in ``dtype`` comes back as it is (a
    float32 memory-mapped file is never copied) and is checked a block of rows at a time; after
    a cast the values are checked again, so a finite float64 value that overflows float32
    (1e300) is refused here, naming the value and the dtype, instead of becoming inf later."""
    arr = _host_array(name, value)
    if (bad := first_nonfinite(arr)) is not None:  # NaN/inf already in the data: say so
        raise ValueError(f"{name} contains NaN or inf (first at index {bad})")
    if dtype is None or arr.dtype == (target := np.dtype(dtype_name(dtype))):
        return arr
    with np.errstate(over="ignore", invalid="ignore"):
        cast = arr.astype(target)
    if (bad := first_nonfinite(cast)) is not None:
        raise ValueError(
            f"{name} holds {arr[bad]!r} at index {bad}, which overflows {target.name}, "
            f"the network's dtype: scale the data, or use dtype='float64'"
        )
    return cast


_BLOCK_BYTES = 1 << 24  # what first_nonfinite looks at in one go; its mask is a quarter


def first_nonfinite(arr: np.ndarray[Any, Any]) -> tuple[int, ...] | None:
    """The index of the first NaN or inf in the host array ``arr`` (any shape; None when all
    are finite or it holds no floats), found a block of rows at a time so that no temporary
    of ``arr``'s size is made (``arr`` may be a memory-mapped file larger than memory)."""
    if arr.dtype.kind != "f" or arr.size == 0:
        return None
    if arr.ndim == 0:
        return None if np.isfinite(arr) else ()
    row_bytes = arr.itemsize * math.prod(arr.shape[1:])
    rows = max(1, _BLOCK_BYTES // max(1, row_bytes))
    for r in range(0, arr.shape[0], rows):
        ok = np.isfinite(arr[r : r + rows])
        if not ok.all():
            bad = np.argwhere(~ok)[0]
            return (r + int(bad[0]), *(int(i) for i in bad[1:]))
    return None


def prepare_x(X: Any, *, n_features: int, xp: Namespace, dtype: Any, name: str = "X") -> Array:
    """Check inputs and return them on the device.

    Parameters
    ----------
    X : array_like, shape (m, n_features), real, finite, m >= 1
    n_features : int, the network's input width (``sizes[0]``)

    Returns
    -------
    array of ``xp``, shape (m, n_features), dtype ``dtype``
    """
    if on_namespace(X, xp) and not isinstance(X, np.ndarray):  # already on a device: check there
        shape = tuple(X.shape)
        _check_shape_x(name, shape, n_features)
        if not xp.isdtype(X.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"{name} must be real-valued, got dtype {X.dtype}")
        X = xp.astype(X, dtype)
        if not bool(xp.all(xp.isfinite(X))):
            raise ValueError(
                f"{name} contains NaN or inf, or values that overflow {dtype_name(dtype)}"
            )
        return X
    arr = _host_array(name, X)
    _check_shape_x(name, arr.shape, n_features)
    return to_device(finite_host_array(name, arr, dtype), xp)


def _check_shape_x(name: str, shape: tuple[int, ...], n_features: int) -> None:
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features={n_features}), got shape {shape}"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if shape[1] != n_features:
        raise ValueError(
            f"{name} has {shape[1]} features per sample but the network's input layer has "
            f"{n_features} (sizes[0])"
        )


def prepare_targets(
    y: Any, *, m: int, n_out: int, xp: Namespace, dtype: Any, unit: bool, name: str = "y"
) -> tuple[Array, Array]:
    """Check targets and return the target matrix and the class labels on the device.

    Parameters
    ----------
    y : array_like
        Integer class labels, shape (m,), each in [0, n_out); or a target matrix (m, n_out).
        With a single output unit (n_out == 1), a 1-D ``y`` is that unit's target column.
    m : int, the number of samples in X
    n_out : int, the network's output width (``sizes[-1]``)
    unit : bool, targets must lie in [0, 1] (cross-entropy and log-likelihood costs)

    Returns
    -------
    Y : array, shape (m, n_out), dtype ``dtype`` (one-hot rows when ``y`` holds labels)
    labels : array, shape (m,), int64, the class of each example (argmax of ``Y`` for a matrix;
        ``Y > 0.5`` for a single output unit)
    """
    arr = finite_host_array(name, y)
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(
            f"{name} must be labels (m,) or targets (m, {n_out}), got shape {arr.shape}"
        )
    if arr.shape[0] != m:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has {m} samples")
    if arr.ndim == 1 and n_out == 1:
        arr = arr[:, None]
    if arr.ndim == 1:
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            bad = arr[arr != np.round(arr)][0]
            raise ValueError(f"{name} must hold integer class labels, got non-integer {bad!r}")
        labels = arr.astype(np.int64)
        if labels.min() < 0 or labels.max() >= n_out:
            raise ValueError(
                f"{name} holds labels in [{labels.min()}, {labels.max()}] but the output layer has "
                f"{n_out} units, so labels must lie in [0, {n_out - 1}]"
            )
        labels_d = to_device(labels, xp, index_dtype(xp))
        Y = xp.astype(labels_d[:, None] == xp.arange(n_out, dtype=labels_d.dtype)[None, :], dtype)
        return Y, labels_d
    if arr.shape[1] != n_out:
        hint = " (pass class labels as a 1-D array)" if arr.shape[1] == 1 else ""
        raise ValueError(
            f"{name} has shape {arr.shape} but the output layer has {n_out} units, "
            f"so targets must have shape ({m}, {n_out}){hint}"
        )
    if unit and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1] for this cost, got values in [{arr.min()}, {arr.max()}]"
        )
    arr = finite_host_array(name, arr, dtype)  # the targets as the network sees them
    labels = (arr[:, 0] > 0.5) if n_out == 1 else np.argmax(arr, axis=1)
    return to_device(arr, xp), to_device(labels.astype(np.int64), xp, index_dtype(xp))


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
        w_h, b_h = _host_array(f"weights[{l}]", w), _host_array(f"biases[{l}]", b)
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


def count_rows(name: str, X: Any) -> int:
    """The number of samples in ``X`` without converting it (for estimates made before any
    copy); TypeError naming ``name`` when ``X`` is not array-like."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        raise TypeError(f"{name} must be an array (n_samples, n_features), got {X!r:.60}") from None
