"""Learning-rate schedules and early stopping, decided once per epoch on the host.

A schedule is a small object: ``lr_for(epoch)`` gives the rate for the coming epoch and
``observe(epoch, value)`` tells it the result of the finished one; ``observe`` returns
a reason string when training should stop, else None. Their state is a JSON-able dict
(``state()`` / ``load_state()``) so a checkpoint can resume them exactly.

The plateau rule and early stopping watch one of :data:`WATCHED` (``stop_on``): the validation
accuracy (higher is better, the book's rule) or the validation cost (lower is better: on a
small validation set the accuracy moves in steps of one example and stops a run by chance,
while the cost still says whether the network is getting better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCHEDULES", "WATCHED", "EarlyStopping", "Schedule", "make_schedule"]

SCHEDULES = ("constant", "step", "plateau", "cosine")
WATCHED = ("val_accuracy", "val_cost")
"""What the plateau rule and early stopping may watch (``stop_on``), the book's first."""
_WORDS = {"val_accuracy": "validation accuracy", "val_cost": "validation cost"}


def _score(watch: str, value: float | None, who: str) -> float:
    """``value`` of the watched ``watch`` as a score where higher is better (a cost negated);
    ValueError naming ``who`` when it was not measured."""
    if value is None:
        raise ValueError(
            f"{who} watches {_WORDS[watch]}: it needs validation_data and {watch!r} in monitor"
        )
    return -value if watch == "val_cost" else value


def _check_watch(watch: str) -> None:
    if watch not in WATCHED:
        raise ValueError(f"stop_on={watch!r} is not watched; expected one of {list(WATCHED)}")


def _shown(watch: str, score: float) -> str:
    """The best score as the watched value reads."""
    return f"{-score if watch == 'val_cost' else score:.4f}"


@dataclass
class Schedule:
    """Learning rate per epoch.

    Parameters
    ----------
    kind : {"constant", "step", "plateau", "cosine"}
        ``constant``: ``lr`` always. ``step``: ``lr · gamma^(epoch // step_size)``.
        ``plateau``: the book's rule (chapter 3): halve η when validation accuracy (or what
        ``watch`` names) has not improved for ``patience`` epochs, and stop once it has fallen
        to η/128. ``cosine``: from ``lr`` to 0 along half a cosine over ``epochs`` epochs
        (Loshchilov & Hutter 2017, no restarts).
    lr : float, the initial rate
    epochs : int, the total number of epochs (for ``cosine``)
    step_size : int, gamma : float, for ``step``
    patience : int, for ``plateau``
    watch : one of :data:`WATCHED`, what ``plateau`` watches
    """

    kind: str
    lr: float
    epochs: int
    step_size: int = 10
    gamma: float = 0.5
    patience: int = 10
    min_factor: float = 1.0 / 128.0
    watch: str = "val_accuracy"
    _current: float = field(init=False)
    _best: float = field(init=False, default=-math.inf)
    _since_best: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"schedule={self.kind!r} is not a schedule; expected one of {list(SCHEDULES)}"
            )
        _check_watch(self.watch)
        self._current = self.lr

    def lr_for(self, epoch: int) -> float:
        """Learning rate for epoch ``epoch`` (0-based)."""
        if self.kind == "step":
            return self.lr * self.gamma ** (epoch // self.step_size)
        if self.kind == "cosine":
            return 0.5 * self.lr * (1.0 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        return self._current

    def observe(self, epoch: int, value: float | None) -> str | None:
        """Record the watched value (``watch``) of a finished epoch; return a stop reason or
        None."""
        if self.kind != "plateau":
            return None
        score = _score(self.watch, value, "schedule='plateau'")
        if score > self._best:
            self._best, self._since_best = score, 0
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
            "watch": self.watch,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned.

        A run resumed with another ``lr`` (say, smaller after divergence) gets it: the rate in
        effect is scaled by new/old, which keeps the plateau rule's halvings so far. A run
        resumed watching something else (a state without ``watch`` watched the accuracy) starts
        its watch afresh: a best accuracy is no bound on a cost.
        """
        old, current = float(state.get("lr", self.lr)), float(state["current"])
        self._current = current if old == self.lr else current * (self.lr / old)
        if state.get("watch", "val_accuracy") == self.watch:
            self._best = float(state["best"])
            self._since_best = int(state["since_best"])


@dataclass
class EarlyStopping:
    """Stop when the validation accuracy (or what ``watch`` names, one of :data:`WATCHED`) has
    not improved for ``patience`` epochs.

    ``best_epoch`` is the epoch whose weights the trainer restores at the end; ``best`` its
    score (higher is better: the accuracy, or the cost negated).
    """

    patience: int
    watch: str = "val_accuracy"
    best: float = -math.inf
    best_epoch: int = -1
    since_best: int = 0

    def __post_init__(self) -> None:
        _check_watch(self.watch)

    def observe(self, epoch: int, value: float | None) -> tuple[bool, str | None]:
        """Return ``(improved, stop_reason)`` for a finished epoch whose watched value is
        ``value``."""
        score = _score(self.watch, value, "patience (early stopping)")
        if score > self.best:
            self.best, self.best_epoch, self.since_best = score, epoch, 0
            return True, None
        self.since_best += 1
        if self.since_best >= self.patience:
            return False, (
                f"no improvement in {_WORDS[self.watch]} for {self.patience} epochs "
                f"(best {_shown(self.watch, self.best)} at epoch {self.best_epoch})"
            )
        return False, None

    def state(self) -> dict[str, Any]:
        """JSON-able state for checkpoints."""
        return {"best": self.best, "best_epoch": self.best_epoch, "since_best": self.since_best,
                "watch": self.watch}  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned; a state of another watch (without ``watch``:
        the accuracy) is not restored, the watch starts afresh (see :meth:`Schedule.load_state`)."""
        if state.get("watch", "val_accuracy") != self.watch:
            return
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.since_best = int(state["since_best"])


def make_schedule(
    kind: str, *, lr: float, epochs: int, patience: int | None = None, watch: str = WATCHED[0]
) -> Schedule:
    """Build a :class:`Schedule`; ``patience`` (if given) sets the plateau rule's n, ``watch``
    what it watches."""
    if patience is None:
        return Schedule(kind, lr, epochs, watch=watch)
    return Schedule(kind, lr, epochs, patience=patience, watch=watch)
