"""Bad input across the public edge: each case asserts the exception type and that the message
names the argument (or file) at fault. Data-file and checkpoint cases live at the bottom."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import gpumlp

RNG = np.random.default_rng(0)
X = RNG.random((12, 4))
Y = RNG.integers(0, 3, 12)


def net(**kw):
    return gpumlp.Network([4, 5, 3], **{"backend": "numpy", "seed": 0, **kw})


def fit(X=X, y=Y, **kw):
    args = {"epochs": 1, "batch_size": 4, "lr": 0.1, **kw}
    return net().fit(X, y, **args)


CONSTRUCTOR_CASES = [
    ("sizes-one-layer", lambda: gpumlp.Network([4]), ValueError, "sizes must have at least 2"),
    ("sizes-empty", lambda: gpumlp.Network([]), ValueError, "sizes"),
    ("sizes-zero", lambda: gpumlp.Network([4, 0, 3]), ValueError, r"sizes\[1\] must be >= 1"),
    ("sizes-negative", lambda: gpumlp.Network([4, -2, 3]), ValueError, r"sizes\[1\]"),
    (
        "sizes-float",
        lambda: gpumlp.Network([4, 2.5, 3]),
        TypeError,
        r"sizes\[1\] must be an integer",
    ),
    ("sizes-bool", lambda: gpumlp.Network([4, True, 3]), TypeError, r"sizes\[1\]"),
    ("sizes-string", lambda: gpumlp.Network("784,30,10"), TypeError, "sizes must be a sequence"),
    ("sizes-int", lambda: gpumlp.Network(784), TypeError, "sizes must be a sequence"),
    (
        "activation-unknown",
        lambda: net(activation="swish"),
        ValueError,
        "activation='swish'.*sigmoid",
    ),
    ("activation-type", lambda: net(activation=3), TypeError, "activation must be a string"),
    (
        "activation-softmax-hidden",
        lambda: net(activation="softmax"),
        ValueError,
        "only as output_activation",
    ),
    (
        "output-unknown",
        lambda: net(output_activation="gelu"),
        ValueError,
        "output_activation='gelu'",
    ),
    ("cost-unknown", lambda: net(cost="hinge"), ValueError, "cost='hinge'.*quadratic"),
    (
        "cost-output-mismatch",
        lambda: net(output_activation="relu", cost="cross_entropy"),
        ValueError,
        "output_activation='relu'",
    ),
    ("init-unknown", lambda: net(init="xavier"), ValueError, "init='xavier'"),
    ("dtype-unknown", lambda: net(dtype="float16"), ValueError, "dtype must be one of"),
    ("backend-unknown", lambda: net(backend="tpu"), ValueError, "backend must be one of"),
    ("seed-negative", lambda: gpumlp.Network([4, 3], seed=-1), ValueError, "seed must be >= 0"),
    ("seed-float", lambda: gpumlp.Network([4, 3], seed=1.5), TypeError, "seed must be an integer"),
]

FIT_CASES = [
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
    (
        "y-label-high",
        lambda: fit(y=np.where(Y == 2, 3, Y)),
        ValueError,
        r"labels must lie in \[0, 2\]",
    ),
    ("y-label-negative", lambda: fit(y=np.where(Y == 2, -1, Y)), ValueError, "y holds labels in"),
    ("y-non-integer", lambda: fit(y=Y + 0.5), ValueError, "y must hold integer class labels"),
    ("y-nan", lambda: fit(y=np.where(Y == 2, np.nan, Y)), ValueError, "y contains NaN"),
    ("y-width", lambda: fit(y=np.eye(4)[Y]), ValueError, r"y has shape \(12, 4\)"),
    ("y-column", lambda: fit(y=Y[:, None]), ValueError, "pass class labels as a 1-D array"),
    ("y-3d", lambda: fit(y=np.eye(3)[Y][:, :, None]), ValueError, "y must be labels"),
    ("y-scalar", lambda: fit(y=3), ValueError, "y must be labels"),
    ("y-complex", lambda: fit(y=Y + 0j), TypeError, "y must be real-valued"),
    ("epochs-zero", lambda: fit(epochs=0), ValueError, "epochs must be >= 1"),
    ("epochs-float", lambda: fit(epochs=2.0), TypeError, "epochs must be an integer"),
    ("batch-zero", lambda: fit(batch_size=0), ValueError, "batch_size must be >= 1"),
    ("batch-negative", lambda: fit(batch_size=-5), ValueError, "batch_size must be >= 1"),
    ("batch-float", lambda: fit(batch_size=2.5), TypeError, "batch_size must be an integer"),
    ("lr-zero", lambda: fit(lr=0), ValueError, "lr must be > 0"),
    ("lr-negative", lambda: fit(lr=-1.0), ValueError, "lr must be > 0"),
    ("lr-nan", lambda: fit(lr=float("nan")), ValueError, "lr must be finite"),
    ("lr-string", lambda: fit(lr="0.1"), TypeError, "lr must be a real number"),
    ("l2-negative", lambda: fit(l2=-0.1), ValueError, "l2 must be >= 0"),
    ("l2-nan", lambda: fit(l2=float("nan")), ValueError, "l2 must be finite"),
    ("l1-negative", lambda: fit(l1=-1.0), ValueError, "l1 must be >= 0"),
    ("dropout-one", lambda: fit(dropout=1.0), ValueError, "dropout must be < 1"),
    (
        "momentum-high",
        lambda: fit(optimizer="momentum", momentum=1.5),
        ValueError,
        "momentum must be < 1",
    ),
    ("optimizer-unknown", lambda: fit(optimizer="lbfgs"), ValueError, "optimizer='lbfgs'"),
    ("schedule-unknown", lambda: fit(schedule="exp"), ValueError, "schedule='exp'"),
    ("plateau-no-validation", lambda: fit(schedule="plateau"), ValueError, "validation_data"),
    ("patience-no-validation", lambda: fit(patience=3), ValueError, "validation_data"),
    ("monitor-unknown", lambda: fit(monitor=["loss"]), ValueError, "monitor entry 'loss'"),
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
    ("shuffle-string", lambda: fit(shuffle="yes"), TypeError, "shuffle must be True or False"),
    (
        "ce-targets-range",
        lambda: gpumlp.Network([4, 3], cost="cross_entropy", backend="numpy").fit(
            X, np.full((12, 3), 2.0), epochs=1, batch_size=4, lr=0.1
        ),
        ValueError,
        r"y must lie in \[0, 1\]",
    ),
]

OTHER_CASES = [
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
]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [pytest.param(c, e, m, id=i) for i, c, e, m in CONSTRUCTOR_CASES + FIT_CASES + OTHER_CASES],
)
def test_bad_input_is_named(call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call()
    assert type(info.value) is exc or issubclass(type(info.value), exc)


def test_batch_size_larger_than_data_is_allowed():
    hist = fit(batch_size=10_000)
    assert len(hist) == 1


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
