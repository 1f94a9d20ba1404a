"""Tests for gpumlp.network, the math: feedforward and backprop.

Backprop against its oracles: a step worked by hand (BP1-BP4), central finite differences and an
independent per-example implementation over every hidden activation x (output activation, cost)
pair (float64), random shapes, PyTorch autograd (when importable), and the NumPy result for
every other namespace. Then numerics at saturation: no overflow, finite costs and gradients.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpumlp
from gpumlp.costs import VALID_PAIRS
from helpers.nets import HIDDEN, host

# -- a step worked by hand ----------------------------------------------------------------------


def test_one_sgd_step_worked_by_hand():
    # A 1-1 network, sigmoid, quadratic cost, w = 0, b = 0, x = 1, y = 1, lr = 2:
    #   z = w·x + b = 0, a = σ(0) = 1/2, ∇_a C = a − y = −1/2, σ'(0) = a(1 − a) = 1/4,
    #   δ = −1/2 · 1/4 = −1/8 (BP1), ∂C/∂w = δ·x = −1/8 (BP4), ∂C/∂b = δ = −1/8 (BP3),
    #   so w ← 0 − 2·(−1/8) = 1/4 and b ← 1/4; cost before = ½(½ − 1)² = 1/8.
    net = gpumlp.Network([1, 1], dtype="float64", backend="numpy")
    net.load_params([[[0.0]]], [[0.0]])
    assert net.evaluate([[1.0]], [[1.0]])["cost"] == 0.125
    gw, gb = net.gradients([[1.0]], [[1.0]])
    assert host(gw[0])[0, 0] == -0.125 and host(gb[0])[0] == -0.125
    hist = net.fit([[1.0]], [[1.0]], epochs=1, batch_size=1, lr=2.0)
    assert host(net.weights[0])[0, 0] == 0.25 and host(net.biases[0])[0] == 0.25
    assert hist[0]["train_cost"] == 0.125


# -- oracles over every activation and cost -----------------------------------------------------


def _problem(sizes, m, out, cost, seed=0, labels=True, hidden="tanh"):
    """Float64 net with smooth, non-saturated weights and data (away from ReLU kinks)."""
    rng = np.random.default_rng(seed)
    net = gpumlp.Network(
        sizes,
        activation=hidden,
        output_activation=out,
        cost=cost,
        dtype="float64",
        backend="numpy",
        seed=seed,
    )
    net.load_params(
        [0.5 * rng.standard_normal((b, a)) for a, b in itertools.pairwise(sizes)],
        [0.5 * rng.standard_normal(b) for b in sizes[1:]],
    )
    X = rng.standard_normal((m, sizes[0]))
    if labels:
        y = rng.integers(0, sizes[-1], m)
    else:  # soft targets in (0, 1)
        y = rng.uniform(0.05, 0.95, (m, sizes[-1]))
    return net, X, y


def _mean_cost(net, X, y):
    return net.evaluate(X, y)["cost"]


def _finite_differences(net, X, y, eps=1e-6):
    """Central differences of the batch-mean cost for every parameter."""
    grads = []
    for t in net.params.arrays():
        g = np.zeros(t.shape)
        flat, gflat = t.reshape(-1), g.reshape(-1)  # views into the live parameter
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = _mean_cost(net, X, y)
            flat[i] = old - eps
            down = _mean_cost(net, X, y)
            flat[i] = old
            gflat[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def _rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize(("out", "cost"), VALID_PAIRS)
def test_backprop_matches_finite_differences(hidden, out, cost):
    net, X, y = _problem([3, 4, 3], 5, out, cost, labels=cost != "quadratic", hidden=hidden)
    if hidden == "relu":  # keep every unit away from the kink at 0, where σ' is not defined
        z = X @ host(net.weights[0]).T + host(net.biases[0])
        net.biases[0][...] += np.where(np.abs(z).min(axis=0) < 1e-3, 0.1, 0.0)
    gw, gb = net.gradients(X, y)
    fd = _finite_differences(net, X, y)
    for got, want in zip([t for pair in zip(gw, gb, strict=True) for t in pair], fd, strict=True):
        assert _rel_err(host(got), want) < 1e-6


def _per_example_reference(weights, biases, X, Y, hidden, out, cost):
    """The book's network.py backprop, one column-vector example at a time, then averaged.

    Written independently of gpumlp: plain NumPy, explicit Jacobians.
    """
    f = {
        "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, a: np.diag((a * (1 - a)).ravel())),
        "tanh": (np.tanh, lambda z, a: np.diag((1 - a**2).ravel())),
        "relu": (lambda z: np.maximum(z, 0), lambda z, a: np.diag((z > 0).astype(float).ravel())),
        "identity": (lambda z: z, lambda z, a: np.eye(len(z))),
        "softmax": (
            lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum(),
            lambda z, a: np.diagflat(a) - a @ a.T,
        ),
    }
    grad_a = {
        "quadratic": lambda a, y: a - y,
        "cross_entropy": lambda a, y: (a - y) / (a * (1 - a)),
        "log_likelihood": lambda a, y: -y / a,
    }[cost]
    acts = [hidden] * (len(weights) - 1) + [out]
    nw = [np.zeros_like(w) for w in weights]
    nb = [np.zeros((b.size, 1)) for b in biases]
    for x, y in zip(X, Y, strict=True):
        a, zs, as_ = x[:, None], [], [x[:, None]]
        for w, b, name in zip(weights, biases, acts, strict=True):
            z = w @ a + b[:, None]
            a = f[name][0](z)
            zs.append(z)
            as_.append(a)
        delta = f[acts[-1]][1](zs[-1], as_[-1]).T @ grad_a(as_[-1], y[:, None])
        for l in range(len(weights) - 1, -1, -1):
            nw[l] += delta @ as_[l].T
            nb[l] += delta
            if l:
                delta = f[acts[l - 1]][1](zs[l - 1], as_[l]).T @ (weights[l].T @ delta)
    m = len(X)
    return [g / m for g in nw], [g.ravel() / m for g in nb]


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize(("out", "cost"), VALID_PAIRS)
def test_backprop_matches_per_example_reference(hidden, out, cost):
    net, X, y = _problem([5, 6, 4, 3], 7, out, cost, seed=3, labels=False, hidden=hidden)
    gw, gb = net.gradients(X, y)
    rw, rb = _per_example_reference(
        [host(w) for w in net.weights], [host(b) for b in net.biases], X, y, hidden, out, cost
    )
    for got, want in zip(gw + gb, rw + rb, strict=True):
        np.testing.assert_allclose(host(got), want, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    m=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_backprop_property_random_shapes(sizes, m, seed):
    """Any layer sizes and batch size: backprop agrees with the per-example reference."""
    net, X, y = _problem(sizes, m, "sigmoid", "cross_entropy", seed=seed, labels=False)
    gw, gb = net.gradients(X, y)
    rw, rb = _per_example_reference(
        [host(w) for w in net.weights],
        [host(b) for b in net.biases],
        X,
        y,
        "tanh",
        "sigmoid",
        "cross_entropy",
    )
    for got, want in zip(gw + gb, rw + rb, strict=True):
        assert host(got).shape == want.shape
        np.testing.assert_allclose(host(got), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("out", "cost"), VALID_PAIRS)
def test_every_backend_matches_numpy_float64(backend, out, cost):
    """The math is namespace-generic: the same gradients to 1e-12 on every namespace."""
    net, X, y = _problem([4, 5, 3], 6, out, cost, seed=7)
    other = gpumlp.Network(
        [4, 5, 3],
        activation="tanh",
        output_activation=out,
        cost=cost,
        dtype="float64",
        backend=backend,
    )
    other.load_params([host(w) for w in net.weights], [host(b) for b in net.biases])
    got_w, got_b = other.gradients(X, y)
    want_w, want_b = net.gradients(X, y)
    for got, want in zip(got_w + got_b, want_w + want_b, strict=True):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(host(other.feedforward(X)), host(net.feedforward(X)), rtol=1e-12)


TORCH_ACT = {
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "identity": None,
    "softmax": "softmax",
}


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize(("out", "cost"), VALID_PAIRS)
def test_backprop_matches_torch_autograd(hidden, out, cost):
    torch = pytest.importorskip("torch")
    net, X, y = _problem([5, 6, 3], 8, out, cost, seed=11, labels=False, hidden=hidden)
    ws = [torch.tensor(host(w), requires_grad=True) for w in net.weights]
    bs = [torch.tensor(host(b), requires_grad=True) for b in net.biases]
    a = torch.tensor(X)
    for l, (w, b) in enumerate(zip(ws, bs, strict=True)):
        name = TORCH_ACT[hidden if l < len(ws) - 1 else out]
        z = a @ w.T + b
        a = (
            z
            if name is None
            else (torch.softmax(z, 1) if name == "softmax" else getattr(torch, name)(z))
        )
    Y = torch.tensor(y)
    if cost == "quadratic":
        c = 0.5 * ((a - Y) ** 2).sum(1)
    elif cost == "cross_entropy":
        c = -(Y * torch.log(a) + (1 - Y) * torch.log(1 - a)).sum(1)
    else:
        c = -(Y * torch.log(a)).sum(1)
    c.mean().backward()
    gw, gb = net.gradients(X, y)
    for got, t in zip(gw + gb, ws + bs, strict=True):
        np.testing.assert_allclose(host(got), t.grad.numpy(), rtol=1e-10, atol=1e-12)


# -- numerics at saturation --------------------------------------------------------------------


def test_sigmoid_saturates_without_overflow_warnings():
    net = gpumlp.Network([1, 1], dtype="float64", backend="numpy")
    net.load_params([[[1.0]]], [[0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = host(net.feedforward([[1000.0], [-1000.0]]))
    # below sigmoid_floor (−708 in float64) σ is held at σ(−708), the least normal it reaches
    tiny = np.finfo(np.float64).smallest_normal
    assert out[0, 0] == 1.0 and tiny <= out[1, 0] < 2 * tiny


@pytest.mark.parametrize(
    ("output", "cost"),
    [("sigmoid", "cross_entropy"), ("softmax", "cross_entropy"), ("softmax", "log_likelihood")],
)
def test_costs_finite_at_saturated_outputs(output, cost):
    net = gpumlp.Network(
        [1, 2], output_activation=output, cost=cost, dtype="float64", backend="numpy"
    )
    net.load_params([[[1.0], [-1.0]]], [[0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = net.evaluate([[1000.0]], [[0.0, 1.0]])  # a = (1, 0): the worst possible answer
        gw, _ = net.gradients([[1000.0]], [[0.0, 1.0]])
    assert math.isfinite(res["cost"]) and res["cost"] > 30
    assert np.isfinite(host(gw[0])).all()


def test_softmax_is_stable_and_sums_to_one():
    net = gpumlp.Network(
        [1, 3],
        activation="sigmoid",
        output_activation="softmax",
        cost="log_likelihood",
        dtype="float64",
        backend="numpy",
    )
    net.load_params([[[1000.0], [999.0], [-1000.0]]], [[0.0, 0.0, 0.0]])
    a = host(net.feedforward([[1.0]]))
    assert np.isfinite(a).all() and a.sum() == pytest.approx(1.0)
    assert a[0, 0] == pytest.approx(1 / (1 + math.exp(-1)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("engine", ["generic", "fused"])
def test_a_unit_saturated_at_the_wrong_end_still_gets_its_gradient(dtype, engine):
    # One sigmoid unit, z = 40, target 0, quadratic cost: ∂C/∂b = (a − y) σ'(z) = σ(40)² σ(−40)
    # ≈ 4.2e-18. The book's a(1 − a) gives exactly 0 here (σ(40) rounds to 1 in float32 and in
    # float64), so the unit could never switch off; σ(z) σ(−z) keeps the gradient, to rounding.
    want = (1 / (1 + math.exp(-40))) ** 2 / (1 + math.exp(40))
    net = gpumlp.Network([1, 1], dtype=dtype, backend="numpy")
    net.load_params([[[0.0]]], [[40.0]])
    before = host(net.biases[0])[0]
    net.fit([[1.0]], [[0.0]], epochs=1, batch_size=1, lr=1e18, engine=engine)
    step = before - host(net.biases[0])[0]  # = lr · ∂C/∂b, large enough to see in float32
    assert step == pytest.approx(1e18 * want, rel=1e-5)
