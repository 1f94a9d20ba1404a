"""The NumPy engine ``native``: a whole epoch in one call of compiled C++.

One call of ``gpumlp_epoch_<optimizer>`` (:mod:`._native_src`, ``_native.cpp``, built and loaded
by :mod:`._native_build`) runs every mini-batch of the epoch in the order ``perm``: the gather of
the batch's rows, the forward pass, δ^L, BP2, the gradients, the penalties (L2, L1, with the
data set's n), the optimizer's update of the parameters in place, and the epoch's cost sum and
hits. No Python runs between the steps, so at the book's small batches (where a NumPy step is
~35 calls of ~1 µs of arithmetic each) the dispatch is gone.

It supports what the CUDA source was generated for: every registry activation, cost and
optimizer (a user's own is refused), L2, L1, dropout, float32 and float64, any batch size. It
refuses, with the reason, data that is not an in-memory C-contiguous array of the network's
dtype: ``--from-disk`` (:class:`~gpumlp.files.npyview.NpyRows`, read batch by batch through the
checked read path) and memory-mapped arrays, which ``auto`` then trains with ``fused``.

Subnormal deltas are flushed to +0 where and as the ``fused`` step flushes them
(:data:`._numpy_fast.FLUSH_FROM`: in a layer whose products have that many multiply-adds, each
δ below the dtype's smallest normal, in the loop that multiplies by σ'(z)), so a run of
saturated sigmoids does not feed subnormals to the products. Under plain SGD ``fused``'s deltas
carry the rate (its module docstring) and native's do not: the two flush the same entries at
rate 1 and, otherwise, entries within a factor of the rate of the smallest normal may differ.

Bits. The products sum in the order of ``_native_gemm.cpp``'s blocks or of the BLAS's calls
(``_native_blas.cpp``: zᵀ = W xᵀ for the forward; under plain SGD without penalties BP4 updates
W itself, W − lr · δᵀx), not NumPy's BLAS order: results agree with the generic step to
rounding (float64 ≤ 1e-10 relative after an epoch; float32 within the step's derived band), and
repeat bit for bit on the same machine and library.
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backend
from ..activations import ACTIVATIONS
from ..costs import COSTS
from ..dropout import threshold
from ..files.npyview import NpyRows
from ..runstate import TrainState
from ._generated import generated, generated_optimizer
from ._kernels import codes, hyper_slots
from ._native_build import Build, build, numpy_blas
from ._native_src import arg_names, entry_name, native_source
from ._numpy_fast import FLUSH_FROM
from .steps import Data

__all__ = ["BLAS_FROM", "NativeStep", "library", "make_step", "unsupported"]

_P = ctypes.c_void_p

BLAS_FROM = 1 << 22
"""A product of at least this many multiply-adds (M·N·K) goes to the GEMM of the BLAS NumPy
links (:func:`._native_build.numpy_blas`), where there is one: from there OpenBLAS's kernels
beat the engine's own blocked products (docs/architecture.md). Below it, and without such a
BLAS, the engine's own."""


@functools.cache
def _args_type(dtype: str) -> type[ctypes.Structure]:
    """``_native_blas.cpp``'s ``EpochArgs`` for ``dtype``, field for field."""
    real = ctypes.c_float if dtype == "float32" else ctypes.c_double
    ll, i32 = ctypes.c_longlong, ctypes.c_int
    fields = [("X", _P), ("Y", _P), ("labels", _P), ("perm", _P), ("n_rows", ll), ("batch", ll),
              ("sizes", _P), ("acts", _P), ("layers", i32), ("kind", i32), ("cost", i32),
              ("has_drop", i32), ("cut", ctypes.c_uint), ("eps", real), ("scale", real),
              ("l2n", real), ("l1n", real), ("key", ctypes.c_ulonglong), ("draw", ll),
              ("w", _P), ("b", _P), ("sums", _P), ("hits", _P), ("out_a", _P), ("blas", _P),
              ("blas_from", ll), ("flush_from", ll), ("rate", real)]  # fmt: skip
    return type(f"EpochArgs_{dtype}", (ctypes.Structure,), {"_fields_": fields})


def library(dtype: str) -> Build:
    """The native library for ``dtype``, built into the user cache on first use (raises
    :class:`._native_build.NativeUnavailable` when it cannot be)."""
    return build(native_source(dtype), dtype)


