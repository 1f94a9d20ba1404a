"""The native engine flushes subnormal deltas where and as ``fused`` does
(:data:`gpumlp.engines._numpy_fast.FLUSH_FROM`): in a layer whose products have at least that
many multiply-adds, each δ below the dtype's smallest normal becomes +0; below it, none.

The networks are built so that layer 0's deltas can be read off its parameters: sigmoids,
quadratic cost, plain SGD at rate 1, every row x = (1, 1, 0, …). Unit j has z_j = W[j, 0]
(W[j, 1] = b_j = 0), so one step leaves b_j = W[j, 1] = −m · δ_j: the generic step's value, or
exactly +0 where δ_j was flushed. Saturated units make δ_j ≈ e^(z_j) times a constant:

- ``hidden``, [256, n, 1], target 1, the output at z = 0 (δ^L = −0.125 / m, W^1 = 10⁻³):
  δ_j = −0.125 · 10⁻³ · σ'(z_j) / m, z_j over −708 … −690;
- ``output``, [256, n], target 0 but for unit 0: δ_j = σ(z_j) σ'(z_j) / m ≈ e^(2 z_j) / m,
  z_j over −360 … −350.

Either way about half of the deltas are subnormal in float64, the others normal.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpumlp import Network, engines
from gpumlp.config import TrainConfig
from gpumlp.engines import _native_build
from gpumlp.engines._numpy_fast import FLUSH_FROM
from gpumlp.runstate import TrainState
from helpers.stepcheck import rel, state_tensors

N_IN = 256
HIDDEN = FLUSH_FROM // (2 * N_IN)  # a batch of 2 reaches FLUSH_FROM exactly, one row half of it
TINY = np.finfo(np.float64).smallest_normal
SPREAD = {"hidden": (-708.0, -690.0), "output": (-360.0, -350.0)}  # z_j (module docstring)


def _one_step(engine: str, m: int, layer: str):
    """One epoch of one batch of ``m`` rows on ``engine``, the deltas of ``layer`` (of the
    first weight layer) spread over normal and subnormal: the state's tensors after it."""
    sizes = [N_IN, HIDDEN, 1] if layer == "hidden" else [N_IN, HIDDEN]
    net = Network(sizes, activation="sigmoid", output_activation="sigmoid", cost="quadratic",
                  dtype="float64", backend="numpy", seed=0)  # fmt: skip
    cfg = TrainConfig(epochs=1, batch_size=m, lr=1.0, optimizer="sgd", engine=engine)
    state = TrainState.start(net.spec, net.params, cfg, np.random.default_rng(0))
    for p in state.params.arrays():  # written in place: the engines hold these arrays
        p[...] = 1e-3 if p.shape == (1, HIDDEN) else 0.0
    state.params.weights[0][:, 0] = np.linspace(*SPREAD[layer], HIDDEN)
    X = np.zeros((m, N_IN))
    X[:, :2] = 1.0
    labels = np.ones(m, dtype=np.int64) if layer == "hidden" else np.zeros(m, dtype=np.int64)
    Y = np.ones((m, 1)) if layer == "hidden" else np.eye(HIDDEN)[labels]
    step = engines.select_step(state, (X, Y, labels), engine=engine)
    assert step.engine == engine
    step.epoch(None, 1.0, 0, monitor=("train_cost", "train_accuracy"))
    return state_tensors(state)


@pytest.mark.skipif(_native_build.compiler() is None, reason="no C++ compiler on this machine")
@pytest.mark.parametrize("layer", ["hidden", "output"])
@pytest.mark.parametrize("m", [2, 1], ids=["at-FLUSH_FROM", "below-FLUSH_FROM"])
def test_subnormal_deltas_are_flushed_as_fused_flushes_them(m, layer):
    generic, fused, native = (_one_step(e, m, layer) for e in ("generic", "fused", "native"))
    delta = -generic[1] / m  # the generic step's δ of each unit of layer 0 (not flushed)
    subnormal = (delta != 0) & (np.abs(delta) < TINY)
    assert 0.2 < subnormal.mean() < 0.8  # the case makes subnormal deltas, and normal ones
    flushing = m * N_IN * HIDDEN >= FLUSH_FROM
    for got in (fused, native):
        pairs = list(zip(generic, got, strict=True))
        assert all(rel(r, g) <= 1e-10 for r, g in pairs[2:])  # the output layer, if hidden
        # layer 0: within m smallest normals (a flushed δ a row), and each entry as below
        assert all(np.max(np.abs(r - g)) < m * TINY for r, g in pairs[:2])
        for t in (got[1], got[0][:, 1]):  # b and W[:, 1] of layer 0: −m · δ
            if flushing:
                assert np.all(t[subnormal] == 0.0) and not np.signbit(t[subnormal]).any()
            else:
                np.testing.assert_allclose(t[subnormal], generic[1][subnormal], rtol=1e-10)
                assert np.all(t[subnormal] != 0.0)
            np.testing.assert_allclose(t[~subnormal], generic[1][~subnormal], rtol=1e-10)
