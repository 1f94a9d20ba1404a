"""Dropout masks (gpumlp.dropout): the same bits on every namespace, the right statistics, a
fresh mask per step and layer, and nothing copied to the device per step."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import gpumlp
from gpumlp.dropout import keep_masks, stream, threshold
from helpers.cli import run_python
from helpers.nets import host

KEY, M, WIDTHS, P = 987654321, 37, [29, 11], 0.3


def _masks(backend, draw=5, **kw):
    xp = gpumlp.get_namespace(backend)
    masks = keep_masks(kw.get("key", KEY), draw, M, WIDTHS, kw.get("p", P), xp=xp,
                       dtype=xp.float32)  # fmt: skip
    return [host(m) for m in masks]


SAME_BITS = """
import numpy as np, test_dropout as t
for draw in (0, 5, 2**32 + 3):
    for got, want in zip(t._masks(BACKEND, draw), t._masks("numpy", draw), strict=True):
        assert np.array_equal(got, want), draw
print("ok")
"""


@pytest.mark.parametrize("backend", ["array_api_strict", "torch", "jax"])
def test_every_namespace_draws_the_same_bits(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    # In a child process: JAX's threads must not be in this one when the fault tests fork.
    assert run_python(f"BACKEND = {backend!r}\n{SAME_BITS}").strip().endswith("ok")


def test_masks_are_inverted_and_unbiased():
    xp = gpumlp.get_namespace("numpy")
    kept = np.concatenate([
        keep_masks(KEY, d, 100, [200], P, xp=xp, dtype=np.float64)[0].ravel() for d in range(20)
    ])  # fmt: skip
    assert set(np.unique(kept)) == {0.0, 1 / (1 - P)}
    # 400,000 draws: the standard error of the dropped fraction is ~0.0007
    assert abs((kept == 0).mean() - P) < 0.004
    assert abs(kept.mean() - 1.0) < 0.01
    assert threshold(P) == round(P * 2**24)


def test_each_step_layer_and_key_draws_its_own_mask():
    a, b = _masks("numpy", draw=5), _masks("numpy", draw=6)
    assert not np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0][:, :11], a[1])  # two layers of one step differ
    assert not np.array_equal(a[0], _masks("numpy", draw=5, key=KEY + 1)[0])
    assert all(np.array_equal(x, y) for x, y in zip(a, _masks("numpy", 5), strict=True))
    assert len({stream(KEY, d, layer) for d in range(100) for layer in range(4)}) == 400


def test_no_copy_to_the_device_per_step(fake_cupy):
    xp = gpumlp.get_namespace("cupy")
    keep_masks(KEY, 0, M, WIDTHS, P, xp=xp, dtype=xp.float32)  # constants made once
    fake_cupy.stats.reset()
    keep_masks(KEY, 1, M, WIDTHS, P, xp=xp, dtype=xp.float32)
    assert fake_cupy.stats["h2d"] == 0 and fake_cupy.stats["sync"] == 0
