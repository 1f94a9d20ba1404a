"""What a training run shows while it runs: epoch lines and a per-batch progress bar.

Used by ``Network.fit(verbose=1)`` and by ``gpumlp train``; the training core itself never
prints. The bar (tqdm) is shown only on a terminal.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .config import ModelSpec
from .memory import param_count

__all__ = ["epoch_line", "printing", "progress_bar", "summary_text"]


def epoch_line(
    record: dict[str, Any], *, scored: str = "validation", n_scored: int | None = None
) -> str:
    """One epoch as a line: ``Epoch 3: 9412 / 10000 test  (cost 0.0512, 0.61 s)`` when the scored
    set's size is known, else Keras-style ``Epoch 3: train_cost 0.0612 - val_accuracy 0.9412``."""
    acc, cost = record.get("val_accuracy"), record.get("val_cost")
    if n_scored and acc is not None:
        shown = f"cost {cost:.4f}, " if cost is not None else ""
        return (
            f"Epoch {record['epoch']}: {round(acc * n_scored)} / {n_scored} {scored}  "
            f"({shown}{record['seconds']:.2f} s)"
        )
    prefix = "test" if scored == "test" else "val"
    parts = [
        f"{k.replace('val_', prefix + '_', 1)} {v:.4f}"
        for k, v in record.items()
        if k in ("train_cost", "train_accuracy", "val_cost", "val_accuracy") and v is not None
    ]
    return f"Epoch {record['epoch']}: " + " - ".join(parts) + f" ({record['seconds']:.2f} s)"


def progress_bar(stream: TextIO | None = None) -> Callable[..., Any] | None:
    """A factory of tqdm bars over an epoch's batches, or None when ``stream`` (default stdout)
    is not a terminal."""
    stream = stream or sys.stdout
    if not stream.isatty():
        return None
    from tqdm import tqdm

    return lambda **kw: tqdm(leave=False, unit="batch", file=stream, **kw)


def printing(
    then: Callable[[dict[str, Any]], object] | None, *, scored: str, n_scored: int | None
) -> Callable[[dict[str, Any]], None]:
    """An ``on_epoch`` callback that prints each epoch's line, then calls ``then`` (if any)."""

    def on_epoch(record: dict[str, Any]) -> None:
        print(epoch_line(record, scored=scored, n_scored=n_scored), flush=True)
        if then is not None:
            then(record)

    return on_epoch


def summary_text(spec: ModelSpec, *, standardized: bool) -> str:
    """:meth:`gpumlp.Network.summary`: a row per layer, then the totals."""
    sizes = spec.sizes
    rows = [f"{'layer':<6}{'weights':<16}{'activation':<12}{'parameters':>12}"]
    for l, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        shape = f"({n_out}, {n_in})"
        rows.append(
            f"{l + 1:<6}{shape:<16}{spec.activations[l].name:<12}{n_in * n_out + n_out:>12,}"
        )
    rows.append(
        f"{param_count(sizes):,} parameters, cost {spec.cost.name}, {spec.dtype} on "
        f"{spec.backend}; inputs {'standardized' if standardized else 'as given'}"
    )
    return "\n".join(rows)
