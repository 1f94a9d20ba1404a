"""The CUDA C source of the fast path, generated from the registries, and what the host code
needs to call it.

:func:`kernel_source` is a generated prelude, ``_kernels.cu`` and ``_persistent.cu`` (package data:
the kernels and the epoch loop no registry entry owns) and the optimizers' kernels. The prelude
holds the ``real`` typedef, the constants shared with the host code (:data:`TILE`,
:data:`BATCH_END_THREADS` and the counter slots ``C_*`` of :data:`COUNTERS`), the codes (``ACT_*``,
``COST_*``, ``DELTA_*``) and the device functions built from each registry entry's CUDA form
(:mod:`gpumlp.activations`, :mod:`gpumlp.costs`, :mod:`gpumlp.dropout`). Each optimizer of
:data:`gpumlp.optim.OPTIMIZERS` gets its own ``update_<name>`` kernel (the penalties of
:data:`gpumlp.optim.PENALTY_CUDA`, then its update) and, where its :class:`~gpumlp.optim.CudaForm`
has one, a ``prepare_<name>`` kernel, and its whole-epoch ``persistent_<name>`` kernel
(:mod:`._persistent_src`), with its own parameters and device slots ``H_*`` (:func:`hyper_slots`:
the rate ``H_LR``, then the entry's). Adding an entry to a registry adds it here.

The host side reads the rest from here too: the codes (:func:`codes`) and the constants; each
kernel's parameters, parsed from the generated source, and its launch shape are
:mod:`._launch`'s.

``gpumlp kernels [--dtype float32|float64]`` prints the full source.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..activations import ACTIVATIONS, sigmoid_floor
from ..costs import COSTS
from ..dropout import CUDA_SOURCE as DROPOUT_SOURCE
from ..optim import OPTIMIZERS, PENALTY_CUDA, CudaForm, get_optimizer
from ._ctext import indent, kernel
from ._persistent_src import persistent_kernel

__all__ = [
    "BATCH_END_THREADS",
    "COUNTERS",
    "TILE",
    "Codes",
    "codes",
    "hyper_slots",
    "kernel_source",
    "optimizer_kernels",
    "prelude",
]

TILE = 16
"""The side of the ``gemm`` kernel's square tiles and thread blocks."""
BATCH_END_THREADS = 256
"""The threads of the one block of ``batch_end``."""
COUNTERS = ("batch", "draw")
"""The device counters (``long long counters[]``), slots ``C_BATCH``, ``C_DRAW``: the batch in
the epoch, and the step number for the dropout masks."""


def hyper_slots(form: CudaForm) -> tuple[str, ...]:
    """The device scalars (``double hyper[]``) of an optimizer's kernels: the rate ``lr``, then
    the form's own slots (``H_LR``, ``H_<SLOT>`` in the source)."""
    return ("lr", *form.slots)


def optimizer_kernels(name: str) -> tuple[str, str | None]:
    """The kernels of optimizer ``name``: its update, and its preparation (or None)."""
    form = get_optimizer(name).cuda()
    return f"update_{name}", (None if form is None or form.prepare is None else f"prepare_{name}")


@dataclass(frozen=True)
class Codes:
    """The integer codes the kernels switch on, by registry name."""

    act: dict[str, int]
    cost: dict[str, int]
    delta: dict[tuple[str, str], int]  # fused (cost, output activation) pairs
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
    )


def prelude(dtype: str) -> str:
    """The generated head of the source for ``dtype`` (the typedef, constants, codes and the
    registries' device functions; host functions in :mod:`._native_src`)."""
    real = {"float32": "float", "float64": "double"}[dtype]
    c = codes()
    floor = sigmoid_floor(float(np.finfo(dtype).smallest_normal))
    out = [
        f"typedef {real} real;",
        f"#define SIGMOID_FLOOR ((real){floor:.0f})",
        f"#define TILE {TILE}",
        f"#define BATCH_END_THREADS {BATCH_END_THREADS}",
        "// The device counters (long long counters[]).",
        *(f"#define C_{name.upper()} {i}" for i, name in enumerate(COUNTERS)),
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
    out.append(DROPOUT_SOURCE)
    return "\n".join(out) + "\n"


def _switch(signature: str, var: str, cases: dict[str, str], default: str | None = None) -> str:
    """An inline device function ``signature`` whose body switches on ``var``: ``case LABEL:
    BODY`` for each item of ``cases``, then ``default: DEFAULT`` when given."""
    lines = [f"    case {label}: {body}" for label, body in cases.items()]
    lines += [] if default is None else [f"    default: {default}"]
    body = "\n".join(lines)
    return f"__device__ __forceinline__ {signature}\n{{\n    switch ({var}) {{\n{body}\n    }}\n}}"


def _optimizer_source(name: str) -> str:
    """The kernels of optimizer ``name`` (see the module docstring), or "" without a CUDA form.

    ``update_<name>`` walks the flat buffers ``[w_0 … w_(L-1) | b_0 … b_(L-1)]`` (see
    :mod:`._cupy_core`): the penalties on the first ``n_w`` entries (the weights), then the
    optimizer's update of element ``i``; ``lr`` is declared where the update uses it."""
    opt = get_optimizer(name)
    form = opt.cuda()
    if form is None:
        return ""
    slots = hyper_slots(form)
    out = [f"// Optimizer {name!r} (gpumlp/optim.py: {type(opt).__name__}); device slots "
           f"double hyper[{len(slots)}]."]  # fmt: skip
    out += [f"#define H_{slot.upper()} {i}" for i, slot in enumerate(slots)]
    params = ["real* p", "const real* g", *(f"real* {b}" for b in opt.buffers)]
    params += ["const double* hyper", "long long total", "long long n_w", "real l2n", "real l1n"]
    uses_lr = re.search(r"\blr\b", form.update)
    body = (
        ("    const real lr = (real)hyper[H_LR];\n" if uses_lr else "")
        + "    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;\n"
        "         i += (long long)gridDim.x * blockDim.x) {\n"
        "        const real pi = p[i];\n        real gi = g[i];\n"
        "        if (i < n_w) gi = penalize(gi, pi, l2n, l1n);\n"
        f"{indent(form.update, 8)}\n    }}"
    )
    update, prepare = optimizer_kernels(name)
    out.append(kernel(update, [*params, *form.params], body))
    if prepare is not None and form.prepare is not None:
        guard = "    if (blockIdx.x != 0 || threadIdx.x != 0) return;  // one thread\n"
        body = guard + indent(form.prepare, 4)
        out.append(kernel(prepare, ["double* hyper", *form.prepare_params], body))
    out.append(persistent_kernel(name))
    out += [f"#undef H_{slot.upper()}" for slot in slots]
    return "\n".join(out)


@functools.cache
def kernel_source(dtype: str) -> str:
    """The CUDA C source of the kernels for ``dtype`` ("float32" or "float64"): the generated
    prelude, ``_kernels.cu``, ``_persistent.cu`` and the optimizers' kernels. Self-contained
    (no ``#include``), so NVRTC and ``nvcc`` both compile it, and the test suite runs it on the
    CPU."""
    files = resources.files(__package__)
    template = "\n".join(
        files.joinpath(f).read_text(encoding="utf-8") for f in ("_kernels.cu", "_persistent.cu")
    )
    optimizers = [_optimizer_source(name) for name in OPTIMIZERS]
    tail = "\n\n".join([PENALTY_CUDA, *filter(None, optimizers)])
    return f"{prelude(dtype)}\n{template}\n// Optimizers, after the penalties.\n{tail}\n"
