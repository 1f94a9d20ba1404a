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

from .backend import Array, Namespace, _belongs_to, to_device, to_host

__all__ = [
    "check_int",
    "check_number",
    "check_sizes",
    "finite_host_array",
    "prepare_targets",
    "prepare_x",
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


def finite_host_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a real, finite NumPy array; TypeError/ValueError naming ``name`` otherwise."""
    arr = _host_array(name, value)
    _check_finite_host(name, arr)
    return arr


def _check_finite_host(name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})"
        )


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
    if _belongs_to(X, xp) and not isinstance(X, np.ndarray):  # already on a device: check there
        shape = tuple(X.shape)
        _check_shape_x(name, shape, n_features)
        if not xp.isdtype(X.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"{name} must be real-valued, got dtype {X.dtype}")
        X = xp.astype(X, dtype)
        if not bool(xp.all(xp.isfinite(X))):
            raise ValueError(f"{name} contains NaN or inf")
        return X
    arr = _host_array(name, X)
    _check_shape_x(name, arr.shape, n_features)
    _check_finite_host(name, arr)
    return to_device(arr, xp, dtype)


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
        labels_d = to_device(labels, xp)
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
    labels = (arr[:, 0] > 0.5) if n_out == 1 else np.argmax(arr, axis=1)
    return to_device(arr, xp, dtype), to_device(labels.astype(np.int64), xp)
