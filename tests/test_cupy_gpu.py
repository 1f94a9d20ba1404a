"""The CuPy engines on a real GPU: the comparisons of test_cupy_fast.py (there run on the CPU
emulation) against the real CUDA runtime, NVRTC, cuBLAS and graph capture. Marked ``gpu``:
skipped with the reason where no CUDA device is usable, failed instead under
``GPUMLP_REQUIRE_GPU=1``."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import host
from gpumlp import Network
from gpumlp.backend import cupy_status
from gpumlp.optim import OPTIMIZERS
from test_cupy_fast import COMBOS, _compare_steps, _rel

USABLE, REASON = cupy_status()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not USABLE, reason=f"CuPy unusable: {REASON}")]

# cuBLAS and the GPU's exp/tanh (and nvcc's FMA contraction) round differently from NumPy and
# glibc: a few ulp per operation. The parity target for float64 is 1e-10 per step.
TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_engine_matches_generic_on_gpu(combo, engine, dtype):
    _compare_steps(dtype, combo, engine, [10, 10, 10, 3], tol=TOL)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_engine_odd_shapes_penalties_dropout_on_gpu(optimizer, engine, dtype):
    combo = ("tanh", "softmax", "cross_entropy", optimizer)
    _compare_steps(dtype, combo, engine, [1, 17, 33, 17, 2, 5, 6], sizes=(7, 13, 9, 5),
                   tol=TOL, l2=0.5, l1=0.2, dropout=0.3)  # fmt: skip


@pytest.mark.parametrize("engine", ["generic", "fused", "graph"])
def test_fit_on_gpu_matches_numpy(engine):
    rng = np.random.default_rng(0)
    X, y = rng.random((95, 7)), rng.integers(5, size=95)
    results = []
    for backend, eng in (("cupy", engine), ("numpy", "generic")):
        net = Network([7, 13, 5], activation="relu", output_activation="softmax",
                      cost="log_likelihood", dtype="float64", backend=backend, seed=1)  # fmt: skip
        history = net.fit(X, y, epochs=3, batch_size=10, lr=0.05, optimizer="adam", seed=1,
                          engine=eng, monitor=("train_cost", "train_accuracy"))  # fmt: skip
        results.append((history, [host(t) for t in net.params.arrays()]))
    (h_gpu, p_gpu), (h_ref, p_ref) = results
    for p, q in zip(p_gpu, p_ref, strict=True):
        assert _rel(q, p) < 1e-9
    assert h_gpu.column("train_accuracy") == h_ref.column("train_accuracy")
