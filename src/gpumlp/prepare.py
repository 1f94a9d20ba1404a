"""Array arguments checked and moved to a network's device: inputs ``X`` (:func:`prepare_x`)
and labels or targets ``y`` (:func:`prepare_targets`), against the network's widths and dtype,
with messages naming the argument. :class:`gpumlp.inputs.Inputs` calls them for a network (its
standardization, classes and target scaling applied there).
"""

from __future__ import annotations

import typing
from typing import Any

import numpy as np

from ._checks import (
    finite_host_array,
    first_nonfinite,
    host_array,
    largest_input,
    nonfinite_message,
    overflow_text,
)
from .backend import (
    Array,
    Namespace,
    backend_name,
    dtype_name,
    index_dtype,
    on_namespace,
    to_device,
)
from .files.npyview import NpyRows

__all__ = ["prepare_targets", "prepare_x"]

Host = np.ndarray[Any, Any]


def prepare_x(X: Any, *, n_features: int, xp: Namespace, dtype: Any, name: str = "X") -> Array:
    """Check inputs and return them on the device.

    Parameters
    ----------
    X : array_like, shape (m, n_features), real, finite, m >= 1
    n_features : int, the network's input width (``sizes[0]``)

    Returns
    -------
    array of ``xp``, shape (m, n_features), dtype ``dtype``; or ``X`` itself when it is a file
    read as it is used (:class:`~gpumlp.files.npyview.NpyRows`) in ``dtype`` on NumPy
    (elsewhere such a file is read whole: the copy is what the device or the cast gets)
    """
    if isinstance(X, NpyRows):
        _check_shape_x(name, X.shape, n_features)
        if backend_name(xp) != "numpy" or X.dtype != np.dtype(dtype_name(dtype)):
            X = np.asarray(X)
        elif (bad := first_nonfinite(X, dtype, width=n_features)) is not None:
            raise ValueError(nonfinite_message(name, X, bad, dtype, width=n_features))
        else:  # it stands for an Array where the data is used: the batch loop reads it
            return typing.cast(Array, X)
    if on_namespace(X, xp) and not isinstance(X, np.ndarray):  # already on a device: check there
        shape = tuple(X.shape)
        _check_shape_x(name, shape, n_features)
        if not xp.isdtype(X.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"{name} must be real-valued, got dtype {X.dtype}")
        cast = xp.astype(X, dtype)
        bound = largest_input(dtype, n_features)
        if not bool(xp.all(xp.abs(cast) <= bound)):  # one read on the happy path; more say why
            if xp.isdtype(X.dtype, "real floating") and not bool(xp.all(xp.isfinite(X))):
                raise ValueError(f"{name} contains NaN or inf")
            if not bool(xp.all(xp.isfinite(cast))):
                raise ValueError(
                    f"{name} holds values that overflow {dtype_name(dtype)}, the network's "
                    "dtype: scale the data, or use dtype='float64'"
                )
            value = float(xp.max(xp.abs(cast)))
            why = overflow_text(value, dtype, n_features, "use dtype='float64'")
            raise ValueError(f"{name} holds {value:g}, {why}")
        return cast
    arr = host_array(name, X)
    _check_shape_x(name, arr.shape, n_features)
    return to_device(finite_host_array(name, arr, dtype, width=n_features), xp)


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
        lo, hi = arr.min(), arr.max()  # before the cast to int64, which 1e300 would wrap
        if lo < 0 or hi >= n_out:
            raise ValueError(
                f"{name} holds labels in [{float(lo):g}, {float(hi):g}] but the output layer "
                f"has {n_out} units, so labels must lie in [0, {n_out - 1}]"
            )
        labels = arr.astype(np.int64)
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
    classes: Host = (arr[:, 0] > 0.5) if n_out == 1 else np.argmax(arr, axis=1)
    return to_device(arr, xp), to_device(classes.astype(np.int64), xp, index_dtype(xp))
