"""The network's math: parameters, feedforward and backpropagation, as plain functions.

Index and shape convention (one place, used throughout the package)
--------------------------------------------------------------------
A network of ``sizes = [n_0, n_1, ..., n_L]`` has ``L`` weight layers, indexed ``l = 0 .. L-1``
(the book's layer ``l + 1``). ``weights[l]`` has shape ``(n_{l+1}, n_l)`` (the book's W^l, rows
are output units) and ``biases[l]`` has shape ``(n_{l+1},)``. A mini-batch is a matrix with one
example per *row*: ``x`` has shape ``(m, n_0)``, so the book's ``z = W a + b`` on column vectors
becomes ``z = a Wᵀ + b`` on rows, and every δ, z and a below has shape ``(m, n)``.

The functions take the namespace ``xp`` by keyword and never import NumPy or CuPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .activations import Activation
from .backend import Array, Namespace, writable
from .costs import Cost

__all__ = ["Params", "backprop", "feedforward", "forward"]


@dataclass
class Params:
    """Weights and biases of a network (also the shape of its gradients and optimizer state).

    Attributes
    ----------
    weights : list of arrays, ``weights[l]`` shape (n_{l+1}, n_l)
    biases : list of arrays, ``biases[l]`` shape (n_{l+1},)
    """

    weights: list[Array]
    biases: list[Array]

    def arrays(self) -> list[Array]:
        """All tensors in a fixed order: w_0, b_0, w_1, b_1, ..."""
        return [t for pair in zip(self.weights, self.biases, strict=True) for t in pair]

    @classmethod
    def from_arrays(cls, arrays: Sequence[Array]) -> Params:
        """Inverse of :meth:`arrays`."""
        return cls(list(arrays[0::2]), list(arrays[1::2]))

    def copy(self, *, xp: Namespace) -> Params:
        """A copy on the same device (no host round trip)."""
        return Params.from_arrays([xp.asarray(t, copy=True) for t in self.arrays()])

    def zeros_like(self, *, xp: Namespace) -> Params:
        """Zeros of the same shapes, dtype and device."""
        return Params.from_arrays([xp.zeros_like(t) for t in self.arrays()])

    def set(self, i: int, value: Array) -> None:
        """Store ``value`` as tensor ``i`` (in :meth:`arrays` order): written into the existing
        array where it can be (so views and references of it stay current), rebound to the new
        array where arrays are immutable. The one rule every parameter update goes through."""
        seq = self.weights if i % 2 == 0 else self.biases
        current = seq[i // 2]
        if writable(current):
            current[...] = value
        else:
            seq[i // 2] = value

    def assign(self, other: Params) -> None:
        """Overwrite every tensor with ``other``'s values (same shapes), by :meth:`set`."""
        for i, src in enumerate(other.arrays()):
            self.set(i, src)


def forward(
    params: Params,
    x: Array,
    *,
    activations: Sequence[Activation],
    xp: Namespace,
    keep: Sequence[Array] | None = None,
) -> tuple[list[Array], list[Array], list[Array]]:
    """Feed a batch forward, recording what backpropagation needs.

    Parameters
    ----------
    params : Params
    x : array, shape (m, n_0)
    activations : sequence of Activation, one per layer (length L)
    xp : namespace
    keep : sequence of L - 1 arrays, optional
        Inverted-dropout multipliers for the hidden layers: ``keep[l]`` has shape (m, n_{l+1})
        and holds 0 or 1/(1-p); it multiplies the activation of hidden layer ``l`` before it
        feeds layer ``l + 1``. The output layer is never dropped.

    Returns
    -------
    zs : list of L arrays, ``zs[l]`` shape (m, n_{l+1})
    acts : list of L + 1 arrays, ``acts[0] = x`` and ``acts[l + 1] = σ(zs[l])``
    inputs : list of L arrays, ``inputs[l]`` is what layer ``l`` multiplies: ``acts[l]``, or
        ``acts[l] * keep[l - 1]`` under dropout
    """
    zs: list[Array] = []
    acts = [x]
    inputs = [x]
    for l, (w, b, act) in enumerate(zip(params.weights, params.biases, activations, strict=True)):
        z = inputs[-1] @ w.T + b
        a = act.fn(z, xp=xp)
        zs.append(z)
        acts.append(a)
        if l + 1 < len(params.weights):
            inputs.append(a * keep[l] if keep is not None else a)
    return zs, acts, inputs


def feedforward(
    params: Params, x: Array, *, activations: Sequence[Activation], xp: Namespace
) -> Array:
    """Output of the network for a batch ``x`` (shape (m, n_0)) -> array shape (m, n_L)."""
    a = x
    for w, b, act in zip(params.weights, params.biases, activations, strict=True):
        a = act.fn(a @ w.T + b, xp=xp)
    return a


def backprop(
    params: Params,
    x: Array,
    y: Array,
    *,
    activations: Sequence[Activation],
    cost: Cost,
    xp: Namespace,
    keep: Sequence[Array] | None = None,
    rows: int | None = None,
) -> tuple[Params, Array]:
    """Gradient of the batch-mean cost by backpropagation, for the whole batch at once.

    Parameters
    ----------
    params : Params
    x : array, shape (m, n_0)
    y : array, shape (m, n_L), the targets (one-hot rows for classification)
    activations : sequence of Activation, length L
    cost : Cost
    xp : namespace
    keep : optional dropout multipliers, see :func:`forward`
    rows : int, optional
        The rows of the batch the mean is over (default m): a rank's part of a global batch
        (:mod:`gpumlp.distributed`) divides its sums by the global batch's rows.

    Returns
    -------
    grads : Params
        ``grads.weights[l]`` = ∂C/∂W (shape (n_{l+1}, n_l)) and ``grads.biases[l]`` = ∂C/∂b
        (shape (n_{l+1},)), where C is the mean cost over the m examples.
    a : array, shape (m, n_L)
        The output activations, so callers can monitor cost and accuracy without a second pass.
    """
    zs, acts, inputs = forward(params, x, activations=activations, xp=xp, keep=keep)
    n_layers = len(params.weights)
    nabla_w: list[Array] = []
    nabla_b: list[Array] = []
    # BP1, scaled by 1/m: the batch mean is taken here and only here, so every gradient below
    # (BP3, BP4 are linear in δ) is already the mean over the mini-batch.
    delta = cost.delta(zs[-1], acts[-1], y, activations[-1], xp=xp) * (1.0 / (rows or x.shape[0]))
    for l in range(n_layers - 1, -1, -1):
        nabla_w.insert(0, delta.T @ inputs[l])  # BP4: ∂C/∂W^l = δ^l (a^(l-1))ᵀ over rows
        nabla_b.insert(0, xp.sum(delta, axis=0))  # BP3
        if l > 0:
            # BP2: δ^(l-1) = (W^lᵀ δ^l) ⊙ σ'(z^(l-1)); under dropout the mask scaled a^(l-1)
            # on the way forward, so it scales the gradient flowing back into it too.
            g = delta @ params.weights[l]
            if keep is not None:
                g = g * keep[l - 1]
            delta = activations[l - 1].backward(zs[l - 1], acts[l], g, xp=xp)
    return Params(nabla_w, nabla_b), acts[-1]
