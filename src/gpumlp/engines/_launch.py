"""How the host launches a kernel of :func:`._kernels.kernel_source`: each kernel's parameters,
parsed from the generated source itself (:func:`signatures`), so the host passes arguments by
name (:func:`packers`) and no argument list is written twice; the thread block each kernel is
written for (:func:`block_of`), the grid of a grid-stride loop (:func:`grid_for`), and which of
the two GEMM kernels a product goes to (:func:`dot_wins`). Pure Python: nothing here needs CuPy.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._kernels import BATCH_END_THREADS, TILE, kernel_source

__all__ = [
    "BLOCK",
    "DOT_WARPS",
    "KERNEL_NAMES",
    "ROWS",
    "Param",
    "block_of",
    "dot_wins",
    "grid_for",
    "packers",
    "signatures",
]

# -- the kernels' parameters, read from the source ---------------------------------------------

_SCALARS = {"int": "int32", "unsigned": "uint32", "long long": "int64",
            "unsigned long long": "uint64", "float": "float32", "double": "float64"}  # fmt: skip


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its ``name``, the NumPy ``dtype`` of its value or of what it points
    to, and whether it is a ``pointer``."""

    name: str
    dtype: str
    pointer: bool


@functools.cache
def signatures(dtype: str) -> dict[str, tuple[Param, ...]]:
    """Each kernel's parameters, in order, parsed from :func:`kernel_source` (``real`` is
    ``dtype``)."""
    text = re.sub(r"//[^\n]*", "", kernel_source(dtype))
    scalars = {**_SCALARS, "real": dtype}
    found = {}
    kernels = r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(([^)]*)\)'
    for m in re.finditer(kernels, text):
        params = []
        for decl in m[2].split(","):
            words = decl.replace("*", " * ").split()
            base = " ".join(w for w in words[:-1] if w not in ("const", "*"))
            params.append(Param(words[-1], scalars[base], "*" in words))
        found[m[1]] = tuple(params)
    return found


KERNEL_NAMES = tuple(signatures("float32"))
"""The ``extern "C"`` kernels of the source (``_kernels.cu``'s, then each optimizer's), as the
host side looks them up."""

Packer = Callable[[Mapping[str, Any]], tuple[Any, ...]]


@functools.cache
def packers(dtype: str) -> dict[str, Packer]:
    """For each kernel, a function from its arguments by parameter name to the argument tuple
    a launch takes: values as NumPy scalars of the parameter's C type, pointers as given.
    It raises TypeError naming the kernel and the parameters when the names differ."""

    def packer(kernel: str, params: tuple[Param, ...]) -> Packer:
        types = {p.name: None if p.pointer else np.dtype(p.dtype).type for p in params}

        def pack(args: Mapping[str, Any]) -> tuple[Any, ...]:
            if args.keys() != types.keys():
                raise TypeError(f"kernel {kernel} takes {list(types)}, got {sorted(args)}")
            return tuple(args[n] if t is None else t(args[n]) for n, t in types.items())

        return pack

    return {name: packer(name, params) for name, params in signatures(dtype).items()}


# -- launch shapes ---------------------------------------------------------------------------

BLOCK, ROWS, DOT_WARPS = 256, 8, 8
_BLOCKS = {"gemm": (TILE, TILE), "gemm_dot": (32, DOT_WARPS), "bias_softmax": (32, ROWS),
           "output_delta": (32, ROWS), "batch_end": (BATCH_END_THREADS,)}  # fmt: skip


def block_of(kernel: str) -> tuple[int, ...]:
    """The thread block ``kernel`` is written for: TILE² threads for ``gemm``, a warp per row
    (or output) for the row kernels, BATCH_END_THREADS for ``batch_end``, one thread for an
    optimizer's ``prepare_*``, else BLOCK threads of a grid-stride loop."""
    return _BLOCKS.get(kernel) or ((1,) if kernel.startswith("prepare_") else (BLOCK,))


def dot_wins(M: int, N: int, K: int) -> bool:
    """Whether C = A Bᵀ (M×N over K) goes to ``gemm_dot``: few outputs (a warp each) and a K
    long enough that the tiles' slab-by-slab walk would dominate."""
    return M * N <= 1 << 16 and K >= 4 * TILE


def grid_for(work: int) -> tuple[int]:
    """1-D grid for grid-stride loops over ``work`` items (at least one block)."""
    return (max(1, min(-(-work // BLOCK), 4096)),)
