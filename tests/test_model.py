"""Tests for gpumlp.model: the ``Network`` facade's inputs (bad data refused with a message
naming the argument; integer, bool and any finite data accepted), ``load_params``, binary
labels on one output unit, forward passes in chunks (predict, evaluate, validation), the seed
drawn and recorded so a run repeats, ``fit``'s defaults (the CLI's), ``predict_proba``, and the
exceptions exported with it."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import gpumlp
from gpumlp.config import TrainConfig
from gpumlp.runs.rundir import TRAIN_DEFAULTS
from helpers.bad_files import raises_exactly
from helpers.nets import SMALL_X as X
from helpers.nets import SMALL_Y as Y
from helpers.nets import assert_same_params, history_columns, host, params_of
from helpers.nets import small_fit as fit
from helpers.nets import small_net as net

# -- bad input at the public edge ---------------------------------------------------------------

DATA_CASES = [
    ("X-1d", lambda: fit(X=X[:, 0]), ValueError, "X must be 2-D"),
    ("X-3d", lambda: fit(X=X[:, :, None]), ValueError, "X must be 2-D"),
    ("X-width", lambda: fit(X=X[:, :3]), ValueError, r"X has 3 features.*sizes\[0\]"),
    ("X-empty", lambda: fit(X=X[:0], y=Y[:0]), ValueError, "X is empty"),
    ("X-nan", lambda: fit(X=np.where(X > 0.9, np.nan, X)), ValueError, "X contains NaN or inf"),
    ("X-inf", lambda: fit(X=np.where(X > 0.9, np.inf, X)), ValueError, "X contains NaN or inf"),
    ("X-complex", lambda: fit(X=X + 1j), TypeError, "X must be real-valued"),
    ("X-strings", lambda: fit(X=X.astype(str)), TypeError, "X must be numeric"),
    ("X-object", lambda: fit(X=np.array([[object()] * 4] * 12)), TypeError, "X holds non-numeric"),
    (
        "X-ragged",
        lambda: fit(X=[[1.0, 2.0, 3.0, 4.0], [1.0]] * 6),
        ValueError,
        "X is not a rectangular",
    ),
    ("X-none", lambda: fit(X=None), TypeError, "X"),
    ("y-length", lambda: fit(y=Y[:-1]), ValueError, "y has 11 entries but X has 12"),
    (  # 1, 2, 3 for 3 outputs are classes; 0, 1, 2, 3 are one too many
        "y-label-high",
        lambda: fit(y=np.where(np.arange(12) == 0, 3, Y)),
        ValueError,
        r"y holds 4 distinct labels \(0, 1, 2, 3\) for a network of 3 output units: give 3",
    ),
    (
        "y-label-negative",
        lambda: fit(y=np.where(np.arange(12) == 0, -1, Y)),
        ValueError,
        r"y holds 4 distinct labels \(-1, 0, 1, 2\)",
    ),
    ("y-non-integer", lambda: fit(y=Y + 0.5), ValueError, "y must hold integer class labels"),
    ("y-nan", lambda: fit(y=np.where(Y == 2, np.nan, Y)), ValueError, "y contains NaN"),
    ("y-width", lambda: fit(y=np.eye(4)[Y]), ValueError, r"y has shape \(12, 4\)"),
    ("y-column", lambda: fit(y=Y[:, None]), ValueError, "pass class labels as a 1-D array"),
    ("y-3d", lambda: fit(y=np.eye(3)[Y][:, :, None]), ValueError, "y must be labels"),
    ("y-scalar", lambda: fit(y=3), ValueError, "y must be labels"),
    ("y-complex", lambda: fit(y=Y + 0j), TypeError, "y must be real-valued"),
    (
        "validation-not-pair",
        lambda: fit(validation_data=X),
        TypeError,
        "validation_data must be a pair",
    ),
    (
        "validation-width",
        lambda: fit(validation_data=(X[:, :2], Y)),
        ValueError,
        r"validation_data\[0\]",
    ),
    (
        "validation-labels",
        lambda: fit(validation_data=(X, Y + 7)),
        ValueError,
        r"validation_data\[1\]",
    ),
    (
        "ce-targets-range",
        lambda: gpumlp.Network([4, 3], cost="cross_entropy", backend="numpy").fit(
            X, np.full((12, 3), 2.0), epochs=1, batch_size=4, lr=0.1
        ),
        ValueError,
        r"y must lie in \[0, 1\]",
    ),
]

METHOD_CASES = [
    ("predict-width", lambda: net().predict(X[:, :2]), ValueError, "X has 2 features"),
    ("evaluate-length", lambda: net().evaluate(X, Y[:3]), ValueError, "y has 3 entries"),
    ("gradients-nan", lambda: net().gradients(X * np.nan, Y), ValueError, "X contains NaN"),
    ("chunk-zero", lambda: net().feedforward(X, chunk=0), ValueError, "chunk must be >= 1"),
    (
        "load-params-count",
        lambda: net().load_params([np.ones((5, 4))], [np.ones(5)]),
        ValueError,
        "expected 2 weight",
    ),
    (
        "load-params-shape",
        lambda: net().load_params([np.ones((4, 5)), np.ones((3, 5))], [np.ones(5), np.ones(3)]),
        ValueError,
        r"weights\[0\] must have shape \(5, 4\)",
    ),
    (
        "load-params-strings",
        lambda: net().load_params(
            [np.full((5, 4), "a"), np.ones((3, 5))], [np.ones(5), np.ones(3)]
        ),
        TypeError,
        r"weights\[0\]",
    ),
    (
        "load-params-complex",
        lambda: net().load_params(
            [np.ones((5, 4)) + 1j, np.ones((3, 5))], [np.ones(5), np.ones(3)]
        ),
        TypeError,
        r"weights\[0\] must be real-valued",
    ),
]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [pytest.param(c, e, m, id=i) for i, c, e, m in DATA_CASES + METHOD_CASES],
)
def test_bad_input_is_named(call, exc, match):
    with raises_exactly(exc, match):
        call()


def test_integer_and_bool_inputs_are_accepted():
    fit(X=(X > 0.5).astype(np.int64))
    fit(X=X > 0.5)
    fit(y=Y.astype(np.float64))  # integral floats are labels


@settings(max_examples=25, deadline=None)
@given(
    x=arrays(np.float64, (6, 4), elements=st.floats(-1e6, 1e6, allow_nan=False)),
    y=arrays(np.int64, (6,), elements=st.integers(0, 2)),
    batch=st.integers(1, 8),
)
def test_any_finite_input_trains_without_error(x, y, batch):
    n = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    try:
        n.fit(x, y, epochs=1, batch_size=batch, lr=0.1)
    except gpumlp.DivergedError:
        pass  # a legitimate, named outcome for inputs as large as 1e6
    assert all(np.isfinite(np.asarray(t)).all() for t in n.params.arrays())


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


# -- forward passes in chunks -------------------------------------------------------------------


def test_feedforward_in_chunks_equals_one_pass():
    net = gpumlp.Network([6, 5, 4], dtype="float64", backend="numpy", seed=0)
    X = np.random.default_rng(1).standard_normal((23, 6))
    np.testing.assert_array_equal(host(net.feedforward(X, chunk=5)), host(net.feedforward(X)))


@pytest.fixture
def rows_seen(monkeypatch) -> dict[str, list[int]]:
    """Record the rows of every forward pass made by the Network facade and by evaluation."""
    import gpumlp.model
    import gpumlp.train

    seen = {"model": [], "train": []}
    for module in (gpumlp.model, gpumlp.train):
        real, key = module.feedforward, module.__name__.split(".")[-1]

        def spy(params, x, *args, _real=real, _key=key, **kwargs):
            seen[_key].append(x.shape[0])
            return _real(params, x, *args, **kwargs)

        monkeypatch.setattr(module, "feedforward", spy)
    return seen


def test_predict_and_evaluate_work_in_chunks(rows_seen):
    rng = np.random.default_rng(0)
    X, y = rng.random((25, 4)), rng.integers(0, 3, 25)
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    whole = np.asarray(net.feedforward(X, chunk=1000))
    assert rows_seen["model"] == [25]
    rows_seen["model"].clear()
    assert np.array_equal(np.asarray(net.feedforward(X, chunk=10)), whole)
    assert rows_seen["model"] == [10, 10, 5]
    rows_seen["model"].clear()
    assert np.array_equal(np.asarray(net.predict(X, chunk=7)), whole.argmax(axis=1))
    assert rows_seen["model"] == [7, 7, 7, 4]
    chunked, whole = net.evaluate(X, y, chunk=9), net.evaluate(X, y, chunk=100)
    assert chunked["accuracy"] == whole["accuracy"]
    assert chunked["cost"] == pytest.approx(whole["cost"], rel=1e-6)  # float32 sums, reordered
    assert rows_seen["train"] == [9, 9, 7, 25]


def test_validation_during_fit_works_in_chunks(rows_seen, monkeypatch):
    import gpumlp.model

    monkeypatch.setattr(gpumlp.model, "DEFAULT_CHUNK", 10)
    rng = np.random.default_rng(0)
    X, y = rng.random((30, 4)), rng.integers(0, 3, 30)
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    net.fit(X, y, epochs=2, batch_size=30, lr=0.1, validation_data=(X[:25], y[:25]))
    assert rows_seen["train"] == [10, 10, 5] * 2


# -- every run can be repeated ------------------------------------------------------------------


def test_a_drawn_seed_is_recorded_and_repeats_the_run(blobs):
    X, y = blobs
    kw = dict(epochs=2, lr=0.5, validation_data=(X, y))
    first, other = gpumlp.Network([4, 6, 3]), gpumlp.Network([4, 6, 3])
    assert isinstance(first.seed, int) and first.seed != other.seed  # drawn, not fixed
    history = first.fit(X, y, **kw)
    assert history.seed == first.seed and f"seed={first.seed})" in repr(history)
    again = gpumlp.Network([4, 6, 3], seed=history.seed)
    assert history_columns(again.fit(X, y, **kw)) == history_columns(history)
    assert_same_params(params_of(again), params_of(first))


def test_a_loaded_network_draws_and_records_a_seed_too(blobs, model_file):
    X, y = blobs
    net = gpumlp.load(model_file, backend="numpy")
    assert net.seed is None  # the file does not know it
    history = net.fit(X, y, epochs=2, lr=0.5)
    assert isinstance(history.seed, int)
    again = gpumlp.load(model_file, backend="numpy")
    again.fit(X, y, epochs=2, lr=0.5, seed=history.seed)
    assert_same_params(params_of(again), params_of(net))


def test_fit_defaults_are_the_command_lines():
    defaults = inspect.signature(gpumlp.Network.fit).parameters
    for name, book in (("epochs", 30), ("batch_size", 10), ("lr", 3.0)):
        assert defaults[name].default == TRAIN_DEFAULTS[name] == getattr(TrainConfig(), name)
        assert TRAIN_DEFAULTS[name] == book
    assert defaults["verbose"].default == 0  # quiet in the API ...
    assert "0, the default, prints nothing" in " ".join(gpumlp.Network.fit.__doc__.split())


# -- habits users bring: predict_proba, OutOfMemory ---------------------------------------------


def test_a_regression_predicts_values_and_has_no_class_scores():
    # Issue 29: predict gave 0/1 (one output unit past 0.5) for a regression
    y = 1000.0 + 500.0 * X[:, :1]
    reg = gpumlp.Network([4, 6, 1], task="regression", activation="relu",
                         output_activation="identity", init="he", seed=0)  # fmt: skip
    reg.fit(X, y, epochs=200, batch_size=4, lr=0.01, optimizer="adam", standardize=True)
    values = host(reg.predict(X))
    assert values.shape == (12, 1) and values.dtype == np.float64
    assert np.array_equal(values, host(reg.predict_values(X)))
    assert np.abs(values - y).max() < 50.0  # in the targets' units, not 0/1
    assert reg.target_scaling.mean[0] == pytest.approx(y.mean())
    assert "regression" in repr(reg) and "regression" in reg.summary()
    with pytest.raises(ValueError, match="a regression network has none"):
        reg.predict_proba(X)
    with pytest.raises(ValueError, match="predict_values is for a regression network"):
        net().predict_values(X)
    with pytest.raises(ValueError, match="task='ranking' is not a task"):
        gpumlp.Network([4, 1], task="ranking")


def test_predict_proba_of_a_softmax_output_sums_to_one():
    net = gpumlp.Network([4, 5, 3], output_activation="softmax", backend="numpy", seed=0)
    p = host(net.predict_proba(X))
    assert p.shape == (12, 3) and (p > 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(p.argmax(axis=1), host(net.predict(X)))


def test_predict_proba_of_sigmoid_outputs_is_each_classs_own_score():
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    p = host(net.predict_proba(X))
    assert np.array_equal(p, host(net.feedforward(X)))  # not normalised: one score per class
    assert ((p > 0) & (p < 1)).all() and not np.allclose(p.sum(axis=1), 1.0)
    assert np.array_equal(p.argmax(axis=1), host(net.predict(X)))


def test_predict_proba_of_one_output_unit_is_both_classes():
    net = gpumlp.Network([4, 1], cost="cross_entropy", backend="numpy", seed=0)
    a, p = host(net.feedforward(X))[:, 0], host(net.predict_proba(X))
    assert p.shape == (12, 2)
    np.testing.assert_array_equal(p[:, 1], a)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(p.argmax(axis=1), host(net.predict(X)))


def test_out_of_memory_is_exported_and_a_memory_error():
    assert "OutOfMemory" in gpumlp.__all__
    assert issubclass(gpumlp.OutOfMemory, MemoryError)
    with pytest.raises(MemoryError, match=r"parameters, which need about .* TiB") as info:
        gpumlp.Network([10**6, 10**6, 10], backend="numpy")  # refused before allocating
    assert type(info.value) is gpumlp.OutOfMemory
