"""CuPy fast paths for the training step: fused kernels (``fused``) and CUDA graphs (``graph``).

Both do exactly what :func:`gpumlp.train.generic_step` does (backprop on the batch, penalties,
one optimizer update in place) with fewer, larger kernel launches. They are chosen only by
:func:`gpumlp.train.select_step` and tested against the generic step.

``fused``
    cuBLAS GEMMs (``cupy.matmul``) plus one kernel per remaining stage: bias + activation per
    layer (writing ``z`` and ``a``), the output error δ^L (BP1, cost gradient and σ' fused,
    scaled by 1/m), the bias gradients (BP3), the hidden ``(δ W) ⊙ σ'(z)`` (BP2), and one update
    kernel for penalties + optimizer over *all* parameters.
``graph``
    The same launch sequence with the GEMMs done by a small tiled kernel (``gemm`` below), since
    CuPy's cuBLAS calls cannot be captured. A whole step is then captured once per batch shape as
    a CUDA graph and replayed with one launch; the batch is copied into fixed device buffers
    first. For launch-bound networks (all widths ≤ ``GRAPH_MAX_DIM``, batch ≤ ``GRAPH_MAX_BATCH``).

Parameter layout. The update kernel needs all parameters in one array, so :func:`make_step`
re-homes ``net.params`` (and the optimizer's Params-shaped buffers) into one flat device buffer
laid out ``[w_0 … w_(L-1) | b_0 … b_(L-1)]``: afterwards ``net.params.weights[l]`` etc. are
C-contiguous *views* into it, holding the same values. Code that updates parameters in place
(``load_params``, checkpoint resume, snapshot restore) keeps working; an array replaced by a new
object is copied back into the buffer at the next step.

Scalars that change during training (lr between epochs, Adam's step count t) live in a small
device buffer, since a captured graph bakes in kernel arguments; the host writes it (an
asynchronous fill, never a sync) only when lr or t changes.

All kernels are one self-contained CUDA C source, ``_cupy_fast.cu`` beside this module (a
``cupy.RawModule``), rather than ElementwiseKernel fragments: both engines share it, it takes
fixed buffers (no allocation, so it can be captured), and being whole it can be compile-checked
with ``nvcc`` where no GPU is.
CuPy is imported lazily and the kernels are compiled at the first :func:`make_step`, so importing
this module needs neither CuPy nor CUDA. :func:`kernel_source` gives the CUDA C source.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import types
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

__all__ = [
    "GRAPH_MAX_BATCH",
    "GRAPH_MAX_DIM",
    "KERNEL_NAMES",
    "kernel_source",
    "make_step",
    "unsupported",
    "use_fp32_matmul",
    "versions",
]

logger = logging.getLogger(__name__)

GRAPH_MAX_DIM = 1024
"""Widest layer for which ``graph`` qualifies (its tiled GEMM is no match for cuBLAS beyond)."""
GRAPH_MAX_BATCH = 1024
"""Largest batch for which ``graph`` qualifies."""
GRAPH_MAX_SHAPES = 4
"""Batch shapes captured per run; further shapes run the same kernels without a graph."""

_ACT = {"sigmoid": 0, "relu": 1, "tanh": 2, "identity": 3, "softmax": 4}
_GRAD = {"quadratic": 0, "cross_entropy": 1, "log_likelihood": 2}
_FUSED_DELTA = {("cross_entropy", "sigmoid"): 0, ("log_likelihood", "softmax"): 1}
_DELTA_ELEMENTWISE, _DELTA_SOFTMAX = 2, 3
_OPT = {"sgd": 0, "momentum": 1, "nesterov": 2, "adam": 3}
_BLOCK, _ROWS, _TILE = 256, 8, 16

KERNEL_NAMES = (
    "gemm",
    "bias_act",
    "bias_softmax",
    "output_delta",
    "hidden_delta",
    "col_sum",
    "adam_prep",
    "update",
)


def kernel_source(dtype: str) -> str:
    """The CUDA C source of the kernels for ``dtype`` ("float32" or "float64").

    The kernels live in ``_cupy_fast.cu`` beside this module (package data), self-contained
    (no ``#include``) so NVRTC and ``nvcc`` both compile it; ``real`` is typedef'd in front.
    """
    real = {"float32": "float", "float64": "double"}[dtype]
    source = resources.files(__package__).joinpath("_cupy_fast.cu").read_text(encoding="utf-8")
    return f"typedef {real} real;\n{source}"


@functools.cache
def _kernels(dtype: str) -> types.SimpleNamespace:
    import cupy

    module = cupy.RawModule(code=kernel_source(dtype), options=("--std=c++14",))
    return types.SimpleNamespace(**{name: module.get_function(name) for name in KERNEL_NAMES})


def use_fp32_matmul() -> None:
    """Make CuPy's float32 GEMMs plain FP32 (no TF32) in this process, for parity runs.

    Sets ``CUPY_TF32=0`` (CuPy reads it at its first float32 GEMM) and, where this CuPy has it,
    the cached compute type, in case a GEMM already ran.
    """
    os.environ["CUPY_TF32"] = "0"
    import cupy

    with contextlib.suppress(ImportError, AttributeError):  # private API, present since CuPy 8
        from cupy._core import _routines_linalg as linalg

        linalg.set_compute_type(cupy.float32, linalg.COMPUTE_TYPE_DEFAULT)


def versions() -> dict[str, str]:
    """CuPy, CUDA and device versions, for reports."""
    import cupy

    from .backend import cupy_status

    return {
        "cupy": cupy.__version__,
        "cuda_runtime": str(cupy.cuda.runtime.runtimeGetVersion()),
        "cuda_driver": str(cupy.cuda.runtime.driverGetVersion()),
        "device": cupy_status()[1],
        "CUPY_TF32": os.environ.get("CUPY_TF32", ""),
    }


def unsupported(net: Any, run: Any, *, engine: str, batch_size: int) -> str | None:
    """Why the fast path ``engine`` cannot run this network and optimizer (None when it can).

    Pure Python: no CuPy needed, so the rules are testable anywhere.
    """
    from .backend import is_cupy

    if engine not in ("auto", "fused", "graph"):
        return f"engine={engine!r} is not a CuPy fast path"
    acts = net.layer_activations
    for act in acts[:-1]:
        if act.name not in _ACT or act.output_only:
            return f"hidden activation {act.name!r} has no fused kernel"
    out, cost = acts[-1].name, net.cost.name
    if out not in _ACT:
        return f"output activation {out!r} has no fused kernel"
    if cost not in _GRAD:
        return f"cost {cost!r} has no fused kernel"
    if out in net.cost.fused and (cost, out) not in _FUSED_DELTA:
        return f"the fused output error of cost {cost!r} with {out!r} outputs has no kernel"
    name = getattr(run.optimizer, "name", None)
    if name not in _OPT:
        return f"optimizer {name!r} has no fused update kernel"
    if engine == "graph" and (why := _graph_unfit(net.sizes, batch_size)):
        return why
    if not is_cupy(net.xp):
        return f"the fast paths need the CuPy backend, not {net.backend}"
    return None


def _graph_unfit(sizes: list[int], batch_size: int) -> str | None:
    if max(sizes) > GRAPH_MAX_DIM:
        return f"a layer is wider than {GRAPH_MAX_DIM} (sizes {sizes}): cuBLAS wins there"
    if batch_size > GRAPH_MAX_BATCH:
        return f"batch_size {batch_size} is above {GRAPH_MAX_BATCH}: not launch-bound"
    return None


def make_step(
    net: Any,
    run: Any,
    *,
    engine: str,
    l2: float,
    l1: float,
    n: int,
    batch_size: int,
    dropout: float,
) -> tuple[Callable[..., Any] | None, str]:
    """Build a fast training step for ``net``, or say why not.

    Parameters as :func:`gpumlp.train.select_step`; ``engine`` is "auto" (``graph`` when the
    network qualifies, else ``fused``), "fused" or "graph".

    Returns
    -------
    step : callable ``step(x, y, keep, lr) -> a`` or None
        The same contract as :func:`gpumlp.train.generic_step`; ``step.engine`` names the
        engine in use. It re-homes ``net.params`` into a flat buffer (module docstring).
    why_not : str
        Empty when a step is returned, else the reason.
    """
    why = unsupported(net, run, engine=engine, batch_size=batch_size)
    if why is not None:
        return None, why
    use_graph = engine == "graph" or (
        engine == "auto" and _graph_unfit(net.sizes, batch_size) is None
    )
    dtype = "float64" if np.dtype(net.dtype) == np.float64 else "float32"
    try:
        kernels = _kernels(dtype)
    except Exception as exc:  # NVRTC missing or a compile error: a reason, not a crash later
        return None, f"the fast-path kernels did not compile: {exc}"
    core = _Core(net, run, kernels, dtype=dtype, l2=l2, l1=l1, n=n)
    if not use_graph:
        return _FusedStep(core), ""
    try:
        return _GraphStep(core, forced=engine == "graph"), ""
    except Exception as exc:  # the kernels would not load, or no stream could be made
        if engine == "graph":
            return None, f"the graph engine could not start: {exc}"
        logger.warning("engine auto: the graph engine could not start (%s); using 'fused'", exc)
        return _FusedStep(core), ""


def _flat_home(params: Any, cp: Any, dtype: Any) -> tuple[Any, int, list[tuple[list, int, Any]]]:
    """Copy a Params' tensors into one flat buffer [weights | biases] and put views in their place.

    Returns the buffer, the number of weight entries, and (list, index, view) for each tensor in
    the order w_0 … w_(L-1), b_0 … b_(L-1).
    """
    tensors = [(params.weights, i) for i in range(len(params.weights))]
    tensors += [(params.biases, i) for i in range(len(params.biases))]
    flat = cp.empty(sum(int(seq[i].size) for seq, i in tensors), dtype=dtype)
    homes, offset = [], 0
    for seq, i in tensors:
        old = seq[i]
        view = flat[offset : offset + old.size].reshape(old.shape)
        view[...] = old
        seq[i] = view
        homes.append((seq, i, view))
        offset += old.size
    return flat, sum(int(w.size) for w in params.weights), homes


def _views_like(flat: Any, homes: list[tuple[list, int, Any]]) -> list[Any]:
    """Views of ``flat`` with the shapes and offsets of the tensors in ``homes``."""
    views, offset = [], 0
    for _, _, t in homes:
        views.append(flat[offset : offset + t.size].reshape(t.shape))
        offset += t.size
    return views


class _Workspace:
    """Device buffers for one batch shape: z, a, δ per layer, δW for hidden layers, and (for the
    graph engine) fixed input buffers that each step copies its batch into."""

    def __init__(self, cupy: Any, sizes: list[int], m: int, dtype: Any, keep_flags, static):
        def new(cols):
            return cupy.empty((m, cols), dtype=dtype)

        self.m = m
        self.keep_flags = keep_flags
        self.z = [new(s) for s in sizes[1:]]
        self.a = [new(s) for s in sizes[1:]]
        self.delta = [new(s) for s in sizes[1:]]
        self.g = [None] + [new(s) for s in sizes[1:-1]]  # g[l] = δ^l W^l, shape (m, sizes[l])
        hidden = list(zip(sizes[1:-1], keep_flags, strict=True))
        self.dropped = [new(s) if f else None for s, f in hidden]
        self.x = new(sizes[0]) if static else None
        self.y = new(sizes[-1]) if static else None
        self.keep = [new(s) if f and static else None for s, f in hidden]


class _Core:
    """What both engines share: flat buffers, device scalars, workspaces, the launch sequence."""

    def __init__(
        self, net: Any, run: Any, kernels: Any, *, dtype: str, l2: float, l1: float, n: int,
        cp: Any = None,
    ) -> None:  # fmt: skip
        if cp is None:  # the array module is injectable so the host side is testable on NumPy
            import cupy as cp
        self.cp, self.k, self.net, self.run = cp, kernels, net, run
        self.dtype = np.dtype(dtype)
        self.real = self.dtype.type
        self.sizes = list(net.sizes)
        acts = net.layer_activations
        self.acts = [_ACT[a.name] for a in acts]
        cost, out = net.cost.name, acts[-1].name
        if out in net.cost.fused:
            self.delta_kind = _FUSED_DELTA[(cost, out)]
        else:
            self.delta_kind = _DELTA_SOFTMAX if out == "softmax" else _DELTA_ELEMENTWISE
        self.grad = _GRAD[cost]
        self.p, self.n_w, self.homes = _flat_home(net.params, cp, self.dtype)
        self.g_flat = cp.empty_like(self.p)
        grads = _views_like(self.g_flat, self.homes)
        L = len(self.sizes) - 1
        self.gw, self.gb = grads[:L], grads[L:]
        opt = run.optimizer
        self.opt = _OPT[opt.name]
        self.dummy = cp.zeros(1, dtype=self.dtype)  # for pointer arguments a kernel ignores
        self.s1 = self.s2 = self.dummy
        for key, attr in (("velocity", "s1"), ("m", "s1"), ("v", "s2")):
            if key in run.opt_state:
                flat, _, homes = _flat_home(run.opt_state[key], cp, self.dtype)
                setattr(self, attr, flat)
                self.homes += homes
        self.mu = float(getattr(opt, "momentum", 0.0))
        self.beta1 = float(getattr(opt, "beta1", 0.0))
        self.beta2 = float(getattr(opt, "beta2", 0.0))
        self.eps_adam = float(getattr(opt, "eps", 0.0))
        self.eps = float(np.finfo(self.dtype).eps)  # the costs' clip bound, as costs._clip
        self.l2n, self.l1n = l2 / n, l1 / n
        self.hyper = cp.zeros(4, dtype=np.float64)  # H_LR, H_T, H_STEP, H_ROOT
        self._lr: float | None = None
        self._t: int | None = None
        self.workspaces: dict[tuple, _Workspace] = {}

    def before_step(self, lr: float) -> bool:
        """Bring the device scalars and the flat buffers up to date with the host.

        Returns True when a tensor had been replaced (so captured graphs are stale).
        """
        replaced = False
        for seq, i, view in self.homes:
            if seq[i] is not view:  # replaced by a new array: take its values back in
                view[...] = seq[i]
                seq[i] = view
                replaced = True
        if lr != self._lr:
            self.hyper[0:1].fill(lr)
            self._lr = lr
        if self.opt == _OPT["adam"] and self.run.opt_state["t"] != self._t:
            self._t = int(self.run.opt_state["t"])
            self.hyper[1:2].fill(float(self._t))
        return replaced

    def after_step(self) -> None:
        if self.opt == _OPT["adam"]:  # the device advanced t (adam_prep); mirror it on the host
            self._t = int(self.run.opt_state["t"]) + 1
            self.run.opt_state["t"] = self._t

    def workspace(self, m: int, keep: Any, *, static: bool) -> _Workspace:
        n_hidden = len(self.sizes) - 2
        flags = tuple(keep is not None and keep[l] is not None for l in range(n_hidden))
        key = (m, flags, static)
        if key not in self.workspaces:
            self.workspaces[key] = _Workspace(self.cp, self.sizes, m, self.dtype, flags, static)
        return self.workspaces[key]

    # -- the GEMMs ------------------------------------------------------------------------------

    def gemm_cublas(self, a: Any, b: Any, out: Any, trans_a: bool, trans_b: bool) -> None:
        self.cp.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)

    def gemm_tiled(self, a: Any, b: Any, out: Any, trans_a: bool, trans_b: bool) -> None:
        i32 = np.int32
        M, N = out.shape
        K = a.shape[0] if trans_a else a.shape[1]
        grid = (-(-N // _TILE), -(-M // _TILE))
        args = (i32(trans_a), i32(trans_b), i32(M), i32(N), i32(K), a, i32(a.shape[1]))
        self.k.gemm(grid, (_TILE, _TILE), (*args, b, i32(b.shape[1]), out, i32(N)))

    # -- one training step, as a fixed sequence of launches --------------------------------------

    def launch(self, ws: _Workspace, x: Any, y: Any, keep: Any, gemm: Callable) -> None:
        """Enqueue one step on the current stream: nothing here reads back to the host, so the
        same sequence runs eagerly (``fused``) or under stream capture (``graph``)."""
        k, r, i32 = self.k, self.real, np.int32
        m, sizes, L = ws.m, self.sizes, len(self.sizes) - 1
        W, B = self.net.params.weights, self.net.params.biases
        rows = (-(-m // _ROWS),), (32, _ROWS)
        inputs = [x]
        for l in range(L):  # forward: z = input Wᵀ + b, a = σ(z)
            n_out = sizes[l + 1]
            gemm(inputs[l], W[l], ws.z[l], False, True)
            if self.acts[l] == _ACT["softmax"]:
                k.bias_softmax(*rows, (ws.z[l], B[l], ws.a[l], i32(m), i32(n_out)))
            else:
                drop = l < L - 1 and ws.keep_flags[l]
                kp, dr = (keep[l], ws.dropped[l]) if drop else (self.dummy, self.dummy)
                args = (ws.z[l], B[l], ws.a[l], kp, dr, i32(m), i32(n_out), i32(self.acts[l]))
                k.bias_act(_grid(m * n_out), (_BLOCK,), (*args, i32(drop)))
                inputs.append(ws.dropped[l] if drop else ws.a[l])
        args = (ws.z[-1], ws.a[-1], y, ws.delta[-1], i32(m), i32(sizes[-1]), i32(self.delta_kind))
        k.output_delta(*rows, (*args, i32(self.grad), i32(self.acts[-1]), r(1.0 / m), r(self.eps)))
        for l in range(L - 1, -1, -1):  # backward
            n_out = sizes[l + 1]
            gemm(ws.delta[l], inputs[l], self.gw[l], True, False)  # BP4: δᵀ a
            k.col_sum(_grid(n_out), (_BLOCK,), (ws.delta[l], self.gb[l], i32(m), i32(n_out)))
            if l > 0:
                gemm(ws.delta[l], W[l], ws.g[l], False, False)  # BP2: δ W, then ⊙ σ'(z)
                drop = ws.keep_flags[l - 1]
                args = (ws.g[l], keep[l - 1] if drop else self.dummy, ws.z[l - 1], ws.a[l - 1])
                args += (ws.delta[l - 1], i32(m), i32(sizes[l]), i32(self.acts[l - 1]))
                k.hidden_delta(_grid(m * sizes[l]), (_BLOCK,), (*args, i32(drop)))
        if self.opt == _OPT["adam"]:
            k.adam_prep((1,), (1,), (self.hyper, np.float64(self.beta1), np.float64(self.beta2)))
        total = self.p.size
        args = (self.p, self.g_flat, self.s1, self.s2, self.hyper, np.int64(total))
        args += (np.int64(self.n_w), r(self.l2n), r(self.l1n), i32(self.opt), r(self.mu))
        args += (r(self.beta1), r(self.beta2), r(1.0 - self.beta1), r(1.0 - self.beta2))
        k.update(_grid(total), (_BLOCK,), (*args, r(self.eps_adam)))

    def warm(self) -> None:
        """Launch every kernel once on empty work, so none first loads inside a capture."""
        k, d, i32, i64, r = self.k, self.dummy, np.int32, np.int64, self.real
        scratch = self.cp.zeros(4, dtype=np.float64)
        zeros = (i32(0),) * 5
        k.gemm((1, 1), (_TILE, _TILE), (*zeros, d, i32(1), d, i32(1), d, i32(1)))
        k.bias_act((1,), (32,), (d, d, d, d, d, i32(0), i32(1), i32(0), i32(0)))
        k.bias_softmax((1,), (32, 1), (d, d, d, i32(0), i32(1)))
        k.output_delta((1,), (32, 1), (d, d, d, d, i32(0), i32(1), *zeros[:3], r(1), r(0)))
        k.hidden_delta((1,), (32,), (d, d, d, d, d, i32(0), i32(1), i32(0), i32(0)))
        k.col_sum((1,), (32,), (d, d, i32(0), i32(0)))
        k.adam_prep((1,), (1,), (scratch, np.float64(0.5), np.float64(0.5)))
        args = (d, d, d, d, scratch, i64(0), i64(0), r(0), r(0), i32(0))
        k.update((1,), (32,), (*args, *(r(0),) * 6))


def _grid(work: int) -> tuple[int]:
    """1-D grid for grid-stride loops over ``work`` items (at least one block)."""
    return (max(1, min(-(-work // _BLOCK), 4096)),)


def _contiguous(cp: Any, t: Any, dtype: Any) -> Any:
    return cp.ascontiguousarray(t, dtype=dtype)


class _FusedStep:
    """``engine="fused"``: cuBLAS GEMMs and fused kernels, launched eagerly."""

    engine = "fused"

    def __init__(self, core: _Core) -> None:
        self.core = core

    def __call__(self, x: Any, y: Any, keep: Any, lr: float) -> Any:
        core, cp = self.core, self.core.cp
        core.before_step(lr)
        x, y = _contiguous(cp, x, core.dtype), _contiguous(cp, y, core.dtype)
        if keep is not None:
            keep = [None if t is None else _contiguous(cp, t, core.dtype) for t in keep]
        ws = core.workspace(x.shape[0], keep, static=False)
        core.launch(ws, x, y, keep, core.gemm_cublas)
        core.after_step()
        return ws.a[-1].copy()  # the buffer is reused by the next step


class _GraphStep:
    """``engine="graph"``: the step captured as a CUDA graph per batch shape and replayed.

    A capture failure falls back to :class:`_FusedStep` with a logged reason, or raises when
    the graph engine was asked for by name (``forced``).
    """

    def __init__(self, core: _Core, *, forced: bool) -> None:
        self.core, self.forced = core, forced
        self.graphs: dict[int, Any] = {}
        self.fallback: _FusedStep | None = None
        self.stream = core.cp.cuda.Stream(non_blocking=True)
        core.warm()

    @property
    def engine(self) -> str:
        return "fused" if self.fallback is not None else "graph"

    def __call__(self, x: Any, y: Any, keep: Any, lr: float) -> Any:
        if self.fallback is not None:
            return self.fallback(x, y, keep, lr)
        core, cp = self.core, self.core.cp
        if core.before_step(lr):
            self.graphs.clear()  # a tensor moved: the captured pointers are stale
        ws = core.workspace(x.shape[0], keep, static=True)
        cp.copyto(ws.x, x)  # on the current stream, ahead of the graph launch
        cp.copyto(ws.y, y)
        for l, flag in enumerate(ws.keep_flags):
            if flag:
                cp.copyto(ws.keep[l], keep[l])
        key = id(ws)
        graph = self.graphs.get(key)
        if graph is None and len(self.graphs) < GRAPH_MAX_SHAPES:
            graph = self._capture(ws)
            if graph is None:  # capture failed; _capture set up the fallback
                return self.fallback(x, y, keep, lr)
            self.graphs[key] = graph
        if graph is not None:
            graph.launch()  # the caller's current stream, so its next kernels see the result
        else:  # more batch shapes than we capture: the same kernels, eagerly
            core.launch(ws, ws.x, ws.y, ws.keep, core.gemm_tiled)
        core.after_step()
        return ws.a[-1].copy()  # the graph writes the same buffer next step

    def _capture(self, ws: _Workspace) -> Any:
        core, stream = self.core, self.stream
        try:
            with stream:
                stream.begin_capture()
                try:
                    core.launch(ws, ws.x, ws.y, ws.keep, core.gemm_tiled)
                except BaseException:
                    with contextlib.suppress(Exception):
                        stream.end_capture()
                    raise
                return stream.end_capture()
        except Exception as exc:
            if self.forced:
                raise RuntimeError(f"engine='graph': CUDA graph capture failed: {exc}") from exc
            logger.warning("engine auto: CUDA graph capture failed (%s); using 'fused'", exc)
            self.fallback = _FusedStep(core)
            return None
