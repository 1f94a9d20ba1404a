"""The CuPy engines on a real GPU: the comparisons of test_cupy_fast.py (there run on the CPU
emulation) against the real CUDA runtime, NVRTC, cuBLAS and graph capture. Marked ``gpu``:
skipped with the reason where no CUDA device is usable, failed instead under
``GPUMLP_REQUIRE_GPU=1``."""

from __future__ import annotations

import pytest

from gpumlp.backend import cupy_status
from gpumlp.optim import OPTIMIZERS
from helpers.stepcheck import compare_steps
from test_cupy_fast import COMBOS, fit_both

USABLE, REASON = cupy_status()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not USABLE, reason=f"CuPy unusable: {REASON}")]

# cuBLAS and the GPU's exp/tanh (and NVRTC's FMA contraction and flush-to-zero) round differently
# from NumPy and glibc: each step is held to the band stepcheck derives from its rounding
# errors (2·C·u·κ), the same as on the CPU emulation with the GPU's rounding; a failure prints
# the measured error beside that tolerance. float64 is held to the parity target, 1e-10 per
# step, where the band is tighter.


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_engine_matches_generic_on_gpu(combo, engine, dtype):
    compare_steps(dtype, combo, engine, [10, 10, 10, 3], floor64=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("engine", ["fused", "graph", "persistent"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_engine_odd_shapes_penalties_dropout_on_gpu(optimizer, engine, dtype):
    combo = ("tanh", "softmax", "cross_entropy", optimizer)
    compare_steps(dtype, combo, engine, [1, 17, 33, 17, 2, 5, 6], sizes=(7, 13, 9, 5),
                  floor64=1e-10, l2=0.5, l1=0.2, dropout=0.3)  # fmt: skip


@pytest.mark.parametrize("engine", ["generic", "fused", "graph", "persistent"])
def test_fit_on_gpu_matches_numpy(engine):
    fit_both(engine, tol=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_persistent_on_the_books_network_on_gpu(dtype):
    # [784, 30, 10]: 98 KB (float32) and 196 KB (float64) of shared memory, beyond the 48 KB a
    # launch gets without opting in, and a block of 1024 threads
    combo = ("sigmoid", "softmax", "log_likelihood", "adam")
    compare_steps(dtype, combo, "persistent", [10, 10, 3], sizes=(784, 30, 10), floor64=1e-10,
                  dropout=0.2, l2=0.1)  # fmt: skip
