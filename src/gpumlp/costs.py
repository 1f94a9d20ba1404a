"""Cost functions C and their output errors δ^L: one registry, every form of each formula.

Conventions (the book's): ``a`` is the network output and ``y`` the target, both shape
(m, n_out); ``fn`` returns each example's cost, shape (m,), and the network takes the batch
mean. As in :mod:`gpumlp.activations`, each :class:`Cost` holds the xp form, the in-place NumPy
forms of the cost and its gradient (``np_fn(a, y, out, ws)``, ``np_grad(a, y, out, ws)``: the
same IEEE operations in the same order, bit for bit on NumPy) and the CUDA C forms
(``cuda_grad``: ∇_a C of one element; ``cuda_cost``: one element's share of the cost), all with
the same arithmetic.

- ``quadratic``: C = ½‖a − y‖², any output activation.
- ``cross_entropy``: C = Σ_j −[y_j ln a_j + (1 − y_j) ln(1 − a_j)]; sigmoid or softmax outputs.
- ``log_likelihood``: C = −Σ_j y_j ln a_j (−ln a_y for a one-hot y); softmax outputs.

Logarithms clip ``a`` one machine epsilon away from 0 and 1, so the cost stays finite when a
saturated output is exactly 0 or 1. The clip is ``minimum(maximum(a, lo), hi)``, which keeps NaN
and, unlike array-api-compat's ``clip``, never reads a value back from the device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .activations import Activation, lookup
from .backend import Array, Namespace

__all__ = ["COSTS", "VALID_PAIRS", "Cost", "Fused", "get_cost"]


@dataclass(frozen=True)
class Fused:
    """A closed form of δ^L = ∇_a C ⊙ σ'(z^L) for one (cost, output activation) pair: cheaper
    and stabler than the chain rule, and valid only for that activation.

    ``delta(z, a, y, *, xp)`` is the xp form; ``cuda`` the CUDA C expression of one element in
    ``a``, ``y`` and ``ysum`` (Σ_j y_j of the row, which the output kernel always sums);
    ``np_delta(z, a, y, out, ws)`` the in-place NumPy form (bit for bit with ``delta``; ``ws``
    an :func:`~gpumlp.activations.np_workspace` shaped like ``a``).
    """

    delta: Callable[..., Array]
    cuda: str
    np_delta: Callable[..., None]


@dataclass(frozen=True)
class Cost:
    """A cost with its gradient, in every form (see the module docstring).

    Attributes
    ----------
    name : str
    fn : ``fn(a, y, *, xp) -> c``; a, y (m, n_out) -> c (m,)
    grad : ``grad(a, y, *, xp) -> ∇_a C``, (m, n_out)
    np_grad : ``np_grad(a, y, out, ws)``, the gradient into ``out`` (scratch ``ws.t``)
    np_fn : ``np_fn(a, y, out, ws)``, each example's cost into ``out`` (m,), as ``fn``
        (``ws``: an :func:`~gpumlp.activations.np_workspace` shaped like ``a``)
    cuda_grad, cuda_cost : CUDA C expressions in ``a``, ``y`` and ``eps`` (the clip bound)
    fused : output activation name -> :class:`Fused` closed form of δ^L
    outputs : output activations the cost is defined for (None: any)
    unit_targets : bool, targets must lie in [0, 1] (the logarithms assume probabilities)
    """

    name: str
    fn: Callable[..., Array]
    grad: Callable[..., Array]
    np_grad: Callable[..., None]
    np_fn: Callable[..., None]
    cuda_grad: str
    cuda_cost: str
    fused: Mapping[str, Fused] = field(default_factory=dict)
    outputs: frozenset[str] | None = None
    unit_targets: bool = False

    def delta(self, z: Array, a: Array, y: Array, output: Activation, *, xp: Namespace) -> Array:
        """Output error δ^L = ∇_a C ⊙ σ'(z^L) (BP1) per example, shape (m, n_out)."""
        fused = self.fused.get(output.name)
        if fused is not None:
            return fused.delta(z, a, y, xp=xp)
        return output.backward(z, a, self.grad(a, y, xp=xp), xp=xp)

    def check_output(self, output: Activation) -> None:
        """Raise ValueError, listing the valid pairs, when this cost is undefined for the
        ``output`` activation."""
        if self.outputs is not None and output.name not in self.outputs:
            raise ValueError(
                f"cost={self.name!r} needs output_activation in {sorted(self.outputs)}, got "
                f"output_activation={output.name!r}; valid (output_activation, cost) pairs: "
                f"{_pairs_text()}"
            )


