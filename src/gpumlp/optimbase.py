"""What an optimizer entry is: the contract every one of :data:`gpumlp.optim.OPTIMIZER_TYPES`
fulfils (:class:`Optimizer`), its state (:class:`OptState`) and its CUDA side (:class:`CudaForm`).

An entry owns every form of its update: the functional xp form (``update``), the in-place NumPy
form (``update_in_place``), the host factors of a step (``factors``) and the CUDA form
(``cuda``, with its kernel parameters, device scalars and device preparation), from which
:mod:`gpumlp.engines._kernels` generates its kernels and :mod:`gpumlp.engines._cupy_core` its
launches. A later engine's form (a whole-epoch kernel, a native CPU update) is one more field
of :class:`CudaForm` or one more method here, with a default that says "none".

Shapes: ``p``, ``g`` and each buffer of ``bufs`` are one parameter tensor (any shape, all the
same); ``k`` is a tuple of host floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .backend import Array, Namespace
from .network import Params

__all__ = ["CudaForm", "OptState", "Optimizer"]


@dataclass
class OptState:
    """An optimizer's state: Params-shaped buffers by name, and host scalars (Adam's ``t``)."""

    buffers: dict[str, Params] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CudaForm:
    """An optimizer's CUDA side, from which its kernels are generated (``update_<name>`` and,
    with ``prepare``, ``prepare_<name>``; :mod:`gpumlp.engines._kernels`).

    Attributes
    ----------
    update : str
        Statements updating element ``i``: they read ``pi`` (the parameter) and ``gi`` (its
        gradient, penalties added), write ``p[i]`` and each state buffer (a ``real*`` named as in
        :attr:`Optimizer.buffers`), and may use ``lr``, ``hyper[H_<SLOT>]`` and ``params``.
    params : tuple of str
        The update kernel's own parameters as C declarations (``"real mu"``), after the shared
        ones; their values are :meth:`Optimizer.kernel_args` by name.
    slots : tuple of str
        Device scalars (``double hyper[]``) after the rate ``H_LR``, as ``H_<SLOT>``. A slot named
        like one of :attr:`Optimizer.scalars` holds that step count: the host writes it when it
        changes and ``prepare`` must advance it by one each step, as ``factors`` does.
    prepare : str or None
        Statements of a one-thread kernel run before each update, writing ``hyper`` (so a
        replayed CUDA graph advances it), or None.
    prepare_params : tuple of str
        ``prepare``'s own parameters, valued like ``params``.
    """

    update: str
    params: tuple[str, ...] = ()
    slots: tuple[str, ...] = ()
    prepare: str | None = None
    prepare_params: tuple[str, ...] = ()


class Optimizer:
    """Base of the optimizers; see the module docstring for the contract."""

    names: ClassVar[tuple[str, ...]] = ()
    """The names it is registered under (:data:`OPTIMIZER_TYPES`)."""
    buffers: tuple[str, ...] = ()
    """Names of the Params-shaped state buffers, in the order ``update`` takes them."""
    scalars: tuple[str, ...] = ()
    """Names of the host step counts (``OptState.scalars``, integers from 0): Adam's ``t``."""
    rate_in_gradient: ClassVar[bool] = False
    """True when the update is exactly ``p − lr·g``: the NumPy fast path then folds the rate
    into δ^L and subtracts the gradients."""

    @classmethod
    def build(cls, name: str, settings: Mapping[str, float]) -> Optimizer:
        """The optimizer ``name`` (one of :attr:`names`) from the run's validated settings
        (``momentum``, ``beta1``, ``beta2``, ``eps``), taking those it uses."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The optimizer's name, as :func:`get_optimizer` takes it."""
        return self.names[0]

    def cuda(self) -> CudaForm | None:
        """The CUDA form (None: no kernel, so the CuPy fast paths refuse this optimizer)."""
        return None

    def kernel_args(self) -> dict[str, float]:
        """Values of the CUDA form's ``params`` and ``prepare_params``, by name."""
        return {}

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
        """One step for one tensor (any shape): the new ``p`` and new buffers, shaped as ``p``."""
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
