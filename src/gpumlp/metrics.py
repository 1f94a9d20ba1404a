"""What a network's outputs score against the truth, for each task: every formula written once.

A network either classifies (its outputs score each class: the class is the largest output,
or for one unit whether it passes 0.5) or regresses (its outputs are the targets' values).
Classification is scored by its accuracy (:func:`gpumlp.engines.steps.hits` counts the right
rows). Regression is scored in the targets' own units by the mean squared error (MSE), the mean
absolute error (MAE) and the coefficient of determination R² = 1 − SSE/SST, each taken per
target column and averaged over the columns, as scikit-learn's ``mean_squared_error``,
``mean_absolute_error`` and ``r2_score`` take them (a constant column scores R² 1 when it is
predicted exactly, else 0). A network trained on standardized targets
(:class:`gpumlp.targets.TargetScaling`) has its errors scaled back by each column's standard
deviation.

The device part, :func:`error_sums`, adds up per-column sums a chunk of rows at a time with no
host read; :func:`regression_scores` turns them, read back once, into the three numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arraytypes import Array, Namespace

__all__ = ["SCORES", "TASKS", "error_sums", "regression_scores", "scored_keys", "task_monitors"]

TASKS = ("classification", "regression")
"""What a network's outputs are: scores of classes, or values of the targets."""

SCORES: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "regression": ("mse", "mae", "r2"),
}
"""The scores of each task, besides the cost, as ``evaluate`` names them (a history's
``val_<score>``)."""


def scored_keys(task: str) -> tuple[str, ...]:
    """The fields of an epoch's record measured on the scored split for ``task``:
    ``val_cost`` and ``val_<score>`` for each of its :data:`SCORES`."""
    return ("val_cost", *(f"val_{s}" for s in SCORES[task]))


def task_monitors(task: str) -> tuple[str, ...]:
    """The fields of an epoch's record a network of ``task`` measures, in order: ``train_cost``,
    ``train_accuracy`` (classification's alone) and :func:`scored_keys`."""
    train = ("train_cost", "train_accuracy") if task == "classification" else ("train_cost",)
    return (*train, *scored_keys(task))


def error_sums(a: Array, y: Array, y_mean: Array, *, xp: Namespace) -> Array:
    """Per-column sums of the rows of outputs ``a`` (m, k) against targets ``y`` (m, k):
    a device array (3, k) of Σ(a − y)², Σ|a − y| and Σ(y − y_mean)², ``y_mean`` (k,) the mean
    target of the whole scored split (so chunks add up to the split's SST)."""
    error = a - y
    spread = y - y_mean[None, :]
    return xp.stack(
        [
            xp.sum(error * error, axis=0),
            xp.sum(xp.abs(error), axis=0),
            xp.sum(spread * spread, axis=0),
        ]
    )


def regression_scores(sums: Any, n: int, std: Any = None) -> dict[str, float]:
    """``{"mse", "mae", "r2"}`` from the :func:`error_sums` ``sums`` (3, k), read back to the
    host, of ``n`` rows; ``std`` (k,) the standard deviation of each target column the
    network learnt them divided by (None: learnt as they are)."""
    sse, sae, sst = np.asarray(sums, dtype=np.float64)
    scale = np.ones_like(sse) if std is None else np.asarray(std, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.where(sse == 0, 1, 0))
    return {
        "mse": float(np.mean(sse * scale**2) / n),
        "mae": float(np.mean(sae * scale) / n),
        "r2": float(np.mean(r2)),
    }
