"""What a training run reports: its per-epoch history, and the two ways it can stop short.

:class:`History` is returned by :meth:`gpumlp.Network.fit` and saved as ``history.json``.
:class:`DivergedError` (the cost became NaN or inf) and :class:`OutOfMemory` (a batch does not
fit) carry enough to act on: the epoch, the sizes, the largest batch that would fit.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import backend

if TYPE_CHECKING:
    from .model import Network

__all__ = ["DivergedError", "History", "OutOfMemory", "TrainingInterrupted", "out_of_memory"]


class DivergedError(RuntimeError):
    """The training cost became NaN or inf; the network holds the last finite weights.

    Attributes: ``epoch`` (0-based, the epoch that diverged) and ``history``.
    """

    def __init__(self, epoch: int, lr: float, history: History) -> None:
        super().__init__(
            f"training diverged in epoch {epoch}: the cost became NaN or inf at lr={lr:g}; "
            f"the weights of the last finite epoch were kept; try a smaller lr"
        )
        self.epoch = epoch
        self.history = history


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: the network holds the last finished epoch (checkpointed, if asked).

    A ``KeyboardInterrupt``, so code that catches that still does; ``history`` holds the
    finished epochs.
    """

    def __init__(self, history: History) -> None:
        super().__init__(f"interrupted after {len(history)} finished epochs")
        self.history = history


class OutOfMemory(MemoryError):
    """Training ran out of memory (GPU or host); the message says what failed and what fits.

    Attributes: ``batch_size`` (the one that failed) and ``largest_batch``, the estimated largest
    batch that fits (None when the free memory is unknown). Made by :func:`out_of_memory`.
    """

    def __init__(self, message: str, *, batch_size: int, largest_batch: int | None) -> None:
        super().__init__(message)
        self.batch_size = batch_size
        self.largest_batch = largest_batch


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def out_of_memory(
    net: Network, exc: BaseException, *, batch_size: int, n: int, dropout: float
) -> OutOfMemory:
    """Explain an allocation failure ``exc`` while training ``net`` on ``n`` examples.

    Per example, a batch keeps ``z``, ``a`` and ``delta`` of every layer past the input until
    the backward pass is done (BP1-BP4), plus a dropout mask per hidden layer: that times the
    itemsize is what the batch needs on top of the parameters, gradients and data. The largest
    batch that fits is 80% of the memory free once the failed batch is released (a margin for
    the allocator and temporaries) divided by that.
    """
    traceback.clear_frames(exc.__traceback__)  # release the failed batch's arrays first
    dtype = net._dtype_name
    itemsize = 8 if dtype == "float64" else 4
    per_example = itemsize * (3 * sum(net.sizes[1:]) + (sum(net.sizes[1:-1]) if dropout else 0))
    data = n * (itemsize * (net.sizes[0] + net.sizes[-1]) + 8)
    free = backend.free_memory(net.xp)
    where = "GPU" if backend.is_cupy(net.xp) else "host"
    text = (
        f"out of {where} memory training sizes={net.sizes} ({dtype}) with batch_size="
        f"{batch_size}: a batch needs about {_size(per_example * batch_size)} of activations "
        f"and deltas ({per_example} bytes per example)"
    )
    largest = None if free is None else int(0.8 * free) // per_example
    if largest is None:
        text += "; try a smaller batch_size"
    elif largest < 1:
        text += f", {_size(free)} is free: not even one example fits; use fewer units or less data"
    elif largest < batch_size:
        text += f", {_size(free)} is free: the largest batch that fits is about {largest}; "
        text += f"try batch_size={largest} or less"
    else:
        text += (
            f", {_size(free)} is free, enough for it: the data set ({_size(data)}) "
            f"or the parameters may be what does not fit"
        )
    return OutOfMemory(
        f"{text} ({type(exc).__name__})", batch_size=batch_size, largest_batch=largest
    )


class History:
    """Per-epoch records of a training run.

    ``records[i]`` is a dict with ``epoch``, ``lr``, ``seconds`` and the monitored values
    (``train_cost``, ``train_accuracy``, ``val_cost``, ``val_accuracy``; None when not measured).
    ``stop_reason`` says why training ended early (None when it ran all epochs).
    """

    def __init__(
        self, records: Iterable[dict[str, Any]] = (), stop_reason: str | None = None
    ) -> None:
        self.records = list(records)
        self.stop_reason = stop_reason

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def __iter__(self):
        return iter(self.records)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, stop_reason={self.stop_reason!r})"

    def column(self, key: str) -> list[Any]:
        """The values of one field across epochs."""
        return [r.get(key) for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"epochs": [...], "stop_reason": ...}``."""
        return {"epochs": self.records, "stop_reason": self.stop_reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls(d.get("epochs", []), d.get("stop_reason"))

    def to_csv(self) -> str:
        """One line per epoch with the standard fields; unmeasured values are empty."""
        keys = [
            "epoch",
            "lr",
            "train_cost",
            "train_accuracy",
            "val_cost",
            "val_accuracy",
            "seconds",
        ]
        rows = [",".join(keys)]
        rows += [",".join("" if r.get(k) is None else repr(r[k]) for k in keys) for r in self]
        return "\n".join(rows) + "\n"

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``history.json`` and ``history.csv`` into ``folder``, each atomically."""
        from .checkpoint import atomic_write_bytes

        atomic_write_bytes(Path(folder) / "history.json", self.to_json().encode())
        atomic_write_bytes(Path(folder) / "history.csv", self.to_csv().encode())

    def to_json(self) -> str:
        """The history as JSON text."""
        return json.dumps(self.to_dict(), indent=1)
