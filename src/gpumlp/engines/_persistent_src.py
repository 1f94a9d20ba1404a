"""The CUDA C of the persistent engine's kernels, one per optimizer, generated from the
optimizer's CUDA form (:class:`gpumlp.optim.CudaForm`).

``persistent_<name>`` runs a whole epoch in one thread block (``_persistent.cu``'s
``persistent_epoch``, which uses the prelude's activations, costs and dropout hash); what is the
optimizer's own is generated here from its entry: the update of one parameter (the penalties of
:data:`gpumlp.optim.PENALTY_CUDA`, then the form's ``update``, the same text the ``update_<name>``
kernel runs) and, where the form has one, the per-step preparation (the form's ``prepare``, as a
device function ``prepare_step_<name>``). The kernel's parameters are :data:`EPOCH_PARAMS`, the
optimizer's buffers, :data:`UPDATE_PARAMS`, the form's ``params`` and its ``prepare_params``
renamed ``prepare_<param>`` (Adam's ``beta1`` is a ``real`` for the update and a ``double`` for
the preparation). The text is placed where the optimizer's ``H_*`` slots are defined.
"""

from __future__ import annotations

import re

from ..optim import get_optimizer
from ._ctext import decl_name, indent, kernel, prepared

__all__ = ["EPOCH_PARAMS", "MAX_THREADS", "UPDATE_PARAMS", "persistent_kernel", "persistent_name"]

MAX_THREADS = 1024
"""The most threads a launch may have: the kernels' ``__launch_bounds__``, so that the compiler
keeps to the registers 1024 threads of one SM can have (64 each; the unbounded Adam kernel took
96 in float32 and 128 in float64, too many to launch 1024 threads)."""

EPOCH_PARAMS = (
    "const real* X", "const real* Y", "const long long* labels", "const long long* perm",
    "long long n_rows", "int batch", "const int* sizes", "const int* acts", "int layers",
    "int kind", "int cost", "real clip_eps", "int has_drop", "unsigned cut", "real keep_scale",
    "unsigned long long key", "long long draw", "real* flat",
)  # fmt: skip
"""The epoch's data, order, network shape, output error, dropout and the flat parameters."""
UPDATE_PARAMS = ("double* hyper", "long long total", "long long n_w", "real l2n", "real l1n",
                 "double* sums", "long long* hits", "real* out_a")  # fmt: skip
"""The device scalars, the parameter counts, the penalties, the epoch's sums and the last
batch's outputs (``out_a``, m × n_L, for a one-batch step)."""


def persistent_name(optimizer: str) -> str:
    """The persistent kernel of optimizer ``optimizer``."""
    return f"persistent_{optimizer}"


def persistent_kernel(name: str) -> str:
    """The persistent kernel of optimizer ``name`` (and its preparation's device function), or
    "" without a CUDA form, written as :mod:`._ctext` writes every generated kernel."""
    opt = get_optimizer(name)
    form = opt.cuda()
    if form is None:
        return ""
    out = []
    prepare_call = ""
    prepare_params = [prepared(d) for d in form.prepare_params]
    if form.prepare is not None:
        out.append(f"__device__ __forceinline__ void prepare_step_{name}("
                   f"{', '.join(['double* hyper', *form.prepare_params])})\n"
                   f"{{\n{indent(form.prepare, 4)}\n}}")  # fmt: skip
        args = ["hyper", *map(decl_name, prepare_params)]
        prepare_call = f"prepare_step_{name}({', '.join(args)});"
    params = [*EPOCH_PARAMS, *(f"real* {b}" for b in opt.buffers), *UPDATE_PARAMS,
              *form.params, *prepare_params]  # fmt: skip
    # EpochArgs' fields, in its order: the epoch's parameters, then the counts, sums and outputs
    fields = [*map(decl_name, EPOCH_PARAMS), "total", "n_w", "sums", "hits", "out_a"]
    uses_lr = re.search(r"\blr\b", form.update)
    body = (
        "    extern __shared__ real smem[];\n"
        "    real* const p = smem;  // the parameters, resident for the epoch\n"
        + ("    const real lr = (real)hyper[H_LR];\n" if uses_lr else "")
        + f"    const EpochArgs e = {{{', '.join(fields)}}};\n"
        "    persistent_epoch(\n"
        "        e, smem,\n"
        "        [&](long long i, real gi) {\n"
        "            const real pi = p[i];\n"
        "            if (i < n_w) gi = penalize(gi, pi, l2n, l1n);\n"
        f"{indent(form.update, 12)}\n"
        "        },\n"
        f"        [&]() {{ {prepare_call} }});"
    )
    bounded = f"__launch_bounds__({MAX_THREADS}) {persistent_name(name)}"
    out.append(kernel(bounded, params, body))
    return "\n".join(out)
