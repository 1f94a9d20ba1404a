"""gpumlp.metrics: a regression's MSE, MAE and R² from the per-column sums a chunk of rows at a
time, scaled back to the targets' units, as scikit-learn computes them."""

from __future__ import annotations

import numpy as np
import pytest

from gpumlp.backend import get_namespace
from gpumlp.metrics import SCORES, error_sums, regression_scores, scored_keys

xp = get_namespace("numpy")


def _scores(a, y, std=None, chunk=None):
    """The scores of outputs ``a`` against targets ``y`` (both (m, k), learnt divided by
    ``std``), summed ``chunk`` rows at a time."""
    chunk = chunk or len(y)
    y_mean = y.mean(axis=0)
    sums = sum(error_sums(a[k : k + chunk], y[k : k + chunk], y_mean, xp=xp)
               for k in range(0, len(y), chunk))  # fmt: skip
    return regression_scores(sums, len(y), std)


def test_a_small_case_worked_by_hand():
    y = np.array([[1.0], [2.0], [3.0], [4.0]])  # mean 2.5, SST = 2.25 + 0.25 + 0.25 + 2.25 = 5
    a = np.array([[1.0], [2.0], [4.0], [2.0]])  # errors 0, 0, 1, -2: SSE 5, SAE 3
    assert _scores(a, y) == pytest.approx({"mse": 5 / 4, "mae": 3 / 4, "r2": 1 - 5 / 5})
    # learnt divided by std 10: errors are 10 times larger in the targets' units, R² the same
    assert _scores(a, y, std=[10.0]) == pytest.approx({"mse": 125.0, "mae": 7.5, "r2": 0.0})


def test_the_scores_are_scikit_learns_in_chunks_and_units():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.standard_normal((101, 3))
    a = y + rng.normal(0, 0.5, (101, 3))
    std, mean = np.array([50.0, 2.0, 0.1]), np.array([150.0, -3.0, 0.5])
    got = _scores(a, y, std, chunk=17)  # the scaled values; the oracle sees the units
    y_units, a_units = y * std + mean, a * std + mean
    assert got["mse"] == pytest.approx(metrics.mean_squared_error(y_units, a_units))
    assert got["mae"] == pytest.approx(metrics.mean_absolute_error(y_units, a_units))
    assert got["r2"] == pytest.approx(metrics.r2_score(y_units, a_units))


def test_a_constant_column_scores_r2_one_when_exact_else_zero():
    y = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    exact = _scores(y.copy(), y)
    assert exact["r2"] == 1.0 and exact["mse"] == 0.0
    off = y.copy()
    off[:, 1] = 6.0  # the constant column missed: 0 for it, as scikit-learn's force_finite
    assert _scores(off, y)["r2"] == pytest.approx((1.0 + 0.0) / 2)


def test_each_task_has_its_scores_and_fields():
    assert scored_keys("classification") == ("val_cost", "val_accuracy")
    assert scored_keys("regression") == ("val_cost", "val_mse", "val_mae", "val_r2")
    assert set(SCORES) == {"classification", "regression"}
