"""Small problems and networks, and their arrays: the hidden activations, the bad-input
tables' network and data, every (output activation, cost) pair, host copies of parameters
and the checks on them."""

from __future__ import annotations

import itertools

import numpy as np

import gpumlp
from gpumlp.activations import ACTIVATIONS
from gpumlp.costs import COSTS, VALID_PAIRS

HIDDEN = [name for name, act in ACTIVATIONS.items() if not act.output_only]
"""Every activation a hidden layer accepts (softmax is output-only)."""


_RNG = np.random.default_rng(0)
SMALL_X = _RNG.random((12, 4))
"""The bad-input tables' data: X (12, 4) float64 in [0, 1) ..."""
SMALL_Y = _RNG.integers(0, 3, 12)
"""... and y (12,) labels 0..2."""


def small_net(**kw) -> gpumlp.Network:
    """The bad-input tables' network: [4, 5, 3] on NumPy, seed 0, ``kw`` overriding."""
    return gpumlp.Network([4, 5, 3], **{"backend": "numpy", "seed": 0, **kw})


def small_fit(X=SMALL_X, y=SMALL_Y, *, net=None, **kw):
    """One epoch of ``net`` (default ``small_net()``) on (X, y) at batch size 4, lr 0.1, ``kw``
    overriding."""
    args = {"epochs": 1, "batch_size": 4, "lr": 0.1, **kw}
    return (small_net() if net is None else net).fit(X, y, **args)


CE_NET = {"cost": "cross_entropy", "backend": "numpy", "seed": 0}
"""``Network`` arguments of the resume tests' [4, 6, 3] networks."""


def fit_run(net, X, y, **kw):
    """``net.fit`` as the resume tests run it: batch 10, lr 0.5, seed 1, monitoring the training
    cost and the validation accuracy; ``kw`` overriding."""
    base = dict(batch_size=10, lr=0.5, seed=1, monitor=("train_cost", "val_accuracy"))
    return net.fit(X, y, **{**base, **kw})


ALL_PAIRS = list(itertools.product(ACTIVATIONS, COSTS))
"""Every (output activation, cost) pair of the two registries."""


INVALID_PAIRS = [pair for pair in ALL_PAIRS if pair not in VALID_PAIRS]
"""The pairs a network refuses (test_costs, test_cli_train)."""


def val_overflow_problem(scale: float = 3e17):
    """A regression whose validation cost overflows float32 while the training cost stays finite:
    ``((X, Y), (X_val, Y_val))``. Training pulls the weights of a linear [4, 2] network from
    about 1 towards 20 (Y = X·20 on inputs of about 1); the two validation rows are inputs of
    ``scale``, so their squared error (~(4·scale·|w|)²) passes float32's 3.4e38 as the weights
    grow: in epoch 7 of ``VAL_OVERFLOW_NET`` at lr 0.01 for the default scale, from the start
    for a scale of 1e30."""
    X = np.random.default_rng(0).standard_normal((100, 4))
    return (X, X @ np.full((4, 2), 20.0)), (np.full((2, 4), scale), np.zeros((2, 2)))


VAL_OVERFLOW_NET = {"activation": "identity", "backend": "numpy", "seed": 0}
VAL_OVERFLOW_FIT = {"batch_size": 10, "lr": 0.01}


def host(a) -> np.ndarray:
    """Any backend's array as a NumPy array."""
    from gpumlp.backend import to_host

    return np.asarray(to_host(a))


def on_namespace_of(host_array, data) -> object:
    """``host_array`` (NumPy) as an array of the namespace of ``data[0]`` (NumPy, CuPy, ...)."""
    import array_api_compat

    return array_api_compat.array_namespace(data[0]).asarray(np.asarray(host_array))


def params_of(net) -> list[np.ndarray]:
    """Host copies of a network's parameters: w_0, b_0, w_1, b_1, ..."""
    return [host(t).copy() for t in net.params.arrays()]


def assert_same_params(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    """Two parameter lists hold the same dtypes, shapes and bits."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), "parameters differ"


HUGE = 1e300
"""Finite in float64, inf in float32."""


def with_value(a, index, value=HUGE) -> np.ndarray:
    """A float64 copy of ``a`` with ``value`` (default :data:`HUGE`) at ``index``."""
    a = np.array(a, dtype=np.float64)
    a[index] = value
    return a


def history_columns(records) -> list[dict]:
    """History records without their timings (which no two runs share)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]
