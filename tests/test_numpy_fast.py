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
from gpumlp.engines.steps import GenericStep
from gpumlp.runstate import TrainState
from helpers.counting import Calls, CountingNamespace, traced
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
    buf = SimpleNamespace(t=np.empty_like(d), mask=np.empty(d.shape, bool), tiny=tiny)
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


def _counted_epochs(monkeypatch, batches, *, m=10, sizes=(784, 30, 10), **net):
    """The fast step of ``sizes`` (sigmoid, quadratic, SGD, unless ``net`` says otherwise)
    with NumPy and the array-API namespace replaced by counting stand-ins, over ``batches``
    batches of ``m`` rows: the calls and the allocations of a second epoch (the first makes
    the buffers), both monitors on."""
    calls = Calls()
    monkeypatch.setattr(_numpy_fast, "np", CountingNamespace(np, calls))
    rng = np.random.default_rng(0)
    n = batches * m
    X, y = rng.random((n, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], n)
    model = gpumlp.Network(list(sizes), backend="numpy", seed=0, **net)
    state = TrainState.start(model.spec, model.params, TrainConfig(batch_size=m), rng)
    step = _numpy_fast.NumpyStep(state, model.inputs.data(X, y))
    step.xp = CountingNamespace(step.xp, calls, "xp.")
    perm = rng.permutation(n)
    monitor = ("train_cost", "train_accuracy")
    step.epoch(perm, 3.0, 0, monitor=monitor)
    calls.clear()
    with traced() as memory:
        cost_sum, correct = step.epoch(perm, 3.0, batches, monitor=monitor)
        del cost_sum, correct
    return calls, memory


def test_a_step_makes_the_documented_numpy_calls(monkeypatch):
    """The step's cost in NumPy calls (the module docstring's count) does not grow: the same
    number per batch (an epoch's own calls, such as its two zeros, cancel out between 10 and
    20 batches)."""
    calls10, _ = _counted_epochs(monkeypatch, 10)
    calls20, _ = _counted_epochs(monkeypatch, 20)
    per_step = (calls20.total() - calls10.total()) / 10
    assert per_step == _numpy_fast.CALLS_PER_STEP, dict(calls20.count)


FAST_PAIRS = [("sigmoid", "quadratic"), ("sigmoid", "cross_entropy"),
              ("softmax", "log_likelihood")]  # fmt: skip
"""Output activation and cost of networks whose every step is free of allocations."""


@pytest.mark.parametrize(("out", "cost"), FAST_PAIRS)
def test_a_step_calls_no_python_wrapper_and_nothing_without_out(monkeypatch, out, cost):
    """Every call of a step through NumPy's namespace is a ufunc or a C function given
    ``out=``; none goes through a Python wrapper (np.sum, np.take) or the array-API namespace
    (whose calls per epoch, its two zeros, are the same for 10 and 20 batches)."""
    net = {"output_activation": out, "cost": cost}
    calls10, _ = _counted_epochs(monkeypatch, 10, **net)
    calls20, _ = _counted_epochs(monkeypatch, 20, **net)
    assert calls20.total("xp.") == calls10.total("xp."), dict(calls20.count)
    assert calls20.python <= {"xp.zeros"}, calls20.python
    assert not calls20.no_out, calls20.no_out


@pytest.mark.parametrize(("out", "cost"), FAST_PAIRS)
def test_a_step_allocates_no_array(monkeypatch, out, cost):
    """After the first epoch nothing is left behind per batch (10 and 20 batches leave the
    same blocks), and an epoch never holds more than the documented bytes above its start
    (a batch of inputs, (10, 784) float32, is 31 KB)."""
    net = {"output_activation": out, "cost": cost}
    _, memory10 = _counted_epochs(monkeypatch, 10, **net)
    _, memory20 = _counted_epochs(monkeypatch, 20, **net)
    assert memory20.left_blocks <= memory10.left_blocks, (memory10, memory20)
    assert memory20.peak_bytes <= _numpy_fast.TRANSIENT_BYTES, memory20


@pytest.mark.parametrize(
    ("sizes", "out", "cost"),
    [((5, 4, 3), out, cost) for out, cost in VALID_PAIRS] + [((5, 4, 1), "sigmoid", "quadratic")],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_epoch_sums_equal_the_generic_loops_bit_for_bit(sizes, out, cost, dtype):
    """The fast epoch's in-place training cost and hits, on the same outputs, against the
    generic loop's (``cost.fn`` and ``hits`` in xp), over several batches and a short one."""
    net = gpumlp.Network(list(sizes), output_activation=out, cost=cost, dtype=dtype,
                         backend="numpy", seed=0)  # fmt: skip
    rng = np.random.default_rng(1)
    X, y = rng.random((23, sizes[0])), rng.integers(0, max(sizes[-1], 2), 23)
    state = TrainState.start(net.spec, net.params, TrainConfig(batch_size=8), rng)
    data = net.inputs.data(X, y)
    rows = [slice(k, min(k + 8, 23)) for k in range(0, 23, 8)]  # two batches of 8, one of 7
    outputs = [rng.random((r.stop - r.start, sizes[-1])).astype(dtype) for r in rows]
    for a in outputs:
        a[0] = 0.0  # a clipped logarithm, and a tie for the argmax
    sums = []
    for step in (_numpy_fast.NumpyStep(state, data), GenericStep(state, data)):
        cost_sum, correct = np.zeros((), dtype), np.zeros((), np.int64)
        for r, a in zip(rows, outputs, strict=True):
            _, yb, labels = step.batch(r, None, labels=True)
            cost_sum = step.add_cost(cost_sum, a, yb)
            correct = step.add_hits(correct, a, labels)
        sums.append((cost_sum.dtype, cost_sum.tobytes(), int(correct)))
    assert sums[0] == sums[1]
