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


def write_tiny_mnist(path, n_train: int, n_test: int, *, seed: int = 0):
    """Write a Keras-style mnist.npz of random 28x28 images and labels; returns ``path``.

    ``load_mnist`` holds out the last ``n_train // 6`` training images as validation.
    """
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test),
    )
    return path


def reap(proc) -> None:
    """Kill a test's subprocess if it still runs, and wait: no trainer outlives a failed test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def host(a) -> np.ndarray:
    """Any backend's array as a NumPy array."""
    from gpumlp.backend import to_host

    return np.asarray(to_host(a))
