"""Tests for gpumlp.initial: the book's layer shapes and initial distributions (normal, scaled,
He), and one seed giving the same initial numbers in every dtype and on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import gpumlp
from helpers.nets import host


def test_shapes_and_init_follow_the_book():
    net = gpumlp.Network([784, 30, 10], backend="numpy", seed=0)
    assert [host(w).shape for w in net.weights] == [(30, 784), (10, 30)]
    assert [host(b).shape for b in net.biases] == [(30,), (10,)]
    assert host(net.weights[0]).dtype == np.float32
    w = host(net.weights[0])
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01  # N(0, 1)
    scaled = gpumlp.Network([784, 30, 10], init="scaled", dtype="float64", backend="numpy", seed=0)
    assert abs(host(scaled.weights[0]).std() - 784**-0.5) < 0.002
    he = gpumlp.Network([784, 30, 10], init="he", activation="relu", backend="numpy", seed=0)
    assert abs(host(he.weights[0]).std() - (2 / 784) ** 0.5) < 0.003
    assert not host(he.biases[0]).any()


def test_same_seed_same_initial_numbers_across_dtypes_and_backends():
    a = gpumlp.Network([5, 4, 3], dtype="float64", backend="numpy", seed=42)
    b = gpumlp.Network([5, 4, 3], dtype="float32", backend="numpy", seed=42)
    strict = pytest.importorskip("array_api_strict")
    c = gpumlp.Network([5, 4, 3], dtype="float64", backend=strict, seed=42)
    for ta, tb, tc in zip(a.params.arrays(), b.params.arrays(), c.params.arrays(), strict=True):
        assert np.array_equal(host(ta).astype(np.float32), host(tb))
        assert np.array_equal(host(ta), host(tc))