def _plain(a: Any, dtype: Any) -> bool:
    return (isinstance(a, np.ndarray) and not isinstance(a, np.memmap)
            and a.flags.c_contiguous and a.dtype == dtype)  # fmt: skip


def unsupported(state: TrainState, data: Data) -> str | None:
    """Why the native engine cannot train ``state`` over ``data`` (None when it can). Builds
    nothing."""
    spec, opt = state.spec, state.optimizer
    if backend.backend_name(spec.xp) != "numpy":
        return f"the native engine needs the NumPy backend, not {spec.backend}"
    for act in spec.activations:
        if not generated(act, ACTIVATIONS):
            return f"activation {act.name!r} is not a registry entry the source was made from"
    if not generated(spec.cost, COSTS):
        return f"cost {spec.cost.name!r} is not a registry entry the source was made from"
    if not generated_optimizer(opt):
        return f"optimizer {opt.name!r} has no C form"
    X, Y, labels = data
    if isinstance(X, NpyRows):
        return "X is read from its file batch by batch (--from-disk); the C++ reads X in memory"
    if isinstance(X, np.memmap):
        return "X is memory-mapped; the C++ reads a copy in memory only"
    if not (_plain(X, spec.dtype) and _plain(Y, spec.dtype) and _plain(labels, np.int64)):
        return f"the data is not C-contiguous arrays of {spec.dtype} (X, Y) and int64 (labels)"
    return None


def make_step(state: TrainState, data: Data) -> tuple[NativeStep | None, str]:
    """The native step for ``state`` over ``data``, or ``(None, why not)`` (no compiler, a
    failed build, or :func:`unsupported`)."""
    why = unsupported(state, data)
    if why is not None:
        return None, why
    try:
        made = library(state.spec.dtype)
    except OSError as exc:
        return None, str(exc)
    return NativeStep(state, data, made), ""