def _clip(a: Array, *, xp: Namespace, upper: bool = True) -> Array:
    eps = float(xp.finfo(a.dtype).eps)
    lower = xp.maximum(a, eps)
    return xp.minimum(lower, 1.0 - eps) if upper else xp.minimum(lower, 1.0)


def _np_clip(a: Any, out: Any, ws: Any, *, upper: bool = True) -> None:
    ws.np.maximum(a, ws.eps, out=out)
    ws.np.minimum(out, ws.one_minus_eps if upper else ws.one, out=out)


# -- quadratic --------------------------------------------------------------------------------


def _quadratic(a: Array, y: Array, *, xp: Namespace) -> Array:
    d = a - y
    return 0.5 * xp.sum(d * d, axis=1)


def _quadratic_grad(a: Array, y: Array, *, xp: Namespace) -> Array:
    return a - y


def _np_quadratic(a: Any, y: Any, out: Any, ws: Any) -> None:
    np, t = ws.np, ws.t
    np.subtract(a, y, out=t)
    np.multiply(t, t, out=t)
    np.add.reduce(t, axis=1, out=out)  # xp.sum's own reduction, without its Python wrapper
    np.multiply(out, ws.half, out=out)


def _np_quadratic_grad(a: Any, y: Any, out: Any, ws: Any) -> None:
    ws.np.subtract(a, y, out=out)


# -- cross-entropy ----------------------------------------------------------------------------


def _cross_entropy(a: Array, y: Array, *, xp: Namespace) -> Array:
    a = _clip(a, xp=xp)
    return -xp.sum(y * xp.log(a) + (1.0 - y) * xp.log(1.0 - a), axis=1)


def _cross_entropy_grad(a: Array, y: Array, *, xp: Namespace) -> Array:
    c = _clip(a, xp=xp)
    return (c - y) / (c * (1.0 - c))


def _np_cross_entropy(a: Any, y: Any, out: Any, ws: Any) -> None:
    np, t, u, v = ws.np, ws.t, ws.u, ws.v
    _np_clip(a, t, ws)  # t = c
    np.log(t, out=u)
    np.multiply(y, u, out=u)  # y ln c
    np.subtract(ws.one, y, out=v)
    np.subtract(ws.one, t, out=t)
    np.log(t, out=t)
    np.multiply(v, t, out=t)  # (1 − y) ln(1 − c)
    np.add(u, t, out=t)
    np.add.reduce(t, axis=1, out=out)
    np.negative(out, out=out)


def _np_cross_entropy_grad(a: Any, y: Any, out: Any, ws: Any) -> None:
    np, t = ws.np, ws.t
    _np_clip(a, out, ws)  # out = c
    np.subtract(ws.one, out, out=t)
    np.multiply(out, t, out=t)  # c (1 − c)
    np.subtract(out, y, out=out)
    np.divide(out, t, out=out)


def _a_minus_y(z: Array, a: Array, y: Array, *, xp: Namespace) -> Array:
    # Sigmoid + cross-entropy: σ'(z) = a(1 − a) cancels the gradient's denominator (eq. 66).
    return a - y


def _np_a_minus_y(z: Any, a: Any, y: Any, out: Any, ws: Any) -> None:
    ws.np.subtract(a, y, out=out)


# -- log-likelihood ---------------------------------------------------------------------------


def _log_likelihood(a: Array, y: Array, *, xp: Namespace) -> Array:
    return -xp.sum(y * xp.log(_clip(a, xp=xp, upper=False)), axis=1)


