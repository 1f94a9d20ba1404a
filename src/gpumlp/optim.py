"""Optimizers and weight penalties: one registry, every form of each update.

An optimizer updates one tensor at a time, functionally: ``update(p, g, bufs, k, *, xp)``
returns the new ``p`` and new state buffers, where ``g`` is the gradient of the batch-mean cost,
``bufs`` the tensor's state buffers (named by ``buffers``: none for SGD, ``velocity`` for
momentum, ``m`` and ``v`` for Adam) and ``k`` the step's host-side factors (``factors``: the
rate, and Adam's bias corrections). :meth:`Params.set` then writes each result in place where
the namespace allows it and rebinds it where arrays are immutable (``jax.numpy``), so one update
rule serves both. ``update_in_place`` is the same arithmetic written into the arrays themselves,
for the NumPy fast path (no new tensor per step). ``cuda`` is the same update as CUDA C (the
``update`` kernel of :mod:`gpumlp.engines._kernels`), with the same arithmetic.

Penalties (:func:`regularize`) are added to the gradient before the update, as the book does:
L2 is ``(λ/n) W`` (network2's ``w ← (1 − ηλ/n) w − η ∂C/∂w``), L1 is ``(λ/n) sgn(W)``, with ``n``
the size of the training set; biases are not decayed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .backend import Array, Namespace
from .network import Params

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "Momentum",
    "OptState",
    "Optimizer",
    "apply_update",
    "get_optimizer",
    "regularize",
]


@dataclass
class OptState:
    """An optimizer's state: Params-shaped buffers by name, and host scalars (Adam's ``t``)."""

    buffers: dict[str, Params] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)


class Optimizer:
    """Base of the optimizers; see the module docstring for the contract."""

    NAME = "optimizer"
    buffers: tuple[str, ...] = ()
    """Names of the Params-shaped state buffers, in the order ``update`` takes them."""
    scalars: tuple[str, ...] = ()
    """Names of the host step counts (``OptState.scalars``, integers from 0): Adam's ``t``."""

    @property
    def name(self) -> str:
        """The optimizer's name, as :func:`get_optimizer` takes it."""
        return self.NAME

    def cuda_update(self) -> str:
        """The update of element ``i`` as CUDA C (see the ``update`` kernel's variables)."""
        raise NotImplementedError

    def decay_limit(self) -> float | None:
        """The weight decay step ``lr·l2/n`` from which the L2 penalty alone makes the weights
        grow (the update of ``C = (l2/2n)‖w‖²`` is unstable there), or None when no such bound
        holds (Adam's step does not scale with the gradient)."""
        return None

    def init(self, params: Params, *, xp: Namespace) -> OptState:
        """Fresh state: zero buffers shaped like ``params``, on its device; step counts 0."""
        buffers = {k: params.zeros_like(xp=xp) for k in self.buffers}
        return OptState(buffers, dict.fromkeys(self.scalars, 0))

    def factors(self, lr: float, state: OptState) -> tuple[float, ...]:
        """This step's host-side numbers (advancing any step count): ``(lr,)`` by default."""
        return (lr,)

    def update(
        self, p: Array, g: Array, bufs: Sequence[Array], k: tuple[float, ...], *, xp: Namespace
    ) -> tuple[Array, tuple[Array, ...]]:
        """One step for one tensor: the new ``p`` and new buffers."""
        raise NotImplementedError

    def update_in_place(
        self, p: Array, g: Array, bufs: Sequence[Array], k: tuple[float, ...], *, xp: Namespace
    ) -> None:
        """:meth:`update` written into ``p`` and ``bufs`` themselves (writable arrays), with
        the same arithmetic in the same order: the NumPy fast path's form. This default copies
        :meth:`update`'s results in; the built-in optimizers override it to allocate nothing
        per tensor."""
        new_p, new_bufs = self.update(p, g, bufs, k, xp=xp)
        p[...] = new_p
        for buf, value in zip(bufs, new_bufs, strict=True):
            buf[...] = value


