"""Tests for gpumlp.engines, where a training step is chosen: an unknown engine, and an engine
the backend cannot run, are refused with a message naming it."""

from __future__ import annotations

import numpy as np
import pytest

import gpumlp


def test_engine_choice_is_validated():
    net = gpumlp.Network([2, 2], backend="numpy")
    X, y = np.zeros((4, 2)), np.zeros(4, dtype=int)
    with pytest.raises(ValueError, match="engine='warp'"):
        net.fit(X, y, epochs=1, batch_size=2, lr=0.1, engine="warp")
    with pytest.raises(ValueError, match="engine='graph' needs the CuPy backend"):
        net.fit(X, y, epochs=1, batch_size=2, lr=0.1, engine="graph")
    strict = pytest.importorskip("array_api_strict")
    other = gpumlp.Network([2, 2], backend=strict)
    with pytest.raises(ValueError, match="engine='fused' needs the NumPy or CuPy backend"):
        other.fit(X, y, epochs=1, batch_size=2, lr=0.1, engine="fused")
