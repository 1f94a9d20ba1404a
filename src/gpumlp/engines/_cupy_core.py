"""What both CuPy engines share: flat parameter buffers, device scalars, batch workspaces and
the fixed sequence of launches that is one training step.

Parameter layout. The update kernel needs every parameter in one array, so :class:`Core`
re-homes the run's ``Params`` (and the optimizer's Params-shaped buffers) into one flat device
buffer laid out ``[w_0 … w_(L-1) | b_0 … b_(L-1)]``; afterwards ``params.weights[l]`` etc. are
C-contiguous *views* into it holding the same values. Code that writes parameters in place
(``load_params``, resume, snapshot restore: every write goes through ``Params.set``) keeps
working; an array replaced by a new object is copied back in before the next step.

Device state. Everything that changes between steps lives on the device, so a captured CUDA
graph replays correctly: the rate and Adam's bias corrections (``hyper``, written by the host
only when the rate or t changes, as an asynchronous fill), the batch and dropout counters
(``counters``, advanced by the ``batch_end`` kernel), the epoch's order (``perm``, copied in
once per epoch) and the epoch's cost and hit sums. Nothing in a step reads back to the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from ..dropout import threshold
from ..network import Params
from ..runstate import TrainState
from ._kernels import codes
from .steps import Data

__all__ = ["BLOCK", "Core", "dot_wins", "grid_for"]

BLOCK, ROWS, TILE, END_THREADS, DOT_WARPS = 256, 8, 16, 256, 8


def dot_wins(M: int, N: int, K: int) -> bool:
    """Whether C = A Bᵀ (M×N over K) goes to ``gemm_dot``: few outputs (a warp each) and a K
    long enough that the tiles' slab-by-slab walk would dominate."""
    return M * N <= 1 << 16 and K >= 4 * TILE


