"""Shared fixtures: the ``xp`` backend fixture and small data sets."""

from __future__ import annotations

import numpy as np
import pytest

from gpumlp.backend import cupy_status


def _cupy_param():
    usable, reason = cupy_status()
    return pytest.param(
        "cupy",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not usable, reason=f"CuPy unusable: {reason}")],
    )


@pytest.fixture(params=["numpy", "array_api_strict", _cupy_param()])
def backend(request):
    """A backend spec for ``Network(backend=...)``: "numpy", the strict namespace, or "cupy"."""
    if request.param == "array_api_strict":
        return pytest.importorskip("array_api_strict")
    return request.param


@pytest.fixture
def blobs():
    """A tiny separable 3-class problem: (X (90, 4) float64, y (90,) int64)."""
    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = np.repeat(np.arange(3), 30)
    X = centers[y] + 0.3 * rng.standard_normal((90, 4))
    return X, y


def host(a) -> np.ndarray:
    """Any backend's array as a NumPy array."""
    from gpumlp.backend import to_host

    return np.asarray(to_host(a))
