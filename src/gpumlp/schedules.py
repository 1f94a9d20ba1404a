"""Learning-rate schedules and early stopping, decided once per epoch on the host.

A schedule is a small object: ``lr_for(epoch)`` gives the rate for the coming epoch and
``observe(epoch, val_accuracy)`` tells it the result of the finished one; ``observe`` returns
a reason string when training should stop, else None. Their state is a JSON-able dict
(``state()`` / ``load_state()``) so a checkpoint can resume them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCHEDULES", "EarlyStopping", "Schedule", "make_schedule"]

SCHEDULES = ("constant", "step", "plateau", "cosine")


@dataclass
class Schedule:
    """Learning rate per epoch.

    Parameters
    ----------
    kind : {"constant", "step", "plateau", "cosine"}
        ``constant``: ``lr`` always. ``step``: ``lr · gamma^(epoch // step_size)``.
        ``plateau``: the book's rule (chapter 3): halve η when validation accuracy has not improved
        for ``patience`` epochs, and stop once it has fallen to η/128. ``cosine``: from ``lr`` to 0
        along half a cosine over ``epochs`` epochs (Loshchilov & Hutter 2017, no restarts).
    lr : float, the initial rate
    epochs : int, the total number of epochs (for ``cosine``)
    step_size : int, gamma : float, for ``step``
    patience : int, for ``plateau``
    """

    kind: str
    lr: float
    epochs: int
    step_size: int = 10
    gamma: float = 0.5
    patience: int = 10
    min_factor: float = 1.0 / 128.0
    _current: float = field(init=False)
    _best: float = field(init=False, default=-math.inf)
    _since_best: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"schedule={self.kind!r} is not a schedule; expected one of {list(SCHEDULES)}"
            )
        self._current = self.lr

    def lr_for(self, epoch: int) -> float:
        """Learning rate for epoch ``epoch`` (0-based)."""
        if self.kind == "step":
            return self.lr * self.gamma ** (epoch // self.step_size)
        if self.kind == "cosine":
            return 0.5 * self.lr * (1.0 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        return self._current

    def observe(self, epoch: int, val_accuracy: float | None) -> str | None:
        """Record the validation accuracy of a finished epoch; return a stop reason or None."""
        if self.kind != "plateau":
            return None
        if val_accuracy is None:
            raise ValueError(
                "schedule='plateau' watches validation accuracy: it needs validation_data "
                "and 'val_accuracy' in monitor"
            )
        if val_accuracy > self._best:
            self._best, self._since_best = val_accuracy, 0
            return None
        self._since_best += 1
        if self._since_best >= self.patience:
            self._current /= 2.0
            self._since_best = 0
            if self._current < self.lr * self.min_factor * (1.0 + 1e-9):
                return f"learning rate fell to {self._current:g} (lr/128) after no improvement"
        return None

    def state(self) -> dict[str, Any]:
        """JSON-able state for checkpoints."""
        return {
            "lr": self.lr,
            "current": self._current,
            "best": self._best,
            "since_best": self._since_best,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned.

        A run resumed with another ``lr`` (say, smaller after divergence) gets it: the rate in
        effect is scaled by new/old, which keeps the plateau rule's halvings so far.
        """
        old, current = float(state.get("lr", self.lr)), float(state["current"])
        self._current = current if old == self.lr else current * (self.lr / old)
        self._best = float(state["best"])
        self._since_best = int(state["since_best"])


@dataclass
class EarlyStopping:
    """Stop when validation accuracy has not improved for ``patience`` epochs.

    ``best_epoch`` is the epoch whose weights the trainer restores at the end.
    """

    patience: int
    best: float = -math.inf
    best_epoch: int = -1
    since_best: int = 0

    def observe(self, epoch: int, val_accuracy: float | None) -> tuple[bool, str | None]:
        """Return ``(improved, stop_reason)`` for a finished epoch."""
        if val_accuracy is None:
            raise ValueError(
                "patience (early stopping) watches validation accuracy: it needs "
                "validation_data and 'val_accuracy' in monitor"
            )
        if val_accuracy > self.best:
            self.best, self.best_epoch, self.since_best = val_accuracy, epoch, 0
            return True, None
        self.since_best += 1
        if self.since_best >= self.patience:
            return False, (
                f"no improvement in validation accuracy for {self.patience} epochs "
                f"(best {self.best:.4f} at epoch {self.best_epoch})"
            )
        return False, None

    def state(self) -> dict[str, Any]:
        """JSON-able state for checkpoints."""
        return {"best": self.best, "best_epoch": self.best_epoch, "since_best": self.since_best}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.since_best = int(state["since_best"])


def make_schedule(kind: str, *, lr: float, epochs: int, patience: int | None = None) -> Schedule:
    """Build a :class:`Schedule`; ``patience`` (if given) sets the plateau rule's n."""
    if patience is None:
        return Schedule(kind, lr, epochs)
    return Schedule(kind, lr, epochs, patience=patience)
