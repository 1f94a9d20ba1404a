"""The two records the training core takes: what the network is, and how to train it.

:class:`ModelSpec` (frozen) describes a network: layer sizes, an activation per layer, the cost,
the dtype and the namespace. :class:`TrainConfig` (frozen) holds every training setting, and its
construction is where bad ones are refused, with a message naming the argument. The core
(:mod:`gpumlp.train`, :mod:`gpumlp.runstate`, the fast paths) takes these records and the
:class:`~gpumlp.network.Params`, never the :class:`~gpumlp.Network` facade.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ._checks import check_int, check_number, check_sizes
from .activations import Activation, get_activation
from .backend import Namespace, backend_name, dtype_name, get_namespace, resolve_dtype
from .costs import Cost, get_cost
from .initial import INITS
from .memory import param_count
from .optim import OPTIMIZERS
from .schedules import SCHEDULES

__all__ = [
    "DEFAULT_CHUNK",
    "ENGINES",
    "HYPER_KEYS",
    "MONITORS",
    "ModelSpec",
    "TrainConfig",
    "monitors",
]

DEFAULT_CHUNK = 10_000
"""Rows per forward pass when evaluating or predicting, bounding memory on large sets."""

ENGINES = ("auto", "generic", "fused", "graph")
"""``generic``: the plain ``xp`` code (any backend, the reference). ``fused``: the backend's fast
path (NumPy: in-place ufuncs into preallocated buffers; CuPy: fused kernels and cuBLAS).
``graph``: CuPy only, whole steps replayed as CUDA graphs. ``auto`` picks the fastest that
qualifies for the backend and network, falling back to ``generic``."""

HYPER_KEYS = ("lr", "batch_size", "optimizer", "momentum", "l2", "l1", "dropout", "schedule")
"""The hyperparameters a checkpoint records (with ``shuffle``) and a resume takes back."""

MONITORS = ("train_cost", "train_accuracy", "val_cost", "val_accuracy")
"""``train_*`` are running means over the epoch's mini-batches; ``val_*`` are measured on
``validation_data`` after the epoch (the book's evaluation monitors)."""


@dataclass(frozen=True)
class ModelSpec:
    """A network's description: everything but its parameters.

    Attributes
    ----------
    sizes : tuple of int, units per layer, input first
    activations : tuple of Activation, one per weight layer (the last is the output's)
    cost : Cost
    dtype : {"float32", "float64"}
    xp : the array namespace the parameters live in
    init : the initialisation the parameters were drawn with
    """

    sizes: tuple[int, ...]
    activations: tuple[Activation, ...]
    cost: Cost
    dtype: str
    xp: Namespace
    init: str = "normal"

    @classmethod
    def build(
        cls,
        sizes: Any,
        *,
        activation: str | Activation = "sigmoid",
        output_activation: str | Activation | None = None,
        cost: str | Cost = "quadratic",
        init: str = "normal",
        dtype: str = "float32",
        backend: str | ModuleType | None = "auto",
    ) -> ModelSpec:
        """Validate the :class:`gpumlp.Network` arguments and build the spec.

        Raises ValueError/TypeError naming the argument (softmax as a hidden activation, an
        (output activation, cost) pair that is not defined, an unknown name, ...).
        """
        sizes = tuple(check_sizes(sizes))
        hidden = get_activation(activation)
        if hidden.output_only:
            raise ValueError(f"activation={hidden.name!r} is valid only as output_activation")
        out = (
            hidden
            if output_activation is None
            else get_activation(output_activation, argument="output_activation")
        )
        the_cost = get_cost(cost)
        the_cost.check_output(out)
        if init not in INITS:
            raise ValueError(
                f"init={init!r} is not an initialisation; expected one of {list(INITS)}"
            )
        xp = get_namespace(backend)
        name = dtype_name(resolve_dtype(xp, dtype))
        return cls(sizes, (hidden,) * (len(sizes) - 2) + (out,), the_cost, name, xp, init)

    def describe(self) -> str:
        """The network in one line, as ``Network``'s repr shows it."""
        n = param_count(self.sizes)
        return (
            f"Network({list(self.sizes)}, activation={self.activation!r}, output_activation="
            f"{self.output_activation!r}, cost={self.cost.name!r}, dtype={self.dtype!r}, "
            f"backend={self.backend!r}, params={n})"
        )

    @property
    def xp_dtype(self) -> Any:
        """The namespace's dtype object for :attr:`dtype`."""
        return getattr(self.xp, self.dtype)

    @property
    def backend(self) -> str:
        """Short name of the namespace ("numpy", "cupy", or the module's name)."""
        return backend_name(self.xp)

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """Widths of the hidden layers (the ones dropout applies to)."""
        return self.sizes[1:-1]

    @property
    def activation(self) -> str:
        """Name of the hidden activation (of the output one for a network with no hidden layer)."""
        return self.activations[0].name

    @property
    def output_activation(self) -> str:
        """Name of the output activation."""
        return self.activations[-1].name


def monitors(monitor: Iterable[str]) -> tuple[str, ...]:
    """``monitor`` as a tuple of names from :data:`MONITORS`; a bare string (TypeError) or an
    unknown name (ValueError) is refused."""
    if isinstance(monitor, str):
        raise TypeError(f"monitor must be a sequence of names, got the string {monitor!r}")
    names = tuple(monitor)
    for name in names:
        if name not in MONITORS:
            raise ValueError(
                f"monitor entry {name!r} is not a monitor; expected some of {list(MONITORS)}"
            )
    return names


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting of :meth:`gpumlp.Network.fit`, validated on construction.

    The defaults are the book's first run and the ``gpumlp train`` defaults: 30 epochs of
    mini-batches of 10 at ``lr=3.0``. See :meth:`gpumlp.Network.fit` for each field.
    """

    epochs: int = 30
    batch_size: int = 10
    lr: float = 3.0
    shuffle: bool = True
    seed: int | None = None
    optimizer: str = "sgd"
    momentum: float = 0.9
    l2: float = 0.0
    l1: float = 0.0
    dropout: float = 0.0
    schedule: str = "constant"
    patience: int | None = None
    monitor: tuple[str, ...] = ("train_cost", "val_cost", "val_accuracy")
    checkpoint: Path | None = None
    checkpoint_every: int | None = None
    engine: str = "auto"
    chunk: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "epochs", check_int("epochs", self.epochs))
        put(self, "batch_size", check_int("batch_size", self.batch_size))
        put(self, "lr", check_number("lr", self.lr, positive=True))
        for name in ("l2", "l1"):
            put(self, name, check_number(name, getattr(self, name), nonnegative=True))
        put(self, "dropout", check_number("dropout", self.dropout, nonnegative=True, below=1.0))
        put(self, "momentum", check_number("momentum", self.momentum, nonnegative=True, below=1.0))
        put(self, "patience", check_int("patience", self.patience, allow_none=True))
        every = check_int("checkpoint_every", self.checkpoint_every, allow_none=True)
        put(self, "checkpoint_every", every)
        put(self, "chunk", check_int("chunk", self.chunk))
        if self.seed is not None:
            put(self, "seed", check_int("seed", self.seed, minimum=0))
        if not isinstance(self.shuffle, bool):
            raise TypeError(f"shuffle must be True or False, got {self.shuffle!r}")
        for arg, value, names, what in (
            ("optimizer", self.optimizer, OPTIMIZERS, "an optimizer"),
            ("schedule", self.schedule, SCHEDULES, "a schedule"),
            ("engine", self.engine, ENGINES, "an engine"),
        ):
            if value not in names:
                raise ValueError(f"{arg}={value!r} is not {what}; expected one of {list(names)}")
        put(self, "monitor", monitors(self.monitor))
        if self.checkpoint is not None:
            put(self, "checkpoint", Path(self.checkpoint))

    @property
    def watches_validation(self) -> bool:
        """True when the schedule or early stopping needs validation accuracy."""
        return self.schedule == "plateau" or self.patience is not None

    def check_validation(self, given: bool) -> None:
        """Refuse a schedule or early stopping that watches validation accuracy when no
        validation data is ``given`` or its accuracy is not monitored (ValueError)."""
        if self.watches_validation and (not given or "val_accuracy" not in self.monitor):
            raise ValueError(
                f"schedule={self.schedule!r}/patience watch validation accuracy: they need "
                f"validation_data and 'val_accuracy' in monitor (monitor={list(self.monitor)})"
            )

    def hyper(self) -> dict[str, Any]:
        """The hyperparameters recorded in checkpoints (a resume with others is warned about)."""
        return {k: getattr(self, k) for k in HYPER_KEYS} | {"shuffle": self.shuffle}
