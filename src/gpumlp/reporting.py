"""What a training run shows while it runs: epoch lines and a per-batch progress bar.

Used by ``Network.fit(verbose=1)`` and by ``gpumlp train``; the training core itself never
prints. The bar (tqdm) is shown only on a terminal.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from .config import MONITORS, ModelSpec
from .history import column_name
from .memory import param_count, size_text

__all__ = ["epoch_line", "fit_display", "printing", "progress_bar", "summary_text"]


def epoch_line(
    record: dict[str, Any], *, scored: str = "validation", n_scored: int | None = None
) -> str:
    """One epoch as a line: ``Epoch 3: 9412 / 10000 test  (cost 0.0512, 0.61 s)`` when the scored
    set's size is known (a regression's ``Epoch 3: validation MSE 2950.1234, MAE 43.9210, R²
    0.4821  (cost 0.5123, 0.01 s)``), else Keras-style ``Epoch 3: train_cost 0.0612 -
    val_accuracy 0.9412``."""
    acc, cost = record.get("val_accuracy"), record.get("val_cost")
    shown = f"cost {_number(cost)}, " if cost is not None else ""
    if n_scored and acc is not None:
        return (
            f"Epoch {record['epoch']}: {round(acc * n_scored)} / {n_scored} {scored}  "
            f"({shown}{record['seconds']:.2f} s)"
        )
    scores = [
        _number(v) for k in ("val_mse", "val_mae", "val_r2") if (v := record.get(k)) is not None
    ]
    if n_scored and len(scores) == 3:
        mse, mae, r2 = scores
        return (
            f"Epoch {record['epoch']}: {scored} MSE {mse}, MAE {mae}, R² {r2}  "
            f"({shown}{record['seconds']:.2f} s)"
        )
    parts = [
        f"{column_name(k, scored)} {_number(v)}"
        for k, v in record.items()
        if k in MONITORS and v is not None
    ]
    return f"Epoch {record['epoch']}: " + " - ".join(parts) + f" ({record['seconds']:.2f} s)"


def _number(v: float) -> str:
    """A cost or accuracy to 4 decimals; a huge cost (a run near divergence) in e-notation."""
    return f"{v:.4f}" if abs(v) < 1e6 else f"{v:.4g}"


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


def fit_display(
    verbose: int,
    progress: Callable[..., Any] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    *,
    scored: str,
) -> tuple[Callable[..., Any] | None, Callable[[dict[str, Any]], None] | None]:
    """``fit``'s ``(progress, on_epoch)`` for its ``verbose`` level, as Keras counts them: 0
    shows nothing; 1 a Keras-style line per epoch on stdout, named like the History's keys
    (:func:`epoch_line`), and a per-batch bar when stdout is a terminal; 2 the lines only.

    Raises ValueError naming ``verbose`` for another value.
    """
    if verbose not in (0, 1, 2):  # True and False count as 1 and 0
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if verbose == 0:
        return progress, on_epoch
    if verbose == 1 and progress is None:
        progress = progress_bar()
    return progress, printing(on_epoch, scored=scored, n_scored=None)


def summary_text(spec: ModelSpec, *, standardized: bool) -> str:
    """:meth:`gpumlp.Network.summary`: the input, a row per layer (units, weight and bias
    shapes, activation, parameters), then the totals, dtype, backend and cost."""
    table = [("layer", "units", "weights", "biases", "activation", "parameters")]
    table.append(("input", f"{spec.sizes[0]:,}", "", "", "", ""))
    for l, (n_in, n_out) in enumerate(itertools.pairwise(spec.sizes)):
        shapes = (f"({n_out}, {n_in})", f"({n_out},)", spec.activations[l].name)
        table.append((str(l + 1), f"{n_out:,}", *shapes, f"{param_count((n_in, n_out)):,}"))
    widths = [max(len(row[c]) for row in table) for c in range(6)]
    right = (False, True, False, False, False, True)
    rows = [
        "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in table
    ]
    n = param_count(spec.sizes)
    nbytes = n * np.dtype(spec.dtype).itemsize
    task = "" if spec.task == "classification" else f"; {spec.task}"
    rows.append(
        f"{n:,} parameters ({spec.dtype}, {size_text(nbytes)}) on {spec.backend}; cost "
        f"{spec.cost.name}; inputs {'standardized' if standardized else 'as given'}{task}"
    )
    return "\n".join(rows)
