"""Tests for gpumlp.train, the epoch loop: determinism and epoch orders, mini-batches as
consecutive slices, the history it records (a regression's MSE, MAE and R² in its targets'
units), learning a separable problem on every backend, and
divergence (the last good weights kept, in the first epoch and after a resume; a validation cost
that overflows while the training cost stays finite is divergence too)."""

from __future__ import annotations

import numpy as np
import pytest

import gpumlp
from gpumlp.data.mnist import load_mnist
from gpumlp.files.checkpoint import read_checkpoint
from helpers.bad_files import npz_maker
from helpers.nets import (
    VAL_OVERFLOW_FIT,
    VAL_OVERFLOW_NET,
    assert_same_params,
    host,
    params_of,
    val_overflow_problem,
)

# -- determinism and batching -------------------------------------------------------------------


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


# -- what an epoch reports, and learning --------------------------------------------------------


def test_history_records_each_epoch(blobs):
    X, y = blobs
    net = gpumlp.Network([4, 8, 3], backend="numpy", seed=0)
    hist = net.fit(X, y, epochs=3, batch_size=10, lr=1.0, validation_data=(X, y))
    assert len(hist) == 3 and [r["epoch"] for r in hist] == [0, 1, 2]
    for r in hist:
        assert r["seconds"] > 0 and 0 <= r["val_accuracy"] <= 1 and r["train_cost"] > 0
    assert hist[-1]["val_cost"] == pytest.approx(net.evaluate(X, y)["cost"], rel=1e-6)


REGRESSION_NET = dict(task="regression", activation="relu", output_activation="identity",
                      init="he", seed=0)  # fmt: skip


def _line(X):
    """Targets in the hundreds, a linear function of X (n, 4)."""
    return 500.0 + 100.0 * X[:, :1] - 40.0 * X[:, 1:2]


@pytest.fixture
def rows():
    """X (60, 4) float64, standard normal."""
    return np.random.default_rng(0).standard_normal((60, 4))


