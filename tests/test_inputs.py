"""Tests for gpumlp.inputs and the value checks of gpumlp._checks: every array a network takes
is checked as the network's dtype holds it. A finite float64 value that overflows float32
(1e300) is refused naming the argument and the dtype on every path (``fit``'s X, targets and
validation data, ``predict``, ``predict_proba``, ``evaluate``, ``load_params``, inputs already
on a device), never turned into inf and blamed on the learning rate later."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpumlp
import gpumlp._checks as checks
from gpumlp._checks import finite_host_array, first_nonfinite
from gpumlp.files.npyview import open_rows
from helpers.bad_files import resigned
from helpers.nets import (
    HUGE,
    SMALL_X,
    SMALL_Y,
    assert_same_params,
    params_of,
    small_fit,
    small_net,
    with_value,
)

X_BAD = with_value(SMALL_X, (3, 2))
Y_ONEHOT = np.eye(3)[SMALL_Y]
Y_BAD = with_value(Y_ONEHOT, (5, 1))


def _load_params(net, which):
    weights = [w.astype(np.float64) for w in params_of(net)[0::2]]
    biases = [b.astype(np.float64) for b in params_of(net)[1::2]]
    (weights if which == "weights" else biases)[1][0] = HUGE
    net.load_params(weights, biases)


OVERFLOWS = [
    ("fit-X", lambda net: small_fit(net=net, X=X_BAD), r"X holds .*1e\+300.* at index \(3, 2\)"),
    (
        "fit-targets",
        lambda net: small_fit(net=net, y=Y_BAD),
        r"y holds .*1e\+300.* at index \(5, 1\)",
    ),
    (
        "fit-validation-X",
        lambda net: small_fit(net=net, validation_data=(X_BAD, SMALL_Y)),
        r"validation_data\[0\] holds .*1e\+300.* at index \(3, 2\)",
    ),
    (
        "fit-validation-targets",
        lambda net: small_fit(net=net, validation_data=(SMALL_X, Y_BAD)),
        r"validation_data\[1\] holds .*1e\+300",
    ),
    (
        "fit-standardize",
        lambda net: small_fit(net=net, X=X_BAD, standardize=True),
        r"X holds .*1e\+300",
    ),
    ("predict", lambda net: net.predict(X_BAD), r"X holds .*1e\+300"),
    ("predict_proba", lambda net: net.predict_proba(X_BAD), r"X holds .*1e\+300"),
    ("evaluate-X", lambda net: net.evaluate(X_BAD, SMALL_Y), r"X holds .*1e\+300"),
    ("evaluate-targets", lambda net: net.evaluate(SMALL_X, Y_BAD), r"y holds .*1e\+300"),
    ("load_params-weights", lambda net: _load_params(net, "weights"), r"weights\[1\] holds"),
    ("load_params-biases", lambda net: _load_params(net, "biases"), r"biases\[1\] holds"),
]


@pytest.mark.filterwarnings("error")  # no overflow on the way: the value is refused first
@pytest.mark.parametrize(("call", "match"), [pytest.param(*c[1:], id=c[0]) for c in OVERFLOWS])
def test_a_value_that_overflows_float32_is_refused_naming_the_argument(call, match):
    net = small_net()
    before = params_of(net)
    with pytest.raises(ValueError, match=match) as info:
        call(net)
    message = str(info.value)
    assert "overflows float32, the network's dtype" in message
    assert "lr" not in message  # not a learning rate problem
    assert_same_params(params_of(net), before)  # refused before anything changed


def test_the_same_values_are_fine_in_float64():
    net = small_net(dtype="float64")
    small_fit(X_BAD, net=net)
    assert np.all(np.isfinite(net.predict_proba(X_BAD)))


@pytest.mark.filterwarnings("error")  # the int64 cast of 1e300 would warn and wrap
def test_a_huge_float_label_is_out_of_range_not_wrapped():
    y = with_value(SMALL_Y, 0)
    with pytest.raises(ValueError, match=r"y holds labels in \[0, 1e\+300\] .* \[0, 2\]"):
        small_fit(y=y)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (HUGE, "X holds values that overflow float32, the network's dtype"),
        (np.nan, "X contains NaN or inf"),
    ],
)
def test_inputs_already_on_a_device_are_checked_there(value, match):
    xps = pytest.importorskip("array_api_strict")
    net = small_net(backend=xps)
    with pytest.raises(ValueError, match=match), np.errstate(over="ignore"):
        net.predict(xps.asarray(with_value(SMALL_X, (0, 0), value)))


NEAR_MAX = with_value(SMALL_X, (3, 2), 3e38).astype(np.float32)  # finite in float32
"""Past float32's largest value over 4 (8.5e37): a first-layer sum of 4 such inputs overflows."""
IN_SUMS = (
    r"X holds np.float32\(3e\+38\) at index \(3, 2\), past ±8.51e\+37, where the first "
    r"layer's sums over 4 inputs overflow float32, the network's dtype: scale the data, or use "
    r"dtype='float64'$"
)


