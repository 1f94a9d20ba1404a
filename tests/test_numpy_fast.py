"""Tests for gpumlp.engines._numpy_fast: the NumPy fast path against the generic step it
replaces (same math, no temporaries). Choosing an engine is in test_engines.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import gpumlp
from gpumlp.config import TrainConfig
from gpumlp.costs import VALID_PAIRS
from gpumlp.engines import _numpy_fast
from gpumlp.runstate import TrainState
from helpers.nets import HIDDEN, host


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


def test_subnormal_deltas_are_flushed_to_zero_and_nothing_else():
    tiny = np.finfo(np.float32).smallest_normal
    d = np.array([[tiny / 2, -tiny / 8, tiny, -2.0, 0.0, 3e-30]], np.float32)
    buf = SimpleNamespace(t=np.empty_like(d), mask=np.empty(d.shape, bool))
    _numpy_fast._flush_subnormals(d, buf)
    assert d.tolist() == np.array([[0, 0, tiny, -2.0, 0.0, 3e-30]], np.float32).tolist()


@pytest.mark.parametrize(
    ("sizes", "batch", "flushed"),
    [([784, 800, 10], 100, [True, True]), ([784, 30, 10], 10, [False, False]),
     ([784, 30, 10], 100, [True, False])],
)  # fmt: skip
def test_deltas_are_flushed_where_their_gemms_are_large(sizes, batch, flushed):
    net = gpumlp.Network(sizes, backend="numpy", seed=0)
    X, y = np.zeros((batch, sizes[0]), np.float32), np.zeros(batch, np.int64)
    cfg = TrainConfig(batch_size=batch)
    state = TrainState.start(net.spec, net.params, cfg, np.random.default_rng(0))
    step = _numpy_fast.NumpyStep(state, net.inputs.data(X, y))
    assert [layer.flush for layer in step._layers(batch)] == flushed


def test_a_step_with_subnormal_deltas_matches_the_generic_step():
    """Output units held near z = −84 make δ^L = (a − y) σ'(z) lr/m subnormal in float32 (the
    fast path flushes them): one step still moves every weight as the generic step does, to
    float32 rounding."""
    rng = np.random.default_rng(0)
    X = rng.random((300, 784)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    tiny = np.finfo(np.float32).smallest_normal
    params = []
    for engine in ("fused", "generic"):
        net = gpumlp.Network([784, 300, 10], backend="numpy", init="scaled", seed=0)
        w, b = [host(t) for t in net.weights], [host(t) for t in net.biases]
        b[1] = np.full(10, -84.0, np.float32)  # outputs saturated at the wrong end
        net.load_params(w, b)
        if engine == "fused":  # the deltas the step makes: some are subnormal
            a = host(net.feedforward(X)).astype(np.float32)
            delta = (a - np.eye(10, dtype=np.float32)[y]) * a * (1 - a) * np.float32(3.0 / 300)
            assert np.any((delta != 0) & (np.abs(delta) < tiny))
        net.fit(X, y, epochs=1, batch_size=300, lr=3.0, engine=engine, seed=1)
        params.append([host(t) for t in net.params.arrays()])
    for a, b in zip(*params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-30)
