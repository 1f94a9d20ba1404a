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

Chosen by :func:`gpumlp.engines.select_step` for the NumPy backend (engine "auto" or "fused").
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..network import Params
from ..optim import apply_update, regularize
from ..runstate import TrainState
from .steps import BatchLoop, Data

__all__ = ["NumpyStep", "make_step"]

NDArray = np.ndarray[Any, Any]

FLUSH_FROM = 1 << 18
"""Deltas are flushed of subnormals when the GEMMs they feed have at least this many
multiply-adds (m · n_l · n_(l−1)); below it the three extra passes cost more than they save."""


def _flush_subnormals(d: NDArray, buf: SimpleNamespace) -> None:
    """Set the subnormal entries of ``d`` (m, n) to 0, with ``buf``'s scratch."""
    np.abs(d, out=buf.t)
    np.less(buf.t, np.finfo(d.dtype).smallest_normal, out=buf.mask)
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
        self.grads = Params(
            [np.empty_like(w) for w in params.weights], [np.empty_like(b) for b in params.biases]
        )
        if self.reducer is not None:  # written where the ranks' sum takes them from
            self.grads = self.reducer.grads
        self.buffers: dict[int, list[SimpleNamespace]] = {}

    def _layers(self, m: int) -> list[SimpleNamespace]:
        """Per layer: z, a, δ (m, n), the scratch the in-place forms use, and whether its deltas
        are flushed; one set per batch size (the full batches and the last, short one)."""
        if m not in self.buffers:
            dtype = np.dtype(self.state.spec.dtype)

            def new(n_in: int, n: int) -> SimpleNamespace:
                bufs = {k: np.empty((m, n), dtype) for k in ("z", "a", "d", "t", "u")}
                flush = m * n * n_in >= FLUSH_FROM
                return SimpleNamespace(np=np, mask=np.empty((m, n), bool), flush=flush, **bufs)

            sizes = self.state.spec.sizes
            self.buffers[m] = [new(n_in, n) for n_in, n in itertools.pairwise(sizes)]
        return self.buffers[m]

    def __call__(
        self, x: Any, y: Any, lr: float, draw: int = 0, *, part: tuple[int, int] | None = None
    ) -> Any:
        """One step on the NumPy arrays ``x`` (m, n_0), ``y`` (m, n_L); the outputs (m, n_L),
        a buffer the next step reuses. ``part``: see :mod:`gpumlp.engines.steps`."""
        s = self.state
        spec, cfg, params = s.spec, s.config, s.params
        acts, cost, xp = spec.activations, spec.cost, self.xp
        # NumPy arrays all (the backend is NumPy), written to with out= below.
        ws: list[Any] = params.weights
        bs: list[Any] = params.biases
        gw: list[Any] = self.grads.weights
        gb: list[Any] = self.grads.biases
        m, L = x.shape[0], len(ws)
        layers = self._layers(m)
        first, rows = part or (0, m)
        keep: list[Any] | None = self.keep_masks(m, draw, first)
        inputs: list[Any] = [x]
        for l, buf in enumerate(layers):  # forward, recording z and a
            np.matmul(inputs[l], ws[l].T, out=buf.z)
            buf.z += bs[l]
            acts[l].np_fn(buf.z, buf.a, buf)  # type: ignore[misc]
            if l + 1 < L:
                inputs.append(buf.a * keep[l] if keep is not None else buf.a)
        out, last = acts[-1], layers[-1]
        if out.name in cost.fused or out.np_times_prime is None:  # closed forms, softmax
            closed: Any = cost.delta(last.z, last.a, y, out, xp=xp)
            np.copyto(last.d, closed)
        else:  # BP1: ∇_a C ⊙ σ'(z), in place
            cost.np_grad(last.a, y, last.d, last)
            out.np_times_prime(last.d, last.z, last.a, last)
        # The batch mean (network.backprop's 1/m); for plain SGD with the rate folded in.
        last.d *= (lr if self.sgd else 1.0) / rows
        if last.flush:
            _flush_subnormals(last.d, last)
        delta = last.d
        for l in range(L - 1, -1, -1):
            np.matmul(delta.T, inputs[l], out=gw[l])  # BP4
            np.add.reduce(delta, axis=0, out=gb[l])  # BP3 (xp.sum's own reduction)
            if l:
                g = layers[l - 1].d
                np.matmul(delta, ws[l], out=g)  # BP2: (W^lᵀ δ^l), then ⊙ σ'(z^(l-1))
                if keep is not None:
                    g *= keep[l - 1]
                prev = layers[l - 1]
                acts[l - 1].np_times_prime(g, prev.z, prev.a, prev)  # type: ignore[misc]
                if prev.flush:
                    _flush_subnormals(g, prev)
                delta = g
        grads = self.summed(self.grads, part)  # over the ranks, before penalties and update
        if cfg.l2 or cfg.l1:  # under SGD the gradients carry lr, so the penalties do too
            k = lr if self.sgd else 1.0
            grads = regularize(
                grads, params, l2=k * cfg.l2, l1=k * cfg.l1, n=self.data[0].shape[0], xp=xp
            )
        if self.sgd:
            for p, gr in zip(params.arrays(), grads.arrays(), strict=True):
                p -= gr
        else:
            apply_update(s.optimizer, params, grads, s.opt_state, lr=lr, xp=xp, in_place=True)
        return last.a