def test_a_regression_is_scored_each_epoch_by_mse_mae_and_r2_in_its_units(rows):
    # Issue 29: a regression's history recorded an "accuracy" (of argmax over one column)
    X = rows
    y = _line(X)
    net = gpumlp.Network([4, 8, 1], backend="numpy", **REGRESSION_NET)
    hist = net.fit(X[:40], y[:40], epochs=100, batch_size=8, lr=0.01, optimizer="adam",
                   standardize=True, validation_data=(X[40:], y[40:]))  # fmt: skip
    assert hist.task == "regression"
    assert list(hist[0]) == ["epoch", "lr", "train_cost", "val_cost", "val_mse", "val_mae",
                             "val_r2", "seconds"]  # fmt: skip
    assert hist.to_csv().splitlines()[0] == (
        "epoch,lr,train_cost,val_cost,val_mse,val_mae,val_r2,seconds"
    )
    last = hist[-1]
    pred = host(net.predict(X[40:]))  # values in the targets' units
    error = pred - y[40:]
    assert last["val_mse"] == pytest.approx(np.mean(error**2), rel=1e-4)
    assert last["val_mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-4)
    r2 = 1 - np.sum(error**2) / np.sum((y[40:] - y[40:].mean()) ** 2)
    assert last["val_r2"] == pytest.approx(r2, rel=1e-4, abs=1e-5) and last["val_r2"] > 0.9
    assert net.evaluate(X[40:], y[40:]) == pytest.approx(
        {"cost": last["val_cost"], "mse": last["val_mse"], "mae": last["val_mae"],
         "r2": last["val_r2"], "n": 20}, rel=1e-5)  # fmt: skip


def test_a_regression_stops_on_its_validation_cost_never_its_accuracy(rows):
    X = rows
    net = gpumlp.Network([4, 8, 1], backend="numpy", **REGRESSION_NET)
    kw = dict(epochs=30, lr=0.01, optimizer="adam", validation_data=(X[40:], _line(X[40:])))
    with pytest.raises(ValueError, match=r"stop_on='val_accuracy' \(--stop-on\): a regression "
                                         r"network has no accuracy"):  # fmt: skip
        net.fit(X[:40], _line(X[:40]), patience=3, **kw)
    hist = net.fit(X[:40], _line(X[:40]), patience=3, stop_on="val_cost", **kw)
    assert all(r["val_cost"] is not None for r in hist)


def test_learns_a_separable_problem(backend, blobs):
    X, y = blobs
    net = gpumlp.Network([4, 10, 3], backend=backend, seed=0)
    net.fit(X, y, epochs=30, batch_size=10, lr=3.0)
    assert net.evaluate(X, y)["accuracy"] == 1.0
    assert np.array_equal(host(net.predict(X)), y)


# -- divergence ---------------------------------------------------------------------------------

# A linear network: nothing saturates or dies, so a huge lr surely overflows to inf and NaN.
LINEAR = {"activation": "identity", "init": "scaled", "backend": "numpy", "seed": 0}


def linear_net():
    return gpumlp.Network([784, 16, 10], **LINEAR)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    train, _, _ = load_mnist(npz_maker(n_train=240)(tmp_path_factory.mktemp("digits")))
    return train


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_divergence_in_the_first_epoch_keeps_the_initial_weights(digits):
    X, y = digits
    n = linear_net()
    start = params_of(n)
    with pytest.raises(
        gpumlp.DivergedError, match=r"diverged in epoch 0.*try a smaller lr"
    ) as info:
        n.fit(X, y, epochs=3, batch_size=10, lr=1e6)
    assert info.value.epoch == 0
    assert len(info.value.history) == 0
    assert info.value.history.stop_reason.startswith("diverged in epoch 0 (lr=1e+06): the training")
    assert all(np.array_equal(a, b) for a, b in zip(params_of(n), start, strict=True))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_divergence_later_keeps_the_last_good_epoch(digits, tmp_path):
    X, y = digits
    good = linear_net()
    good.fit(X, y, epochs=2, batch_size=10, lr=1e-3, checkpoint=tmp_path / "c.npz")
    n = linear_net()
    with pytest.raises(gpumlp.DivergedError, match="diverged in epoch 2") as info:
        n.fit(X, y, epochs=5, batch_size=10, lr=1e6, resume=tmp_path / "c.npz")
    assert info.value.epoch == 2
    history = info.value.history
    assert [r["epoch"] for r in history] == [0, 1]
    assert history.stop_reason.startswith("diverged in epoch 2")
    assert all(np.array_equal(a, b) for a, b in zip(params_of(n), params_of(good), strict=True))
    # ... and the checkpoint holds that last good epoch, to resume from with a smaller lr
    meta, _ = read_checkpoint(tmp_path / "c.npz")
    assert meta["epoch"] == 2
    resumed = linear_net().fit(X, y, epochs=3, batch_size=10, lr=1e-3, resume=tmp_path / "c.npz")
    assert [r["epoch"] for r in resumed] == [0, 1, 2]
    assert resumed.stop_reason is None


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_non_finite_validation_cost_is_divergence():
    (X, Y), validation = val_overflow_problem()
    net = gpumlp.Network([4, 2], **VAL_OVERFLOW_NET)
    with pytest.raises(
        gpumlp.DivergedError,
        match="the validation cost became NaN or inf while the training cost stayed finite; try",
    ) as info:
        net.fit(X, Y, epochs=20, validation_data=validation, **VAL_OVERFLOW_FIT)
    k, history = info.value.epoch, info.value.history
    assert k >= 1 and [r["epoch"] for r in history] == list(range(k))
    assert history.stop_reason.startswith(f"diverged in epoch {k} (lr=0.01): the validation cost")
    assert all(np.isfinite([r["train_cost"], r["val_cost"]]).all() for r in history)
    # The weights kept are the last ones that evaluate finite: those of a k-epoch run ...
    assert np.isfinite(net.evaluate(*validation)["cost"])
    ref = gpumlp.Network([4, 2], **VAL_OVERFLOW_NET)
    ref.fit(X, Y, epochs=k, validation_data=validation, **VAL_OVERFLOW_FIT)
    assert_same_params(params_of(net), params_of(ref))
    # ... and the training cost alone would have gone on.
    alone = gpumlp.Network([4, 2], **VAL_OVERFLOW_NET)
    assert len(alone.fit(X, Y, epochs=k + 1, **VAL_OVERFLOW_FIT)) == k + 1


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_validation_set_out_of_range_from_the_start_is_named_not_blamed_on_lr():
    (X, Y), validation = val_overflow_problem(scale=1e30)
    net = gpumlp.Network([4, 2], **VAL_OVERFLOW_NET)
    start = params_of(net)
    with pytest.raises(gpumlp.DivergedError, match="diverged in epoch 0") as info:
        net.fit(X, Y, epochs=3, validation_data=validation, **VAL_OVERFLOW_FIT)
    assert "even with the weights training started from" in str(info.value)
    assert "validation inputs lie far outside" in str(info.value)
    assert "smaller lr" not in str(info.value)
    assert_same_params(params_of(net), start)
