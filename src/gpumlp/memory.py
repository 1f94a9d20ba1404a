"""How much memory a network and its training need, counted before anything is allocated.

Nothing a user types may exhaust the machine: :class:`gpumlp.Network` checks that its
parameters fit, and ``fit`` that training fits (parameters, gradients, optimizer state, the
epoch snapshot, a batch's activations and the data), against the memory the backend has free
(the host's ``MemAvailable``; on CuPy, the device's free memory). A shortfall raises
:class:`~gpumlp.errors.OutOfMemory` naming the argument, the estimate and what is free, before
the first large allocation. :func:`explain_failure` words an allocation failure that still
happens mid-run (another process took the memory) the same way.
"""

from __future__ import annotations

import itertools
import os
import traceback
from collections.abc import Sequence

from .backend import Namespace, cupy_module, is_cupy
from .errors import OutOfMemory

__all__ = [
    "batch_bytes_per_example",
    "check_model_fits",
    "check_training_fits",
    "explain_failure",
    "free_memory",
    "host_available_memory",
    "is_out_of_memory",
    "param_count",
    "size_text",
]

# CUDA statuses that mean "out of memory" when CuPy raises them as CUDARuntimeError, CUBLASError...
_CUDA_OOM = ("cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY", "STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is an allocation failure of any backend: any ``MemoryError`` (CuPy's
    ``OutOfMemoryError`` is one), or a CuPy error carrying a CUDA or cuBLAS out-of-memory
    status. Never imports CuPy."""
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__module__.startswith("cupy") and any(s in str(exc) for s in _CUDA_OOM)


def host_available_memory() -> int | None:
    """Bytes the host can still give a new allocation without swapping: ``MemAvailable`` of
    ``/proc/meminfo`` (Linux), else ``os.sysconf`` free pages, else None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def free_memory(xp: Namespace) -> int | None:
    """Bytes that new arrays of ``xp`` can still get, or None when unknown: on CuPy the device's
    free memory plus the blocks CuPy's pool holds free; otherwise the host's."""
    if is_cupy(xp):
        cupy = cupy_module()
        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    return host_available_memory()


_ITEMSIZE = {"float32": 4, "float64": 8}
_OPT_BUFFERS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}


def size_text(nbytes: float) -> str:
    """Bytes as ``"1.5 GiB"`` / ``"12.0 MiB"`` / ``"512 bytes"``."""
    if nbytes >= 2**40:
        return f"{nbytes / 2**40:.1f} TiB"
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:.1f} MiB"
    return f"{int(nbytes)} bytes"


def param_count(sizes: Sequence[int]) -> int:
    """Weights and biases of a network of ``sizes``: Σ n_in·n_out + n_out."""
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def batch_bytes_per_example(sizes: Sequence[int], dtype: str, *, dropout: float = 0.0) -> int:
    """Bytes one example of a batch keeps during a step: ``z``, ``a`` and ``δ`` of every layer
    past the input until the backward pass is done (BP1-BP4), plus a dropout mask per hidden
    layer, plus its input and target rows."""
    units = 3 * sum(sizes[1:]) + (sum(sizes[1:-1]) if dropout else 0) + sizes[0] + sizes[-1]
    return _ITEMSIZE[dtype] * units


def _named(argument: str, sizes: Sequence[int]) -> str:
    """``sizes=[784, 30, 10]`` in the API's words, ``--sizes 784,30,10`` in the command's."""
    if argument.startswith("--"):
        return f"{argument} {','.join(map(str, sizes))}"
    return f"{argument}={list(sizes)}"


def _where(xp: Namespace) -> str:
    return "GPU" if is_cupy(xp) else "host"


def check_model_fits(
    sizes: Sequence[int], dtype: str, xp: Namespace, *, argument: str = "sizes"
) -> None:
    """Refuse a network whose parameters alone cannot fit in the free memory of ``xp``.

    Raises OutOfMemory naming ``argument`` (``sizes`` in the API, ``--sizes`` on the command
    line), the parameter count and the bytes needed against those free.
    """
    need = 2 * param_count(sizes) * _ITEMSIZE[dtype]  # the parameters and their host draw
    free = free_memory(xp)
    if free is not None and need > free:
        raise OutOfMemory(
            f"{_named(argument, sizes)} has {param_count(sizes):,} parameters, which need about "
            f"{size_text(need)} in {dtype} to create, but {size_text(free)} of {_where(xp)} "
            "memory is free: use fewer or narrower layers"
        )