@pytest.mark.filterwarnings("error")  # the first product overflowed, with a warning at best
@pytest.mark.parametrize(
    "call",
    [
        lambda net: small_fit(net=net, X=NEAR_MAX),
        lambda net: net.predict(NEAR_MAX),
        lambda net: net.evaluate(NEAR_MAX, SMALL_Y),
    ],
    ids=["fit", "predict", "evaluate"],
)
def test_inputs_whose_first_layer_sums_overflow_are_refused(call):
    net = small_net()
    before = params_of(net)
    with pytest.raises(ValueError, match=IN_SUMS):
        call(net)
    assert_same_params(params_of(net), before)
    small_fit(net=net, X=with_value(SMALL_X, (3, 2), 8e37).astype(np.float32))  # within: fine


def test_inputs_on_a_device_whose_first_layer_sums_overflow_are_refused():
    xps = pytest.importorskip("array_api_strict")
    net = small_net(backend=xps)
    with pytest.raises(ValueError, match=r"^X holds 3e\+38, past ±8.51e\+37, where the first"):
        net.predict(xps.asarray(NEAR_MAX))


def test_the_same_inputs_are_fine_in_float64():
    net = small_net(dtype="float64")
    assert net.predict(NEAR_MAX).shape == (12,)


def test_first_nonfinite_in_a_dtype_looks_a_block_at_a_time(monkeypatch):
    monkeypatch.setattr(checks, "_BLOCK_BYTES", 64)  # 1 row of 8 float64 per block
    X = np.zeros((9, 8))
    X[6, 5] = HUGE
    assert first_nonfinite(X) is None  # finite as float64
    assert first_nonfinite(X, "float64") is None
    assert first_nonfinite(X, "float32") == (6, 5)
    X[7, 0] = np.inf
    with np.errstate(over="ignore"):
        assert first_nonfinite(X.astype(np.float32)) == (6, 5)  # the cast made it inf
    with pytest.raises(ValueError, match=r"X holds np.float64\(1e\+300\) at index \(6, 5\)"):
        finite_host_array("X", X, "float32")
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index \(2, 1\)\)"):
        finite_host_array("X", X, "float32")


def test_a_float32_memmap_is_checked_without_a_copy(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, SMALL_X.astype(np.float32))
    X = np.load(path, mmap_mode="r")
    assert finite_host_array("X", X, "float32") is X


@pytest.mark.parametrize(
    "how",
    [{"backend": "array_api_strict"}, {"dtype": "float64"}, {"standardize": True}],
    ids=["another-namespace", "another-dtype", "standardized"],
)
def test_a_file_read_as_it_is_used_is_copied_once_where_it_cannot_be(tmp_path, how):
    # X.npy as gpumlp reads it (files/npyview) is used in place only by NumPy in its own dtype.
    # Elsewhere (another namespace, as CuPy's whole-epoch engines are; a cast; standardization)
    # it is read once, through the same checked reads, into memory: a file cut afterwards
    # changes nothing, and the result equals training on the array.
    path = tmp_path / "X.npy"
    np.save(path, SMALL_X.astype(np.float32))
    net_kw = {k: v for k, v in how.items() if k != "standardize"}
    if net_kw.get("backend") == "array_api_strict":
        net_kw["backend"] = pytest.importorskip("array_api_strict")
    fit_kw = {"standardize": how.get("standardize", False), "epochs": 3}
    whole = small_net(**net_kw)
    small_fit(SMALL_X.astype(np.float32), SMALL_Y, net=whole, **fit_kw)

    def cut(record):
        os.truncate(path, 10)

    net = small_net(**net_kw)
    history = small_fit(open_rows(path), SMALL_Y, net=net, on_epoch=cut, **fit_kw)
    assert len(history) == 3 and history.stop_reason is None
    assert_same_params(params_of(net), params_of(whole))


def test_load_of_a_model_file_with_an_overflowing_parameter(tmp_path, model_file):
    from gpumlp.files.checkpoint import CheckpointError

    # float64 arrays in a float32 model file, one of them past float32's range
    resigned(
        model_file,
        tmp_path / "m.npz",
        change_arrays=lambda arrays: arrays | {"param/2": with_value(arrays["param/2"], (1, 1))},
    )
    with pytest.raises(CheckpointError, match=r"m\.npz.*weights\[1\] holds .* overflows float32"):
        gpumlp.load(tmp_path / "m.npz", backend="numpy")


def test_fit_standardize_takes_the_training_statistics_and_scores_validation_with_them():
    # The statistics come from the training inputs as the network's dtype holds them (a
    # constant column gets std 1), and the validation cost of the last epoch is the cost of
    # the validation inputs standardized with them, as evaluate computes it.
    rng = np.random.default_rng(4)
    X = rng.normal(5.0, 3.0, (200, 4))
    X[:, 2] = 7.0
    y = rng.integers(0, 3, 200)
    X_val, y_val = rng.normal(5.0, 3.0, (60, 4)), rng.integers(0, 3, 60)
    net = gpumlp.Network([4, 6, 3], backend="numpy", seed=0)
    history = net.fit(X, y, epochs=1, batch_size=20, lr=0.5, standardize=True,
                      validation_data=(X_val, y_val), monitor=("val_cost",))  # fmt: skip
    held = X.astype(np.float32).astype(np.float64)
    std = held.std(axis=0)
    std[2] = 1.0
    np.testing.assert_allclose(net.inputs.mean, held.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(net.inputs.std, std, rtol=1e-12)
    assert net.standardized
    expected = net.evaluate(X_val, y_val)["cost"]
    assert history.column("val_cost")[-1] == pytest.approx(expected, rel=1e-6)
