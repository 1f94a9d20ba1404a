"""The NumPy fast path against the generic step it replaces (same math, no temporaries)."""

from __future__ import annotations

import numpy as np
import pytest

import gpumlp
from conftest import host
from gpumlp.activations import ACTIVATIONS
from gpumlp.costs import COSTS

HIDDEN = [name for name, act in ACTIVATIONS.items() if not act.output_only]
PAIRS = [
    (o, c)
    for c, cost in COSTS.items()
    for o in ACTIVATIONS
    if cost.outputs is None or o in cost.outputs
]


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
@pytest.mark.parametrize(("out", "cost"), PAIRS)
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


def test_engine_choice_is_validated():
    net = gpumlp.Network([2, 2], backend="numpy")
    X, y = np.zeros((4, 2)), np.zeros(4, dtype=int)
    with pytest.raises(ValueError, match="engine='warp'"):
        net.fit(X, y, epochs=1, batch_size=2, lr=0.1, engine="warp")
    with pytest.raises(ValueError, match="engine='graph' needs the CuPy backend"):
        net.fit(X, y, epochs=1, batch_size=2, lr=0.1, engine="graph")
    strict = pytest.importorskip("array_api_strict")
    other = gpumlp.Network([2, 2], backend=strict)
    with pytest.raises(ValueError, match="engine='fused' needs the NumPy or CuPy backend"):
        other.fit(X, y, epochs=1, batch_size=2, lr=0.1, engine="fused")
