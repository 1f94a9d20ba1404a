"""Tests for gpumlp.costs' (output activation, cost) rules: log_likelihood needs a softmax output,
cross_entropy a sigmoid or softmax one, quadratic any; every other pair of the registries is
refused when the network is built, with the valid pairs listed; each cost's in-place NumPy form
equals its xp form bit for bit. (The math of every valid pair is checked in test_network.py; the
same refusal on the command line in test_cli_train.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import gpumlp
from gpumlp.activations import np_workspace
from gpumlp.costs import COSTS, VALID_PAIRS
from helpers.nets import ALL_PAIRS, INVALID_PAIRS, host

XP = gpumlp.get_namespace("numpy")


def test_the_rules_are_the_documented_ones():
    assert COSTS["log_likelihood"].outputs == {"softmax"}
    assert COSTS["cross_entropy"].outputs == {"sigmoid", "softmax"}
    assert COSTS["quadratic"].outputs is None
    for out, cost in ALL_PAIRS:  # VALID_PAIRS is what each cost's `outputs` says
        allowed = COSTS[cost].outputs
        assert ((out, cost) in VALID_PAIRS) == (allowed is None or out in allowed)
    assert ("sigmoid", "log_likelihood") in INVALID_PAIRS  # the silent 14% run


@pytest.mark.parametrize(("out", "cost"), INVALID_PAIRS)
def test_an_invalid_pair_is_refused_with_the_valid_pairs_listed(out, cost):
    with pytest.raises(ValueError) as info:
        gpumlp.Network([4, 5, 3], output_activation=out, cost=cost, backend="numpy", seed=0)
    message = str(info.value)
    assert f"cost={cost!r} needs output_activation in" in message
    assert f"got output_activation={out!r}" in message
    for valid_out, valid_cost in VALID_PAIRS:
        if valid_cost != "quadratic":
            assert f"({valid_out}, {valid_cost})" in message
    assert "quadratic with any output" in message and "\n" not in message


@pytest.mark.parametrize(("out", "cost"), VALID_PAIRS)
def test_a_valid_pair_is_built(out, cost):
    net = gpumlp.Network([4, 5, 3], output_activation=out, cost=cost, backend="numpy", seed=0)
    assert (net.output_activation, net.cost.name) == (out, cost)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(COSTS))
def test_in_place_numpy_cost_equals_the_xp_form_bit_for_bit(name, dtype):
    """``np_fn`` (the NumPy fast path's training cost) against ``fn``, on outputs that include
    exact 0 and 1 (the clipped logarithms) and soft targets."""
    rng = np.random.default_rng(0)
    a = rng.random((9, 4)).astype(dtype)
    a[0, :2], a[1, 2:] = 0.0, 1.0
    y = rng.random((9, 4)).astype(dtype)
    y[2:] = np.eye(4, dtype=dtype)[rng.integers(0, 4, 7)]
    cost = COSTS[name]
    want = host(cost.fn(a, y, xp=XP))
    got = np.full(9, np.nan, dtype)
    ws = np_workspace(np, a.shape, a.dtype)
    cost.np_fn(a, y, got, ws)
    assert got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("name", "out"), [(name, out) for name, cost in COSTS.items() for out in cost.fused]
)
def test_in_place_closed_form_equals_the_xp_form_bit_for_bit(name, out, dtype):
    """Each closed form of δ^L (``Fused.np_delta``, the NumPy fast path's) against ``delta``,
    with one-hot and soft targets (rows summing to other than 1)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((9, 4)).astype(dtype)
    a = rng.random((9, 4)).astype(dtype)
    y = rng.random((9, 4)).astype(dtype)
    y[2:] = np.eye(4, dtype=dtype)[rng.integers(0, 4, 7)]
    fused = COSTS[name].fused[out]
    want = host(fused.delta(z, a, y, xp=XP))
    got = np.full_like(a, np.nan)
    fused.np_delta(z, a, y, got, np_workspace(np, a.shape, a.dtype))
    assert got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()
