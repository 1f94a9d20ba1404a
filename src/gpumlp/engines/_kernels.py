"""The CUDA C source of the fast path, generated from the registries.

:func:`kernel_source` puts a generated prelude in front of ``_kernels.cu`` (package data): the
``real`` typedef, the codes (``ACT_*``, ``COST_*``, ``DELTA_*``, ``OPT_*``) and the device
functions built from each registry entry's CUDA form (:mod:`gpumlp.activations`,
:mod:`gpumlp.costs`, :mod:`gpumlp.optim`, :mod:`gpumlp.dropout`). Adding an activation, cost or
optimizer to its registry adds it here. The codes the host side passes to the kernels come from
the same tables (:func:`codes`). Still kept equal by hand between the host code and the ``.cu``:
the tile and thread counts (``_cupy_core.TILE``, ``END_THREADS``), the kernels' argument lists,
and the L1/L2 penalties of the update kernel beside ``optim.regularize``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..activations import ACTIVATIONS, sigmoid_floor
from ..costs import COSTS
from ..dropout import CUDA_SOURCE as DROPOUT_SOURCE
from ..optim import OPTIMIZERS, get_optimizer

__all__ = ["KERNEL_NAMES", "Codes", "codes", "kernel_source"]

KERNEL_NAMES = (
    "gemm",
    "gemm_dot",
    "gather",
    "bias_act",
    "bias_softmax",
    "output_delta",
    "hidden_delta",
    "col_sum",
    "adam_prep",
    "update",
    "batch_end",
)
"""The ``extern "C"`` kernels of the source, as the host side looks them up."""


@dataclass(frozen=True)
class Codes:
    """The integer codes the kernels switch on, by registry name."""

    act: dict[str, int]
    cost: dict[str, int]
    delta: dict[tuple[str, str], int]  # fused (cost, output activation) pairs
    opt: dict[str, int]
    delta_elementwise: int = 0
    delta_softmax: int = 1


@functools.cache
def codes() -> Codes:
    """The codes, in registry order (elementwise activations first; softmax last)."""
    acts = [n for n, a in ACTIVATIONS.items() if a.cuda_fn] + [
        n for n, a in ACTIVATIONS.items() if not a.cuda_fn
    ]
    fused = [(c, o) for c, cost in COSTS.items() for o in cost.fused]
    return Codes(
        act={n: i for i, n in enumerate(acts)},
        cost={n: i for i, n in enumerate(COSTS)},
        delta={pair: 2 + i for i, pair in enumerate(fused)},
        opt={n: i for i, n in enumerate(OPTIMIZERS)},
    )


def _prelude(dtype: str) -> str:
    real = {"float32": "float", "float64": "double"}[dtype]
    c = codes()
    floor = sigmoid_floor(float(np.finfo(dtype).smallest_normal))
    out = [
        f"typedef {real} real;",
        f"#define SIGMOID_FLOOR ((real){floor:.0f})",
        "#define H_LR 0    // device scalars (double hyper[4]): the learning rate,",
        "#define H_T 1     // Adam's step count t,",
        "#define H_STEP 2  // lr / (1 − β1^t),",
        "#define H_ROOT 3  // √(1 − β2^t)",
        "#define C_BATCH 0  // device counters (long long counters[2]): batch in the epoch,",
        "#define C_DRAW 1   // step number for the dropout masks",
        "",
        "// Activations (gpumlp/activations.py).",
    ]
    out += [f"#define ACT_{n.upper()} {i}" for n, i in c.act.items()]
    for name in c.act:
        act = ACTIVATIONS[name]
        if act.cuda_fn:
            out.append(
                f"__device__ __forceinline__ real act_{name}(real z)\n{{\n    {act.cuda_fn}\n}}"
            )
            out.append(
                f"__device__ __forceinline__ real act_prime_{name}(real z, real a)\n{{\n"
                f"    {act.cuda_prime}\n}}"
            )
    elementwise = [n for n in c.act if ACTIVATIONS[n].cuda_fn]
    out.append(
        _switch(
            "real act_fn(int act, real z)",
            "act",
            {f"ACT_{n.upper()}": f"return act_{n}(z);" for n in elementwise},
            "return z;",
        )
    )
    out.append(
        _switch(
            "real act_prime(int act, real z, real a)",
            "act",
            {f"ACT_{n.upper()}": f"return act_prime_{n}(z, a);" for n in elementwise},
            "return (real)1;",
        )
    )
    out += [
        "",
        "// Costs (gpumlp/costs.py). Clip like xp: NaN stays NaN.",
        "__device__ __forceinline__ real clip(real v, real lo, real hi)",
        "{\n    return v < lo ? lo : (v > hi ? hi : v);\n}",
    ]
    out += [f"#define COST_{n.upper()} {i}" for n, i in c.cost.items()]
    out.append(
        _switch(
            "real cost_grad(int cost, real a, real y, real eps)",
            "cost",
            {f"COST_{n.upper()}": f"return {COSTS[n].cuda_grad};" for n in c.cost},
            "return a - y;",
        )
    )
    out.append(
        _switch(
            "real cost_term(int cost, real a, real y, real eps)",
            "cost",
            {f"COST_{n.upper()}": f"return {COSTS[n].cuda_cost};" for n in c.cost},
            "return (real)0;",
        )
    )
    out += [
        f"#define DELTA_ELEMENTWISE {c.delta_elementwise}  // ∇_a C ⊙ σ'(z)",
        f"#define DELTA_SOFTMAX {c.delta_softmax}      // softmax: a ⊙ (∇_a C − Σ_k g_k a_k)",
    ]
    names = {pair: f"DELTA_{pair[0].upper()}_{pair[1].upper()}" for pair in c.delta}
    out += [f"#define {names[p]} {i}" for p, i in c.delta.items()]
    out.append(
        _switch(
            "real fused_delta(int kind, real a, real y, real ysum)",
            "kind",
            {names[(cost, o)]: f"return {COSTS[cost].fused[o].cuda};" for cost, o in c.delta},
            "return a - y;",
        )
    )
    out += ["", "// Optimizers (gpumlp/optim.py)."]
    out += [f"#define OPT_{n.upper()} {i}" for n, i in c.opt.items()]
    out.append(
        _switch(
            "void opt_update(int opt, long long i, real pi, real gi,\n"
            "    real* p, real* s1, real* s2, real lr, const double* hyper, real mu, real beta1,\n"
            "    real beta2, real one_minus_beta1, real one_minus_beta2, real eps)",
            "opt",
            {
                f"OPT_{n.upper()}": f"{{\n        {get_optimizer(n).cuda_update()}\n"
                "        break;\n    }"
                for n in c.opt
            },
        )
    )
    out.append(DROPOUT_SOURCE)
    return "\n".join(out) + "\n"


def _switch(signature: str, var: str, cases: dict[str, str], default: str | None = None) -> str:
    """An inline device function ``signature`` whose body switches on ``var``: ``case LABEL:
    BODY`` for each item of ``cases``, then ``default: DEFAULT`` when given."""
    lines = [f"    case {label}: {body}" for label, body in cases.items()]
    lines += [] if default is None else [f"    default: {default}"]
    body = "\n".join(lines)
    return f"__device__ __forceinline__ {signature}\n{{\n    switch ({var}) {{\n{body}\n    }}\n}}"


@functools.cache
def kernel_source(dtype: str) -> str:
    """The CUDA C source of the kernels for ``dtype`` ("float32" or "float64"): the generated
    prelude and ``_kernels.cu``. Self-contained (no ``#include``), so NVRTC and ``nvcc`` both
    compile it, and the test suite runs it on the CPU."""
    template = resources.files(__package__).joinpath("_kernels.cu").read_text(encoding="utf-8")
    return _prelude(dtype) + "\n" + template
