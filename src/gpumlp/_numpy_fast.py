"""NumPy fast path: the generic training step without temporaries.

At the small batches this package is built for (m = 10 on [784, 30, 10]) a NumPy step is
~40 tiny operations, and allocating their results costs as much as the arithmetic. This step
does the same math as :func:`gpumlp.train.generic_step` (and is tested against it) with
preallocated buffers per batch size and ``out=`` ufuncs; what is not hot (the output error of
unusual pairs, non-SGD optimizers) is delegated to the generic functions.

Chosen by :func:`gpumlp.train.select_step` for the NumPy backend (engine "auto" or "fused").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .network import Params
from .optim import SGD, regularize

if TYPE_CHECKING:
    from .model import Network

__all__ = ["make_step"]

_HIDDEN = frozenset({"sigmoid", "tanh", "relu", "identity"})


def _activate(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """a = σ(z) in place into ``a`` (softmax allocates: it is only ever the small output)."""
    if name == "sigmoid":
        # 1/(1 + e^−z): for z < −88 (float32) e^−z overflows to inf and σ becomes exactly 0,
        # its correctly rounded value; the overflow is expected, so its warning is silenced.
        # Agrees with activations._sigmoid to an ulp or two (tested against it).
        with np.errstate(over="ignore"):
            np.negative(z, out=a)
            np.exp(a, out=a)
        np.add(a, 1.0, out=a)
        np.reciprocal(a, out=a)
    elif name == "tanh":
        np.tanh(z, out=a)
    elif name == "relu":
        np.maximum(z, 0.0, out=a)
    elif name == "identity":
        np.copyto(a, z)
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        np.divide(e, e.sum(axis=1, keepdims=True), out=a)
    return a


def _times_prime(name: str, g: np.ndarray, z: np.ndarray, a: np.ndarray, tmp: np.ndarray) -> None:
    """g *= σ'(z) in place (BP2's Hadamard factor), for the elementwise hidden activations."""
    if name == "sigmoid":  # σ(z) σ(−z), as activations._sigmoid_prime: exact in both tails
        with np.errstate(over="ignore"):
            np.exp(z, out=tmp)
        np.add(tmp, 1.0, out=tmp)
        np.reciprocal(tmp, out=tmp)
        np.multiply(tmp, a, out=tmp)
        np.multiply(g, tmp, out=g)
    elif name == "tanh":  # sech²(z) = 4e/(1 + e)², e = e^(−2|z|), as activations._tanh_prime
        np.abs(z, out=tmp)
        np.multiply(tmp, -2.0, out=tmp)
        np.exp(tmp, out=tmp)
        np.multiply(g, tmp, out=g)
        np.add(tmp, 1.0, out=tmp)
        np.multiply(tmp, tmp, out=tmp)
        np.divide(g, tmp, out=g)
        np.multiply(g, 4.0, out=g)
    elif name == "relu":
        np.greater(z, 0.0, out=tmp, casting="unsafe")
        np.multiply(g, tmp, out=g)


def make_step(
    net: Network,
    run: Any,
    *,
    engine: str,
    l2: float,
    l1: float,
    n: int,
    batch_size: int,
    dropout: float,
) -> tuple[Callable[..., np.ndarray] | None, str]:
    """Build the in-place NumPy step, or say why it does not apply.

    Returns ``(step, "")`` with ``step(x, y, keep, lr) -> a`` as in
    :func:`gpumlp.train.generic_step` (plus ``step.cost_sum(a, y)``, a cheaper batch cost for
    the monitor), or ``(None, reason)``.
    """
    act_fns = net.layer_activations
    if any(act.name not in _HIDDEN for act in act_fns[:-1]):
        return None, "a hidden activation has no in-place form"
    params, cost, dtype = net.params, net.cost, np.dtype(net._dtype_name)
    ws, bs = params.weights, params.biases
    n_layers = len(ws)
    sgd = isinstance(run.optimizer, SGD)
    grads_w = [np.empty_like(w) for w in ws]
    grads_b = [np.empty_like(b) for b in bs]
    grads = Params(grads_w, grads_b)  # filled in place by every step
    sgd_pairs = list(zip(params.arrays(), grads.arrays(), strict=True))
    buffers: dict[int, dict[str, list[np.ndarray]]] = {}

    def for_batch(m: int) -> dict[str, list[np.ndarray]]:
        if m not in buffers:  # one set per batch size: the full batches and the last, short one
            shapes = [(m, w.shape[0]) for w in ws]
            buffers[m] = {key: [np.empty(s, dtype) for s in shapes] for key in ("z", "a", "d", "t")}
        return buffers[m]

    def step(x: np.ndarray, y: np.ndarray, keep: Any, lr: float) -> np.ndarray:
        buf = for_batch(x.shape[0])
        zs, activations, deltas, tmps = buf["z"], buf["a"], buf["d"], buf["t"]
        inputs = [x]
        for l in range(n_layers):  # forward, recording z and a
            np.matmul(inputs[l], ws[l].T, out=zs[l])
            zs[l] += bs[l]
            a = _activate(act_fns[l].name, zs[l], activations[l])
            if l + 1 < n_layers:
                if keep is not None and keep[l] is not None:
                    a = a * keep[l]
                inputs.append(a)
        # BP1, scaled by 1/m: the batch mean, as in network.backprop. For plain SGD the step
        # size joins the scale here, on the small δ^L, instead of on every gradient below.
        scale = (lr if sgd else 1.0) / x.shape[0]
        out, delta = act_fns[-1], deltas[-1]
        if out.name in _HIDDEN and out.name not in cost.fused:  # ∇_a C ⊙ σ'(z), in place
            if cost.name == "quadratic":
                np.subtract(activations[-1], y, out=delta)
            else:
                np.copyto(delta, cost.grad(activations[-1], y, xp=net.xp))
            _times_prime(out.name, delta, zs[-1], activations[-1], tmps[-1])
        else:  # softmax and the fused pairs: the cost's own closed form
            np.copyto(delta, cost.delta(zs[-1], activations[-1], y, out, xp=net.xp))
        delta *= scale
        for l in range(n_layers - 1, -1, -1):
            np.matmul(delta.T, inputs[l], out=grads_w[l])  # BP4
            np.add.reduce(delta, axis=0, out=grads_b[l])  # BP3 (np.sum's wrapper costs 4x)
            if l:
                g = deltas[l - 1]
                np.matmul(delta, ws[l], out=g)  # BP2: (W^lᵀ δ^l), then ⊙ σ'(z^(l-1))
                if keep is not None and keep[l - 1] is not None:
                    g *= keep[l - 1]
                _times_prime(act_fns[l - 1].name, g, zs[l - 1], activations[l - 1], tmps[l - 1])
                delta = g
        if l2 or l1:  # under SGD the gradients already carry lr, so the penalties do too
            k = lr if sgd else 1.0
            regularize(grads, params, l2=k * l2, l1=k * l1, n=n, xp=net.xp)
        if sgd:
            for p, gr in sgd_pairs:
                p -= gr
        else:
            run.optimizer.update(params, grads, run.opt_state, lr=lr, xp=net.xp)
        return activations[-1]

    def cost_sum(a: np.ndarray, y: np.ndarray) -> Any:
        """Summed cost of the batch, for the train_cost monitor (a host scalar on NumPy)."""
        if cost.name == "quadratic":
            d = a - y
            return 0.5 * np.vdot(d, d)
        return np.add.reduce(cost.fn(a, y, xp=net.xp), axis=None)

    step.cost_sum = cost_sum  # type: ignore[attr-defined]
    return step, ""
