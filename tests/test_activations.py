"""Activations: every form of each formula agrees, the tails keep their precision, and the
derivatives are exact where the book's forms round to zero."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import gpumlp
from gpumlp.activations import ACTIVATIONS, get_activation, np_workspace, sigmoid_floor
from helpers.nets import host

XP = gpumlp.get_namespace("numpy")
ELEMENTWISE = [name for name, a in ACTIVATIONS.items() if a.prime is not None]


def _grid(dtype):
    """z from −1000 to 1000, dense where the functions bend, with ±0, ±inf and NaN."""
    z = np.concatenate([np.linspace(-100, 40, 701), np.linspace(-3, 3, 61),
                        [-1000.0, -745.0, -710.0, -709.0, -104.0, -89.0, -88.0, -87.0, -20.0,
                         -0.0, 0.0, 20.0, 88.0, 89.0, 1000.0, np.inf, -np.inf,
                         np.nan]])  # fmt: skip
    return z.astype(dtype).reshape(-1, 6)


def _ws(z):
    return np_workspace(np, z.shape, z.dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_in_place_numpy_form_equals_the_xp_form_bit_for_bit(name, dtype):
    act = ACTIVATIONS[name]
    z = _grid(dtype)
    if name == "softmax":
        z = np.nan_to_num(z, nan=0.0, posinf=50.0, neginf=-50.0)
    with np.errstate(all="ignore"):
        want = act.fn(z, xp=XP)
        got = np.empty_like(z)
        act.np_fn(z, got, _ws(z))
    np.testing.assert_array_equal(got, want)
    if act.prime is None:
        return
    g = np.random.default_rng(0).standard_normal(z.shape).astype(dtype)
    with np.errstate(all="ignore"):
        want = g * act.prime(z, want, xp=XP)
        got_g = g.copy()
        act.np_times_prime(got_g, z, got, _ws(z))
    np.testing.assert_array_equal(got_g, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", ["xp", "numpy"])
def test_sigmoid_keeps_relative_precision_in_both_tails(dtype, form):
    """σ against math's 1/(1 + e^−z): a few ulp from −1000 to 1000 above the floor.

    ½(1 + tanh(z/2)) fails this: it rounds σ(−20) = 2.1e-9 to 0 in float32, and a saturated
    unit with σ' = 0 never learns again.
    """
    z = np.concatenate([np.linspace(-100, 40, 701), [-1000.0, -745.0, -104.0, -20.0, 1000.0]])
    z = z.astype(dtype)
    want = np.array([1 / (1 + math.exp(-v)) if v > -700 else math.exp(v) for v in z.tolist()])
    sigmoid = ACTIVATIONS["sigmoid"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow anywhere: z is held at the floor
        if form == "xp":
            got = host(sigmoid.fn(z, xp=XP))
        else:
            got = np.empty_like(z)
            sigmoid.np_fn(z, got, _ws(z))
    finfo = np.finfo(dtype)
    held = z < sigmoid_floor(float(finfo.smallest_normal))
    np.testing.assert_allclose(got[~held], want[~held], rtol=4 * finfo.eps, atol=0)
    # below the floor σ is held at σ(floor): a normal number, within 2 tiny of the exact σ
    assert np.all(got[held] >= finfo.tiny) and np.all(got[held] < 2 * finfo.tiny)
    assert got[z == -20.0][0] > 0  # the tail that tanh's form loses in float32


def test_sigmoid_floor_is_where_sigma_is_still_normal():
    for dtype in (np.float32, np.float64):
        info = np.finfo(dtype)
        floor = np.asarray(sigmoid_floor(float(info.smallest_normal)), dtype)
        assert np.isfinite(np.exp(-floor))  # e^−z fits above it
        assert info.smallest_normal <= 1 / (1 + np.exp(-floor)) < 2 * info.smallest_normal
    assert sigmoid_floor(float(np.finfo(np.float32).smallest_normal)) == -87.0
    assert sigmoid_floor(float(np.finfo(np.float64).smallest_normal)) == -708.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", ["xp", "numpy"])
def test_saturated_sigmoid_layers_hold_no_subnormal_numbers(dtype, form):
    """σ and σ' of saturated units are 0 or normal: a subnormal in a layer's activations or
    deltas makes every GEMM over it ~100x slower on a CPU."""
    info = np.finfo(dtype)
    z = np.linspace(-2000.0, 2000.0, 40_001).astype(dtype).reshape(1, -1)
    sigmoid = ACTIVATIONS["sigmoid"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if form == "xp":
            a = host(sigmoid.fn(z, xp=XP))
            d = host(sigmoid.prime(z, a, xp=XP))
        else:
            a, d = np.empty_like(z), np.ones_like(z)
            sigmoid.np_fn(z, a, _ws(z))
            sigmoid.np_times_prime(d, z, a, _ws(z))
    for values in (a, d):
        assert not np.any((values != 0) & (np.abs(values) < info.smallest_normal))
    assert 0 < a[0, 0] < 2 * info.smallest_normal and a[0, -1] == 1
    assert 0 < d[0, 0] < 2 * info.smallest_normal and 0 < d[0, -1] < 2 * info.smallest_normal


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tanh_derivative_is_exact_where_one_minus_a_squared_rounds_to_zero(dtype):
    # tanh'(12) = sech²(12) ≈ 1.51e-10, but tanh(12) rounds to 1 in float32, so 1 − a² = 0.
    z = np.array([[12.0, -12.0, 25.0, 0.5]], dtype=dtype)
    got = ACTIVATIONS["tanh"].prime(z, np.tanh(z), xp=XP)
    want = [1 / math.cosh(float(v)) ** 2 for v in z[0]]
    np.testing.assert_allclose(got[0], want, rtol=8 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_derivative_is_exact_at_the_wrong_end(dtype):
    # σ'(40) = σ(40) σ(−40) ≈ 4.2e-18, where the book's a(1 − a) gives exactly 0.
    z = np.array([[40.0, -40.0, 0.0]], dtype=dtype)
    sigmoid = ACTIVATIONS["sigmoid"]
    got = sigmoid.prime(z, sigmoid.fn(z, xp=XP), xp=XP)
    want = [math.exp(-abs(v)) / (1 + math.exp(-abs(v))) ** 2 for v in z[0].tolist()]
    np.testing.assert_allclose(got[0], want, rtol=8 * np.finfo(dtype).eps)


def test_lookup_names_the_argument_and_lists_the_choices():
    with pytest.raises(ValueError, match=r"output_activation='swish'.*'relu'"):
        get_activation("swish", argument="output_activation")
    with pytest.raises(TypeError, match="activation must be a string"):
        get_activation(3)
    assert get_activation(ACTIVATIONS["relu"]) is ACTIVATIONS["relu"]


def test_every_elementwise_activation_has_every_form():
    for name in ELEMENTWISE:
        act = ACTIVATIONS[name]
        assert act.np_fn and act.np_times_prime and act.cuda_fn and act.cuda_prime, name