class NativeStep:
    """``engine="native"``: one call per epoch (module docstring)."""

    engine = label = "native"
    whole_epoch = True
    """A whole epoch per call: nothing can run between its steps (e.g. an all-reduce)."""

    def __init__(self, state: TrainState, data: Data, made: Build) -> None:
        self.state, self.data = state, data
        spec, cfg, opt = state.spec, state.config, state.optimizer
        blas = numpy_blas(spec.dtype)
        # how the library was built and which BLAS it calls, for the run's history
        self.build_info = {**made.info, "blas": None if blas is None else blas[1],
                           "blas_from": BLAS_FROM}  # fmt: skip
        form = opt.cuda()
        assert form is not None
        self.fn = getattr(made.lib, entry_name(opt.name))
        self.fn.argtypes = [_P, _P, _P, _P]
        self.fn.restype = ctypes.c_int
        c = codes()
        out = spec.activations[-1].name
        self.sizes = np.array(spec.sizes, dtype=np.int32)
        self.acts = np.array([c.act[a.name] for a in spec.activations], dtype=np.int32)
        kind = c.delta.get((spec.cost.name, out))
        kind = kind if kind is not None else (c.delta_softmax if out == "softmax" else 0)
        self.slots = hyper_slots(form)
        self.hyper = np.zeros(len(self.slots), dtype=np.float64)
        values = opt.kernel_args()
        self.opt_args = np.array([values[k] for k in arg_names(opt.name)] or [0.0], np.float64)
        self.sums, self.hits = np.zeros(1), np.zeros(1, dtype=np.int64)
        # the update is p − lr·g: a BLAS BP4 may subtract lr · δᵀx from W itself (EpochArgs.rate)
        self.rate_in_product = opt.rate_in_gradient and not (cfg.l2 or cfg.l1)
        n, p = int(data[0].shape[0]), cfg.dropout
        has_drop = bool(p) and len(spec.sizes) > 2
        self.args = _args_type(spec.dtype)(
            sizes=self.sizes.ctypes.data, acts=self.acts.ctypes.data,
            layers=len(spec.sizes) - 1, kind=kind, cost=c.cost[spec.cost.name],
            has_drop=int(has_drop), cut=threshold(p) if has_drop else 0,
            eps=float(np.finfo(spec.dtype).eps), scale=1.0 / (1.0 - p) if has_drop else 1.0,
            l2n=cfg.l2 / n, l1n=cfg.l1 / n, key=(state.dropout_key or 0) & (2**64 - 1),
            sums=self.sums.ctypes.data, hits=self.hits.ctypes.data,
            blas=None if blas is None else blas[0], blas_from=BLAS_FROM, flush_from=FLUSH_FROM,
        )  # fmt: skip

    def _pointers(self) -> tuple[Any, Any, Any, list[Any]]:
        """The parameters' and the optimizer's buffers' addresses, taken at each call (a loaded
        checkpoint may have replaced the arrays); each is checked C-contiguous and writable."""
        s = self.state
        tensors: list[Any] = [*s.params.weights, *s.params.biases]  # NumPy arrays
        for name in s.optimizer.buffers:
            buf = s.opt_state.buffers[name]
            tensors += [*buf.weights, *buf.biases]
        for t in tensors:
            if not (_plain(t, s.spec.dtype) and t.flags.writeable):
                raise ValueError("engine='native': the parameters and optimizer buffers must "
                                 f"be writable C-contiguous {s.spec.dtype} arrays")  # fmt: skip
        L = len(s.spec.sizes) - 1
        addr = (ctypes.c_void_p * max(1, len(tensors)))(*(t.ctypes.data for t in tensors))
        w = ctypes.cast(addr, ctypes.c_void_p)
        b = ctypes.c_void_p(w.value + L * ctypes.sizeof(ctypes.c_void_p))  # type: ignore[operator]
        bufs = ctypes.c_void_p(w.value + 2 * L * ctypes.sizeof(ctypes.c_void_p))  # type: ignore[operator]
        return w, b, bufs, [addr, tensors]

    def _run(self, X: Any, Y: Any, labels: Any, perm: Any, n_rows: int, batch: int,
             draw: int, lr: float, out_a: Any) -> None:  # fmt: skip
        s, a = self.state, self.args
        w, b, bufs, keep = self._pointers()
        scalars = s.opt_state.scalars
        self.hyper[0] = lr
        for name in scalars:  # a slot named like a step count holds it (optimbase.CudaForm)
            self.hyper[self.slots.index(name)] = float(scalars[name])
        a.X, a.Y, a.labels = X.ctypes.data, Y.ctypes.data, labels.ctypes.data
        a.perm = None if perm is None else perm.ctypes.data
        a.n_rows, a.batch, a.draw, a.w, a.b = n_rows, batch, draw, w, b
        a.out_a = None if out_a is None else out_a.ctypes.data
        a.rate = lr if self.rate_in_product else 0.0
        rc = self.fn(ctypes.addressof(a), bufs, self.hyper.ctypes.data, self.opt_args.ctypes.data)
        del keep
        if rc != 0:
            raise MemoryError(f"engine='native': no memory for the buffers of batch {batch}")
        for name in scalars:
            scalars[name] = int(self.hyper[self.slots.index(name)])

    def __call__(self, x: Any, y: Any, lr: float, draw: int = 0) -> Any:
        """One step on an explicit batch (see :mod:`gpumlp.engines.steps`)."""
        dtype = self.state.spec.dtype
        x, y = (np.ascontiguousarray(t, dtype=dtype) for t in (x, y))
        m = int(x.shape[0])
        out = np.empty((m, int(self.sizes[-1])), dtype=dtype)
        labels = np.zeros(m, dtype=np.int64)
        self._run(x, y, labels, None, m, m, draw, lr, out)
        return out

    def epoch(
        self,
        perm: Any,
        lr: float,
        draw: int,
        *,
        monitor: tuple[str, ...] = (),
        progress: Callable[[int], object] | None = None,
    ) -> tuple[Any, Any]:
        """Every mini-batch of the bound data in the order ``perm``, in one call."""
        X, Y, labels = self.data
        n, batch = int(X.shape[0]), self.state.config.batch_size
        order = None if perm is None else np.ascontiguousarray(perm, dtype=np.int64)
        self.sums[0], self.hits[0] = 0.0, 0
        self._run(X, Y, labels, order, n, batch, draw, lr, None)
        if progress is not None:
            progress(math.ceil(n / batch))
        return np.float64(self.sums[0]), np.int64(self.hits[0])
