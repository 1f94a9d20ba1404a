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

from ._checks import check_sizes
from .activations import Activation, get_activation
from .backend import Namespace, backend_name, dtype_name, get_namespace, resolve_dtype
from .costs import Cost, get_cost
from .initial import INITS
from .memory import param_count
from .metrics import task_monitors
from .settings import DEFAULT_CHUNK, ENGINES, HYPER_KEYS, MONITORS, SETTINGS, owned_by
from .settings import DEFAULTS as D

__all__ = [
    "DEFAULT_CHUNK",
    "ENGINES",
    "HYPER_KEYS",
    "MONITORS",
    "ModelSpec",
    "TrainConfig",
    "check_stop_on",
    "monitors",
]

# DEFAULT_CHUNK, ENGINES, HYPER_KEYS and MONITORS are declared with the settings
# (:mod:`gpumlp.settings`) and kept here, where they were first imported from.


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
    task : "classification" (the outputs score classes) or "regression" (they are the
        targets' values), :data:`gpumlp.metrics.TASKS`
    """

    sizes: tuple[int, ...]
    activations: tuple[Activation, ...]
    cost: Cost
    dtype: str
    xp: Namespace
    init: str = "normal"
    task: str = "classification"

    @classmethod
    def build(
        cls,
        sizes: Any,
        *,
        activation: str | Activation = D["activation"],
        output_activation: str | Activation | None = D["output_activation"],
        cost: str | Cost = D["cost"],
        init: str = D["init"],
        dtype: str = D["dtype"],
        backend: str | ModuleType | None = D["backend"],
        task: str | None = D["task"],
    ) -> ModelSpec:
        """Validate the :class:`gpumlp.Network` arguments and build the spec (``task`` None:
        classification).

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
        task = SETTINGS["task"].check(task) or "classification"
        xp = get_namespace(backend)
        name = dtype_name(resolve_dtype(xp, dtype))
        return cls(sizes, (hidden,) * (len(sizes) - 2) + (out,), the_cost, name, xp, init, task)

    def describe(self) -> str:
        """The network in one line, as ``Network``'s repr shows it."""
        n = param_count(self.sizes)
        task = "" if self.task == "classification" else f"task={self.task!r}, "
        return (
            f"Network({list(self.sizes)}, {task}activation={self.activation!r}, output_activation="
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
    names: tuple[str, ...] = SETTINGS["monitor"].check(monitor)
    return names


def check_stop_on(task: str, stop_on: str) -> None:
    """Refuse ``stop_on`` "val_accuracy" for a regression network, which has no accuracy
    (ValueError naming the setting and its flag)."""
    if task == "regression" and stop_on == "val_accuracy":
        raise ValueError(
            "stop_on='val_accuracy' (--stop-on): a regression network has no accuracy; "
            "early stopping and the plateau schedule watch its validation cost: "
            "stop_on='val_cost' (--stop-on val_cost)"
        )


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting of :meth:`gpumlp.Network.fit`, validated on construction.

    The fields are the ``"fit"`` entries of :data:`gpumlp.settings.SETTINGS`, whose defaults
    (the book's first run: 30 epochs of mini-batches of 10 at ``lr=3.0``) and checks they
    take. See :meth:`gpumlp.Network.fit` for each field.
    """

    epochs: int = D["epochs"]
    batch_size: int = D["batch_size"]
    lr: float = D["lr"]
    shuffle: bool = D["shuffle"]
    seed: int | None = D["seed"]
    optimizer: str = D["optimizer"]
    momentum: float = D["momentum"]
    l2: float = D["l2"]
    l1: float = D["l1"]
    dropout: float = D["dropout"]
    schedule: str = D["schedule"]
    patience: int | None = D["patience"]
    stop_on: str = D["stop_on"]
    monitor: tuple[str, ...] = D["monitor"]
    checkpoint: Path | None = D["checkpoint"]
    checkpoint_every: int | None = D["checkpoint_every"]
    engine: str = D["engine"]
    chunk: int = D["chunk"]

    def __post_init__(self) -> None:
        for name in owned_by("fit"):  # each field is a setting of the table, checked by it
            object.__setattr__(self, name, SETTINGS[name].check(getattr(self, name)))

    @property
    def watches_validation(self) -> bool:
        """True when the schedule or early stopping watches the validation data (its accuracy
        or cost, as ``stop_on`` says)."""
        return self.schedule == "plateau" or self.patience is not None

    def check_validation(self, given: bool) -> None:
        """Refuse a schedule or early stopping that watches the validation data when none is
        ``given`` or what it watches (``stop_on``) is not monitored (ValueError)."""
        if self.watches_validation and (not given or self.stop_on not in self.monitor):
            raise ValueError(
                f"schedule={self.schedule!r}/patience watch {self.stop_on!r}: they need "
                f"validation_data and {self.stop_on!r} in monitor (monitor={list(self.monitor)})"
            )

    def check_task(self, task: str) -> None:
        """Refuse what the network's ``task`` cannot watch: for regression, early stopping or
        the plateau schedule on the validation accuracy (:func:`check_stop_on`)."""
        if self.watches_validation:
            check_stop_on(task, self.stop_on)

    def measured(self, task: str) -> tuple[str, ...]:
        """The monitors a network of ``task`` measures: those of :attr:`monitor` that are
        its task's (the accuracies are classification's; ``val_mse`` and the other scores
        of :data:`gpumlp.metrics.SCORES` their task's)."""
        own = task_monitors(task)
        return tuple(k for k in self.monitor if k in own)

    def hyper(self) -> dict[str, Any]:
        """The hyperparameters recorded in checkpoints (a resume with others is warned about)."""
        return {k: getattr(self, k) for k in HYPER_KEYS} | {"shuffle": self.shuffle}
