"""Network behaviour: shapes, a step worked by hand, determinism, batching, numerics."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import gpumlp
from conftest import host


def test_shapes_and_init_follow_the_book():
    net = gpumlp.Network([784, 30, 10], backend="numpy", seed=0)
    assert [host(w).shape for w in net.weights] == [(30, 784), (10, 30)]
    assert [host(b).shape for b in net.biases] == [(30,), (10,)]
    assert host(net.weights[0]).dtype == np.float32
    w = host(net.weights[0])
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01  # N(0, 1)
    scaled = gpumlp.Network([784, 30, 10], init="scaled", dtype="float64", backend="numpy", seed=0)
    assert abs(host(scaled.weights[0]).std() - 784**-0.5) < 0.002
    he = gpumlp.Network([784, 30, 10], init="he", activation="relu", backend="numpy", seed=0)
    assert abs(host(he.weights[0]).std() - (2 / 784) ** 0.5) < 0.003
    assert not host(he.biases[0]).any()


def test_same_seed_same_initial_numbers_across_dtypes_and_backends():
    a = gpumlp.Network([5, 4, 3], dtype="float64", backend="numpy", seed=42)
    b = gpumlp.Network([5, 4, 3], dtype="float32", backend="numpy", seed=42)
    strict = pytest.importorskip("array_api_strict")
    c = gpumlp.Network([5, 4, 3], dtype="float64", backend=strict, seed=42)
    for ta, tb, tc in zip(a.params.arrays(), b.params.arrays(), c.params.arrays(), strict=True):
        assert np.array_equal(host(ta).astype(np.float32), host(tb))
        assert np.array_equal(host(ta), host(tc))


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


def test_same_seed_same_backend_bitwise_identical(backend, blobs):
    X, y = blobs
    runs = []
    for _ in range(2):
        net = gpumlp.Network([4, 8, 3], backend=backend, seed=5)
        net.fit(X, y, epochs=3, batch_size=7, lr=0.5)
        runs.append([host(t).copy() for t in net.params.arrays()])
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a, b)


def test_different_fit_seeds_give_different_orders(blobs):
    X, y = blobs
    nets = [gpumlp.Network([4, 8, 3], backend="numpy", seed=5) for _ in range(2)]
    for net, s in zip(nets, (1, 2), strict=True):
        net.fit(X, y, epochs=1, batch_size=7, lr=0.5, seed=s)
    assert not np.array_equal(host(nets[0].weights[0]), host(nets[1].weights[0]))


def _manual_sgd(net, X, Y, batch_size, lr):
    """Consecutive slices, the last one shorter, each a batch-mean gradient step."""
    for k in range(0, len(X), batch_size):
        gw, gb = net.gradients(X[k : k + batch_size], Y[k : k + batch_size])
        for p, g in zip(net.weights + net.biases, gw + gb, strict=True):
            p -= lr * g


def test_shuffle_false_uses_consecutive_slices_and_the_short_last_batch(blobs):
    X, y = blobs  # 90 rows at batch 20: 4 full batches and one of 10
    a = gpumlp.Network([4, 5, 3], dtype="float64", backend="numpy", seed=1)
    b = gpumlp.Network([4, 5, 3], dtype="float64", backend="numpy", seed=1)
    a.fit(X, y, epochs=1, batch_size=20, lr=0.7, shuffle=False)
    _manual_sgd(b, X, np.eye(3)[y], 20, 0.7)
    for ta, tb in zip(a.params.arrays(), b.params.arrays(), strict=True):
        np.testing.assert_allclose(host(ta), host(tb), rtol=1e-13, atol=1e-15)


def test_batch_larger_than_data_is_one_full_batch(blobs):
    X, y = blobs
    a = gpumlp.Network([4, 5, 3], dtype="float64", backend="numpy", seed=1)
    b = gpumlp.Network([4, 5, 3], dtype="float64", backend="numpy", seed=1)
    a.fit(X, y, epochs=1, batch_size=1000, lr=0.3)
    _manual_sgd(b, X, np.eye(3)[y], 1000, 0.3)
    for ta, tb in zip(a.params.arrays(), b.params.arrays(), strict=True):
        np.testing.assert_allclose(host(ta), host(tb), rtol=1e-13)


def test_history_records_each_epoch(blobs):
    X, y = blobs
    net = gpumlp.Network([4, 8, 3], backend="numpy", seed=0)
    hist = net.fit(X, y, epochs=3, batch_size=10, lr=1.0, validation_data=(X, y))
    assert len(hist) == 3 and [r["epoch"] for r in hist] == [0, 1, 2]
    for r in hist:
        assert r["seconds"] > 0 and 0 <= r["val_accuracy"] <= 1 and r["train_cost"] > 0
    assert hist[-1]["val_cost"] == pytest.approx(net.evaluate(X, y)["cost"], rel=1e-6)


def test_learns_a_separable_problem(backend, blobs):
    X, y = blobs
    net = gpumlp.Network([4, 10, 3], backend=backend, seed=0)
    net.fit(X, y, epochs=30, batch_size=10, lr=3.0)
    assert net.evaluate(X, y)["accuracy"] == 1.0
    assert np.array_equal(host(net.predict(X)), y)


def test_sigmoid_saturates_without_overflow_warnings():
    net = gpumlp.Network([1, 1], dtype="float64", backend="numpy")
    net.load_params([[[1.0]]], [[0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = host(net.feedforward([[1000.0], [-1000.0]]))
    # below sigmoid_floor (−709 in float64) σ is held under the smallest normal number
    assert out[0, 0] == 1.0 and 0.0 <= out[1, 0] < np.finfo(np.float64).tiny


@pytest.mark.parametrize(("output", "cost"), [("sigmoid", "cross_entropy"),
                                               ("softmax", "cross_entropy"),
                                               ("softmax", "log_likelihood")])
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


def test_single_output_unit_takes_binary_labels():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    net = gpumlp.Network([2, 1], cost="cross_entropy", backend="numpy", seed=0)
    net.fit(X, y, epochs=20, batch_size=10, lr=1.0)
    assert net.evaluate(X, y)["accuracy"] > 0.97
    assert set(np.unique(host(net.predict(X)))) <= {0, 1}


def test_load_params_accepts_book_column_biases_and_checks_shapes():
    net = gpumlp.Network([3, 2], backend="numpy")
    net.load_params([np.ones((2, 3))], [np.ones((2, 1))])
    assert host(net.biases[0]).shape == (2,)
    with pytest.raises(ValueError, match=r"weights\[0\].*\(2, 3\)"):
        net.load_params([np.ones((3, 2))], [np.ones(2)])
    with pytest.raises(ValueError, match="expected 1 weight"):
        net.load_params([np.ones((2, 3))] * 2, [np.ones(2)] * 2)
    with pytest.raises(ValueError, match=r"biases\[0\] contains NaN"):
        net.load_params([np.ones((2, 3))], [np.array([1.0, np.nan])])


def test_feedforward_in_chunks_equals_one_pass():
    net = gpumlp.Network([6, 5, 4], dtype="float64", backend="numpy", seed=0)
    X = np.random.default_rng(1).standard_normal((23, 6))
    np.testing.assert_array_equal(host(net.feedforward(X, chunk=5)), host(net.feedforward(X)))


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
