"""The CuPy engine ``persistent``: a whole epoch in one kernel launch, the network resident in
the shared memory of one thread block.

One launch of ``persistent_<optimizer>`` (:mod:`._persistent_src`, ``_persistent.cu``) loads the
flat parameters of :class:`._cupy_core.Core` into dynamic shared memory, runs every mini-batch of
the epoch in the order ``perm`` (forward, δ^L, BP2, the gradients, the penalties and the
optimizer's update of the resident parameters; the cost and hits summed by rows), and writes the
parameters back and the epoch's sums: one launch per epoch and no host read. The data, the order
and the optimizer's buffers stay in global memory.

It applies where the parameters and one batch's activations and deltas fit in the device's
opt-in shared memory per block (:func:`shared_bytes` against ``MaxSharedMemoryPerBlockOptin``):
the book's [784, 30, 10] in float32 at batch 10 needs 98 KB of the H100's 227 KB; in
float64 196 KB (KB: 1,024 bytes). Larger networks are refused with the sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import Array
from ..memory import param_count
from ._ctext import prepared
from ._cupy_core import Core
from ._persistent_src import MAX_THREADS, persistent_name

__all__ = ["THREADS", "PersistentStep", "shared_bytes", "shared_limit", "threads_for", "too_big"]

THREADS = MAX_THREADS
"""The most threads of the one block (the kernel takes any whole number of warps up to 1024;
:func:`threads_for` takes fewer for a small network)."""


def shared_bytes(sizes: list[int], batch: int, itemsize: int, *, dropout: bool) -> int:
    """Bytes of dynamic shared memory a launch needs: the parameters, then per layer z, a and δ
    for ``batch`` rows (and the dropped input of the next layer for a hidden layer under
    dropout), then each row's cost and hit (the layout of ``_persistent.cu``)."""
    L = len(sizes) - 1
    per_row = sum(n * (4 if dropout and l < L - 1 else 3) for l, n in enumerate(sizes[1:]))
    return (param_count(sizes) + batch * per_row + batch) * itemsize + 4 * batch


def threads_for(sizes: list[int], batch: int, cap: int) -> int:
    """The block for this network: a thread per parameter (the update) or per unit of the
    batch (the backward pass), whichever is more, in whole warps, at most ``cap``."""
    work = max(param_count(sizes), batch * max(sizes[1:]))
    return max(32, min(cap, 32 * -(-work // 32)))


def shared_limit(cp: Any) -> int:
    """The device's opt-in shared memory per block, in bytes."""
    return int(cp.cuda.Device().attributes["MaxSharedMemoryPerBlockOptin"])


def too_big(sizes: list[int], batch: int, dtype: str, dropout: bool, limit: int) -> str | None:
    """Why the persistent engine cannot hold this network and batch (None when it can)."""
    need = shared_bytes(sizes, batch, np.dtype(dtype).itemsize, dropout=dropout)
    if need <= limit:
        return None
    return (f"{sizes} in {dtype} at batch {batch} needs {need} bytes of shared memory per "
            f"block, more than the device's {limit}")  # fmt: skip


class PersistentStep:
    """``engine="persistent"``: one launch per epoch (module docstring)."""

    engine = label = "persistent"

    def __init__(self, core: Core, *, threads: int = THREADS) -> None:
        if threads < 32 or threads % 32 or threads > MAX_THREADS:
            raise ValueError(f"threads={threads}: whole warps, at most {MAX_THREADS}, expected")
        self.core, self.threads = core, threads
        cp, state = core.cp, core.state
        self.kernel = core.k[persistent_name(state.optimizer.name)]
        self.sizes_dev = cp.asarray(np.array(core.sizes, dtype=np.int32))
        self.acts_dev = cp.asarray(np.array(core.acts, dtype=np.int32))
        self.prepare_args = {prepared(k): v for k, v in core.prepare_args.items()}
        self.limit = shared_limit(cp)
        self.last = cp.empty((core.batch, core.sizes[-1]), dtype=core.dtype)  # epoch's outputs

    def _launch(self, X: Any, Y: Any, labels: Any, perm: Any, n_rows: int, batch: int,
                draw: int, out_a: Any) -> None:  # fmt: skip
        core = self.core
        smem = shared_bytes(core.sizes, batch, core.dtype.itemsize, dropout=core.has_drop)
        why = too_big(core.sizes, batch, core.dtype.name, core.has_drop, self.limit)
        if why is not None:
            raise ValueError(f"engine='persistent': {why}")
        if self.kernel.max_dynamic_shared_size_bytes < smem:
            self.kernel.max_dynamic_shared_size_bytes = smem
        args = dict(
            X=X, Y=Y, labels=labels, perm=perm, n_rows=n_rows, batch=batch, sizes=self.sizes_dev,
            acts=self.acts_dev, layers=len(core.sizes) - 1, kind=core.delta_kind,
            cost=core.cost, clip_eps=core.eps, has_drop=core.has_drop, cut=core.cut,
            keep_scale=core.scale, key=core.key, draw=draw, flat=core.p,
            hyper=core.hyper, total=core.p.size, n_w=core.n_w, l2n=core.l2n, l1n=core.l1n,
            sums=core.sums, hits=core.hits, out_a=out_a, **core.update_args,
            **self.prepare_args,
        )  # fmt: skip
        name = persistent_name(core.state.optimizer.name)
        self.kernel((1,), (self.threads,), core.pack[name](args), shared_mem=smem)

    def __call__(self, x: Array, y: Array, lr: float, draw: int = 0) -> Array:
        """One step on an explicit batch (see :mod:`gpumlp.engines.steps`)."""
        core, cp = self.core, self.core.cp
        m = int(x.shape[0])
        core.prepare(lr)
        out = cp.empty((m, core.sizes[-1]), dtype=core.dtype)
        order = cp.arange(m, dtype=np.int64)
        labels = cp.zeros(m, dtype=np.int64)
        self._launch(x, y, labels, order, m, m, draw, out)
        core.after_steps(1)
        result: Array = out
        return result

    def epoch(
        self,
        perm: Array | None,
        lr: float,
        draw: int,
        *,
        monitor: tuple[str, ...] = (),
        progress: Callable[[int], object] | None = None,
    ) -> tuple[Array, Array]:
        """Every mini-batch of the bound data in the order ``perm``, in one launch."""
        core = self.core
        core.start_epoch(perm, lr)
        X, Y, labels = core.data
        self._launch(X, Y, labels, core.perm, core.n, core.batch, draw, self.last)
        steps = math.ceil(core.n / core.batch)
        core.after_steps(steps)
        if progress is not None:
            progress(steps)
        return core.sums[0], core.hits[0]
