"""Everything a training run carries between epochs, and its checkpoint form.

:class:`TrainState` holds the run's records (model spec, parameters, validated config), the
optimizer and its device state, the schedule, early stopping, the host RNG, the dropout key and
the history. It snapshots itself at each epoch boundary (restored on divergence or
interruption) and writes or reads a checkpoint, so that a resumed run replays exactly what an
uninterrupted one would have done.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import ModelSpec, TrainConfig
from .errors import CheckpointError
from .files.checkpoint import read_checkpoint, write_checkpoint
from .files.modelfile import (
    check_same_network,
    expected_arrays,
    model_meta,
    params_from_arrays,
    params_to_host,
)
from .history import History
from .network import Params
from .optim import Optimizer, OptState, get_optimizer
from .schedules import EarlyStopping, Schedule

if TYPE_CHECKING:
    from .arraytypes import Comm

__all__ = ["TrainState", "check_checkpoint_path", "check_resumable"]

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    """The state of one training run (see the module docstring).

    ``inputs`` holds host arrays that belong with the model in every file it writes (the
    standardization's ``input/mean`` and ``input/std``, and a regression's ``target/mean``
    and ``target/std``), empty when there are none; ``about`` the metadata that does (its
    classes and inputs' names: :mod:`gpumlp.files.modeldata`).
    """

    spec: ModelSpec
    params: Params
    config: TrainConfig
    optimizer: Optimizer
    opt_state: OptState
    schedule: Schedule
    early: EarlyStopping | None
    rng: np.random.Generator
    dropout_key: int | None = None
    history: History = field(default_factory=History)
    inputs: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    about: dict[str, Any] = field(default_factory=dict)
    comm: Comm | None = None  # the ranks training it together (gpumlp.distributed), if any
    epoch: int = 0
    best: Params | None = None
    _snap: dict[str, Any] | None = None

    @classmethod
    def start(
        cls,
        spec: ModelSpec,
        params: Params,
        config: TrainConfig,
        rng: np.random.Generator,
        *,
        inputs: dict[str, np.ndarray[Any, Any]] | None = None,
        about: dict[str, Any] | None = None,
        seed: int | None = None,
        scored: str = "validation",
    ) -> TrainState:
        """A fresh run of ``config`` over ``params`` (which it updates in place), drawing its
        epoch orders and dropout key from ``rng``; ``seed`` is recorded in the history."""
        opt = get_optimizer(config.optimizer, momentum=config.momentum)
        key = int(rng.integers(2**32)) if config.dropout else None
        return cls(
            spec,
            params,
            config,
            opt,
            opt.init(params, xp=spec.xp),
            _schedule_of(config),
            _early_of(config),
            rng,
            key,
            History(seed=seed, scored=scored, task=spec.task),
            dict(inputs or {}),
            dict(about or {}),
        )

    def snapshot(self) -> None:
        """Remember the state at this epoch boundary (device copies, no host sync)."""
        xp = self.spec.xp
        self._snap = {
            "params": self.params.copy(xp=xp),
            "buffers": {k: v.copy(xp=xp) for k, v in self.opt_state.buffers.items()},
            "scalars": dict(self.opt_state.scalars),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "epoch": self.epoch,
            "schedule": self.schedule.state(),
            "early": self.early.state() if self.early else None,
            "n_records": len(self.history),
            "best": self.best,  # replaced, never written in place: a reference is enough
        }

    def restore(self) -> None:
        """Return to the last snapshot (weights, optimizer, RNG, schedule, epoch counter)."""
        s = self._snap
        if s is None:
            return
        self.params.assign(s["params"])
        for k, v in s["buffers"].items():
            self.opt_state.buffers[k].assign(v)
        self.opt_state.scalars.clear()
        self.opt_state.scalars.update(s["scalars"])
        self.rng.bit_generator.state = s["rng"]
        self.epoch = s["epoch"]
        self.schedule.load_state(s["schedule"])
        if self.early:
            self.early.load_state(s["early"])
        self.best = s["best"]
        del self.history.records[s["n_records"] :]

    def after_epoch(self, record: dict[str, Any]) -> str | None:
        """Feed a finished epoch to the schedule and early stopping; checkpoint every N epochs.

        Returns a stop reason or None.
        """
        watched = record.get(self.config.stop_on)
        stop = self.schedule.observe(record["epoch"], watched)
        if self.early is not None:
            improved, early_stop = self.early.observe(record["epoch"], watched)
            if improved:
                self.best = self.params.copy(xp=self.spec.xp)
            stop = stop or early_stop
        every = self.config.checkpoint_every
        if self.config.checkpoint is not None and every and self.epoch % every == 0:
            self.save(self.config.checkpoint)
        return stop

    def finish(self) -> None:
        """End of training: write the checkpoint, then restore the best weights (early stopping).

        The checkpoint holds the run's last state (its best weights travel in it separately),
        so a run resumed from it to more epochs continues as an uninterrupted one would.
        """
        if self.config.checkpoint is not None:
            self.save(self.config.checkpoint)
        if self.early is not None and self.best is not None:
            self.params.assign(self.best)
            early = self.early
            logger.info("restored the weights of epoch %d (best %s)", early.best_epoch, early.watch)

    # -- checkpoints -------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the whole run state to ``path`` atomically (see :mod:`gpumlp.files.checkpoint`)."""
        arrays = params_to_host(self.params) | self.inputs
        for key, value in self.opt_state.buffers.items():
            arrays |= params_to_host(value, f"opt/{key}")
        if self.best is not None:
            arrays |= params_to_host(self.best, "best")
        meta = model_meta(self.spec, self.inputs) | self.about
        meta |= {
            "epoch": self.epoch,
            "optimizer": {"name": self.optimizer.name, "scalars": self.opt_state.scalars},
            "hyper": self.config.hyper(),
            "schedule": self.schedule.state(),
            "early": self.early.state() if self.early else None,
            "rng": self.rng.bit_generator.state,
            "history": self.history.to_dict(),
            "dropout_key": self.dropout_key,
        }
        write_checkpoint(path, meta, arrays)

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save` for the same network and optimizer.

        Raises CheckpointError when the file is damaged, incomplete, or for another network or
        optimizer (:func:`check_resumable`); nothing of this state changes then.
        """
        point = _read_resumable(path, self.spec, self.config)
        meta = point.meta
        self.params.assign(point.params)
        for k, v in point.buffers.items():
            self.opt_state.buffers[k].assign(v)
        self.opt_state.scalars.update(meta["optimizer"]["scalars"])
        self.best = point.best
        self.rng.bit_generator.state = point.rng.bit_generator.state
        self.schedule, self.early = point.schedule, point.early
        self.history = History.from_dict(meta["history"])
        self.history.stop_reason = None  # the run goes on; "interrupted ..." no longer holds
        self.epoch = int(meta["epoch"])
        if self.config.dropout:
            self.dropout_key = meta.get("dropout_key") or self.dropout_key
        hyper = self.config.hyper()
        changed = {k: (v, hyper.get(k)) for k, v in meta["hyper"].items() if hyper.get(k) != v}
        if changed:
            logger.warning("resuming %s with changed settings (was, now): %s", path, changed)


def _schedule_of(config: TrainConfig) -> Schedule:
    """The learning-rate schedule ``config`` asks for, at its start."""
    plateau = config.schedule == "plateau"
    kw = {"patience": config.patience} if plateau and config.patience else {}
    return Schedule(config.schedule, config.lr, config.epochs, watch=config.stop_on, **kw)


def _early_of(config: TrainConfig) -> EarlyStopping | None:
    """Early stopping as ``config`` asks for it (none with the plateau schedule, whose
    ``patience`` is its own), at its start."""
    if config.patience is None or config.schedule == "plateau":
        return None
    return EarlyStopping(config.patience, config.stop_on)


@dataclass
class _Resumed:
    """A checkpoint read and checked for a run: what :meth:`TrainState.load` takes over."""

    meta: dict[str, Any]
    params: Params
    buffers: dict[str, Params]
    best: Params | None
    rng: np.random.Generator
    schedule: Schedule
    early: EarlyStopping | None


def _read_resumable(path: str | Path, spec: ModelSpec, config: TrainConfig) -> _Resumed:
    """Read the checkpoint ``path`` whole and check it against the run of ``spec`` and
    ``config``: its optimizer, its network, every parameter and buffer (shapes, finite
    values), its RNG, schedule and early-stopping states. CheckpointError naming the file."""
    meta, arrays = read_checkpoint(path, lambda m: expected_arrays(m, path, training=True))
    name = meta["optimizer"]["name"]
    if name != config.optimizer:
        raise CheckpointError(
            f"{str(path)!r} was written with optimizer={name!r}, not {config.optimizer!r}"
        )
    check_same_network(meta, spec, path)
    params = params_from_arrays(spec, arrays, path)
    buffers = {
        k: params_from_arrays(spec, arrays, path, f"opt/{k}")
        for k in get_optimizer(name, momentum=config.momentum).buffers
    }
    best = params_from_arrays(spec, arrays, path, "best") if "best/0" in arrays else None
    rng, schedule, early = np.random.default_rng(), _schedule_of(config), _early_of(config)
    try:
        rng.bit_generator.state = meta["rng"]
        schedule.load_state(meta["schedule"])
        if early is not None and meta.get("early"):
            early.load_state(meta["early"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{str(path)!r} has an invalid RNG or schedule state: {exc}"
        ) from None
    return _Resumed(meta, params, buffers, best, rng, schedule, early)


def check_resumable(
    path: str | Path, spec: ModelSpec, config: TrainConfig, about: dict[str, Any] | None = None
) -> int:
    """Check, without changing anything, that a run of ``spec`` and ``config`` (on data whose
    classes are ``about``'s) can resume from the checkpoint ``path``: everything
    :meth:`TrainState.load` checks, so that a command can refuse before it writes anything.
    Returns the epochs the checkpoint finished.

    Raises CheckpointError (a ValueError) naming the file and what does not match: another
    network (sizes, activations, cost) or optimizer, other classes, a damaged or incomplete
    file, parameters or optimizer buffers of the wrong shape or holding NaN or inf, an invalid
    RNG or schedule.
    """
    meta = _read_resumable(path, spec, config).meta
    mine, theirs = (about or {}).get("classes"), meta.get("classes")
    if mine is not None and theirs is not None and mine != theirs:
        raise CheckpointError(
            f"{str(path)!r} was trained on the classes {theirs!r:.200}, but the data's classes "
            f"are {mine!r:.200}"
        )
    return int(meta["epoch"])


def check_checkpoint_path(path: Path) -> None:
    """Refuse a checkpoint path that cannot be written, before training starts."""
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a directory, expected a file path")
    if not folder.is_dir():
        raise ValueError(f"checkpoint folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"checkpoint folder {str(folder)!r} is not writable")
