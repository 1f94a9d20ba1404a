"""How much memory a network and its training need, counted before anything is allocated.

Nothing a user types may exhaust the machine: :class:`gpumlp.Network` checks that its
parameters fit, and ``fit`` that training fits (parameters, gradients, optimizer state, the
epoch snapshot, a batch's activations and the data), against the memory the backend has free
(on the host the least of ``MemAvailable``, the cgroup's and the rlimits' headroom: what this
process can get, in a container too; on CuPy, the device's free memory). A shortfall raises
:class:`~gpumlp.errors.OutOfMemory` naming the argument, the estimate and what is free, before
the first large allocation. :func:`explain_failure` words an allocation failure that still
happens mid-run (another process took the memory) the same way.
"""

from __future__ import annotations

import itertools
import os
import traceback
from collections.abc import Sequence
from pathlib import Path

from .backend import Namespace, backend_name, cupy_module, is_cupy
from .errors import OutOfMemory
from .optim import get_optimizer
from .settings import DEFAULT_CHUNK

__all__ = ["batch_bytes_per_example", "check_model_fits", "check_training_fits", "explain_failure",
           "free_memory", "host_available_memory", "is_out_of_memory", "param_count", "size_text",
           "training_bytes", "validation_bytes"]  # fmt: skip

# CUDA statuses that mean "out of memory" when CuPy raises them as CUDARuntimeError, CUBLASError...
_CUDA_OOM = ("cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY", "STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is an allocation failure of any backend: any ``MemoryError`` (CuPy's
    ``OutOfMemoryError`` is one), or a CuPy error carrying a CUDA or cuBLAS out-of-memory
    status. Never imports CuPy."""
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__module__.startswith("cupy") and any(s in str(exc) for s in _CUDA_OOM)


_PROC, _CGROUP = Path("/proc"), Path("/sys/fs/cgroup")  # tests point these at fakes
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as 2**63 less a page
# Per cgroup version: the limit, the usage, and the reclaimable page cache the usage counts
# (its memory.stat key), which the kernel frees before it kills anything.
_V2 = ("memory.max", "memory.current", "inactive_file")
_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def host_available_memory() -> int | None:
    """Bytes a new allocation of this process can still get, or None when nothing is known.

    The least of: the host's ``MemAvailable`` (``/proc/meminfo``; else ``os.sysconf`` free
    pages); the headroom of each memory cgroup holding the process, up to the root (v2
    ``memory.max`` less ``memory.current``, v1 ``memory.limit_in_bytes`` less
    ``memory.usage_in_bytes``, each less reclaimable page cache), which is what a container
    gets; and the headroom of its resource limits (``RLIMIT_AS`` less ``VmSize``,
    ``RLIMIT_DATA`` less ``VmData``), where an allocation fails without the machine being short.
    """
    known = [_meminfo(), *_cgroup_headroom(), *_rlimit_headroom()]
    found = [n for n in known if n is not None]
    return max(0, min(found)) if found else None


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _field(text: str, key: str | None = None, scale: int = 1) -> int | None:
    """The number after ``key`` at the start of a line of ``text`` ("Key:\t12 kB", "key 12"),
    or the first word of ``text`` when ``key`` is None; None when it is no number ("max")."""
    for line in text.splitlines():
        words = line.split()
        if key is not None:
            if not words or words[0] not in (key, key + ":"):
                continue
            words = words[1:]
        return int(words[0]) * scale if words and words[0].isdigit() else None
    return None


def _meminfo() -> int | None:
    found = _field(_text(_PROC / "meminfo"), "MemAvailable", 1024)
    if found is not None:
        return found
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_headroom() -> list[int]:
    """Limit less usage of every memory cgroup of this process that has a limit. The cgroup's
    path (``/proc/self/cgroup``) is looked up under the mount and each of its parents, so both
    a container's own view (path ``/``, its cgroup at the mount) and the host's are found."""
    out = []
    for line in _text(_PROC / "self" / "cgroup").splitlines():
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if controllers == "":
            bases, files = [_CGROUP, _CGROUP / "unified"], _V2
        elif "memory" in controllers.split(","):
            bases, files = [_CGROUP / "memory"], _V1
        else:
            continue
        parts = [p for p in path.split("/") if p not in ("", ".", "..")]
        for base in bases:
            for depth in range(len(parts), -1, -1):
                folder = base.joinpath(*parts[:depth])
                limit = _field(_text(folder / files[0]))
                if limit is None or limit >= _UNLIMITED:
                    continue  # no such file, or "max": no limit at this level
                usage = _field(_text(folder / files[1])) or 0
                cache = _field(_text(folder / "memory.stat"), files[2]) or 0
                out.append(limit - max(0, usage - cache))
    return out


def _rlimit_headroom() -> list[int]:
    try:
        import resource
    except ImportError:  # not on POSIX
        return []
    status, out = _text(_PROC / "self" / "status"), []
    for limit, used in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and soft >= 0:
            out.append(soft - (_field(status, used, 1024) or 0))
    return out


def free_memory(xp: Namespace) -> int | None:
    """Bytes that new arrays of ``xp`` can still get, or None when unknown: on CuPy the device's
    free memory plus the blocks CuPy's pool holds free; otherwise the host's."""
    if is_cupy(xp):
        cupy = cupy_module()
        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    return host_available_memory()


_ITEMSIZE = {"float32": 4, "float64": 8}
_DRAW_BLOCK = 16 << 20  # initial.BLOCK_VALUES float64 values drawn at a time, and scaled


def size_text(nbytes: float) -> str:
    """Bytes as ``"1.5 GiB"`` / ``"12.0 MiB"`` / ``"480,000 bytes"``."""
    for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if nbytes >= 2**power:
            return f"{nbytes / 2**power:.1f} {unit}"
    return f"{int(nbytes):,} bytes"


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
    """Refuse a network whose parameters alone cannot fit in the free memory.

    They are drawn on the host, a block of rows at a time in ``dtype`` (:mod:`gpumlp.initial`),
    then moved to ``xp``: NumPy uses the host arrays, any other namespace needs its own copy.
    Raises OutOfMemory naming ``argument`` (``sizes`` in the API, ``--sizes`` on the command
    line), the parameter count and the bytes needed against those free.
    """
    need = param_count(sizes) * _ITEMSIZE[dtype]
    if is_cupy(xp):
        checks = [(need + _DRAW_BLOCK, "host", host_available_memory())]
        checks.append((need, "GPU", free_memory(xp)))
    else:
        copies = 1 if backend_name(xp) == "numpy" else 2
        checks = [(copies * need + _DRAW_BLOCK, "host", free_memory(xp))]
    for bytes_, where, free in checks:
        if free is not None and bytes_ > free:
            raise OutOfMemory(
                f"{_named(argument, sizes)} has {param_count(sizes):,} parameters, which need "
                f"about {size_text(bytes_)} in {dtype} to create, but {size_text(free)} of "
                f"{where} memory is free: use fewer or narrower layers"
            )


def _data_bytes(sizes: Sequence[int], dtype: str, n: int, *, copies_inputs: bool = True) -> int:
    """The data set on the device: inputs (when copied), targets and int64 labels."""
    return n * (_ITEMSIZE[dtype] * (sizes[0] * copies_inputs + sizes[-1]) + 8)


def validation_bytes(sizes: Sequence[int], dtype: str, n_val: int, *, chunk: int = DEFAULT_CHUNK,
                     copies_inputs: bool = True) -> int:  # fmt: skip
    """Bytes the validation pass of ``fit`` needs: ``n_val`` examples on the device, as
    :func:`_data_bytes` counts them, and ``chunk`` rows at a time of the forward pass and cost,
    which hold the widest layer 8 times per row (6 measured on NumPy, for cross-entropy)."""
    passing = min(chunk, n_val) * _ITEMSIZE[dtype] * 8 * max(sizes[1:])
    return _data_bytes(sizes, dtype, n_val, copies_inputs=copies_inputs) + passing


def training_bytes(sizes: Sequence[int], dtype: str, *, optimizer: str, batch_size: int, n: int,
                   dropout: float = 0.0, early_stopping: bool = False,
                   copies_inputs: bool = True, n_val: int = 0,
                   chunk: int = DEFAULT_CHUNK) -> int:  # fmt: skip
    """Bytes training needs beyond the parameters themselves: gradients, optimizer buffers,
    the epoch-start snapshot of both (and best weights under early stopping), the data set on
    the device (its inputs only when ``copies_inputs``: a host array already in ``dtype`` is
    used in place, a memory-mapped one read page by page), one batch of activations, and the
    update's temporaries: it makes new arrays tensor by tensor, so the largest weights exist
    up to 3 + 2k more times at once (k optimizer buffers; 1 + 2k measured on NumPy, the rest a
    margin: refusing a run that would just fit beats the OOM killer); and with ``n_val``
    validation examples, their pass (:func:`validation_bytes`, ``chunk`` rows at a time)."""
    p = param_count(sizes) * _ITEMSIZE[dtype]
    k = len(get_optimizer(optimizer).buffers)
    state = p * (1 + k)  # gradients + optimizer buffers
    snapshot = p * (1 + k) + (p if early_stopping else 0)
    data = _data_bytes(sizes, dtype, n, copies_inputs=copies_inputs)
    batch = min(batch_size, n) * batch_bytes_per_example(sizes, dtype, dropout=dropout)
    largest = max(a * b for a, b in itertools.pairwise(sizes)) * _ITEMSIZE[dtype]
    validation = validation_bytes(sizes, dtype, n_val, chunk=chunk, copies_inputs=copies_inputs)
    return state + snapshot + data + batch + (3 + 2 * k) * largest + validation


def check_training_fits(sizes: Sequence[int], dtype: str, xp: Namespace, *, optimizer: str,
                        batch_size: int, n: int, dropout: float = 0.0,
                        early_stopping: bool = False, copies_inputs: bool = True,
                        n_val: int = 0, chunk: int = DEFAULT_CHUNK, argument: str = "sizes",
                        with_parameters: bool = False) -> None:  # fmt: skip
    """Refuse training that cannot fit in the free memory of ``xp``, with the estimate, what is
    free, and the largest batch that would fit; arguments as :func:`training_bytes`.
    ``with_parameters`` counts the parameters too: before the network exists (planning a run)
    they must fit beside the rest; ``fit`` checks after they exist."""
    free = free_memory(xp)
    if free is None:
        return
    need = training_bytes(sizes, dtype, optimizer=optimizer, batch_size=batch_size, n=n,
                          dropout=dropout, early_stopping=early_stopping,
                          copies_inputs=copies_inputs, n_val=n_val, chunk=chunk)  # fmt: skip
    need += param_count(sizes) * _ITEMSIZE[dtype] if with_parameters else 0
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
        f"{batch_size}, {n:,} examples) needs about {size_text(need)} "
        f"{'(parameters, ' if with_parameters else 'beyond the parameters ('}"
        f"gradients, optimizer state, snapshot, data, a batch"
        f"{', the validation pass' if n_val else ''}), but {size_text(free)} of "
        f"{_where(xp)} memory is free; {hint}",
        batch_size=batch_size,
        largest_batch=largest if largest > 0 else None,
    )


def explain_failure(exc: BaseException, sizes: Sequence[int], dtype: str, xp: Namespace, *,
                    batch_size: int, n: int, dropout: float) -> OutOfMemory:  # fmt: skip
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
        data = _data_bytes(sizes, dtype, n)
        text += (
            f", {size_text(free or 0)} is free, enough for it: the data set ({size_text(data)}) "
            "or the parameters may be what does not fit"
        )
    return OutOfMemory(
        f"{text} ({type(exc).__name__})", batch_size=batch_size, largest_batch=largest
    )
