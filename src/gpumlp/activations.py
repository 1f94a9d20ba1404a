"""Activation functions σ and their derivatives, registered as pairs.

Every function takes ``z`` (pre-activation, shape (m, n)) and the namespace ``xp`` by keyword.
Derivatives take both ``z`` and ``a = σ(z)`` so each can use whichever is cheaper and stabler
(σ' of the sigmoid is ``a (1 - a)``, of tanh ``1 - a²``).

Softmax is not elementwise: its Jacobian is ``diag(a) - a aᵀ`` per row, so the backward pass
asks each activation for ``backward(z, a, g)`` = ``Jᵀ g`` (which is ``g ⊙ σ'(z)`` for the
elementwise ones). Softmax is allowed only as an output activation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .backend import Array, Namespace

__all__ = ["ACTIVATIONS", "Activation", "get_activation", "lookup"]

T = TypeVar("T")


@dataclass(frozen=True)
class Activation:
    """An activation σ with its derivative.

    Attributes
    ----------
    name : str
    fn : callable ``fn(z, *, xp) -> a``, shapes (m, n) -> (m, n)
    prime : callable ``prime(z, a, *, xp) -> σ'(z)``, shape (m, n), or None when σ is not
        elementwise (then ``vjp`` is given).
    vjp : callable ``vjp(z, a, g, *, xp) -> Jᵀ g``, shape (m, n), for non-elementwise σ.
    output_only : bool
        True when σ is valid only on the output layer (softmax).
    """

    name: str
    fn: Callable[..., Array]
    prime: Callable[..., Array] | None = None
    vjp: Callable[..., Array] | None = None
    output_only: bool = False

    def backward(self, z: Array, a: Array, g: Array, *, xp: Namespace) -> Array:
        """Pull the gradient ``g = ∂C/∂a`` back through σ: returns ``∂C/∂z``, shape of ``z``."""
        if self.vjp is not None:
            return self.vjp(z, a, g, xp=xp)
        return g * self.prime(z, a, xp=xp)


def _sigmoid(z: Array, *, xp: Namespace) -> Array:
    # σ(z) = e^min(z,0) / (1 + e^−|z|): 1/(1 + e^−z) for z ≥ 0 and e^z/(1 + e^z) for z < 0.
    # Neither exponential can overflow (no warning at z = ±1000), and both tails keep full
    # relative precision: ½(1 + tanh(z/2)) would round σ(−20) to 0 in float32, where the exact
    # value 2.1e-9 still carries a gradient, and the network's saturated units would never move.
    return xp.exp(xp.minimum(z, 0.0)) / (1.0 + xp.exp(-xp.abs(z)))


def _sigmoid_prime(z: Array, a: Array, *, xp: Namespace) -> Array:
    # σ'(z) = σ(z) σ(−z). The book's a(1 − a) rounds 1 − a to exactly 0 once σ(z) rounds to 1
    # (z > 17 in float32, z > 37 in float64), so an output unit saturated at the wrong end
    # would get no gradient at all; σ(−z) keeps its relative precision there.
    return a * _sigmoid(-z, xp=xp)


def _relu(z: Array, *, xp: Namespace) -> Array:
    return xp.maximum(z, 0.0)


def _relu_prime(z: Array, a: Array, *, xp: Namespace) -> Array:
    # The subgradient at 0 is taken as 0, as PyTorch and scikit-learn do.
    return xp.astype(z > 0, z.dtype)


def _tanh(z: Array, *, xp: Namespace) -> Array:
    return xp.tanh(z)


def _tanh_prime(z: Array, a: Array, *, xp: Namespace) -> Array:
    # tanh'(z) = sech²(z) = 4e / (1 + e)² with e = e^(−2|z|): exact where 1 − a² would round to
    # 0 (|z| > 9 in float32, > 19 in float64), and e ≤ 1 cannot overflow.
    e = xp.exp(-2.0 * xp.abs(z))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def _identity(z: Array, *, xp: Namespace) -> Array:
    return z


def _identity_prime(z: Array, a: Array, *, xp: Namespace) -> Array:
    return xp.ones_like(z)


def _softmax(z: Array, *, xp: Namespace) -> Array:
    # Shift by the row max so exp never overflows; the result is unchanged mathematically.
    e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return e / xp.sum(e, axis=1, keepdims=True)


def _softmax_vjp(z: Array, a: Array, g: Array, *, xp: Namespace) -> Array:
    # Jᵀ g with J = diag(a) - a aᵀ (symmetric): a ⊙ (g - Σ_k g_k a_k), row by row.
    return a * (g - xp.sum(g * a, axis=1, keepdims=True))


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_prime),
    "relu": Activation("relu", _relu, _relu_prime),
    "tanh": Activation("tanh", _tanh, _tanh_prime),
    "identity": Activation("identity", _identity, _identity_prime),
    "softmax": Activation("softmax", _softmax, vjp=_softmax_vjp, output_only=True),
}


def lookup(registry: dict[str, T], name: object, *, argument: str, kind: type[T]) -> T:
    """Find ``name`` in a registry (ACTIVATIONS, COSTS); an instance of ``kind`` passes through.

    Raises
    ------
    ValueError
        For an unknown name; the message names ``argument`` and lists the valid names.
    TypeError
        When ``name`` is neither a string nor a ``kind``.
    """
    if isinstance(name, kind):
        return name
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a string, got {type(name).__name__}")
    try:
        return registry[name]
    except KeyError:
        raise ValueError(
            f"{argument}={name!r} is not a known {kind.__name__.lower()}; "
            f"expected one of {sorted(registry)}"
        ) from None


def get_activation(name: str | Activation, *, argument: str = "activation") -> Activation:
    """Look up an activation by name (an :class:`Activation` passes through); see :func:`lookup`."""
    return lookup(ACTIVATIONS, name, argument=argument, kind=Activation)
