"""Optimizers and weight penalties: one registry, every form of each update.

An optimizer updates one tensor at a time, functionally: ``update(p, g, bufs, k, *, xp)``
returns the new ``p`` and new state buffers, where ``g`` is the gradient of the batch-mean cost,
``bufs`` the tensor's state buffers (named by ``buffers``: none for SGD, ``velocity`` for
momentum, ``m`` and ``v`` for Adam) and ``k`` the step's host-side factors (``factors``: the
rate, and Adam's bias corrections). :meth:`Params.set` then writes each result in place where
the namespace allows it and rebinds it where arrays are immutable (``jax.numpy``), so one update
rule serves both. ``update_in_place`` is the same arithmetic written into the arrays themselves,
for the NumPy fast path (no new tensor per step). :meth:`Optimizer.cuda` is the same update as
CUDA C, with its own kernel parameters, device scalars and device preparation
(:class:`CudaForm`), from which :mod:`gpumlp.engines._kernels` generates the entry's kernels.
The contract is :class:`~gpumlp.optimbase.Optimizer`.

Each entry is one class in :data:`OPTIMIZER_TYPES` (names to classes); :data:`OPTIMIZERS` is
their names, and :func:`get_optimizer` builds one from the run's settings.

Penalties (:func:`regularize`) are added to the gradient before the update, as the book does:
L2 is ``(λ/n) W`` (network2's ``w ← (1 − ηλ/n) w − η ∂C/∂w``), L1 is ``(λ/n) sgn(W)``, with ``n``
the size of the training set; biases are not decayed. :data:`PENALTY_CUDA` is the same sum in
CUDA C, which every generated update kernel calls on the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .backend import Array, Namespace
from .network import Params
from .optimbase import CudaForm, Optimizer, OptState

__all__ = [
    "OPTIMIZERS",
    "OPTIMIZER_TYPES",
    "PENALTY_CUDA",
    "SGD",
    "Adam",
    "CudaForm",
    "Momentum",
    "OptState",
    "Optimizer",
    "apply_update",
    "get_optimizer",
    "regularize",
]


@dataclass(frozen=True)
class SGD(Optimizer):
    """Plain gradient descent: ``w ← w − lr ∂C/∂w`` (the book's ``w − (η/m) Σ ∇C_x``)."""

    names = ("sgd",)
    rate_in_gradient = True

    @classmethod
    def build(cls, name: str, settings: Mapping[str, float]) -> SGD:
        """SGD takes no setting."""
        return cls()

    def decay_limit(self) -> float:
        """2: ``w ← (1 − lr·l2/n) w`` grows once the factor passes −1."""
        return 2.0

    def cuda(self) -> CudaForm:
        """``p = p − lr g``."""
        return CudaForm("p[i] = pi - lr * gi;")

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
    names = ("momentum", "nesterov")
    buffers = ("velocity",)

    @classmethod
    def build(cls, name: str, settings: Mapping[str, float]) -> Momentum:
        """Heavy-ball momentum, or Nesterov's for ``"nesterov"``, of ``settings["momentum"]``."""
        return cls(settings["momentum"], nesterov=name == "nesterov")

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

    def cuda(self) -> CudaForm:
        """The velocity step, μ a kernel parameter."""
        look = "pi + (mu * v - step)" if self.nesterov else "pi + v"
        return CudaForm(
            "const real step = lr * gi;\n"
            "const real v = velocity[i] * mu - step;\n"
            f"velocity[i] = v;\np[i] = {look};",
            params=("real mu",),
        )

    def kernel_args(self) -> dict[str, float]:
        """``mu``."""
        return {"mu": self.momentum}

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
    names = ("adam",)
    buffers = ("m", "v")
    scalars = ("t",)

    @classmethod
    def build(cls, name: str, settings: Mapping[str, float]) -> Adam:
        """Adam of ``settings["beta1"]``, ``["beta2"]`` and ``["eps"]``."""
        return cls(settings["beta1"], settings["beta2"], settings["eps"])

    def cuda(self) -> CudaForm:
        """The moments' step; the bias corrections (:meth:`factors`) are the device slots
        ``step`` and ``root``, which ``prepare`` computes from ``t`` on the device."""
        return CudaForm(
            "const real mi = m[i] * beta1 + one_minus_beta1 * gi;\n"
            "const real vi = v[i] * beta2 + one_minus_beta2 * (gi * gi);\n"
            "m[i] = mi;\nv[i] = vi;\n"
            "p[i] = pi - (real)hyper[H_STEP] * mi / (sqrt(vi) / (real)hyper[H_ROOT] + eps);",
            params=tuple(f"real {n}" for n in _ADAM_REALS),
            slots=("t", "step", "root"),
            prepare="const double t = hyper[H_T] + 1.0;\n"
            "hyper[H_T] = t;\n"
            "hyper[H_STEP] = hyper[H_LR] / (1.0 - pow(beta1, t));\n"
            "hyper[H_ROOT] = sqrt(1.0 - pow(beta2, t));",
            prepare_params=("double beta1", "double beta2"),
        )

    def kernel_args(self) -> dict[str, float]:
        """The betas, their complements (rounded in double first, as ``update``'s) and ε."""
        b1, b2 = self.beta1, self.beta2
        return {"beta1": b1, "beta2": b2, "one_minus_beta1": 1.0 - b1,
                "one_minus_beta2": 1.0 - b2, "eps": self.eps}  # fmt: skip

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


_ADAM_REALS = ("beta1", "beta2", "one_minus_beta1", "one_minus_beta2", "eps")

OPTIMIZER_TYPES: dict[str, type[Optimizer]] = {
    name: cls for cls in (SGD, Momentum, Adam) for name in cls.names
}
"""The registry: each optimizer's names to its class (an entry owns all its forms)."""
OPTIMIZERS = tuple(OPTIMIZER_TYPES)
"""The optimizers' names, in registry order."""


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
    settings = {"momentum": momentum, "beta1": beta1, "beta2": beta2, "eps": eps}
    return OPTIMIZER_TYPES[name].build(name, {k: float(v) for k, v in settings.items()})


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
    backend); at NaN weights it is 0, and the NaN shows in the weights themselves. The CUDA
    form is :data:`PENALTY_CUDA`, in the same order."""
    weights = []
    for gw, w in zip(grads.weights, params.weights, strict=True):
        if l2:
            gw = gw + (l2 / n) * w
        if l1:
            gw = gw + (l1 / n) * (xp.astype(w > 0.0, w.dtype) - xp.astype(w < 0.0, w.dtype))
        weights.append(gw)
    return Params(weights, list(grads.biases))


PENALTY_CUDA = """\
// regularize (gpumlp/optim.py): the gradient gi of weight pi plus the penalties, l2n = λ2/n and
// l1n = λ1/n; sgn by comparisons, so 0 at NaN.
__device__ __forceinline__ real penalize(real gi, real pi, real l2n, real l1n)
{
    if (l2n != (real)0) gi = gi + l2n * pi;
    if (l1n != (real)0) gi = gi + l1n * ((real)(pi > (real)0) - (real)(pi < (real)0));
    return gi;
}"""
"""CUDA C of :func:`regularize` for one weight, for every generated update kernel."""
