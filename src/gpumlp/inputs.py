"""How a network takes data: checked against its spec, moved to its device, standardized.

:class:`Inputs` is the edge every input of :class:`gpumlp.Network` passes through (``fit``,
``predict``, ``evaluate``, ...): shapes, dtypes and values are checked with messages naming the
argument (:mod:`gpumlp.prepare`), values as the network's dtype holds them (a float64 ``1e300``
given to a float32 network is refused, not turned into inf), and when the network was trained
on standardized inputs, the training split's mean and standard deviation are applied here, so
callers never do it. So are a regression's: its targets standardized
(:class:`~gpumlp.targets.TargetScaling`) on the way in, its outputs scaled back on the way out.
A classifier's labels pass through the network's classes here too (:mod:`gpumlp.labels`), and
a pandas DataFrame's columns are taken by the names of the network's inputs when it knows them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import finite_host_array, standardization
from .backend import Array, to_device, to_host
from .config import ModelSpec
from .files.modeldata import DataInfo, check_classes, check_features, check_kind, check_label
from .files.npyview import NpyRows
from .labels import encode_labels, frame_columns, frame_names
from .prepare import prepare_targets, prepare_x
from .targets import TargetScaling

__all__ = ["Inputs", "check_standardization"]

Host = np.ndarray[Any, Any]


def check_standardization(prefix: str, mean: Any, std: Any, dtype: str) -> None:
    """Refuse a standardization that turns values into NaN or inf, as the network's ``dtype``
    holds it: a ``mean`` not finite; a ``std`` not finite, 0, negative, or below the dtype's
    smallest normal (1/std overflows). ValueError naming ``prefix/mean[i]`` or
    ``prefix/std[i]`` (the names in model files: ``input/...``, ``target/...``) and the value."""
    held_dtype = np.dtype(dtype)
    tiny = float(np.finfo(held_dtype).smallest_normal)
    for key, values in (("mean", mean), ("std", std)):
        if values is None:
            continue
        values = np.asarray(values)
        with np.errstate(over="ignore", invalid="ignore"):
            held = values.astype(held_dtype)
            ok = np.isfinite(held) & ((held >= tiny) if key == "std" else True)
        if not ok.all():
            i = int(np.argmin(ok))
            need = (
                f"a finite number of at least {tiny:.3g} (the smallest normal {held_dtype}), or "
                f"the {prefix}s divided by it become NaN or inf"
                if key == "std"
                else f"finite in {held_dtype}"
            )
            raise ValueError(f"{prefix}/{key}[{i}] is {values[i].item()!r}: it must be {need}")


@dataclass
class Inputs:
    """The input edge of a network of ``spec``; ``mean``/``std`` (n_0,) float64 when it
    standardizes its inputs; ``scaling`` when it is a regression trained on standardized
    targets; ``info`` its classes and input names (what labels and tables are matched to)."""

    spec: ModelSpec
    mean: Host | None = None
    std: Host | None = None
    scaling: TargetScaling | None = None
    info: DataInfo = field(default_factory=DataInfo)

    def __post_init__(self) -> None:
        """Refuse a standardization of the inputs or targets that makes NaN or inf
        (:func:`check_standardization`), and classes for a regression."""
        check_standardization("input", self.mean, self.std, self.spec.dtype)
        if self.scaling is not None:
            check_standardization("target", self.scaling.mean, self.scaling.std, self.spec.dtype)
        self._no_classes(self.info.classes)

    def _no_classes(self, classes: Any) -> None:
        """Refuse ``classes`` for a regression network, whose outputs are values (ValueError)."""
        if self.spec.task == "regression" and classes is not None:
            raise ValueError("classes: a regression network has none (its outputs are values)")

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
        self._no_classes(changes.get("classes"))
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

    def targets(
        self, y: Any, m: int, *, name: str = "y", fit_standardization: bool = False
    ) -> tuple[Array, Array]:
        """Labels (m,) or targets (m, n_L), checked: the target matrix and the labels. A
        regression's targets ((m,) for one output) are standardized, by their own mean and
        standard deviation first with ``fit_standardization``."""
        spec = self.spec
        if spec.task == "regression":
            y = finite_host_array(name, y)
            y = y[:, None] if y.ndim == 1 else y
            if y.ndim == 2 and y.shape[1] == spec.sizes[-1]:  # else refused just below
                if fit_standardization:
                    self.scaling = TargetScaling.fit(y)
                y = y if self.scaling is None else self.scaling.scaled(y)
        return prepare_targets(y, m=m, n_out=spec.sizes[-1], xp=spec.xp, dtype=spec.xp_dtype,
                               unit=spec.cost.unit_targets, name=name)  # fmt: skip

    def values(self, a: Array) -> Array:
        """A regression's outputs ``a`` (m, n_L) in the targets' units (scaled back, as
        float64, when it learnt them standardized), on the device; ValueError for a
        classification network's, which score classes."""
        if self.spec.task != "regression":
            raise ValueError(
                "predict_values is for a regression network; this one classifies: predict "
                "gives its classes and predict_proba their scores"
            )
        if self.scaling is None:
            return a
        return to_device(self.scaling.unscaled(to_host(a)), self.spec.xp)

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
        in messages (``validation_data[0]``); ``fit_standardization`` as :meth:`x` and, for
        a regression's targets, :meth:`targets`; ``learn``: data to train on, whose labels may
        set a classifier's classes and a DataFrame's column names the inputs' names
        (:func:`gpumlp.labels.encode_labels`), when the network has none."""
        x_name, y_name = (f"{name}[0]", f"{name}[1]") if name else ("X", "y")
        info, n_in, n_out = self.info, self.spec.sizes[0], self.spec.sizes[-1]
        classes = info.classes  # a regression's labels are values: no classes to go through
        if self.spec.task == "classification":
            y, classes = encode_labels(y, info.classes, n_out, learn=learn, name=y_name)
        names = frame_names(X) if learn and info.features is None else None
        features = names if names is not None and len(names) == n_in else info.features
        X_d = self.x(X, name=x_name, fit_standardization=fit_standardization)
        if classes != info.classes or features != info.features:
            self.info = dataclasses.replace(info, classes=classes, features=features)
        m = X_d.shape[0]
        return (X_d, *self.targets(y, m, name=y_name, fit_standardization=fit_standardization))

    def pair(self, pair: Any) -> tuple[Array, Array, Array] | None:
        """``validation_data`` as a device data set (None stays None)."""
        if pair is None:
            return None
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        return self.data(*pair, name="validation_data")

    def arrays(self) -> dict[str, Host]:
        """The standardizations as named host arrays for model files (empty when none)."""
        out: dict[str, Host] = {}
        if self.mean is not None and self.std is not None:
            out |= {"input/mean": self.mean, "input/std": self.std}
        if self.scaling is not None:
            out |= {"target/mean": self.scaling.mean, "target/std": self.scaling.std}
        return out
