"""How a network takes data: checked against its spec, moved to its device, standardized.

:class:`Inputs` is the edge every input of :class:`gpumlp.Network` passes through (``fit``,
``predict``, ``evaluate``, ...): shapes, dtypes and values are checked with messages naming the
argument (:mod:`gpumlp._checks`), and when the network was trained on standardized inputs,
the training split's mean and standard deviation are applied here, so callers never do it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import prepare_targets, prepare_x, standardization
from .backend import Array, to_device, to_host
from .config import ModelSpec

__all__ = ["Inputs"]

Host = np.ndarray[Any, Any]


@dataclass
class Inputs:
    """The input edge of a network of ``spec``; ``mean``/``std`` (n_0,) float64 when it
    standardizes its inputs."""

    spec: ModelSpec
    mean: Host | None = None
    std: Host | None = None

    @property
    def standardized(self) -> bool:
        """True when inputs are standardized before use."""
        return self.mean is not None and self.std is not None

    def x(self, X: Any, *, name: str = "X") -> Array:
        """``X`` (m, n_0), checked, on the device in the network's dtype, standardized."""
        spec = self.spec
        x: Array = prepare_x(
            X, n_features=spec.sizes[0], xp=spec.xp, dtype=spec.xp_dtype, name=name
        )
        if self.mean is None or self.std is None:
            return x
        mean, std = (to_device(v, spec.xp, spec.xp_dtype) for v in (self.mean, self.std))
        return (x - mean) / std

    def copies(self, X: Any, *, standardize: bool = False) -> bool:
        """Whether :meth:`x` makes a new array of ``X`` rather than using it in place (a NumPy
        array, memory-mapped or not, already in the network's dtype on the NumPy backend,
        with no standardization to apply), for memory estimates."""
        spec = self.spec
        in_place = (
            spec.backend == "numpy"
            and isinstance(X, np.ndarray)
            and X.dtype == np.dtype(spec.dtype)
            and not (standardize or self.standardized)
        )
        return not in_place

    def targets(self, y: Any, m: int, *, name: str = "y") -> tuple[Array, Array]:
        """Labels (m,) or targets (m, n_L), checked: the target matrix and the labels."""
        spec = self.spec
        return prepare_targets(y, m=m, n_out=spec.sizes[-1], xp=spec.xp, dtype=spec.xp_dtype,
                               unit=spec.cost.unit_targets, name=name)  # fmt: skip

    def data(self, X: Any, y: Any, *, name: str = "") -> tuple[Array, Array, Array]:
        """A data set ``(X, Y, labels)`` on the device; ``name`` prefixes the argument names
        in messages (``validation_data[0]``)."""
        x_name, y_name = (f"{name}[0]", f"{name}[1]") if name else ("X", "y")
        X_d = self.x(X, name=x_name)
        return (X_d, *self.targets(y, X_d.shape[0], name=y_name))

    def pair(self, pair: Any) -> tuple[Array, Array, Array] | None:
        """``validation_data`` as a device data set (None stays None)."""
        if pair is None:
            return None
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        return self.data(*pair, name="validation_data")

    def fit_standardization(self, X: Any) -> None:
        """Take the mean and standard deviation of each input from ``X`` (n, n_0)."""
        spec = self.spec
        host = to_host(prepare_x(X, n_features=spec.sizes[0], xp=spec.xp, dtype=spec.xp_dtype))
        self.mean, self.std = standardization(host)

    def arrays(self) -> dict[str, Host]:
        """The standardization as named host arrays for model files (empty when none)."""
        if self.mean is None or self.std is None:
            return {}
        return {"input/mean": self.mean, "input/std": self.std}
