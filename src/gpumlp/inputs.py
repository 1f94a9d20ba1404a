"""How a network takes data: checked against its spec, moved to its device, standardized.

:class:`Inputs` is the edge every input of :class:`gpumlp.Network` passes through (``fit``,
``predict``, ``evaluate``, ...): shapes, dtypes and values are checked with messages naming the
argument (:func:`prepare_x`, :func:`prepare_targets`), values as the network's dtype holds them
(a float64 ``1e300`` given to a float32 network is refused, not turned into inf), and when the
network was trained on standardized inputs, the training split's mean and standard deviation
are applied here, so callers never do it. Labels pass through the network's classes here too
(:mod:`gpumlp.labels`), and a pandas DataFrame's columns are taken by the names of the
network's inputs when it knows them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import (
    finite_host_array,
    first_nonfinite,
    host_array,
    largest_input,
    nonfinite_message,
    overflow_text,
    standardization,
)
from .backend import (
    Array,
    Namespace,
    backend_name,
    dtype_name,
    index_dtype,
    on_namespace,
    to_device,
    to_host,
)
from .config import ModelSpec
from .files.modeldata import DataInfo, check_classes, check_features, check_kind, check_label
from .files.npyview import NpyRows
from .labels import encode_labels, frame_columns, frame_names

__all__ = ["Inputs", "prepare_targets", "prepare_x"]

Host = np.ndarray[Any, Any]


@dataclass
class Inputs:
    """The input edge of a network of ``spec``; ``mean``/``std`` (n_0,) float64 when it
    standardizes its inputs; ``info`` its classes and input names (what labels and tables are
    matched to)."""

    spec: ModelSpec
    mean: Host | None = None
    std: Host | None = None
    info: DataInfo = field(default_factory=DataInfo)

    def __post_init__(self) -> None:
        """Refuse a standardization that turns inputs into NaN or inf, as the network's dtype
        holds it: a mean not finite; a standard deviation not finite, 0, negative, or below the
        dtype's smallest normal (1/std overflows). ValueError naming ``input/mean[i]`` or
        ``input/std[i]`` (the names in model files) and the value."""
        dtype = np.dtype(self.spec.dtype)
        tiny = float(np.finfo(dtype).smallest_normal)
        for key, values in (("mean", self.mean), ("std", self.std)):
            if values is None:
                continue
            values = np.asarray(values)
            with np.errstate(over="ignore", invalid="ignore"):
                held = values.astype(dtype)
                ok = np.isfinite(held) & ((held >= tiny) if key == "std" else True)
            if not ok.all():
                i = int(np.argmin(ok))
                need = (
                    f"a finite number of at least {tiny:.3g} (the smallest normal {dtype}), or "
                    "the inputs divided by it become NaN or inf"
                    if key == "std"
                    else f"finite in {dtype}"
                )
                raise ValueError(f"input/{key}[{i}] is {values[i].item()!r}: it must be {need}")

    @property
    def standardized(self) -> bool:
        """True when inputs are standardized before use."""
        return self.mean is not None and self.std is not None

    def describe(self, **changes: Any) -> None:
        """Set the ``classes``, ``features``, ``kind`` or ``label`` of :attr:`info` (None: not
        known), each checked against the network (TypeError/ValueError naming it)."""
        n_in, n_out = self.spec.sizes[0], self.spec.sizes[-1]
        checks: dict[str, Callable[[Any], Any]] = {
            "classes": lambda v: check_classes(v, n_out), "label": check_label,
            "features": lambda v: check_features(v, n_in), "kind": check_kind,
        }  # fmt: skip
        for key, value in changes.items():
            changes[key] = None if value is None else checks[key](value)
        self.info = dataclasses.replace(self.info, **changes)

    def x(self, X: Any, *, name: str = "X", fit_standardization: bool = False) -> Array:
        """``X`` (m, n_0), checked, on the device in the network's dtype, standardized; with
        ``fit_standardization`` the mean and standard deviation of each input are first taken
        from ``X`` itself (the array checked once, for both)."""
        spec = self.spec
        X = frame_columns(X, self.info.features, name=name)
        if isinstance(X, NpyRows) and (fit_standardization or self.standardized):
            X = np.asarray(X)  # standardized: a copy in memory (read once, not per statistic)
        x: Array = prepare_x(
            X, n_features=spec.sizes[0], xp=spec.xp, dtype=spec.xp_dtype, name=name
        )
        if fit_standardization:
            self.mean, self.std = standardization(to_host(x))
        if self.mean is None or self.std is None:
            return x
        mean, std = (to_device(v, spec.xp, spec.xp_dtype) for v in (self.mean, self.std))
        return (x - mean) / std

    def copies(self, X: Any, *, standardize: bool = False) -> bool:
        """Whether :meth:`x` makes a new array of ``X`` rather than using it in place (a NumPy
        array, memory-mapped or not, or a file read as it is used, already in the network's
        dtype on the NumPy backend, with no standardization to apply), for memory estimates.
        An array used in place is not counted: in memory (an X.npy read whole included), it is
        out of the memory free already; in its file, it is read a batch at a time."""
        spec = self.spec
        in_place = (
            spec.backend == "numpy"
            and isinstance(X, np.ndarray | NpyRows)
            and X.dtype == np.dtype(spec.dtype)
            and not (standardize or self.standardized)
        )
        return not in_place

    def targets(self, y: Any, m: int, *, name: str = "y") -> tuple[Array, Array]:
        """Labels (m,) or targets (m, n_L), checked: the target matrix and the labels."""
        spec = self.spec
        return prepare_targets(y, m=m, n_out=spec.sizes[-1], xp=spec.xp, dtype=spec.xp_dtype,
                               unit=spec.cost.unit_targets, name=name)  # fmt: skip

    def data(
        self,
        X: Any,
        y: Any,
        *,
        name: str = "",
        fit_standardization: bool = False,
        learn: bool = False,
    ) -> tuple[Array, Array, Array]:
        """A data set ``(X, Y, labels)`` on the device; ``name`` prefixes the argument names
        in messages (``validation_data[0]``); ``fit_standardization`` as :meth:`x`; ``learn``:
        data to train on, whose labels may set the classes and a DataFrame's column names the
        inputs' names (:func:`gpumlp.labels.encode_labels`), when the network has none."""
        x_name, y_name = (f"{name}[0]", f"{name}[1]") if name else ("X", "y")
        info, n_in, n_out = self.info, self.spec.sizes[0], self.spec.sizes[-1]
        y, classes = encode_labels(y, info.classes, n_out, learn=learn, name=y_name)
        names = frame_names(X) if learn and info.features is None else None
        X_d = self.x(X, name=x_name, fit_standardization=fit_standardization)
        if classes != info.classes or (names is not None and len(names) == n_in):
            features = names if names is not None and len(names) == n_in else info.features
            self.info = dataclasses.replace(info, classes=classes, features=features)
        return (X_d, *self.targets(y, X_d.shape[0], name=y_name))

    def pair(self, pair: Any) -> tuple[Array, Array, Array] | None:
        """``validation_data`` as a device data set (None stays None)."""
        if pair is None:
            return None
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        return self.data(*pair, name="validation_data")

    def arrays(self) -> dict[str, Host]:
        """The standardization as named host arrays for model files (empty when none)."""
        if self.mean is None or self.std is None:
            return {}
        return {"input/mean": self.mean, "input/std": self.std}


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
