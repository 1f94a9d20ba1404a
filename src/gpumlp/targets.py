"""Regression targets standardized for training, and the network's outputs back in their units.

A network with identity outputs and the quadratic cost learns targets of any scale, but its
He-initialised outputs start near 0 with spread 1: targets in the hundreds (diabetes' 25 to
346) give first gradients hundreds of times too large for one learning rate to suit every
data set. Training on ``(y − mean) / std`` per column and answering ``a · std + mean`` keeps
the learning rate meaningful; the mean and standard deviation are the training targets' (the
same formula as the inputs', :func:`gpumlp._checks.standardization`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import standardization

__all__ = ["TargetScaling"]

Host = np.ndarray[Any, Any]


@dataclass(frozen=True)
class TargetScaling:
    """Per-column ``mean`` and ``std`` (k,) float64 of training targets (a constant column
    gets std 1, so it is only shifted)."""

    mean: Host
    std: Host

    @classmethod
    def fit(cls, y: Host) -> TargetScaling:
        """The scaling of targets ``y`` (n, k), real and finite (checked by the caller)."""
        y = np.asarray(y)
        if y.ndim != 2:
            raise ValueError(f"targets must be 2-D (n, k), got shape {y.shape}")
        mean, std = standardization(y)
        return cls(mean, std)

    def scaled(self, y: Host) -> Host:
        """``(y − mean) / std``: targets (m, k) as the network learns them, float64."""
        return (np.asarray(y, dtype=np.float64) - self.mean) / self.std

    def unscaled(self, a: Host) -> Host:
        """``a · std + mean``: the network's outputs (m, k) in the targets' units, float64."""
        return np.asarray(a, dtype=np.float64) * self.std + self.mean
