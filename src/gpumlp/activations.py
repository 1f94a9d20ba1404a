"""Activation functions σ and their derivatives: one registry, every form of each formula.

Each :class:`Activation` holds its math in three forms, side by side so they cannot drift:

- the array-API form, ``fn(z, *, xp)`` and ``prime(z, a, *, xp)``, for any namespace;
- the in-place NumPy form, ``np_fn(z, out, ws)`` and ``np_times_prime(g, z, a, ws)``, for the
  NumPy fast path: the same IEEE operations in the same order, into preallocated buffers (``ws``,
  a :func:`np_workspace`: scratch arrays shaped like ``z``, and the forms' constants as 0-d
  arrays of its dtype, which a ufunc takes without converting a Python float at every call);
- the CUDA C form, ``cuda_fn`` and ``cuda_prime``: bodies of device functions of ``real z``
  (and ``real a``) that the kernel source is generated from (:mod:`gpumlp.engines._kernels`).

The xp and NumPy forms agree bit for bit on NumPy (tested). The CUDA form performs the same
operations; where it calls ``exp`` or ``tanh``, CUDA's math library may round differently from
the host's by up to :data:`ULP_BUDGET` ulp (tested under the CPU emulation of the kernels).

Shapes: ``z``, ``a``, ``g`` are (m, n), one example per row. Softmax is not elementwise (its
Jacobian is ``diag(a) − a aᵀ`` per row), so it gives ``vjp(z, a, g) = Jᵀ g`` instead of
``prime``, has its own CUDA kernel, and is allowed only as an output activation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

from .backend import Array, Namespace

__all__ = [
    "ACTIVATIONS",
    "HIDDEN_ACTIVATIONS",
    "ULP_BUDGET",
    "Activation",
    "get_activation",
    "lookup",
    "np_workspace",
    "sigmoid_floor",
]

T = TypeVar("T")

ULP_BUDGET = 4
"""Largest difference, in ulp of the result, between the CUDA form of an activation or of its
derivative and the xp form, from the two math libraries' ``exp``/``tanh`` (each within 2 ulp of
the exact value)."""


@dataclass(frozen=True)
class Activation:
    """An activation σ with its derivative, in every form (see the module docstring).

    Attributes
    ----------
    name : str
    fn : ``fn(z, *, xp) -> a``, shapes (m, n) -> (m, n)
    prime : ``prime(z, a, *, xp) -> σ'(z)``, shape (m, n); None when σ is not elementwise
    vjp : ``vjp(z, a, g, *, xp) -> Jᵀ g``, shape (m, n), for the non-elementwise softmax
    output_only : bool, True when σ is valid only on the output layer
    np_fn, np_times_prime : the in-place NumPy forms (None: the fast path does not apply)
    cuda_fn, cuda_prime : CUDA C function bodies (None: no elementwise kernel)
    """

    name: str
    fn: Callable[..., Array]
    prime: Callable[..., Array] | None = None
    vjp: Callable[..., Array] | None = None
    output_only: bool = False
    np_fn: Callable[..., None] | None = None
    np_times_prime: Callable[..., None] | None = None
    cuda_fn: str | None = None
    cuda_prime: str | None = None

    def backward(self, z: Array, a: Array, g: Array, *, xp: Namespace) -> Array:
        """Pull ``g = ∂C/∂a`` back through σ (BP1/BP2's Hadamard factor): ``∂C/∂z``, (m, n)."""
        if self.vjp is not None:
            return self.vjp(z, a, g, xp=xp)
        assert self.prime is not None
        return g * self.prime(z, a, xp=xp)


def sigmoid_floor(smallest_normal: float) -> float:
    """The z below which the sigmoid holds z still: ``ceil(ln smallest_normal)`` of the dtype
    (−87 in float32, −708 in float64). Above it e^−z is finite, and σ(z) ≥ σ(floor) is a normal
    number: a subnormal one would make a CPU's arithmetic on it ~100 times slower (a float32
    GEMM whose inputs were all subnormal ran 130× slower; docs/benchmarks.md). Below it σ is
    held at σ(floor), within 3·smallest_normal of the exact value."""
    return float(math.ceil(math.log(smallest_normal)))


def np_workspace(np: Any, shape: tuple[int, ...], dtype: Any) -> SimpleNamespace:
    """The workspace the in-place NumPy forms of the activations and costs take: ``np`` (the
    namespace they call), scratch ``t``, ``u``, ``v`` (``shape``, ``dtype``), ``mask``
    (``shape``, bool), ``r`` (the rows, shape[0], by 1) and the constants they use, 0-d
    arrays of ``dtype``: ``zero``, ``half``, ``one``, ``four``, ``minus_two``, ``floor``
    (:func:`sigmoid_floor`), ``minus_floor``, ``eps`` and ``one_minus_eps`` (the cost's clip
    bounds). Each value is the Python float the xp forms use, which NumPy rounds the same."""
    dtype = np.dtype(dtype)
    floor, eps = _floor(dtype, np), float(np.finfo(dtype).eps)
    values = {"zero": 0.0, "half": 0.5, "one": 1.0, "four": 4.0, "minus_two": -2.0,
              "floor": floor, "minus_floor": -floor, "eps": eps,
              "one_minus_eps": 1.0 - eps}  # fmt: skip
    consts = {k: np.full((), v, dtype) for k, v in values.items()}
    scratch = {k: np.empty(shape, dtype) for k in ("t", "u", "v")}
    rows = np.empty((shape[0], 1), dtype)
    return SimpleNamespace(np=np, mask=np.empty(shape, bool), r=rows, **scratch, **consts)


# -- sigmoid: σ(z) = 1 / (1 + e^−max(z, floor)) ----------------------------------------------
# Both tails keep full relative precision (for z ≪ 0, 1 + e^−z rounds to e^−z to half an ulp);
# σ' = σ(z) σ(−z) rather than the book's a(1 − a), which rounds to 0 once σ(z) rounds to 1
# (z > 17 in float32), so a unit saturated at the wrong end still gets its gradient.


@functools.cache  # the hot path's one lookup: finfo per dtype once, not per call
def _floor(dtype: Any, xp: Namespace) -> float:
    return sigmoid_floor(float(xp.finfo(dtype).smallest_normal))


def _sigmoid(z: Array, *, xp: Namespace) -> Array:
    return 1.0 / (1.0 + xp.exp(-xp.maximum(z, _floor(z.dtype, xp))))


def _sigmoid_prime(z: Array, a: Array, *, xp: Namespace) -> Array:
    return a * _sigmoid(-z, xp=xp)


def _np_sigmoid(z: Any, out: Any, ws: Any) -> None:
    np = ws.np
    np.maximum(z, ws.floor, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.add(out, ws.one, out=out)
    np.reciprocal(out, out=out)  # 1/x, the same correctly rounded division as 1.0 / x


def _np_sigmoid_times_prime(g: Any, z: Any, a: Any, ws: Any) -> None:
    np, t = ws.np, ws.t
    # σ(−z) = 1/(1 + e^−max(−z, floor)); −max(−z, f) is exactly min(z, −f)
    np.minimum(z, ws.minus_floor, out=t)
    np.exp(t, out=t)
    np.add(t, ws.one, out=t)
    np.reciprocal(t, out=t)
    np.multiply(a, t, out=t)
    np.multiply(g, t, out=g)


_CUDA_SIGMOID = "return (real)1 / ((real)1 + exp(-(z < SIGMOID_FLOOR ? SIGMOID_FLOOR : z)));"
_CUDA_SIGMOID_PRIME = "return a * act_sigmoid(-z);"  # as _sigmoid_prime; act_sigmoid precedes it

# -- tanh: tanh' = sech²(z) = 4e/(1 + e)² with e = e^(−2|z|) ----------------------------------
# exact where 1 − a² would round to 0 (|z| > 9 in float32), and e ≤ 1 cannot overflow.


def _tanh(z: Array, *, xp: Namespace) -> Array:
    return xp.tanh(z)


def _tanh_prime(z: Array, a: Array, *, xp: Namespace) -> Array:
    e = xp.exp(-2.0 * xp.abs(z))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def _np_tanh(z: Any, out: Any, ws: Any) -> None:
    ws.np.tanh(z, out=out)


def _np_tanh_times_prime(g: Any, z: Any, a: Any, ws: Any) -> None:
    np, t, u = ws.np, ws.t, ws.u
    np.abs(z, out=t)
    np.multiply(t, ws.minus_two, out=t)
    np.exp(t, out=t)
    np.add(t, ws.one, out=u)
    np.multiply(u, u, out=u)
    np.multiply(t, ws.four, out=t)
    np.divide(t, u, out=t)
    np.multiply(g, t, out=g)


_CUDA_TANH_PRIME = (
    "const real e = exp((real)-2 * fabs(z));\n"
    "    return (real)4 * e / (((real)1 + e) * ((real)1 + e));"
)

# -- relu: the subgradient at 0 is taken as 0, as PyTorch and scikit-learn do ------------------


def _relu(z: Array, *, xp: Namespace) -> Array:
    return xp.maximum(z, 0.0)


def _relu_prime(z: Array, a: Array, *, xp: Namespace) -> Array:
    return xp.astype(z > 0.0, z.dtype)


def _np_relu(z: Any, out: Any, ws: Any) -> None:
    ws.np.maximum(z, ws.zero, out=out)


def _np_relu_times_prime(g: Any, z: Any, a: Any, ws: Any) -> None:
    ws.np.greater(z, ws.zero, out=ws.t, casting="unsafe")
    ws.np.multiply(g, ws.t, out=g)


# -- identity ---------------------------------------------------------------------------------


def _identity(z: Array, *, xp: Namespace) -> Array:
    return z


def _identity_prime(z: Array, a: Array, *, xp: Namespace) -> Array:
    return xp.ones_like(z)


def _np_identity(z: Any, out: Any, ws: Any) -> None:
    ws.np.copyto(out, z)


def _np_identity_times_prime(g: Any, z: Any, a: Any, ws: Any) -> None:
    """g · 1 is g, bit for bit: nothing to do."""


# -- softmax: shifted by the row max so exp never overflows -----------------------------------


def _softmax(z: Array, *, xp: Namespace) -> Array:
    e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return e / xp.sum(e, axis=1, keepdims=True)


def _softmax_vjp(z: Array, a: Array, g: Array, *, xp: Namespace) -> Array:
    # Jᵀ g with J = diag(a) − a aᵀ (symmetric): a ⊙ (g − Σ_k g_k a_k), row by row.
    return a * (g - xp.sum(g * a, axis=1, keepdims=True))


def _np_softmax(z: Any, out: Any, ws: Any) -> None:
    np, r = ws.np, ws.r  # the reductions of xp.max and xp.sum, without their Python wrappers
    np.maximum.reduce(z, axis=1, keepdims=True, out=r)
    np.subtract(z, r, out=out)
    np.exp(out, out=out)
    np.add.reduce(out, axis=1, keepdims=True, out=r)
    np.divide(out, r, out=out)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(
        "sigmoid", _sigmoid, _sigmoid_prime, np_fn=_np_sigmoid,
        np_times_prime=_np_sigmoid_times_prime, cuda_fn=_CUDA_SIGMOID,
        cuda_prime=_CUDA_SIGMOID_PRIME,
    ),
    "relu": Activation(
        "relu", _relu, _relu_prime, np_fn=_np_relu, np_times_prime=_np_relu_times_prime,
        cuda_fn="return z < (real)0 ? (real)0 : z;",
        cuda_prime="return z > (real)0 ? (real)1 : (real)0;",
    ),
    "tanh": Activation(
        "tanh", _tanh, _tanh_prime, np_fn=_np_tanh, np_times_prime=_np_tanh_times_prime,
        cuda_fn="return tanh(z);", cuda_prime=_CUDA_TANH_PRIME,
    ),
    "identity": Activation(
        "identity", _identity, _identity_prime, np_fn=_np_identity,
        np_times_prime=_np_identity_times_prime, cuda_fn="return z;",
        cuda_prime="return (real)1;",
    ),
    "softmax": Activation("softmax", _softmax, vjp=_softmax_vjp, output_only=True,
                          np_fn=_np_softmax),
}  # fmt: skip
"""Every activation by name: adding one here, in all its forms, is all it takes."""

HIDDEN_ACTIVATIONS = tuple(name for name, act in ACTIVATIONS.items() if not act.output_only)
"""The activations a hidden layer may take (``--activation``'s choices)."""


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