def _log_likelihood_grad(a: Array, y: Array, *, xp: Namespace) -> Array:
    return -y / _clip(a, xp=xp, upper=False)


def _np_log_likelihood(a: Any, y: Any, out: Any, ws: Any) -> None:
    np, t = ws.np, ws.t
    _np_clip(a, t, ws, upper=False)
    np.log(t, out=t)
    np.multiply(y, t, out=t)
    np.add.reduce(t, axis=1, out=out)
    np.negative(out, out=out)


def _np_log_likelihood_grad(a: Any, y: Any, out: Any, ws: Any) -> None:
    np, t = ws.np, ws.t
    _np_clip(a, t, ws, upper=False)
    np.negative(y, out=out)
    np.divide(out, t, out=out)


def _softmax_log_likelihood_delta(z: Array, a: Array, y: Array, *, xp: Namespace) -> Array:
    # Softmax + log-likelihood: δ = a Σ_j y_j − y, the book's a − y for a one-hot y (bitwise:
    # a·1 = a), and still exact for soft targets whose rows do not sum to 1.
    return a * xp.sum(y, axis=1, keepdims=True) - y


def _np_softmax_log_likelihood_delta(z: Any, a: Any, y: Any, out: Any, ws: Any) -> None:
    np = ws.np
    np.add.reduce(y, axis=1, keepdims=True, out=ws.r)
    np.multiply(a, ws.r, out=out)
    np.subtract(out, y, out=out)


COSTS: dict[str, Cost] = {
    "quadratic": Cost(
        "quadratic", _quadratic, _quadratic_grad, _np_quadratic_grad, _np_quadratic,
        cuda_grad="a - y", cuda_cost="(real)0.5 * ((a - y) * (a - y))",
    ),
    "cross_entropy": Cost(
        "cross_entropy", _cross_entropy, _cross_entropy_grad, _np_cross_entropy_grad,
        _np_cross_entropy,
        cuda_grad="(clip(a, eps, (real)1 - eps) - y)"
        " / (clip(a, eps, (real)1 - eps) * ((real)1 - clip(a, eps, (real)1 - eps)))",
        cuda_cost="-(y * log(clip(a, eps, (real)1 - eps))"
        " + ((real)1 - y) * log((real)1 - clip(a, eps, (real)1 - eps)))",
        fused={"sigmoid": Fused(_a_minus_y, "a - y", _np_a_minus_y)},
        outputs=frozenset({"sigmoid", "softmax"}),
        unit_targets=True,
    ),
    "log_likelihood": Cost(
        "log_likelihood", _log_likelihood, _log_likelihood_grad, _np_log_likelihood_grad,
        _np_log_likelihood,
        cuda_grad="-y / clip(a, eps, (real)1)",
        cuda_cost="-(y * log(clip(a, eps, (real)1)))",
        fused={"softmax": Fused(
            _softmax_log_likelihood_delta, "a * ysum - y", _np_softmax_log_likelihood_delta
        )},
        outputs=frozenset({"softmax"}),
        unit_targets=True,
    ),
}  # fmt: skip
"""Every cost by name (docs/architecture.md says how to add one)."""


def _valid_pairs() -> list[tuple[str, str]]:
    from .activations import ACTIVATIONS

    return [
        (out, name)
        for name, cost in COSTS.items()
        for out in ACTIVATIONS
        if cost.outputs is None or out in cost.outputs
    ]


VALID_PAIRS: tuple[tuple[str, str], ...] = tuple(_valid_pairs())
"""Every accepted (output_activation, cost) pair."""


def _pairs_text() -> str:
    return ", ".join(f"({o}, {c})" for o, c in VALID_PAIRS if c != "quadratic") + (
        ", and quadratic with any output"
    )


def get_cost(name: str | Cost) -> Cost:
    """Look up a cost by name (a :class:`Cost` passes through); see :func:`activations.lookup`."""
    return lookup(COSTS, name, argument="cost", kind=Cost)
