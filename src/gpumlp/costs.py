"""Cost functions C and their output errors δ^L, registered as pairs.

Conventions (the book's): ``a`` is the network output and ``y`` the target, both shape (m, n_out);
``fn`` returns the cost of each example, shape (m,), and the network takes the batch mean.

- ``quadratic``: C = ½‖a − y‖², any output activation.
- ``cross_entropy``: C = Σ_j −[y_j ln a_j + (1 − y_j) ln(1 − a_j)], for outputs in (0, 1).
- ``log_likelihood``: C = −Σ_j y_j ln a_j, which is −ln a_y for a one-hot y; for outputs in (0, 1].

Logarithms clip ``a`` one machine epsilon away from 0 and 1, so the cost stays finite when a
saturated output is exactly 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .activations import Activation, lookup
from .backend import Array, Namespace

__all__ = ["COSTS", "Cost", "get_cost"]


@dataclass(frozen=True)
class Cost:
    """A cost with its gradient and the fused output errors that hold for it.

    Attributes
    ----------
    name : str
    fn : callable ``fn(a, y, *, xp) -> c``; a, y shape (m, n_out) -> c shape (m,)
    grad : callable ``grad(a, y, *, xp) -> ∇_a C``, shape (m, n_out)
    fused : mapping from output-activation name to ``delta(z, a, y, *, xp) -> δ^L``; a closed
        form of ``∇_a C ⊙ σ'(z^L)`` that is cheaper and stabler, valid only for that activation.
    outputs : frozenset of str or None
        Output activations this cost is defined for (None: any).
    unit_targets : bool
        True when targets must lie in [0, 1] (the logarithms assume probabilities).
    """

    name: str
    fn: Callable[..., Array]
    grad: Callable[..., Array]
    fused: Mapping[str, Callable[..., Array]] = field(default_factory=dict)
    outputs: frozenset[str] | None = None
    unit_targets: bool = False

    def delta(self, z: Array, a: Array, y: Array, output: Activation, *, xp: Namespace) -> Array:
        """Output error δ^L = ∇_a C ⊙ σ'(z^L) (BP1) per example, shape (m, n_out)."""
        fused = self.fused.get(output.name)
        if fused is not None:
            return fused(z, a, y, xp=xp)
        return output.backward(z, a, self.grad(a, y, xp=xp), xp=xp)

    def check_output(self, output: Activation) -> None:
        """Raise ValueError when this cost is undefined for the ``output`` activation."""
        if self.outputs is not None and output.name not in self.outputs:
            raise ValueError(
                f"cost={self.name!r} needs outputs in (0, 1); output_activation={output.name!r} "
                f"does not give that (use one of {sorted(self.outputs)})"
            )


def _clip(a: Array, *, xp: Namespace, upper: bool = True) -> Array:
    eps = xp.finfo(a.dtype).eps
    return xp.clip(a, eps, 1.0 - eps if upper else 1.0)


def _quadratic(a: Array, y: Array, *, xp: Namespace) -> Array:
    d = a - y
    return 0.5 * xp.sum(d * d, axis=1)


def _quadratic_grad(a: Array, y: Array, *, xp: Namespace) -> Array:
    return a - y


def _cross_entropy(a: Array, y: Array, *, xp: Namespace) -> Array:
    a = _clip(a, xp=xp)
    return -xp.sum(y * xp.log(a) + (1.0 - y) * xp.log(1.0 - a), axis=1)


def _cross_entropy_grad(a: Array, y: Array, *, xp: Namespace) -> Array:
    a = _clip(a, xp=xp)
    return (a - y) / (a * (1.0 - a))


def _a_minus_y(z: Array, a: Array, y: Array, *, xp: Namespace) -> Array:
    # Sigmoid + cross-entropy: σ'(z) = a(1 − a) cancels the denominator of ∇_a C (book eq. 66).
    return a - y


def _log_likelihood(a: Array, y: Array, *, xp: Namespace) -> Array:
    return -xp.sum(y * xp.log(_clip(a, xp=xp, upper=False)), axis=1)


def _log_likelihood_grad(a: Array, y: Array, *, xp: Namespace) -> Array:
    return -y / _clip(a, xp=xp, upper=False)


def _softmax_log_likelihood_delta(z: Array, a: Array, y: Array, *, xp: Namespace) -> Array:
    # Softmax + log-likelihood: δ = a Σ_j y_j − y, which is the book's a − y for one-hot y
    # (bitwise: a·1 = a), and stays exact for soft targets whose rows do not sum to 1.
    return a * xp.sum(y, axis=1, keepdims=True) - y


_PROBABILITY_OUTPUTS = frozenset({"sigmoid", "softmax"})

COSTS: dict[str, Cost] = {
    "quadratic": Cost("quadratic", _quadratic, _quadratic_grad),
    "cross_entropy": Cost(
        "cross_entropy",
        _cross_entropy,
        _cross_entropy_grad,
        fused={"sigmoid": _a_minus_y},
        outputs=_PROBABILITY_OUTPUTS,
        unit_targets=True,
    ),
    "log_likelihood": Cost(
        "log_likelihood",
        _log_likelihood,
        _log_likelihood_grad,
        fused={"softmax": _softmax_log_likelihood_delta},
        outputs=_PROBABILITY_OUTPUTS,
        unit_targets=True,
    ),
}


def get_cost(name: str | Cost) -> Cost:
    """Look up a cost by name (a :class:`Cost` passes through); see :func:`activations.lookup`."""
    return lookup(COSTS, name, argument="cost", kind=Cost)
