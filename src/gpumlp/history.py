"""What a training run reports: one record per epoch, why it stopped, and how to repeat it.

:class:`History` is returned by :meth:`gpumlp.Network.fit` and saved by ``gpumlp train`` as
``history.json`` and ``history.csv``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .atomicio import atomic_write_bytes
from .metrics import TASKS, task_monitors

__all__ = ["ALL_FIELDS", "FIELDS", "History", "column_name", "fields"]


def fields(task: str = "classification") -> tuple[str, ...]:
    """The fields of every record of a run of ``task``, in CSV column order (None where a
    value was not measured): the epoch, its lr, the training cost (and accuracy, for
    classification), the scored split's cost and scores (:mod:`gpumlp.metrics`), seconds."""
    return ("epoch", "lr", *task_monitors(task), "seconds")


FIELDS = fields("classification")
"""The fields of a classification run's records (the book's)."""
ALL_FIELDS = tuple(dict.fromkeys(k for task in TASKS for k in fields(task)))
"""The fields of any run's records."""


def column_name(key: str, scored: str) -> str:
    """A record field as shown for a run scored on ``scored``: ``val_*`` become ``test_*``
    when the test set is scored, other fields stay as they are."""
    return key.replace("val_", "test_", 1) if scored == "test" else key


class History:
    """Per-epoch records of a training run.

    Parameters
    ----------
    records : iterable of dict
        ``records[i]`` has ``epoch``, ``lr``, ``seconds`` and the monitored values
        (``train_cost``, ``train_accuracy``, ``val_cost``, ``val_accuracy``; None when not
        measured). ``val_*`` are measured on the set ``scored`` names.
    stop_reason : str, optional
        Why training ended before its last epoch (None when it ran them all).
    seed : int, optional
        The seed of the run's epoch order (and, for a network it built, initial weights), so
        the run can be repeated exactly.
    scored : {"validation", "test"}
        What the ``val_*`` values were measured on: ``history.csv`` names its columns after it.
    task : {"classification", "regression"}
        The network's: its records hold the accuracies, or the regression's ``val_mse``,
        ``val_mae`` and ``val_r2`` (:func:`fields`).
    engines : list of dict, optional
        The training engines the run used, each from the epoch it started
        (``{"from_epoch", "engine", "label", "build"}``; ``build`` says how the native
        engine's library was compiled, else None): one entry, unless a resumed run continued
        with another engine (:func:`gpumlp.engines.select.select_run_step`).
    """

    def __init__(
        self,
        records: Iterable[dict[str, Any]] = (),
        stop_reason: str | None = None,
        *,
        seed: int | None = None,
        scored: str = "validation",
        task: str = "classification",
        engines: list[dict[str, Any]] | None = None,
    ) -> None:
        self.records = list(records)
        self.stop_reason = stop_reason
        self.seed = seed
        self.scored = scored
        self.task = task
        self.engines = list(engines or [])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, stop_reason={self.stop_reason!r}, seed={self.seed})"

    def finished(self) -> str:
        """The finished epochs as the epoch lines number them: "epochs 0..4", "epoch 0", or
        "the initial state (no finished epoch)"."""
        k = len(self.records)
        if k == 0:
            return "the initial state (no finished epoch)"
        return f"epochs 0..{k - 1}" if k > 1 else "epoch 0"

    def column(self, key: str) -> list[Any]:
        """The values of one field across epochs (a list of length ``len(self)``)."""
        return [r.get(key) for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"epochs": [...], "stop_reason", "seed", "scored_set", "task",
        "engines"}``."""
        return {
            "epochs": self.records,
            "stop_reason": self.stop_reason,
            "seed": self.seed,
            "scored_set": self.scored,
            "task": self.task,
            "engines": self.engines,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Inverse of :meth:`to_dict` (histories written before ``seed``, ``scored_set`` and
        ``task`` existed read as validation-scored classification, seed unknown)."""
        return cls(
            d.get("epochs", []),
            d.get("stop_reason"),
            seed=d.get("seed"),
            scored=d.get("scored_set") or "validation",
            task=d.get("task") or "classification",
            engines=[e for e in d.get("engines") or [] if isinstance(e, dict)],
        )

    def to_csv(self) -> str:
        """One line per epoch, the columns of its task (:func:`fields`); ``val_*`` columns are
        named after the scored set."""
        keys = fields(self.task)
        rows = [",".join(column_name(k, self.scored) for k in keys)]
        rows += [",".join("" if r.get(k) is None else repr(r[k]) for k in keys) for r in self]
        return "\n".join(rows) + "\n"

    def to_json(self) -> str:
        """The history as JSON text."""
        return json.dumps(self.to_dict(), indent=1)

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``history.json`` and ``history.csv`` into ``folder``, each atomically."""
        atomic_write_bytes(Path(folder) / "history.json", self.to_json().encode())
        atomic_write_bytes(Path(folder) / "history.csv", self.to_csv().encode())