@dataclass(frozen=True)
class SGD(Optimizer):
    """Plain gradient descent: ``w ← w − lr ∂C/∂w`` (the book's ``w − (η/m) Σ ∇C_x``)."""

    NAME = "sgd"

    def decay_limit(self) -> float:
        """2: ``w ← (1 − lr·l2/n) w`` grows once the factor passes −1."""
        return 2.0

    def cuda_update(self) -> str:
        """``p = p − lr g``."""
        return "p[i] = pi - lr * gi;"

    def update(
        self, p: Array, g: Array, bufs: Sequence[Array], k: tuple[float, ...], *, xp: Namespace
    ) -> tuple[Array, tuple[Array, ...]]:
        """``p − lr g``."""
        return p - k[0] * g, ()

    def update_in_place(
        self, p: Array, g: Array, bufs: Sequence[Array], k: tuple[float, ...], *, xp: Namespace
    ) -> None:
        """``p −= lr g``."""
        p -= k[0] * g


@dataclass(frozen=True)
class Momentum(Optimizer):
    """Momentum in the book's velocity form, optionally Nesterov's.

    ``v ← μ v − lr ∂C/∂w``, then ``w ← w + v``; with ``nesterov=True`` the step looks ahead:
    ``w ← w + μ v − lr ∂C/∂w`` (Sutskever et al. 2013's reformulation, as PyTorch uses).
    """

    momentum: float = 0.9
    nesterov: bool = False
    buffers = ("velocity",)

    @property
    def name(self) -> str:
        """``"nesterov"`` or ``"momentum"``."""
        return "nesterov" if self.nesterov else "momentum"

    def decay_limit(self) -> float:
        """``2(1 + μ)`` for heavy-ball momentum, ``2(1 + μ)/(1 + 2μ)`` for Nesterov's: where a
        root of ``r² − (1 + μ − α) r + μ`` (Nesterov: ``r² − (1 + μ)(1 − α) r + μ(1 − α)``),
        ``α = lr·l2/n``, leaves the unit circle."""
        mu = self.momentum
        return 2.0 * (1.0 + mu) / (1.0 + 2.0 * mu) if self.nesterov else 2.0 * (1.0 + mu)

    def cuda_update(self) -> str:
        """The velocity step (``s1`` is the velocity)."""
        look = "pi + (mu * v - step)" if self.nesterov else "pi + v"
        return (
            "const real step = lr * gi;\n"
            "        const real v = s1[i] * mu - step;\n"
            f"        s1[i] = v;\n        p[i] = {look};"
        )

    def update(
        self, p: Array, g: Array, bufs: Sequence[Array], k: tuple[float, ...], *, xp: Namespace
    ) -> tuple[Array, tuple[Array, ...]]:
        """``v = μ v − lr g``; ``p + v`` (Nesterov: ``p + (μ v − lr g)``)."""
        step = k[0] * g
        v = bufs[0] * self.momentum - step
        return (p + (self.momentum * v - step) if self.nesterov else p + v), (v,)

    def update_in_place(
        self, p: Array, g: Array, bufs: Sequence[Array], k: tuple[float, ...], *, xp: Namespace
    ) -> None:
        """``v *= μ; v −= lr g``; ``p += v`` (Nesterov: ``p += μ v − lr g``)."""
        step, v = k[0] * g, bufs[0]
        v *= self.momentum
        v -= step
        p += self.momentum * v - step if self.nesterov else v


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), in PyTorch's arithmetic.

    ``m ← β1 m + (1 − β1) g``, ``v ← β2 v + (1 − β2) g²``,
    ``w ← w − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)``.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    NAME = "adam"
    buffers = ("m", "v")
    scalars = ("t",)

    def cuda_update(self) -> str:
        """The moments' step (``s1`` is m, ``s2`` is v; the kernel computes the factors)."""
        return (
            "const real mi = s1[i] * beta1 + one_minus_beta1 * gi;\n"
            "        const real vi = s2[i] * beta2 + one_minus_beta2 * (gi * gi);\n"
            "        s1[i] = mi;\n        s2[i] = vi;\n"
            "        p[i] = pi - (real)hyper[H_STEP] * mi"
            " / (sqrt(vi) / (real)hyper[H_ROOT] + eps);"
        )

    def factors(self, lr: float, state: OptState) -> tuple[float, ...]:
        """Advance ``t``; return ``(lr / (1 − β1^t), √(1 − β2^t))``."""
        state.scalars["t"] += 1
        t = state.scalars["t"]
        return lr / (1.0 - self.beta1**t), math.sqrt(1.0 - self.beta2**t)

    def update(
        self, p: Array, g: Array, bufs: Sequence[Array], k: tuple[float, ...], *, xp: Namespace
    ) -> tuple[Array, tuple[Array, ...]]:
        """One Adam step for one tensor."""
        b1, b2 = self.beta1, self.beta2
        m = bufs[0] * b1 + (1.0 - b1) * g
        v = bufs[1] * b2 + (1.0 - b2) * (g * g)
        return p - k[0] * m / (xp.sqrt(v) / k[1] + self.eps), (m, v)

    def update_in_place(
        self, p: Array, g: Array, bufs: Sequence[Array], k: tuple[float, ...], *, xp: Namespace
    ) -> None:
        """The Adam step with ``m``, ``v`` and ``p`` updated in place."""
        b1, b2 = self.beta1, self.beta2
        m, v = bufs
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        p -= k[0] * m / (xp.sqrt(v) / k[1] + self.eps)


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def get_optimizer(
    name: str, *, momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    """Build an optimizer by name.

    Parameters
    ----------
    name : {"sgd", "momentum", "nesterov", "adam"}
    momentum : float in [0, 1), for "momentum" and "nesterov"
    beta1, beta2 : float in [0, 1), eps : float > 0, for "adam"

    Raises
    ------
    ValueError
        For an unknown name or a hyperparameter out of range (the message names it).
    """
    if name not in OPTIMIZERS:
        raise ValueError(
            f"optimizer={name!r} is not an optimizer; expected one of {list(OPTIMIZERS)}"
        )
    for arg, value in (("momentum", momentum), ("beta1", beta1), ("beta2", beta2)):
        if not (isinstance(value, int | float) and 0.0 <= value < 1.0):
            raise ValueError(f"{arg} must be a number in [0, 1), got {value!r}")
    if not (isinstance(eps, int | float) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if name == "sgd":
        return SGD()
    if name in ("momentum", "nesterov"):
        return Momentum(float(momentum), nesterov=name == "nesterov")
    return Adam(float(beta1), float(beta2), float(eps))


def apply_update(
    opt: Optimizer,
    params: Params,
    grads: Params,
    state: OptState,
    *,
    lr: float,
    xp: Namespace,
    in_place: bool = False,
) -> None:
    """One optimizer step over every tensor of ``params`` (and ``state``), each result stored
    by :meth:`Params.set`: in place where ``xp`` writes in place, rebound where it cannot.
    ``in_place=True`` (writable arrays only) takes :meth:`Optimizer.update_in_place` instead."""
    k = opt.factors(lr, state)
    bufs = [state.buffers[name] for name in opt.buffers]
    buf_arrays = [b.arrays() for b in bufs]
    for i, (p, g) in enumerate(zip(params.arrays(), grads.arrays(), strict=True)):
        mine = [arrays[i] for arrays in buf_arrays]
        if in_place:
            opt.update_in_place(p, g, mine, k, xp=xp)
            continue
        new_p, new_bufs = opt.update(p, g, mine, k, xp=xp)
        params.set(i, new_p)
        for buf, value in zip(bufs, new_bufs, strict=True):
            buf.set(i, value)


def regularize(
    grads: Params, params: Params, *, l2: float, l1: float, n: int, xp: Namespace
) -> Params:
    """The gradients with the penalties' added to the weights: ``∂C/∂W + (λ2/n) W + (λ1/n)
    sgn(W)``; biases unchanged. ``sgn`` is computed with comparisons (no host read on any
    backend); at NaN weights it is 0, and the NaN shows in the weights themselves."""
    weights = []
    for gw, w in zip(grads.weights, params.weights, strict=True):
        if l2:
            gw = gw + (l2 / n) * w
        if l1:
            gw = gw + (l1 / n) * (xp.astype(w > 0.0, w.dtype) - xp.astype(w < 0.0, w.dtype))
        weights.append(gw)
    return Params(weights, list(grads.biases))
