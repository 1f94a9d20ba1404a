"""Tests for gpumlp._numpy_fast: the NumPy fast path against the generic step it replaces (same
math, no temporaries). Choosing an engine is in test_engines.py."""

from __future__ import annotations

import numpy as np
import pytest

import gpumlp
from conftest import HIDDEN, host
from gpumlp.costs import VALID_PAIRS


def _train(engine, hidden, out, cost, dtype="float64", **fit):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, 5))  # 37 rows at batch 8: four full batches and a short one
    y = rng.integers(0, 3, 37)
    net = gpumlp.Network(
        [5, 6, 4, 3],
        activation=hidden,
        output_activation=out,
        cost=cost,
        init="scaled",
        dtype=dtype,
        backend="numpy",
        seed=1,
    )
    hist = net.fit(X, y, epochs=2, batch_size=8, lr=0.3, engine=engine, seed=2, **fit)
    return [host(t).copy() for t in net.params.arrays()], hist


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize(("out", "cost"), VALID_PAIRS)
def test_fused_equals_generic_for_every_activation_and_cost(hidden, out, cost):
    fast, hf = _train("fused", hidden, out, cost)
    ref, hg = _train("generic", hidden, out, cost)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert hf[-1]["train_cost"] == pytest.approx(hg[-1]["train_cost"], rel=1e-12)


@pytest.mark.parametrize(
    "fit",
    [
        {"optimizer": "momentum"},
        {"optimizer": "nesterov", "momentum": 0.5},
        {"optimizer": "adam"},
        {"l2": 5.0, "l1": 0.5},
        {"dropout": 0.3},
        {"dropout": 0.2, "optimizer": "adam", "l2": 1.0},
    ],
)
def test_fused_equals_generic_with_optimizers_penalties_and_dropout(fit):
    fast, _ = _train("fused", "relu", "softmax", "log_likelihood", **fit)
    ref, _ = _train("generic", "relu", "softmax", "log_likelihood", **fit)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_fused_float32_within_rounding():
    fast, _ = _train("fused", "sigmoid", "sigmoid", "quadratic", dtype="float32")
    ref, _ = _train("generic", "sigmoid", "sigmoid", "quadratic", dtype="float32")
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
