"""Run folders of ``gpumlp train``: where a run writes, the flags it ran with, how it resumes.

A run folder holds ``args.json`` (the flags in effect), ``history.json``/``history.csv``,
``model.npz`` and ``checkpoint.npz``. ``--resume DIR`` reads the flags back from ``args.json``
(or, for a checkpoint written through the Python API, from the checkpoint's metadata).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["TRAIN_DEFAULTS", "make_run_dir", "out_dir", "resume_path", "resumed_flags"]

TRAIN_DEFAULTS: dict[str, Any] = {
    "sizes": [784, 30, 10], "activation": "sigmoid", "output_activation": None,
    "cost": "quadratic", "init": "normal", "dtype": "float32", "backend": "auto", "lr": 3.0,
    "batch_size": 10, "epochs": 30, "seed": None, "optimizer": "sgd", "momentum": 0.9,
    "l2": 0.0, "l1": 0.0, "dropout": 0.0, "schedule": "constant", "patience": None,
    "engine": "auto", "monitor_set": "test", "data": None, "limit": None,
    "checkpoint_every": None,
}  # fmt: skip
"""Flags of ``train`` whose values ``args.json`` records and ``--resume`` reuses."""
_FROM_CHECKPOINT = ("sizes", "activation", "output_activation", "cost", "init", "dtype")
_HYPER = ("lr", "batch_size", "optimizer", "momentum", "l2", "l1", "dropout", "schedule")


def resume_path(value: str | None) -> Path | None:
    """The checkpoint named by ``--resume``: a file, or ``checkpoint.npz`` in a run folder.

    Raises FileNotFoundError when there is none; returns None for None.
    """
    if value is None:
        return None
    path = Path(value)
    path = path / "checkpoint.npz" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"--resume {value!r}: no checkpoint at {str(path)!r}")
    return path


def resumed_flags(checkpoint: Path) -> dict[str, Any]:
    """The flags of the run that wrote ``checkpoint``: its folder's args.json, else its metadata."""
    from .checkpoint import read_checkpoint

    meta, _ = read_checkpoint(checkpoint)
    flags = {k: meta[k] for k in _FROM_CHECKPOINT if k in meta}
    flags |= {k: v for k, v in meta.get("hyper", {}).items() if k in _HYPER}
    if len(flags.get("sizes", ())) == 2:  # no hidden layer: "activation" is the output's
        flags.pop("activation", None)
    stored = checkpoint.parent / "args.json"
    if stored.is_file():
        try:
            saved = json.loads(stored.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{str(stored)!r} is not readable JSON: {exc}") from None
        if not isinstance(saved, dict):
            raise ValueError(f"{str(stored)!r} does not hold a JSON object of flags")
        flags |= {k: v for k, v in saved.items() if k in TRAIN_DEFAULTS}
    return flags


def out_dir(value: str | None, resume: Path | None) -> Path:
    """The run folder: ``--out``, else the resumed run's folder, else ``runs/mnist-<time>``.

    Raises ValueError when that path exists and is not a directory.
    """
    if value:
        out = Path(value)
    elif resume is not None:  # continue writing where the interrupted run wrote
        out = resume.parent
    else:
        out = Path("runs") / time.strftime("mnist-%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    return out


def make_run_dir(out: Path) -> None:
    """Create ``out`` and prove it writable, so that training never starts only to fail later."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".gpumlp-probe.")
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"--out {str(out)!r} is not writable: {exc.strerror or exc}") from None