def training_bytes(
    sizes: Sequence[int],
    dtype: str,
    *,
    optimizer: str,
    batch_size: int,
    n: int,
    dropout: float = 0.0,
    early_stopping: bool = False,
    copies_inputs: bool = True,
) -> int:
    """Bytes training needs beyond the parameters themselves: gradients, optimizer buffers,
    the epoch-start snapshot of both (and best weights under early stopping), the data set on
    the device (its inputs only when ``copies_inputs``: a host array already in ``dtype`` is
    used in place, a memory-mapped one read page by page), and one batch of activations."""
    p = param_count(sizes) * _ITEMSIZE[dtype]
    k = _OPT_BUFFERS.get(optimizer, 2)
    state = p * (1 + k)  # gradients + optimizer buffers
    snapshot = p * (1 + k) + (p if early_stopping else 0)
    data = n * (_ITEMSIZE[dtype] * (sizes[0] * copies_inputs + sizes[-1]) + 8)
    batch = min(batch_size, n) * batch_bytes_per_example(sizes, dtype, dropout=dropout)
    return state + snapshot + data + batch


def check_training_fits(
    sizes: Sequence[int],
    dtype: str,
    xp: Namespace,
    *,
    optimizer: str,
    batch_size: int,
    n: int,
    dropout: float = 0.0,
    early_stopping: bool = False,
    copies_inputs: bool = True,
    argument: str = "sizes",
) -> None:
    """Refuse training that cannot fit in the free memory of ``xp`` (the parameters already
    exist), with the estimate, what is free, and the largest batch that would fit; arguments
    as :func:`training_bytes`."""
    free = free_memory(xp)
    if free is None:
        return
    need = training_bytes(
        sizes,
        dtype,
        optimizer=optimizer,
        batch_size=batch_size,
        n=n,
        dropout=dropout,
        early_stopping=early_stopping,
        copies_inputs=copies_inputs,
    )
    if need <= free:
        return
    per = batch_bytes_per_example(sizes, dtype, dropout=dropout)
    fixed = need - min(batch_size, n) * per
    largest = (free - fixed) // per if free > fixed else 0
    hint = (
        f"the largest batch that fits is about {largest}: try batch_size={largest} or less"
        if 0 < largest < batch_size
        else "use fewer or narrower layers, or less data"
    )
    raise OutOfMemory(
        f"training {_named(argument, sizes)} ({dtype}, optimizer {optimizer}, batch_size "
        f"{batch_size}, {n:,} examples) needs about {size_text(need)} beyond the parameters "
        f"(gradients, optimizer state, snapshot, data, a batch), but {size_text(free)} of "
        f"{_where(xp)} memory is free; {hint}",
        batch_size=batch_size,
        largest_batch=largest if largest > 0 else None,
    )


def explain_failure(
    exc: BaseException,
    sizes: Sequence[int],
    dtype: str,
    xp: Namespace,
    *,
    batch_size: int,
    n: int,
    dropout: float,
) -> OutOfMemory:
    """Word an allocation failure ``exc`` that happened mid-training: what a batch needs per
    example, what is free now (after the failed batch is released) and the largest batch that
    fits, taking 80% of the free memory as a margin for the allocator and temporaries."""
    traceback.clear_frames(exc.__traceback__)  # release the failed batch's arrays first
    per = batch_bytes_per_example(sizes, dtype, dropout=dropout)
    free = free_memory(xp)
    text = (
        f"out of {_where(xp)} memory training sizes={list(sizes)} ({dtype}) with batch_size="
        f"{batch_size}: a batch needs about {size_text(per * batch_size)} of activations and "
        f"deltas ({per} bytes per example)"
    )
    largest = None if free is None else int(0.8 * free) // per
    if largest is None:
        text += "; try a smaller batch_size"
    elif largest < 1:
        text += f", {size_text(free or 0)} is free: not even one example fits; use fewer units"
    elif largest < batch_size:
        text += f", {size_text(free or 0)} is free: the largest batch that fits is about "
        text += f"{largest}; try batch_size={largest} or less"
    else:
        data = n * (_ITEMSIZE[dtype] * (sizes[0] + sizes[-1]) + 8)
        text += (
            f", {size_text(free or 0)} is free, enough for it: the data set ({size_text(data)}) "
            "or the parameters may be what does not fit"
        )
    return OutOfMemory(
        f"{text} ({type(exc).__name__})", batch_size=batch_size, largest_batch=largest
    )
