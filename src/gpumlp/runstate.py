"""Everything a training run carries between epochs, and its checkpoint form.

:class:`TrainState` holds the optimizer and its device state, the schedule, early stopping,
the host RNG and the history. It can snapshot itself at an epoch boundary (restored on
divergence or Ctrl-C) and write or read a checkpoint, so that a resumed run replays exactly
what an uninterrupted one would have done.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backend
from .checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from .network import Params
from .optim import get_optimizer
from .schedules import EarlyStopping, Schedule
from .train import History

if TYPE_CHECKING:
    from .model import Network

__all__ = ["TrainState"]

logger = logging.getLogger(__name__)


def _on_host(prefix: str, params: Params) -> dict[str, np.ndarray]:
    """``params``' tensors as host arrays named ``prefix/0``, ``prefix/1``, ... (w_0, b_0, ...)."""
    return {f"{prefix}/{i}": backend.to_host(t) for i, t in enumerate(params.arrays())}


def _state_arrays(state: dict[str, Any]) -> dict[str, Params]:
    return {k: v for k, v in state.items() if isinstance(v, Params)}


@dataclass
class TrainState:
    """The state of one training run (see module docstring)."""

    net: Network
    optimizer: Any
    opt_state: dict[str, Any]
    schedule: Schedule
    early: EarlyStopping | None
    rng: np.random.Generator
    hyper: dict[str, Any]
    checkpoint: Path | None = None
    checkpoint_every: int | None = None
    history: History = field(default_factory=History)
    epoch: int = 0
    _snap: dict[str, Any] | None = None
    _best: Params | None = None

    def snapshot(self) -> None:
        """Remember the state at this epoch boundary (device copies, no host sync)."""
        xp = self.net.xp
        self._snap = {
            "params": self.net.params.copy(xp=xp),
            "opt": {
                k: (v.copy(xp=xp) if isinstance(v, Params) else v)
                for k, v in self.opt_state.items()
            },
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "epoch": self.epoch,
            "schedule": self.schedule.state(),
            "early": self.early.state() if self.early else None,
            "n_records": len(self.history),
            "best": self._best,  # replaced, never written in place: a reference is enough
        }

    def restore(self) -> None:
        """Return to the last snapshot (weights, optimizer, RNG, schedule and epoch counter)."""
        s = self._snap
        if s is None:
            return
        self.net.params.assign(s["params"])
        for k, v in s["opt"].items():
            if isinstance(v, Params):
                self.opt_state[k].assign(v)
            else:
                self.opt_state[k] = v
        self.rng.bit_generator.state = s["rng"]
        self.epoch = s["epoch"]
        self.schedule.load_state(s["schedule"])
        if self.early:
            self.early.load_state(s["early"])
        self._best = s["best"]
        del self.history.records[s["n_records"] :]

    def after_epoch(self, record: dict[str, Any]) -> str | None:
        """Update schedule and early stopping with a finished epoch; checkpoint every N epochs.

        Returns a stop reason or None.
        """
        val_acc = record.get("val_accuracy")
        stop = self.schedule.observe(record["epoch"], val_acc)
        if self.early is not None:
            improved, early_stop = self.early.observe(record["epoch"], val_acc)
            if improved:
                self._best = self.net.params.copy(xp=self.net.xp)
            stop = stop or early_stop
        if (
            self.checkpoint is not None
            and self.checkpoint_every
            and self.epoch % self.checkpoint_every == 0
        ):
            self.save(self.checkpoint)
        return stop

    def finish(self) -> None:
        """End of training: write the checkpoint, then restore the best weights (early stopping).

        The checkpoint is written first so that it holds the run's last state (its best weights
        travel in it separately): a run resumed from it to more epochs continues exactly as an
        uninterrupted one would, instead of from the best epoch's weights.
        """
        if self.checkpoint is not None:
            self.save(self.checkpoint)
        if self.early is not None and self._best is not None:
            self.net.params.assign(self._best)
            logger.info(
                "restored the weights of epoch %d (best validation accuracy)", self.early.best_epoch
            )

    # -- checkpoints -------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the whole run state to ``path`` atomically (see :mod:`gpumlp.checkpoint`)."""
        arrays = self.net._host_arrays()
        buffers = _state_arrays(self.opt_state)
        for key, value in buffers.items():
            arrays |= _on_host(f"opt/{key}", value)
        if self._best is not None:
            arrays |= _on_host("best", self._best)
        scalars = {k: v for k, v in self.opt_state.items() if k not in buffers}
        meta = {
            **self.net._meta(),
            "epoch": self.epoch,
            "optimizer": {"name": self.optimizer.name, "scalars": scalars},
            "hyper": self.hyper,
            "schedule": self.schedule.state(),
            "early": self.early.state() if self.early else None,
            "rng": self.rng.bit_generator.state,
            "history": self.history.to_dict(),
        }
        write_checkpoint(path, meta, arrays)

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save` for the same network shape.

        Raises
        ------
        CheckpointError
            When the file is damaged, or was written for another network or optimizer.
        """
        meta, arrays = read_checkpoint(path)
        if "epoch" not in meta or "optimizer" not in meta:
            raise CheckpointError(
                f"{str(path)!r} holds a model, not a resumable training checkpoint"
            )
        name = meta["optimizer"]["name"]
        if name != self.optimizer.name:
            raise CheckpointError(
                f"{str(path)!r} was written with optimizer={name!r}, not {self.optimizer.name!r}"
            )
        self.net._load_checkpoint_params(meta, arrays, path)  # checks the network's config
        shapes = [tuple(t.shape) for t in self.net.params.arrays()]
        groups = [f"opt/{key}" for key in _state_arrays(self.opt_state)]
        groups += ["best"] if "best/0" in arrays else []
        for key, shape in ((f"{g}/{i}", s) for g in groups for i, s in enumerate(shapes)):
            if key not in arrays:
                raise CheckpointError(f"{str(path)!r} lacks the array {key!r}")
            if arrays[key].shape != shape:
                raise CheckpointError(
                    f"{str(path)!r} has {key!r} of shape {arrays[key].shape}, expected {shape}"
                )
        xp, dtype = self.net.xp, self.net.dtype
        for key, value in _state_arrays(self.opt_state).items():
            for i, t in enumerate(value.arrays()):
                t[...] = backend.to_device(arrays[f"opt/{key}/{i}"], xp, dtype)
        self.opt_state.update(meta["optimizer"]["scalars"])
        if "best/0" in arrays:
            self._best = Params.from_arrays(
                [backend.to_device(arrays[f"best/{i}"], xp, dtype) for i in range(len(shapes))]
            )
        self.schedule.load_state(meta["schedule"])
        if self.early is not None and meta.get("early"):
            self.early.load_state(meta["early"])
        self.rng.bit_generator.state = meta["rng"]
        self.history = History.from_dict(meta["history"])
        self.history.stop_reason = None  # the run goes on; "interrupted ..." no longer holds
        self.epoch = int(meta["epoch"])
        changed = {
            k: (v, self.hyper.get(k))
            for k, v in meta.get("hyper", {}).items()
            if self.hyper.get(k) != v
        }
        if changed:
            logger.warning("resuming %s with changed settings (was, now): %s", path, changed)


def make_train_state(
    net: Network,
    *,
    lr: float,
    epochs: int,
    optimizer: str,
    momentum: float,
    schedule: str,
    patience: int | None,
    seed: int | None,
    hyper: dict[str, Any],
    checkpoint: str | Path | None,
    checkpoint_every: int | None,
) -> TrainState:
    """Build a fresh :class:`TrainState` for ``net`` (see :meth:`Network.fit` for the arguments)."""
    opt = get_optimizer(optimizer, momentum=momentum)
    plateau = schedule == "plateau"
    sched = Schedule(
        schedule, lr, epochs, **({"patience": patience} if plateau and patience else {})
    )
    early = EarlyStopping(patience) if patience is not None and not plateau else None
    rng = np.random.default_rng(seed) if seed is not None else net._rng
    return TrainState(
        net,
        opt,
        opt.init(net.params, xp=net.xp),
        sched,
        early,
        rng,
        hyper,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        checkpoint_every=checkpoint_every,
    )
