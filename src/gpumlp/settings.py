"""Every setting of a network and its training, declared once (scikit-learn's
``_parameter_constraints``, one table for the whole house).

An entry of :data:`SETTINGS` (a :class:`~gpumlp.setting.Setting`) says a setting's name (the
Python argument, the record's field and, with ``-`` for ``_``, the flag), its kind and bounds,
its default, its help, and the record that owns it. Everything else is read from the table:

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
book's. The settings read to load the data (owner ``"data"``, and ``seed``) cannot have one;
``task``, which the reader takes when given, has the one the loaded data tells.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .activations import ACTIVATIONS, HIDDEN_ACTIVATIONS
from .backend import BACKEND_NAMES, DTYPES, NAMESPACES
from .costs import COSTS
from .initial import INITS
from .metrics import TASKS, task_monitors
from .optim import OPTIMIZERS
from .schedules import SCHEDULES, WATCHED
from .setting import KINDS, OWNERS, Setting
from .tabledefaults import RULES as T
from .tabledefaults import DataShape

__all__ = ["DEFAULTS", "DEFAULT_CHUNK", "ENGINES", "FLAGS", "HYPER_KEYS", "KINDS", "MONITORS",
           "OWNERS", "SEARCHABLE", "SETTINGS", "DataShape", "Setting", "defaults",
           "owned_by"]  # fmt: skip

DEFAULT_CHUNK = 10_000
"""Rows per forward pass when evaluating or predicting, bounding memory on large sets."""

ENGINES = ("auto", "generic", "fused", "graph", "persistent", "native")
"""``generic``: the plain ``xp`` code (any backend, the reference). ``fused``: the backend's fast
path (NumPy: in-place ufuncs into preallocated buffers; CuPy: fused kernels and cuBLAS).
``graph``: CuPy only, whole steps replayed as CUDA graphs. ``persistent``: CuPy only, a whole
epoch in one kernel launch, the network in one block's shared memory (where it fits).
``native``: NumPy only, a whole epoch in one call of C++ compiled for this CPU.
``auto`` picks the fastest that qualifies for the backend and network, falling back to
``generic``."""

MONITORS = tuple(dict.fromkeys(k for t in TASKS for k in task_monitors(t)))
"""``train_*`` are running means over the epoch's mini-batches; ``val_*`` are measured on
``validation_data`` after the epoch (the book's evaluation monitors): ``val_cost``, and the
scores of the network's task (:mod:`gpumlp.metrics`), ``val_accuracy`` for classification,
``val_mse``, ``val_mae`` and ``val_r2`` for regression; a network measures those of its
task among those asked for."""


# fmt: off
_TABLE = (
    # the network: its layers, then ModelSpec's (Network's keyword arguments)
    Setting("sizes", "sizes", [784, 30, 10], "layers", "layer sizes, input first, e.g. 784,30,10",
            low=2, group="network"),
    Setting("hidden", "sizes", None, "layers",
            "hidden widths, e.g. 100,50: sizes from the data's width and classes",
            low=1, group="network", searchable=True, table_default=T["hidden"]),
    Setting("task", "choice", None, "network",
            "what the outputs are: classes, or the values of the targets", choices=TASKS,
            noun="a task", group="network", shown="classification",
            table_default=T["task"]),
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
    Setting("monitor", "names", ("train_cost", *MONITORS[2:]), "fit",
            "what each epoch's record measures (of its task's)", choices=MONITORS,
            noun="a monitor"),
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
