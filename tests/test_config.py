"""Tests for gpumlp.config: bad network arguments (``ModelSpec``, built by ``Network(...)``) and
bad training settings (``TrainConfig``, built by ``fit``) are refused, each with the exception
type and a message naming the argument."""

from __future__ import annotations

import pytest

import gpumlp
from helpers.bad_files import raises_exactly
from helpers.nets import small_fit as fit
from helpers.nets import small_net as net

MODEL_CASES = [
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
    *(
        (f"sizes-{kind}", lambda s=s: gpumlp.Network(s), TypeError, f"got a {kind}: ")
        for kind, s in [
            ("dict", {4: 1, 5: 1, 3: 1}),  # its keys would make a [4, 5, 3] network
            ("set", {4, 5, 3}),
            ("bytes", b"\x04\x05\x03"),
            ("generator", (n for n in [4, 5, 3])),
        ]
    ),
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

TRAIN_CASES = [
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
    ("monitor-string", lambda: fit(monitor="val_cost"), TypeError, "got the string .val_cost."),
    ("shuffle-string", lambda: fit(shuffle="yes"), TypeError, "shuffle must be True or False"),
]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [pytest.param(c, e, m, id=i) for i, c, e, m in MODEL_CASES + TRAIN_CASES],
)
def test_bad_input_is_named(call, exc, match):
    with raises_exactly(exc, match):
        call()


def test_batch_size_larger_than_data_is_allowed():
    hist = fit(batch_size=10_000)
    assert len(hist) == 1
