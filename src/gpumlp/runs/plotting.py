"""Learning curves of a run folder as PNG files.

:func:`plot_run` reads ``history.json`` (written by ``gpumlp train``: ``{"epochs": [{"epoch",
"lr", "train_cost", "train_accuracy", "val_cost", "val_accuracy", "seconds"}, ...],
"stop_reason": ..., "scored_set": "validation" or "test"}``, None where a value was not
measured; a regression's records hold ``val_mse``, ``val_mae`` and ``val_r2`` instead of the
accuracies) and draws training curves against those of the set scored after each epoch, the
book's figures of chapter 3, and a regression's scores. The legend names that set as
``scored_set`` does (histories written before it existed read as "validation"). Matplotlib
is imported only here, only when called, and only through its object-oriented API on the Agg
canvas: no pyplot state, no display.
"""

from __future__ import annotations

import io
import math
import numbers
from pathlib import Path
from typing import Any

from ..atomicio import atomic_write_bytes
from ..files.jsonfile import read_json

__all__ = ["plot_run", "write_png"]

_SERIES = {
    "cost": (("train_cost", "training"), ("val_cost", "validation")),
    "accuracy": (("train_accuracy", "training"), ("val_accuracy", "validation")),
    "mse": (("val_mse", "validation"),),
    "mae": (("val_mae", "validation"),),
    "r2": (("val_r2", "validation"),),
}
_AXES = {"accuracy": "accuracy (%)", "cost": "cost", "mse": "mean squared error",
         "mae": "mean absolute error", "r2": "R²"}  # fmt: skip


def _read_history(path: Path) -> dict[str, Any]:
    try:
        history: dict[str, Any] = read_json(path, "history")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{str(path)!r} does not exist (a run folder has history.json)"
        ) from None
    epochs = history.get("epochs") if isinstance(history, dict) else None
    if not isinstance(epochs, list) or not all(isinstance(r, dict) for r in epochs):
        raise ValueError(f"{str(path)!r} is not a gpumlp history: expected {{'epochs': [...]}}")
    for i, record in enumerate(epochs):
        for key in ("epoch", *(k for pairs in _SERIES.values() for k, _ in pairs)):
            value = record.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real)
            ):
                raise ValueError(f"{str(path)!r}: epochs[{i}].{key} is {value!r}, not a number")
    return history


def _figure_png(history: dict[str, Any], what: str, title: str) -> bytes | None:
    """One figure of ``what`` (a key of ``_SERIES``) as PNG bytes, or None with nothing to
    draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = history["epochs"]
    scored = history.get("scored_set")
    scored = scored if scored in ("test", "validation") else "validation"
    x = [i if r.get("epoch") is None else r["epoch"] for i, r in enumerate(records)]
    series = []
    for key, label in _SERIES[what]:
        values = [r.get(key) for r in records]
        if all(v is None for v in values):
            continue
        scale = 100.0 if what == "accuracy" else 1.0
        label = scored if label == "validation" else label
        series.append((label, [math.nan if v is None else v * scale for v in values]))
    if not series:
        return None
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    marker = "o" if len(x) <= 30 else None
    for label, values in series:
        ax.plot(x, values, marker=marker, markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(_AXES[what])
    ax.set_title(f"{title}: {what}")
    if len(x) <= 20:
        ax.set_xticks(x)
    ax.grid(alpha=0.3)
    ax.legend()
    if history.get("stop_reason"):
        fig.supxlabel(f"stopped: {history['stop_reason']}", fontsize=7, alpha=0.7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_png(path: Path, png: bytes) -> None:
    """Write the figure ``png`` to ``path`` atomically; a folder that cannot take it is a
    ValueError naming the file, its folder and why ("Permission denied"), not a temp file's
    errno."""
    try:
        atomic_write_bytes(path, png)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ValueError(f"cannot write {path.name} into {str(path.parent)!r}: {why}") from None


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Draw ``cost.png`` and ``accuracy.png`` (a regression's ``mse.png``, ``mae.png`` and
    ``r2.png``) from ``run_dir/history.json``.

    Parameters
    ----------
    run_dir : path of a run folder written by ``gpumlp train``
    out : folder for the PNGs (created if needed); default ``run_dir``

    Returns
    -------
    list of Path, the files written: ``cost.png`` when any cost was measured,
    ``accuracy.png`` when any accuracy was, and ``mse.png``, ``mae.png``, ``r2.png`` when
    those scores were; series never measured are left out of the figures.
    Each file is written atomically.

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` or its ``history.json`` does not exist (the message names it).
    ValueError
        When ``history.json`` is not valid JSON or not a history, or holds nothing to plot.
    ImportError
        When matplotlib is not installed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist or is not a folder")
    path = run_dir / "history.json"
    history = _read_history(path)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'gpumlp[plot]'") from None
    folder = run_dir if out is None else Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for what in _SERIES:
        png = _figure_png(history, what, run_dir.resolve().name)
        if png is not None:
            target = folder / f"{what}.png"
            write_png(target, png)
            written.append(target)
    if not written:
        raise ValueError(f"{str(path)!r} has no measured cost or score to plot")
    return written
