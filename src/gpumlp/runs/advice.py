"""Advice a run calls for, as text: a table whose input columns differ in scale by orders of
magnitude while the inputs are not standardized, and training that has stalled.

Nothing here prints: ``gpumlp train`` writes each as one ``gpumlp: warning:`` line on stderr,
and training goes on (the advice may be wrong; the data is the user's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import get_namespace, to_host
from ..config import ModelSpec
from ..prepare import prepare_targets

__all__ = ["SAMPLE_ROWS", "SCALE_RATIO", "STALL_EPOCHS", "Stall", "constant_cost", "scale_advice"]

SAMPLE_ROWS = 10_000
"""Rows read (evenly spaced) to measure a large table's columns or its constant prediction."""
SCALE_RATIO = 100.0
"""Columns whose largest magnitudes differ by this factor or more are told apart."""
STALL_EPOCHS = 5
"""Epochs without a lower training cost, no better than a constant prediction, that stall."""

Host = np.ndarray[Any, Any]


def _rows(a: Host) -> Host:
    """At most :data:`SAMPLE_ROWS` evenly spaced rows of ``a`` (a view of a memory map too)."""
    return a[:: max(1, len(a) // SAMPLE_ROWS)]


def scale_advice(X: Host) -> str | None:
    """What to say of inputs ``X`` (n, d) given as they are, when their columns' largest
    magnitudes (columns of zeros aside) differ by :data:`SCALE_RATIO` or more; else None."""
    top = np.max(np.abs(_rows(X)), axis=0).astype(np.float64)
    used = np.flatnonzero(top > 0)
    if len(used) < 2:
        return None
    big, small = used[np.argmax(top[used])], used[np.argmin(top[used])]
    if top[big] < SCALE_RATIO * top[small]:
        return None
    return (
        f"the input columns differ in scale by a factor of {top[big] / top[small]:.3g} "
        f"(column {big} reaches {top[big]:.3g}, column {small} only {top[small]:.3g}) and the "
        "inputs are not standardized: the large columns swamp the small ones; train with "
        "--standardize"
    )


def constant_cost(spec: ModelSpec, y: Host) -> float:
    """The mean cost of always predicting the mean target row (the class frequencies, for
    labels): the best a network does that has learnt nothing of its inputs."""
    xp, rows = get_namespace("numpy"), _rows(y)  # on the host: a few thousand rows at most
    Y, _ = prepare_targets(rows, m=len(rows), n_out=spec.sizes[-1], xp=xp, dtype=xp.float64,
                           unit=False)  # fmt: skip
    Y = to_host(Y)
    a = np.broadcast_to(np.mean(Y, axis=0), Y.shape)
    return float(np.mean(to_host(spec.cost.fn(a, Y, xp=xp))))


@dataclass
class Stall:
    """An ``on_epoch`` watch: :meth:`see` says, once, when training has stalled: for
    :data:`STALL_EPOCHS` epochs its training cost has not fallen below 99% of its best before
    them and stays at 80% or more of ``baseline``, the cost of a constant prediction
    (:func:`constant_cost`). The book's defaults on an unscaled table did this: a sigmoid
    network whose cost jumped about that level for 30 epochs."""

    baseline: float
    costs: list[float] = field(default_factory=list)
    told: bool = False

    def see(self, record: dict[str, Any]) -> str | None:
        """The advice after this epoch's ``record``, or None."""
        cost = record.get("train_cost")
        if cost is None or self.told:
            return None
        self.costs.append(cost)
        before, last = self.costs[:-STALL_EPOCHS], self.costs[-STALL_EPOCHS:]
        if not before or min(last) < 0.99 * min(before) or min(last) < 0.8 * self.baseline:
            return None
        self.told = True
        return (
            f"training has stalled: the training cost has not fallen for {STALL_EPOCHS} epochs "
            f"and stays at {min(last):.4g} or more, about the cost of one output for every "
            f"row ({self.baseline:.4g}): try --standardize, a smaller --lr, or --optimizer adam"
        )

    def then(self, say: Callable[[str], None]) -> Callable[[dict[str, Any]], None]:
        """An ``on_epoch`` callback passing each advice to ``say``."""

        def on_epoch(record: dict[str, Any]) -> None:
            if (advice := self.see(record)) is not None:
                say(advice)

        return on_epoch