def grid_for(work: int) -> tuple[int]:
    """1-D grid for grid-stride loops over ``work`` items (at least one block)."""
    return (max(1, min(-(-work // BLOCK), 4096)),)


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
        self.g_flat = cp.empty_like(self.p)
        grads = self._views(self.g_flat)
        L = len(self.sizes) - 1
        self.gw, self.gb = grads[:L], grads[L:]
        opt = state.optimizer
        self.opt = c.opt[opt.name]
        self.dummy = cp.zeros(1, dtype=self.dtype)  # for pointer arguments a kernel ignores
        self.s1 = self.s2 = self.dummy
        for key, attr in (("velocity", "s1"), ("m", "s1"), ("v", "s2")):
            if key in state.opt_state.buffers:
                flat, _, homes = _flat_home(state.opt_state.buffers[key], cp, self.dtype)
                setattr(self, attr, flat)
                self.homes += homes
        self.mu = float(getattr(opt, "momentum", 0.0))
        self.beta1 = float(getattr(opt, "beta1", 0.0))
        self.beta2 = float(getattr(opt, "beta2", 0.0))
        self.eps_adam = float(getattr(opt, "eps", 0.0))
        self.eps = float(np.finfo(self.dtype).eps)  # the costs' clip bound, as costs._clip
        n = int(data[0].shape[0])
        self.n, self.batch = n, cfg.batch_size
        self.l2n, self.l1n = cfg.l2 / n, cfg.l1 / n
        self.has_drop = bool(cfg.dropout) and L > 1
        self.cut = np.uint32(threshold(cfg.dropout))
        self.scale = self.real(1.0 / (1.0 - cfg.dropout))
        self.key = np.uint64(state.dropout_key or 0)
        self.hyper = cp.zeros(4, dtype=np.float64)  # H_LR, H_T, H_STEP, H_ROOT
        self.counters = cp.zeros(2, dtype=np.int64)  # C_BATCH, C_DRAW
        self.sums = cp.zeros(1, dtype=np.float64)
        self.hits = cp.zeros(1, dtype=np.int64)
        self.perm = cp.arange(n, dtype=np.int64)
        self.order = cp.arange(n, dtype=np.int64)  # the order without shuffling
        self._lr: float | None = None
        self._t: int | None = None
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
            self.hyper[0:1].fill(lr)
            self._lr = lr
        t = self.state.opt_state.scalars.get("t")
        if t is not None and t != self._t:
            self.hyper[1:2].fill(float(t))
            self._t = int(t)

    def set_counters(self, batch: int, draw: int) -> None:
        """Start the batch counter at ``batch`` and the dropout counter at ``draw``."""
        self.counters[0:1].fill(batch)
        self.counters[1:2].fill(draw)

    def after_steps(self, count: int) -> None:
        """The device ran ``count`` steps: mirror Adam's t on the host."""
        if self._t is not None:
            self._t += count
            self.state.opt_state.scalars["t"] = self._t

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
        i32 = np.int32
        M, N = out.shape
        K = a.shape[0] if trans_a else a.shape[1]
        if not trans_a and trans_b and dot_wins(M, N, K):
            blocks = (-(-(M * N) // DOT_WARPS),)
            dot = (i32(M), i32(N), i32(K), a, i32(a.shape[1]), b, i32(b.shape[1]), out, i32(N))
            self.k["gemm_dot"](blocks, (32, DOT_WARPS), dot)
            return
        grid = (-(-N // TILE), -(-M // TILE))
        args = (i32(trans_a), i32(trans_b), i32(M), i32(N), i32(K), a, i32(a.shape[1]))
        self.k["gemm"](grid, (TILE, TILE), (*args, b, i32(b.shape[1]), out, i32(N)))

    # -- one training step, as a fixed sequence of launches -------------------------------------

    def launch(self, ws: SimpleNamespace, *, gathered: bool, gemm: Callable[..., None]) -> None:
        """Enqueue one step on the current stream. Nothing here reads back to the host, so the
        same sequence runs eagerly (``fused``) or under stream capture (``graph``).

        ``gathered``: the batch is the next one of the epoch (the ``gather`` kernel copies it
        in by the device counter); else the caller put it into ``ws.x``/``ws.y``.
        """
        k, r, i32 = self.k, self.real, np.int32
        m, sizes, L = ws.m, self.sizes, len(self.sizes) - 1
        W, B = self.state.params.weights, self.state.params.biases
        X, Y, labels = self.data
        args: tuple[Any, ...]
        if gathered:
            args = (self.perm, self.counters, i32(self.batch), X, Y, labels, ws.x, ws.y, ws.lab)
            work = m * (sizes[0] + sizes[-1] + 1)
            k["gather"](grid_for(work), (BLOCK,), (*args, i32(m), i32(sizes[0]), i32(sizes[-1])))
        rows = (-(-m // ROWS),), (32, ROWS)
        drop = (self.cut, self.scale, self.key, self.counters)
        inputs = [ws.x]
        for l in range(L):  # forward: z = input Wᵀ + b, a = σ(z)
            gemm(inputs[l], W[l], ws.z[l], False, True)
            if self.acts[l] == self.softmax:
                k["bias_softmax"](*rows, (ws.z[l], B[l], ws.a[l], i32(m), i32(sizes[l + 1])))
                continue
            d = self.has_drop and l < L - 1
            out = ws.dropped[l] if d else self.dummy
            args = (ws.z[l], B[l], ws.a[l], out, i32(m), i32(sizes[l + 1]), i32(self.acts[l]))
            k["bias_act"](grid_for(m * sizes[l + 1]), (BLOCK,), (*args, i32(d), *drop, i32(l)))
            inputs.append(ws.dropped[l] if d else ws.a[l])
        args = (ws.z[-1], ws.a[-1], ws.y, ws.lab, ws.delta[-1], ws.row_cost, ws.row_hit, i32(m))
        args += (i32(sizes[-1]), i32(self.delta_kind), i32(self.cost), i32(self.acts[-1]))
        k["output_delta"](*rows, (*args, r(1.0 / m), r(self.eps)))
        for l in range(L - 1, -1, -1):  # backward
            gemm(ws.delta[l], inputs[l], self.gw[l], True, False)  # BP4: δᵀ a
            k["col_sum"](
                grid_for(sizes[l + 1]),
                (BLOCK,),
                (ws.delta[l], self.gb[l], i32(m), i32(sizes[l + 1])),
            )
            if l > 0:
                gemm(ws.delta[l], W[l], ws.g[l], False, False)  # BP2: δ W, then ⊙ σ'(z)
                args = (ws.g[l], ws.z[l - 1], ws.a[l - 1], ws.delta[l - 1], i32(m), i32(sizes[l]))
                args += (i32(self.acts[l - 1]), i32(self.has_drop), *drop, i32(l - 1))
                k["hidden_delta"](grid_for(m * sizes[l]), (BLOCK,), args)
        if self.opt == codes().opt["adam"]:
            k["adam_prep"]((1,), (1,), (self.hyper, np.float64(self.beta1), np.float64(self.beta2)))
        total = self.p.size
        args = (self.p, self.g_flat, self.s1, self.s2, self.hyper, np.int64(total))
        args += (np.int64(self.n_w), r(self.l2n), r(self.l1n), i32(self.opt), r(self.mu))
        args += (r(self.beta1), r(self.beta2), r(1.0 - self.beta1), r(1.0 - self.beta2))
        k["update"](grid_for(total), (BLOCK,), (*args, r(self.eps_adam)))
        k["batch_end"](
            (1,),
            (END_THREADS,),
            (ws.row_cost, ws.row_hit, i32(m), self.sums, self.hits, self.counters),
        )
