"""Every setting of a network and its training, declared once (scikit-learn's
``_parameter_constraints``, one table for the whole house).

An entry of :data:`SETTINGS` says a setting's name (the Python argument, the record's field and,
with ``-`` for ``_``, the flag), its kind and bounds, its default, its help, and the record that
owns it. Everything else is read from the table:

- the records' checks (:class:`~gpumlp.config.TrainConfig`'s, :meth:`Setting.check`) and the
  defaults of ``Network``, ``Network.fit`` and ``ModelSpec.build`` (:data:`DEFAULTS`);
- the flags of ``gpumlp train`` and ``gpumlp sweep`` (every entry with a ``group``), and the
  type, bounds and choices of ``gpumlp parity``'s (:func:`gpumlp.cli._args.add_flag`);
- the run folder's checks of ``args.json`` and a checkpoint's flags (:meth:`Setting.check_file`);
- the lists: :data:`FLAGS` (what ``args.json`` records), :func:`owned_by` (the network's and
  ``fit``'s flags), :data:`SEARCHABLE` (what a sweep may search), :data:`HYPER_KEYS` (what a
  checkpoint records).

Owners: ``"layers"`` (``sizes``/``hidden``, fitted to the data by
:func:`gpumlp.runs.runner.layers_for`), ``"network"`` (:class:`~gpumlp.config.ModelSpec`, the
keyword arguments of ``Network``), ``"fit"`` (:class:`~gpumlp.config.TrainConfig`, the
arguments of ``Network.fit``), ``"data"`` (how the data is read), ``"run"`` (how a run uses the
data: the split it scores, standardization).

A default may depend on the data: an entry's ``table_default(data)`` (a rule of
:mod:`gpumlp.tabledefaults`, given the loaded data, a :class:`DataShape`) is its default for
a table, once the data is loaded (:func:`defaults`); MNIST keeps the entry's ``default``, the
book's. The settings read to load the data (owner ``"data"``, and ``seed``) cannot have one.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._checks import check_int, check_number
from .activations import ACTIVATIONS, HIDDEN_ACTIVATIONS
from .backend import BACKEND_NAMES, DTYPES, NAMESPACES
from .costs import COSTS
from .initial import INITS
from .optim import OPTIMIZERS
from .schedules import SCHEDULES, WATCHED
from .tabledefaults import RULES as T
from .tabledefaults import DataShape, Rule

__all__ = ["DEFAULTS", "DEFAULT_CHUNK", "ENGINES", "FLAGS", "HYPER_KEYS", "KINDS", "MONITORS",
           "OWNERS", "SEARCHABLE", "SETTINGS", "DataShape", "Setting", "defaults",
           "owned_by"]  # fmt: skip

KINDS = ("int", "float", "bool", "choice", "text", "sizes", "names", "path")
"""``int``/``float``: a number in [low, high) ((low, high) when ``strict``); ``bool``; ``choice``:
one of ``choices``; ``text``: a free string; ``sizes``: a list of at least ``low`` positive
integers (``784,30,10`` on the command line); ``names``: a sequence of names
(some of ``choices``, when given; ``a,b`` on the command line); ``path``: a file."""
OWNERS = ("layers", "network", "fit", "data", "run")

DEFAULT_CHUNK = 10_000
"""Rows per forward pass when evaluating or predicting, bounding memory on large sets."""

ENGINES = ("auto", "generic", "fused", "graph")
"""``generic``: the plain ``xp`` code (any backend, the reference). ``fused``: the backend's fast
path (NumPy: in-place ufuncs into preallocated buffers; CuPy: fused kernels and cuBLAS).
``graph``: CuPy only, whole steps replayed as CUDA graphs. ``auto`` picks the fastest that
qualifies for the backend and network, falling back to ``generic``."""

MONITORS = ("train_cost", "train_accuracy", "val_cost", "val_accuracy")
"""``train_*`` are running means over the epoch's mini-batches; ``val_*`` are measured on
``validation_data`` after the epoch (the book's evaluation monitors)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Setting:
    """One setting. ``low``/``high``/``strict`` bound a number (``low`` is the fewest entries
    of ``sizes``); ``noun`` names what a ``choice`` is in messages ("an optimizer"); ``group``
    is the ``--help`` group of its flag (None: no flag); ``shown`` is the default as ``--help``
    says it where the value would not tell. ``searchable``: a sweep may search it;
    ``checkpointed``: a checkpoint records it and a resume takes it back. A None ``default``
    makes None a value of the setting (no value: drawn, unlimited, the data's, ...).
    ``table_default``: the rule of its default for tables (:meth:`default_for`)."""

    name: str
    kind: str
    default: Any
    owner: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    strict: bool = False
    choices: Collection[str] = ()
    noun: str = ""
    group: str | None = None
    shown: str = ""
    searchable: bool = False
    checkpointed: bool = False
    table_default: Rule | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.owner not in OWNERS:
            raise ValueError(f"setting {self.name!r}: kind {self.kind!r} or owner {self.owner!r}")
        if self.kind in ("int", "float", "sizes") and self.low is None:
            raise ValueError(f"setting {self.name!r}: a {self.kind} needs low")
        if self.table_default is not None and (self.owner == "data" or self.name == "seed"):
            raise ValueError(f"setting {self.name!r} is read to load the data: no data default")

    def default_for(self, data: DataShape | None) -> Any:
        """The default once ``data`` is loaded: the table's rule for a table, else ``default``."""
        if data is not None and data.kind == "table" and self.table_default is not None:
            return self.table_default(data)
        return self.default

    def check(self, value: Any) -> Any:
        """``value`` as the owning record holds it (an int, a float, a tuple of names, a Path).

        Raises TypeError (wrong type) or ValueError (out of bounds, not a choice) naming the
        setting, the value and what was expected.
        """
        name, kind = self.name, self.kind
        if value is None and self.default is None:
            return None
        if kind == "int":
            return check_int(name, value, minimum=int(self.low or 0))
        if kind == "float":
            below = None if self.high is None else float(self.high)
            return check_number(name, value, low=self.low, strict=self.strict, below=below)
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
            return value
        if kind == "choice" and value not in tuple(self.choices):
            raise ValueError(
                f"{name}={value!r} is not {self.noun}; expected one of {list(self.choices)}"
            )
        if kind == "names":
            return self._names(value)
        if kind == "path":
            return Path(value)
        if kind == "sizes":
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise TypeError(f"{name} must be a list of integers, got {value!r}")
            if len(value) < (least := self.low or 0):
                raise ValueError(f"{name} must have at least {least:g} entries, got {value}")
            return [check_int(f"{name}[{i}]", n) for i, n in enumerate(value)]
        if kind == "text" and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        return value

    def _names(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            raise TypeError(f"{self.name} must be a sequence of names, got the string {value!r}")
        names = tuple(value)
        for entry in names:
            if self.choices and entry not in tuple(self.choices):
                raise ValueError(
                    f"{self.name} entry {entry!r} is not {self.noun}; expected some of "
                    f"{list(self.choices)}"
                )
        return names

    def check_file(self, value: Any) -> str | None:
        """None when ``value``, read back from a file (JSON: ``args.json``, a checkpoint), is
        one this setting's flag takes; else what it must be ("an integer >= 1")."""
        kind, low, high = self.kind, self.low or 0, self.high
        if kind == "int":
            ok, what = _is_int(value) and value >= low, f"an integer >= {low:g}"
        elif kind == "float":
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and math.isfinite(value) and (value > low if self.strict else value >= low)
                  and (high is None or value < high))  # fmt: skip
            sign, opening = (">", "(") if self.strict else (">=", "[")
            what = (f"a number {sign} {low:g}" if high is None
                    else f"a number in {opening}{low:g}, {high:g})")  # fmt: skip
        elif kind == "bool":
            ok, what = isinstance(value, bool), "true or false"
        elif kind == "sizes":
            ok = (isinstance(value, list) and len(value) >= low
                  and all(_is_int(n) and n >= 1 for n in value))  # fmt: skip
            what = (f"a list of at least {low:g} positive integers" if low > 1
                    else "a non-empty list of positive integers")  # fmt: skip
        elif kind == "names":
            ok = isinstance(value, list) and all(isinstance(n, str) for n in value)
            what = "a list of strings"
        else:  # names are checked when the run is planned, by the records
            ok, what = isinstance(value, str | int), "a string"
        if value is None and (self.default is None or kind in ("choice", "text")):
            return None
        return None if ok else what


# fmt: off
_TABLE = (
    # the network: its layers, then ModelSpec's (Network's keyword arguments)
    Setting("sizes", "sizes", [784, 30, 10], "layers", "layer sizes, input first, e.g. 784,30,10",
            low=2, group="network"),
    Setting("hidden", "sizes", None, "layers",
            "hidden widths, e.g. 100,50: sizes from the data's width and classes",
            low=1, group="network", searchable=True, table_default=T["hidden"]),
    Setting("activation", "choice", "sigmoid", "network", choices=HIDDEN_ACTIVATIONS,
            noun="a hidden activation", group="network", searchable=True,
            table_default=T["activation"]),
    Setting("output_activation", "choice", None, "network", "none: --activation",
            choices=ACTIVATIONS, noun="an activation", group="network", searchable=True,
            table_default=T["output_activation"]),
    Setting("cost", "choice", "quadratic", "network", choices=COSTS, noun="a cost",
            group="network", searchable=True, table_default=T["cost"]),
    Setting("init", "choice", "normal", "network", choices=INITS, noun="an initialisation",
            group="network", searchable=True, table_default=T["init"]),
    Setting("dtype", "choice", "float32", "network", choices=DTYPES, noun="a dtype",
            group="network"),
    Setting("backend", "text", "auto", "network",
            f"one of {', '.join([*BACKEND_NAMES, *NAMESPACES])}", group="network"),
    # training: TrainConfig's (Network.fit's arguments)
    Setting("lr", "float", 3.0, "fit", "learning rate η", low=0, strict=True, group="training",
            searchable=True, checkpointed=True, table_default=T["lr"]),
    Setting("batch_size", "int", 10, "fit", "mini-batch size", low=1, group="training",
            searchable=True, checkpointed=True, table_default=T["batch_size"]),
    Setting("epochs", "int", 30, "fit", "total epochs (with --resume: up to this many)", low=1,
            group="training", searchable=True, table_default=T["epochs"]),
    Setting("seed", "int", None, "fit",
            "seed of initial weights and epoch order; none: drawn and printed", low=0,
            group="training"),
    Setting("optimizer", "choice", "sgd", "fit", choices=OPTIMIZERS, noun="an optimizer",
            group="training", searchable=True, checkpointed=True, table_default=T["optimizer"]),
    Setting("momentum", "float", 0.9, "fit", "μ for momentum/nesterov", low=0, high=1,
            group="training", searchable=True, checkpointed=True),
    Setting("l2", "float", 0.0, "fit", "L2 penalty λ, the book's (λ/n)·W", low=0,
            group="training", searchable=True, checkpointed=True, table_default=T["l2"]),
    Setting("l1", "float", 0.0, "fit", "L1 penalty λ, (λ/n)·sgn(W)", low=0, group="training",
            searchable=True, checkpointed=True),
    Setting("dropout", "float", 0.0, "fit", "dropout rate on hidden layers", low=0, high=1,
            group="training", searchable=True, checkpointed=True),
    Setting("schedule", "choice", "constant", "fit", choices=SCHEDULES, noun="a schedule",
            group="training", searchable=True, checkpointed=True),
    Setting("patience", "int", None, "fit", "early stopping (or plateau) patience; none: off",
            low=1, group="training", searchable=True, table_default=T["patience"]),
    Setting("engine", "choice", "auto", "fit", "training step: generic (plain xp) or a fast path",
            choices=ENGINES, noun="an engine", group="training"),
    Setting("monitor_set", "choice", "test", "run", "the set scored after each epoch",
            choices=("test", "validation"), noun="a split", group="training",
            table_default=T["monitor_set"]),
    Setting("stop_on", "choice", "val_accuracy", "fit",
            "what --patience (early stopping, or the plateau schedule) watches", choices=WATCHED,
            noun="a watched monitor", group="training", checkpointed=True,
            table_default=T["stop_on"]),
    # the data, read before any default can depend on it
    Setting("data", "text", None, "data",
            "MNIST (pkl.gz, npz, IDX folder), or your own .npz, .csv or X.npy; "
            "none: MNIST from the cache", group="data"),
    Setting("labels", "text", None, "data", "with --data X.npy: the labels (or targets) y.npy",
            group="data"),
    Setting("label_column", "text", None, "data",
            "with --data FILE.csv: the label column, by header name or 0-based index",
            group="data", shown="the last column"),
    Setting("drop", "names", None, "data", "with --data FILE.csv: columns to leave out, by "
            "header name or 0-based index", group="data"),
    Setting("val_split", "float", None, "data", "hold out this fraction for validation (seeded)",
            low=0, high=1, strict=True, group="data"),
    Setting("standardize", "bool", False, "run",
            "scale inputs by the training split's mean and std", group="data",
            table_default=T["standardize"]),
    Setting("limit", "int", None, "data", "train on the first N examples only", low=1,
            group="data"),
    Setting("checkpoint_every", "int", None, "fit", "checkpoint every N epochs", low=1,
            group="data"),
    Setting("from_disk", "bool", False, "data",
            "read X.npy from its file batch by batch (data larger than memory; slower: one read "
            "per row) instead of into memory; an X.npy that does not fit in half the free memory "
            "is read this way anyway", group="data"),
    # Network.fit's settings that are not flags (a run folder sets them itself)
    Setting("shuffle", "bool", True, "fit", "a new order of the training examples each epoch"),
    Setting("monitor", "names", ("train_cost", "val_cost", "val_accuracy"), "fit",
            "what each epoch's record measures", choices=MONITORS, noun="a monitor"),
    Setting("checkpoint", "path", None, "fit",
            "the checkpoint, written every checkpoint_every epochs, when stopped and at the end"),
    Setting("chunk", "int", DEFAULT_CHUNK, "fit", "rows per forward pass when evaluating",
            low=1),
)
# fmt: on

SETTINGS: Mapping[str, Setting] = MappingProxyType({s.name: s for s in _TABLE})
"""Every setting by name, in the order of ``--help`` and ``args.json``."""
DEFAULTS: Mapping[str, Any] = MappingProxyType({s.name: s.default for s in _TABLE})
"""Every setting's default, whatever the data (what the Python signatures show)."""
FLAGS = tuple(s.name for s in _TABLE if s.group is not None)
"""The flags of ``gpumlp train``: what ``args.json`` records and ``--resume`` reuses."""
SEARCHABLE = tuple(s.name for s in _TABLE if s.searchable)
"""The flags a sweep's space may search; the others (data, backend, seed, ...) are fixed."""
HYPER_KEYS = tuple(s.name for s in _TABLE if s.checkpointed)
"""The hyperparameters a checkpoint records (with ``shuffle``) and a resume takes back."""


def owned_by(owner: str, *, flags: bool = False) -> tuple[str, ...]:
    """The names of the settings ``owner`` (one of :data:`OWNERS`) owns, in table order; only
    those that are flags with ``flags``."""
    if owner not in OWNERS:
        raise ValueError(f"owner={owner!r} is not an owner; expected one of {list(OWNERS)}")
    return tuple(s.name for s in SETTINGS.values()
                 if s.owner == owner and (s.group is not None or not flags))  # fmt: skip


def defaults(data: DataShape | None = None) -> dict[str, Any]:
    """The flags' defaults (a new dict, its lists copied): the table's, or, given the loaded
    ``data``, each entry's default for it (:meth:`Setting.default_for`)."""
    out = {}
    for name in FLAGS:
        value = SETTINGS[name].default_for(data)
        out[name] = list(value) if isinstance(value, list) else value
    return out
