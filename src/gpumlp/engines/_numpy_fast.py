"""NumPy fast path: the generic training step without temporaries.

At the small batches this package is built for (m = 10 on [784, 30, 10]) a NumPy step is
~40 tiny operations, and allocating their results costs as much as the arithmetic. This step
does the generic step's math (and is tested against it) in preallocated buffers per batch size,
with each activation's and cost's in-place NumPy form from the registries
(:mod:`gpumlp.activations`, :mod:`gpumlp.costs`): the same operations in the same order. Two
changes of order remain, both within a few ulp per step: for plain SGD (an optimizer whose
``rate_in_gradient`` says its update is ``p − lr·g``) the rate is folded into δ^L (so no
gradient is scaled separately), and the penalties then carry it too.

One change of value: a layer's deltas are flushed to zero where they are subnormal (below the
dtype's smallest normal, ~1e-38 in float32), as a GPU's ``-ftz`` does, when the GEMMs they
feed are large enough (:data:`FLUSH_FROM`). Saturated sigmoid units make such deltas (σ' ≈
e^−|z| times the output error), and each subnormal costs OpenBLAS's GEMMs ~100 cycles: at
[784, 800, 10] with lr 3.0 they made an epoch 40% slower. A flushed value differs from the
generic step's by less than ``smallest_normal``.

The epoch around it is allocation-free too: each batch is gathered into preallocated buffers
(``ndarray.take(..., out=)``), and the training cost and hits are summed in place, the cost
with its registry's in-place form (``Cost.np_fn``) in the generic loop's order: on the same
outputs both monitors equal the generic loop's bit for bit. No NumPy Python wrapper
(``np.sum``, ``np.take``) runs per step; the step reaches NumPy only through this module's
``np`` (and each buffer set's ``ws.np``), so a counting stand-in can see every call.

What a step costs, and the tests that keep it so (``tests/test_numpy_fast.py``, with a counting
stand-in for NumPy and for the array-API namespace, and ``tracemalloc``): on [784, 30, 10] at
batch 10 (sigmoid, quadratic, plain SGD, both training monitors), one batch makes
:data:`CALLS_PER_STEP` calls of NumPy ufuncs and functions (``add.reduce`` and the like
included; the ndarray methods ``take`` and ``argmax`` are not seen), each given ``out=``, none
to a Python wrapper or to the array-API namespace; it leaves no memory block behind, and an
epoch holds at most :data:`TRANSIENT_BYTES` above its start (NumPy's iterator buffers of one
call and Python's small objects; a batch of inputs would be 31 KB). Dropout's masks, the
penalties, softmax's δ^L under a cost with no closed form for it and the other optimizers'
updates still allocate.

Chosen by :func:`gpumlp.engines.select_step` for the NumPy backend (engine "auto" or "fused").
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..activations import np_workspace
from ..network import Params
from ..optim import apply_update, regularize
from ..runstate import TrainState
from .steps import BatchLoop, Data

__all__ = ["CALLS_PER_STEP", "TRANSIENT_BYTES", "NumpyStep", "make_step"]

NDArray = np.ndarray[Any, Any]

CALLS_PER_STEP = 46
"""NumPy calls per batch of [784, 30, 10] (sigmoid, quadratic, SGD, both monitors; the module
docstring): forward 2 × (matmul, bias, σ's 5), δ^L (a − y, σ''s 6, the 1/m scale), backward
2 × (matmul, add.reduce) + matmul + σ''s 6, the update 4, the cost 4 + 2, the hits 3."""

TRANSIENT_BYTES = 8192
"""The most an epoch of that network may hold above its start, after its first: about 4 KB is
measured (a broadcast bias add buffers its (m, n_1) operand; Python's small objects)."""

FLUSH_FROM = 1 << 18
"""Deltas are flushed of subnormals when the GEMMs they feed have at least this many
multiply-adds (m · n_l · n_(l−1)); below it the three extra passes cost more than they save."""


def _flush_subnormals(d: NDArray, buf: SimpleNamespace) -> None:
    """Set the subnormal entries of ``d`` (m, n) to 0 (below ``buf.tiny``), with ``buf``'s
    scratch."""
    np.abs(d, out=buf.t)
    np.less(buf.t, buf.tiny, out=buf.mask)
    np.copyto(d, 0, where=buf.mask)


def unsupported(state: TrainState) -> str | None:
    """Why the in-place step cannot run ``state``'s network (None when it can)."""
    acts = state.spec.activations
    if any(a.np_fn is None or a.np_times_prime is None for a in acts[:-1]):
        return "a hidden activation has no in-place NumPy form"
    if acts[-1].np_fn is None:
        return f"the output activation {acts[-1].name!r} has no in-place NumPy form"
    return None


def make_step(state: TrainState, data: Data, *, engine: str) -> tuple[NumpyStep | None, str]:
    """The in-place NumPy step for ``state`` over ``data``, or ``(None, why not)``."""
    why = unsupported(state)
    return (None, why) if why else (NumpyStep(state, data), "")


class NumpyStep(BatchLoop):
    """``engine="fused"`` on NumPy (see the module docstring)."""

    engine, label = "fused", "numpy-fused"

    def __init__(self, state: TrainState, data: Data) -> None:
        super().__init__(state, data)
        params = state.params
        self.sgd = state.optimizer.rate_in_gradient
        if self.reducer is not None:  # written where the ranks' sum takes them from
            self.grads = self.reducer.grads
        else:
            self.grads = Params(
                [np.empty_like(w) for w in params.weights],
                [np.empty_like(b) for b in params.biases],
            )
        # NumPy parameters are written in place (Params.set), so these lists, the weights'
        # transposed views and the (parameter, gradient) pairs stay current.
        self.weights: list[Any] = list(params.weights)
        self.biases: list[Any] = list(params.biases)
        self.transposed = [w.T for w in self.weights]
        self.fused = state.spec.cost.fused.get(state.spec.activations[-1].name)
        self.pairs: list[tuple[Any, Any]] = list(
            zip(params.arrays(), self.grads.arrays(), strict=True)
        )
        self.buffers: dict[int, list[SimpleNamespace]] = {}
        self.batch_buffers: dict[int, SimpleNamespace] = {}

    def _layers(self, m: int) -> list[SimpleNamespace]:
        """Per layer, in an :func:`~gpumlp.activations.np_workspace` (m, n): z, a, δ and δᵀ
        (``d``, ``dT``), a ⊙ keep under dropout (``kept``), whether its deltas are flushed
        (below ``tiny``); one set per batch size (the full batches and the last, short one)."""
        if m not in self.buffers:
            dtype = np.dtype(self.state.spec.dtype)
            tiny = np.full((), np.finfo(dtype).smallest_normal, dtype)
            dropping = bool(self.state.config.dropout)

            def new(n_in: int, n: int) -> SimpleNamespace:
                ws = np_workspace(np, (m, n), dtype)
                ws.z, ws.a, ws.d = (np.empty((m, n), dtype) for _ in range(3))
                ws.dT, ws.flush, ws.tiny = ws.d.T, m * n * n_in >= FLUSH_FROM, tiny
                ws.kept = np.empty((m, n), dtype) if dropping else None  # dropout's a ⊙ keep
                return ws

            sizes = self.state.spec.sizes
            self.buffers[m] = [new(n_in, n) for n_in, n in itertools.pairwise(sizes)]
        return self.buffers[m]

    def _batch_buffers(self, m: int) -> SimpleNamespace:
        """For a batch of ``m`` rows, in an :func:`~gpumlp.activations.np_workspace` of
        (m, n_L): the gather targets ``x``, ``y``, ``labels``, and the monitors' scratch: each
        example's cost ``c`` (m,), predictions ``pred`` (m,), hits ``hit`` (m,) or (m, 1),
        and the batch sums ``s`` and ``k`` (0-d)."""
        if m not in self.batch_buffers:
            (X, Y, labels), dtype = self.data, np.dtype(self.state.spec.dtype)
            g = np_workspace(np, (m, Y.shape[1]), dtype)
            g.x = np.empty((m, *X.shape[1:]), X.dtype)
            g.y = np.empty((m, *Y.shape[1:]), Y.dtype)
            g.labels, g.pred = np.empty(m, labels.dtype), np.empty(m, labels.dtype)
            g.hit = np.empty(m if Y.shape[1] > 1 else (m, 1), bool)
            g.c, g.s, g.k = np.empty(m, dtype), np.empty((), dtype), np.empty((), labels.dtype)
            self.batch_buffers[m] = g
        return self.batch_buffers[m]

    def batch(self, rows: slice, perm: Any, *, labels: bool) -> tuple[Any, Any, Any]:
        """As :meth:`BatchLoop.batch`, an in-memory permuted batch gathered into buffers."""
        if perm is None or self.reader is not None:
            return super().batch(rows, perm, labels=labels)
        data: Any = self.data  # NumPy arrays
        X, Y, lab = data
        idx = perm[rows]
        g = self._batch_buffers(idx.shape[0])
        # mode="clip" never clips (perm holds row numbers 0..n-1, the epoch's permutation);
        # "raise" would gather into a temporary first and copy that into out.
        X.take(idx, axis=0, out=g.x, mode="clip")
        Y.take(idx, axis=0, out=g.y, mode="clip")
        if not labels:
            return g.x, g.y, lab
        lab.take(idx, axis=0, out=g.labels, mode="clip")
        return g.x, g.y, g.labels

    def add_cost(self, cost_sum: Any, a: Any, y: Any) -> Any:
        """As :meth:`BatchLoop.add_cost`, in place: the cost's in-place form, summed in the
        generic loop's order (per example, then the batch)."""
        g = self._batch_buffers(a.shape[0])
        self.state.spec.cost.np_fn(a, y, g.c, g)
        np.add.reduce(g.c, axis=0, out=g.s)
        np.add(cost_sum, g.s, out=cost_sum)
        return cost_sum

    def add_hits(self, correct: Any, a: Any, labels: Any) -> Any:
        """As :meth:`BatchLoop.add_hits` (:func:`~gpumlp.engines.steps.predict_labels`), in
        place."""
        g = self._batch_buffers(a.shape[0])
        if a.shape[1] == 1:
            np.greater(a, g.half, out=g.hit)
            np.equal(g.hit, labels[:, None], out=g.hit)
        else:
            a.argmax(axis=1, out=g.pred)
            np.equal(g.pred, labels, out=g.hit)
        np.add.reduce(g.hit, axis=None, out=g.k)
        np.add(correct, g.k, out=correct)
        return correct

    def __call__(
        self, x: Any, y: Any, lr: float, draw: int = 0, *, part: tuple[int, int] | None = None
    ) -> Any:
        """One step on the NumPy arrays ``x`` (m, n_0), ``y`` (m, n_L); the outputs (m, n_L),
        a buffer the next step reuses. ``part``: see :mod:`gpumlp.engines.steps`."""
        s = self.state
        spec, cfg, params = s.spec, s.config, s.params
        acts, cost, xp = spec.activations, spec.cost, self.xp
        # NumPy arrays all (the backend is NumPy), written to with out= below.
        ws, wts, bs = self.weights, self.transposed, self.biases
        gw: list[Any] = self.grads.weights
        gb: list[Any] = self.grads.biases
        m, L = x.shape[0], len(ws)
        layers = self._layers(m)
        first, rows = part or (0, m)
        keep: list[Any] | None = self.keep_masks(m, draw, first)
        inputs: list[Any] = [x]
        for l, buf in enumerate(layers):  # forward, recording z and a
            np.matmul(inputs[l], wts[l], out=buf.z)
            np.add(buf.z, bs[l], out=buf.z)
            acts[l].np_fn(buf.z, buf.a, buf)  # type: ignore[misc]
            if l + 1 < L:
                if keep is not None:
                    np.multiply(buf.a, keep[l], out=buf.kept)
                inputs.append(buf.a if keep is None else buf.kept)
        out, last = acts[-1], layers[-1]
        if self.fused is not None:  # the pair's closed form of δ^L, in place
            self.fused.np_delta(last.z, last.a, y, last.d, last)
        elif out.np_times_prime is None:  # softmax under another cost: its xp vjp
            closed: Any = cost.delta(last.z, last.a, y, out, xp=xp)
            np.copyto(last.d, closed)
        else:  # BP1: ∇_a C ⊙ σ'(z), in place
            cost.np_grad(last.a, y, last.d, last)
            out.np_times_prime(last.d, last.z, last.a, last)
        # The batch mean (network.backprop's 1/m); for plain SGD with the rate folded in.
        np.multiply(last.d, (lr if self.sgd else 1.0) / rows, out=last.d)
        if last.flush:
            _flush_subnormals(last.d, last)
        delta = last
        for l in range(L - 1, -1, -1):
            np.matmul(delta.dT, inputs[l], out=gw[l])  # BP4
            np.add.reduce(delta.d, axis=0, out=gb[l])  # BP3 (xp.sum's own reduction)
            if l:
                prev = layers[l - 1]
                g = prev.d
                np.matmul(delta.d, ws[l], out=g)  # BP2: (W^lᵀ δ^l), then ⊙ σ'(z^(l-1))
                if keep is not None:
                    np.multiply(g, keep[l - 1], out=g)
                acts[l - 1].np_times_prime(g, prev.z, prev.a, prev)  # type: ignore[misc]
                if prev.flush:
                    _flush_subnormals(g, prev)
                delta = prev
        grads = self.summed(self.grads, part)  # over the ranks, before penalties and update
        if cfg.l2 or cfg.l1:  # under SGD the gradients carry lr, so the penalties do too
            k = lr if self.sgd else 1.0
            grads = regularize(
                grads, params, l2=k * cfg.l2, l1=k * cfg.l1, n=self.data[0].shape[0], xp=xp
            )
        if self.sgd:
            pairs: Any = self.pairs
            if grads is not self.grads:  # the penalties made new weight gradients
                pairs = zip(params.arrays(), grads.arrays(), strict=True)
            for p, gr in pairs:
                np.subtract(p, gr, out=p)
        else:
            apply_update(s.optimizer, params, grads, s.opt_state, lr=lr, xp=xp, in_place=True)
        return last.a
