"""What both CuPy engines share: flat parameter buffers, device scalars, batch workspaces and
the fixed sequence of launches that is one training step.

Parameter layout. The update kernel needs every parameter in one array, so :class:`Core`
re-homes the run's ``Params`` (and the optimizer's Params-shaped buffers) into one flat device
buffer laid out ``[w_0 … w_(L-1) | b_0 … b_(L-1)]``; afterwards ``params.weights[l]`` etc. are
C-contiguous *views* into it holding the same values. Code that writes parameters in place
(``load_params``, resume, snapshot restore: every write goes through ``Params.set``) keeps
working; an array replaced by a new object is copied back in before the next step.

Device state. Everything that changes between steps lives on the device, so a captured CUDA
graph replays correctly: the rate and the optimizer's own device scalars (``hyper``, slots
:func:`._kernels.hyper_slots`: the host writes the rate and any step count, as asynchronous
fills, only when they change; the optimizer's ``prepare_<name>`` kernel advances the rest), the
batch and dropout counters (``counters``, slots :data:`._kernels.COUNTERS`, advanced by the
``batch_end`` kernel), the epoch's order (``perm``, copied in once per epoch) and the epoch's
cost and hit sums. Nothing in a step reads back to the host.

Launches. :meth:`Core.call` passes a kernel's arguments by the parameter names of its C source
(:func:`._launch.packers` types and orders them), with the block shape it is written for
(:func:`._launch.block_of`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from ..distributed.sync import Reducer
from ..dropout import threshold
from ..network import Params
from ..runstate import TrainState
from ._kernels import COUNTERS, TILE, codes, hyper_slots, optimizer_kernels
from ._launch import DOT_WARPS, ROWS, block_of, dot_wins, grid_for, packers, signatures
from .steps import Data

__all__ = ["Core"]


def _fill(array: Any, slot: int, value: float) -> None:
    """``array[slot] = value`` on the device, without a host synchronisation."""
    array[slot : slot + 1].fill(value)


def _flat_home(
    params: Params, cp: ModuleType, dtype: Any
) -> tuple[Any, int, list[tuple[list[Any], int, Any]]]:
    """Copy a Params' tensors into one flat buffer [weights | biases] and put views in their
    place. Returns the buffer, the number of weight entries, and (list, index, view) per tensor
    in the order w_0 … w_(L-1), b_0 … b_(L-1)."""
    tensors = [(params.weights, i) for i in range(len(params.weights))]
    tensors += [(params.biases, i) for i in range(len(params.biases))]
    flat = cp.empty(sum(math.prod(seq[i].shape) for seq, i in tensors), dtype=dtype)
    homes, offset = [], 0
    for seq, i in tensors:
        old, size = seq[i], math.prod(seq[i].shape)
        view = flat[offset : offset + size].reshape(old.shape)
        view[...] = old
        seq[i] = view
        homes.append((seq, i, view))
        offset += size
    return flat, sum(math.prod(w.shape) for w in params.weights), homes


class Core:
    """Buffers and the launch sequence of one run's step (see the module docstring)."""

    def __init__(
        self, state: TrainState, data: Data, kernels: dict[str, Any], cp: ModuleType
    ) -> None:
        spec, cfg = state.spec, state.config
        self.state, self.data, self.k, self.cp = state, data, kernels, cp
        self.dtype = np.dtype(spec.dtype)
        self.real = self.dtype.type
        self.sizes = list(spec.sizes)
        c = codes()
        self.acts = [c.act[a.name] for a in spec.activations]
        self.softmax = c.act["softmax"]
        out = spec.activations[-1].name
        self.delta_kind = c.delta.get((spec.cost.name, out)) or (
            c.delta_softmax if out == "softmax" else c.delta_elementwise
        )
        self.cost = c.cost[spec.cost.name]
        self.p, self.n_w, self.homes = _flat_home(state.params, cp, self.dtype)
        # under a communicator one more element: the ranks' interrupt flag (distributed.sync)
        self.reducer = None if state.comm is None else Reducer(state.comm, state.params, xp=cp)
        self.g_flat = cp.empty(self.p.size + (self.reducer is not None), dtype=self.dtype)
        grads = self._views(self.g_flat)
        L = len(self.sizes) - 1
        self.gw, self.gb = grads[:L], grads[L:]
        self.pack = packers(spec.dtype)
        self.dummy = cp.zeros(1, dtype=self.dtype)  # for pointer arguments a kernel ignores
        opt, form = state.optimizer, state.optimizer.cuda()
        if form is None:
            raise ValueError(f"optimizer {opt.name!r} has no CUDA form")
        self.update_kernel, self.prepare_kernel = optimizer_kernels(opt.name)
        values: dict[str, Any] = opt.kernel_args()
        for key in opt.buffers:  # flat, homed as the parameters are
            values[key], _, homes = _flat_home(state.opt_state.buffers[key], cp, self.dtype)
            self.homes += homes
        sig = signatures(spec.dtype)  # the optimizer's own arguments of its two kernels
        self.update_args, self.prepare_args = (
            {p.name: values[p.name] for p in sig[k] if p.name in values} if k else {}
            for k in (self.update_kernel, self.prepare_kernel)
        )
        self.slots = hyper_slots(form)
        self.step_counts: dict[str, int | None] = dict.fromkeys(
            s for s in opt.scalars if s in self.slots
        )
        self.eps = float(np.finfo(self.dtype).eps)  # the costs' clip bound, as costs._clip
        n = int(data[0].shape[0])
        self.n, self.batch = n, cfg.batch_size
        self.l2n, self.l1n = cfg.l2 / n, cfg.l1 / n
        self.has_drop = bool(cfg.dropout) and L > 1
        self.cut = np.uint32(threshold(cfg.dropout))
        self.scale = self.real(1.0 / (1.0 - cfg.dropout))
        self.key = np.uint64(state.dropout_key or 0)
        self.hyper = cp.zeros(len(self.slots), dtype=np.float64)
        self.counters = cp.zeros(len(COUNTERS), dtype=np.int64)
        self.sums = cp.zeros(1, dtype=np.float64)
        self.hits = cp.zeros(1, dtype=np.int64)
        self.perm = cp.arange(n, dtype=np.int64)
        self.order = cp.arange(n, dtype=np.int64)  # the order without shuffling
        self._lr: float | None = None
        self.workspaces: dict[int, SimpleNamespace] = {}

    def _views(self, flat: Any) -> list[Any]:
        views, offset = [], 0
        for _, _, t in self.homes[: 2 * (len(self.sizes) - 1)]:
            views.append(flat[offset : offset + t.size].reshape(t.shape))
            offset += t.size
        return views

    # -- host <-> device state, between steps ---------------------------------------------------

    def prepare(self, lr: float) -> None:
        """Bring the device scalars and the flat buffers up to date with the host (no sync)."""
        for seq, i, view in self.homes:
            if seq[i] is not view:  # replaced by a new array: take its values back in
                view[...] = seq[i]
                seq[i] = view
        if lr != self._lr:
            _fill(self.hyper, self.slots.index("lr"), lr)
            self._lr = lr
        for name, seen in self.step_counts.items():
            count = int(self.state.opt_state.scalars[name])
            if count != seen:
                _fill(self.hyper, self.slots.index(name), float(count))
                self.step_counts[name] = count

    def start_epoch(self, perm: Any, lr: float) -> None:
        """:meth:`prepare` for an epoch over the bound data in the order ``perm`` (None: in
        order), its cost and hit sums at zero."""
        self.prepare(lr)
        self.cp.copyto(self.perm, self.order if perm is None else perm)
        self.sums.fill(0)
        self.hits.fill(0)

    def set_counters(self, batch: int, draw: int) -> None:
        """Start the batch counter at ``batch`` and the dropout counter at ``draw``."""
        _fill(self.counters, COUNTERS.index("batch"), batch)
        _fill(self.counters, COUNTERS.index("draw"), draw)

    def after_steps(self, count: int) -> None:
        """The device ran ``count`` steps: mirror the optimizer's step counts on the host (its
        ``prepare`` kernel advanced them by one a step)."""
        for name, seen in self.step_counts.items():
            if seen is not None:
                self.step_counts[name] = seen + count
                self.state.opt_state.scalars[name] = seen + count

    def call(self, kernel: str, grid: tuple[int, ...], **args: Any) -> None:
        """Launch ``kernel`` over ``grid`` in its block shape, ``args`` by parameter name."""
        self.k[kernel](grid, block_of(kernel), self.pack[kernel](args))

    def workspace(self, m: int) -> SimpleNamespace:
        """Device buffers for a batch of ``m`` rows: the batch (x, y, labels), z, a, δ per
        layer, δ W for the hidden layers, dropout outputs, and each row's cost and hit."""
        if m not in self.workspaces:
            cp, s, dt = self.cp, self.sizes, self.dtype

            def new(cols: int) -> Any:
                return cp.zeros((m, cols), dtype=dt)

            self.workspaces[m] = SimpleNamespace(
                m=m,
                x=new(s[0]),
                y=new(s[-1]),
                lab=cp.zeros(m, dtype=np.int64),
                z=[new(n) for n in s[1:]],
                a=[new(n) for n in s[1:]],
                delta=[new(n) for n in s[1:]],
                g=[None] + [new(n) for n in s[1:-1]],
                dropped=[new(n) if self.has_drop else None for n in s[1:-1]],
                row_cost=cp.zeros(m, dtype=dt),
                row_hit=cp.zeros(m, dtype=np.int32),
            )
        return self.workspaces[m]

    # -- the GEMMs ------------------------------------------------------------------------------

    def gemm_cublas(self, a: Any, b: Any, out: Any, trans_a: bool, trans_b: bool) -> None:
        """``out = op(a) op(b)`` by cuBLAS (CuPy's matmul)."""
        self.cp.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)

    def gemm_tiled(self, a: Any, b: Any, out: Any, trans_a: bool, trans_b: bool) -> None:
        """``out = op(a) op(b)`` by the kernels a CUDA graph can capture: one warp per output
        for the forward product when there are few outputs and K is long (:func:`dot_wins`),
        else 16×16 tiles."""
        M, N = out.shape
        K = a.shape[0] if trans_a else a.shape[1]
        mats = {"M": M, "N": N, "K": K, "A": a, "lda": a.shape[1], "B": b, "ldb": b.shape[1]}
        if not trans_a and trans_b and dot_wins(M, N, K):
            self.call("gemm_dot", (-(-(M * N) // DOT_WARPS),), **mats, C=out, ldc=N)
            return
        grid = (-(-N // TILE), -(-M // TILE))
        self.call("gemm", grid, trans_a=trans_a, trans_b=trans_b, **mats, C=out, ldc=N)

    # -- one training step, as a fixed sequence of launches -------------------------------------

    def launch(self, ws: SimpleNamespace, *, gathered: bool, gemm: Callable[..., None],
               part: tuple[int, int] | None = None) -> None:  # fmt: skip
        """Enqueue one step on the current stream. Nothing here reads back to the host, so the
        same sequence runs eagerly (``fused``) or under stream capture (``graph``).

        ``gathered``: the batch is the next one of the epoch (the ``gather`` kernel copies it
        in by the device counter); else the caller put it into ``ws.x``/``ws.y``. ``part``:
        as :mod:`gpumlp.engines.steps` says (the update then waits for the ranks' sum).
        """
        if ws.m == 0:  # an empty part (a global batch of fewer rows than ranks): adds nothing
            self.g_flat.fill(0)
            self._update(ws)
            return
        call, m, sizes, L = self.call, ws.m, self.sizes, len(self.sizes) - 1
        first, total_rows = part or (0, m)
        W, B = self.state.params.weights, self.state.params.biases
        X, Y, labels = self.data
        if gathered:
            work = m * (sizes[0] + sizes[-1] + 1)
            call("gather", grid_for(work), perm=self.perm[first:], counters=self.counters,
                 batch=self.batch, X=X, Y=Y, labels=labels, x=ws.x, y=ws.y, lab=ws.lab, m=m,
                 n_in=sizes[0], n_out=sizes[-1])  # fmt: skip
        rows = (-(-m // ROWS),)
        drop = {"cut": self.cut, "scale": self.scale, "key": self.key, "counters": self.counters,
                "first": first}  # fmt: skip
        inputs = [ws.x]
        for l in range(L):  # forward: z = input Wᵀ + b, a = σ(z)
            gemm(inputs[l], W[l], ws.z[l], False, True)
            n = sizes[l + 1]
            if self.acts[l] == self.softmax:
                call("bias_softmax", rows, z=ws.z[l], b=B[l], a=ws.a[l], m=m, n=n)
                continue
            d = self.has_drop and l < L - 1
            call("bias_act", grid_for(m * n), z=ws.z[l], b=B[l], a=ws.a[l],
                 dropped=ws.dropped[l] if d else self.dummy, m=m, n=n, act=self.acts[l],
                 has_drop=d, **drop, layer=l)  # fmt: skip
            inputs.append(ws.dropped[l] if d else ws.a[l])
        call("output_delta", rows, z=ws.z[-1], a=ws.a[-1], y=ws.y, lab=ws.lab,
             delta=ws.delta[-1], row_cost=ws.row_cost, row_hit=ws.row_hit, m=m, n=sizes[-1],
             kind=self.delta_kind, cost=self.cost, act=self.acts[-1], scale=1.0 / total_rows,
             eps=self.eps)  # fmt: skip
        for l in range(L - 1, -1, -1):  # backward
            n = sizes[l + 1]
            gemm(ws.delta[l], inputs[l], self.gw[l], True, False)  # BP4: δᵀ a
            call("col_sum", grid_for(n), delta=ws.delta[l], out=self.gb[l], m=m, n=n)
            if l > 0:
                gemm(ws.delta[l], W[l], ws.g[l], False, False)  # BP2: δ W, then ⊙ σ'(z)
                call("hidden_delta", grid_for(m * sizes[l]), g=ws.g[l], z=ws.z[l - 1],
                     a=ws.a[l - 1], delta=ws.delta[l - 1], m=m, n=sizes[l],
                     act=self.acts[l - 1], has_drop=self.has_drop, **drop,
                     layer=l - 1)  # fmt: skip
        self._update(ws)

    def _update(self, ws: SimpleNamespace) -> None:
        """The step's end: the ranks' sum, the optimizer's update, the batch's sums."""
        call = self.call
        if self.reducer is not None:
            self.reducer.reduce(self.g_flat)
        if self.prepare_kernel is not None:
            call(self.prepare_kernel, (1,), hyper=self.hyper, **self.prepare_args)
        total = self.p.size
        call(self.update_kernel, grid_for(total), p=self.p, g=self.g_flat, hyper=self.hyper,
             total=total, n_w=self.n_w, l2n=self.l2n, l1n=self.l1n,
             **self.update_args)  # fmt: skip
        call("batch_end", (1,), row_cost=ws.row_cost, row_hit=ws.row_hit, m=ws.m,
             sums=self.sums, hits=self.hits, counters=self.counters)  # fmt: skip
