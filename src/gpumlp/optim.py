"""Optimizers: parameter updates from batch-mean gradients, with their state on the device.

An optimizer is a small object with two methods:

- ``init(params, *, xp) -> state``: a dict of :class:`~gpumlp.network.Params`-shaped buffers
  (zeros, on the device) plus plain numbers such as Adam's step count;
- ``update(params, grads, state, *, lr, xp)``: apply one step *in place* to ``params`` and
  ``state``, where ``grads`` is the gradient of the mean cost over the mini-batch.

``lr`` is passed at every step so a schedule can change it between epochs. Regularisation
(:func:`regularize`) is added to the gradient before ``update``, as the book does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .backend import Namespace
from .network import Params

__all__ = ["OPTIMIZERS", "SGD", "Adam", "Momentum", "get_optimizer", "regularize"]

State = dict[str, Any]


def _zeros_like(params: Params, *, xp: Namespace) -> Params:
    return Params(
        [xp.zeros_like(w) for w in params.weights], [xp.zeros_like(b) for b in params.biases]
    )


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent: ``w ← w − lr ∂C/∂w`` (the book's ``w − (η/m) Σ ∇C_x``)."""

    name = "sgd"

    def init(self, params: Params, *, xp: Namespace) -> State:
        """No state: returns ``{}``."""
        return {}

    def update(
        self, params: Params, grads: Params, state: State, *, lr: float, xp: Namespace
    ) -> None:
        """Subtract ``lr * grads`` from every tensor of ``params`` in place."""
        for p, g in zip(params.arrays(), grads.arrays(), strict=True):
            p -= lr * g


@dataclass(frozen=True)
class Momentum:
    """Momentum in the book's velocity form, optionally Nesterov's.

    ``v ← μ v − lr ∂C/∂w``, then ``w ← w + v``; with ``nesterov=True`` the step looks ahead:
    ``w ← w + μ v − lr ∂C/∂w`` (Sutskever et al. 2013's reformulation, as PyTorch uses).
    """

    momentum: float = 0.9
    nesterov: bool = False

    @property
    def name(self) -> str:
        return "nesterov" if self.nesterov else "momentum"

    def init(self, params: Params, *, xp: Namespace) -> State:
        """``{"velocity": Params of zeros}``."""
        return {"velocity": _zeros_like(params, xp=xp)}

    def update(
        self, params: Params, grads: Params, state: State, *, lr: float, xp: Namespace
    ) -> None:
        """One momentum step in place on ``params`` and ``state["velocity"]``."""
        mu = self.momentum
        for p, g, v in zip(
            params.arrays(), grads.arrays(), state["velocity"].arrays(), strict=True
        ):
            step = lr * g
            v *= mu
            v -= step
            if self.nesterov:
                p += mu * v - step
            else:
                p += v


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015), in PyTorch's arithmetic.

    ``m ← β1 m + (1 − β1) g``, ``v ← β2 v + (1 − β2) g²``,
    ``w ← w − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)``.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name = "adam"

    def init(self, params: Params, *, xp: Namespace) -> State:
        """``{"m": zeros, "v": zeros, "t": 0}``."""
        return {"m": _zeros_like(params, xp=xp), "v": _zeros_like(params, xp=xp), "t": 0}

    def update(
        self, params: Params, grads: Params, state: State, *, lr: float, xp: Namespace
    ) -> None:
        """One Adam step in place on ``params``, ``state["m"]``, ``state["v"]``; t += 1."""
        b1, b2 = self.beta1, self.beta2
        state["t"] += 1
        t = state["t"]
        step = lr / (1.0 - b1**t)
        root = math.sqrt(1.0 - b2**t)
        for p, g, m, v in zip(
            params.arrays(), grads.arrays(), state["m"].arrays(), state["v"].arrays(), strict=True
        ):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p -= step * m / (xp.sqrt(v) / root + self.eps)


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def get_optimizer(
    name: str, *, momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
) -> SGD | Momentum | Adam:
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


def regularize(
    grads: Params, params: Params, *, l2: float, l1: float, n: int, xp: Namespace
) -> None:
    """Add the weight penalty's gradient to ``grads.weights`` in place (biases are not decayed).

    L2 is the book's ``(λ/n) W`` (network2: ``w ← (1 − ηλ/n) w − η ∂C/∂w``); L1 is
    ``(λ/n) sgn(W)``. ``n`` is the size of the training set, not of the mini-batch.
    """
    for gw, w in zip(grads.weights, params.weights, strict=True):
        if l2:
            gw += (l2 / n) * w
        if l1:
            gw += (l1 / n) * xp.sign(w)
