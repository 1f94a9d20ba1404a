"""Plausible CUDA bugs, planted one at a time in gpumlp's kernel source: a test of the tests.

Each :class:`Mutant` replaces one exact piece of the generated kernel source
(``gpumlp.engines._kernels.kernel_source``: ``_kernels.cu`` or a registry's CUDA form, such as
``gpumlp.optim.PENALTY_CUDA``; it must occur exactly once) and names the emulated tests that
reach the mutated code. With ``CUDA_EMU_MUTANT=<name>`` in the environment,
:func:`cuda_emu.emulator.compile_module` compiles every source containing that piece with the
bug in it; ``tests/test_kernel_mutants.py`` runs the mutant's tests so, in the checked build,
and requires them to fail.

The kinds are those a GPU hides best: unordered read-modify-writes, barriers removed or
misplaced, shared-memory races, out-of-bounds accesses of grid-stride and row loops, sign and
transpose errors.
"""

from __future__ import annotations

import dataclasses
import os

__all__ = ["ENV", "MUTANTS", "Mutant", "mutate"]

ENV = "CUDA_EMU_MUTANT"

_ENGINE = "tests/test_cupy_fast.py::test_engine_penalties_dropout_and_odd_shapes"
_PENALTIES = f"{_ENGINE}[ieee-float32-fused-sgd]"
_ODD = f"{_ENGINE}[ieee-float64-graph-adam]"
_EPOCH = "tests/test_cupy_fast.py::test_an_epoch_matches_the_generic_epoch[fused]"
_MATCHES = "tests/test_cupy_fast.py::test_engine_matches_generic"
_SOFTMAX = f"{_MATCHES}[ieee-relu-softmax-log_likelihood-adam-fused]"
_PERSISTENT = "tests/test_persistent.py::test_the_kernel_is_race_and_bounds_clean"
_PERSISTENT_DROP = (
    "tests/test_persistent.py::test_penalties_dropout_two_hidden_layers_and_batch_one[sgd]"
)
_GEMM = "tests/test_cuda_emu.py::test_real_gemm_against_numpy_in_every_transpose_case[float32]"


@dataclasses.dataclass(frozen=True)
class Mutant:
    """Replace ``old`` by ``new``; ``tests`` (pytest node ids) must then fail."""

    kind: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = {
    "batch_end_plain_add": Mutant(  # every thread adds its partial sum to the epoch's, unordered
        "unordered read-modify-write",
        "    cs[t] = c;\n",
        "    sums[0] += c;\n    cs[t] = 0;\n",
        (_EPOCH,),
    ),
    "batch_end_no_barrier": Mutant(
        "barrier removed",
        "            hs[t] += hs[t + half];\n        }\n        __syncthreads();\n",
        "            hs[t] += hs[t + half];\n        }\n",
        (_EPOCH,),
    ),
    "batch_end_half_overlap": Mutant(  # thread `half` writes what thread 0 reads
        "shared-memory race",
        "        if (t < half) {\n            cs[t] += cs[t + half];",
        "        if (t <= half) {\n            cs[t] += cs[t + half];",
        (_EPOCH,),
    ),
    "gemm_second_barrier": Mutant(  # the next slab overwrites As/Bs while others still read
        "barrier removed",
        "acc += As[ty][kk] * Bs[kk][tx];\n        __syncthreads();\n",
        "acc += As[ty][kk] * Bs[kk][tx];\n",
        (_GEMM, _ODD),
    ),
    "gemm_first_barrier_inside_branch": Mutant(  # only the threads of in-range rows wait
        "barrier misplaced",
        "        __syncthreads();\n        for (int kk = 0; kk < TILE; ++kk)",
        "        if (row0 + ty < M) __syncthreads();\n        for (int kk = 0; kk < TILE; ++kk)",
        (_GEMM,),
    ),
    "bias_act_bounds": Mutant(
        "out of bounds (grid-stride loop)",
        "i < total;\n         i += (long long)gridDim.x * blockDim.x) {\n        const real zi",
        "i <= total;\n         i += (long long)gridDim.x * blockDim.x) {\n        const real zi",
        (_PENALTIES,),
    ),
    "gather_bounds": Mutant(
        "out of bounds (grid-stride loop)",
        "t < m * width;",
        "t <= m * width;",
        (_EPOCH,),
    ),
    "col_sum_rows": Mutant(
        "out of bounds (row loop)",
        "for (int i = 0; i < m; ++i) s += delta",
        "for (int i = 0; i <= m; ++i) s += delta",
        (_PENALTIES,),
    ),
    "softmax_no_syncwarp": Mutant(  # lane 0 overwrites zr[0] while other lanes read it
        "barrier removed (warp)",
        "    __syncwarp();            // ... read by every lane",
        "    // ... read by every lane",
        (_SOFTMAX,),
    ),
    "l1_sign": Mutant(
        "sign error",
        "((real)(pi > (real)0) - (real)(pi < (real)0))",
        "((real)(pi < (real)0) - (real)(pi > (real)0))",
        (_PENALTIES,),
    ),
    "gemm_b_transposed": Mutant(
        "transpose error",
        "Bs[ty][tx] = (k < K && j < N) ? B[(long long)k * ldb + j] : (real)0;",
        "Bs[ty][tx] = (k < K && j < N) ? B[(long long)j * ldb + k] : (real)0;",
        (_GEMM, _PENALTIES),
    ),
    "persistent_update_no_barrier": Mutant(  # the next batch's forward reads W mid-update
        "barrier removed",
        "update(i, persistent_grad(e, smem, base, m, i));\n        __syncthreads();\n",
        "update(i, persistent_grad(e, smem, base, m, i));\n",
        (_PERSISTENT,),
    ),
    "persistent_bias_grad_rows": Mutant(
        "out of bounds (row loop)",
        "for (int r = 0; r < m; ++r) s += delta[(long long)r * n + j];",
        "for (int r = 0; r <= m; ++r) s += delta[(long long)r * n + j];",
        (_PERSISTENT, _PERSISTENT_DROP),
    ),
    "persistent_backward_sign": Mutant(
        "sign error",
        "prev[i] = g * act_prime(e.acts[l - 1], z[i], a[i]);",
        "prev[i] = -g * act_prime(e.acts[l - 1], z[i], a[i]);",
        (_PERSISTENT_DROP,),
    ),
    "hidden_delta_sign": Mutant(
        "sign error",
        "        delta[i] = gi * act_prime(act, z[i], a[i]);",
        "        delta[i] = -gi * act_prime(act, z[i], a[i]);",
        (_PENALTIES,),
    ),
}


def mutate(code: str) -> str:
    """``code`` with the mutant named by ``$CUDA_EMU_MUTANT`` planted, where its piece occurs
    (unchanged where it does not, or when no mutant is named)."""
    name = os.environ.get(ENV, "")
    if not name:
        return code
    if name not in MUTANTS:
        raise KeyError(f"{ENV}={name!r}: no such mutant; there are {sorted(MUTANTS)}")
    mutant = MUTANTS[name]
    return code.replace(mutant.old, mutant.new)
