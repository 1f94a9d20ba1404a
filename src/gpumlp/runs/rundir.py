"""Run folders of ``gpumlp train``: where a run writes, the flags it ran with, how it resumes.

A run folder holds ``args.json`` (the flags in effect), ``history.json``/``history.csv``,
``model.npz`` and ``checkpoint.npz``, and while a run is live a ``.lock`` naming its process.
Rules (each refused before anything is written):

- a folder that holds a run is never overwritten, unless ``--resume`` continues that run or
  ``--overwrite`` says so, checked again once the folder is locked; two live runs never share
  a folder (the lock, :mod:`gpumlp.runs.runlock`), and a lock left by a process that died is taken
  over with a message;
- default folders ``runs/<data>-<date>-<time>`` are unique, even for runs started in the same
  second (a suffix ``-2``, ``-3``, ... is added);
- temp files a killed writer left behind are removed when a run starts in the folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomicio import remove_stale
from ..errors import CheckpointError
from ..files.checkpoint import read_checkpoint
from ..files.modelfile import expected_arrays
from ..settings import FLAGS, HYPER_KEYS, SETTINGS, defaults
from .runlock import lock_folder

__all__ = [
    "RUN_FILES",
    "TRAIN_DEFAULTS",
    "check_flags",
    "holds_run",
    "plan_folder",
    "resume_path",
    "resumed_flags",
    "run_folder",
]

logger = logging.getLogger(__name__)

TRAIN_DEFAULTS: dict[str, Any] = defaults()
"""Flags of ``train`` whose values ``args.json`` records and ``--resume`` reuses, with their
defaults whatever the data (:func:`gpumlp.settings.defaults`)."""

RUN_FILES = ("args.json", "history.json", "history.csv", "model.npz", "checkpoint.npz")
_PROBE = "gpumlp-probe"  # the file that proves a folder writable
_FROM_CHECKPOINT = ("sizes", "activation", "output_activation", "cost", "init", "dtype")


def check_flags(flags: dict[str, Any], source: Path) -> dict[str, Any]:
    """Check flags read back from a file (``args.json``, a checkpoint) before they are used:
    each known key must hold a value of its flag's type and bounds, or null where the flag
    allows none (:meth:`gpumlp.settings.Setting.check_file`).

    Raises CheckpointError naming the file and the key.
    """
    for key, value in flags.items():
        if key in SETTINGS:
            what = SETTINGS[key].check_file(value)
        else:  # a key of a later version: a string, or an index
            what = None if value is None or isinstance(value, str | int) else "a string"
        if what is not None:
            raise CheckpointError(f"{str(source)!r}: {key!r} must be {what}, got {value!r}")
    return flags


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


def resumed_flags(checkpoint: Path) -> tuple[dict[str, Any], int]:
    """The flags of the run that wrote ``checkpoint`` (its folder's ``args.json``, else its
    metadata; each checked, :func:`check_flags`) and the epochs it finished. The checkpoint is
    checked whole (schema, member sizes) before anything is written."""
    meta, _ = read_checkpoint(checkpoint, lambda m: expected_arrays(m, checkpoint, training=True))
    flags = {k: meta[k] for k in _FROM_CHECKPOINT if k in meta}
    hyper = meta.get("hyper", {})
    flags |= {k: v for k, v in (hyper if isinstance(hyper, dict) else {}).items()
              if k in HYPER_KEYS}  # fmt: skip
    if len(flags.get("sizes", ())) == 2:  # no hidden layer: "activation" is the output's
        flags.pop("activation", None)
    check_flags(flags, checkpoint)
    stored = checkpoint.parent / "args.json"
    if stored.is_file():
        try:
            saved = json.loads(stored.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{str(stored)!r} is not readable JSON: {exc}") from None
        if not isinstance(saved, dict):
            raise CheckpointError(f"{str(stored)!r} does not hold a JSON object of flags")
        flags |= check_flags({k: v for k, v in saved.items() if k in FLAGS}, stored)
    return flags, int(meta["epoch"])


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run of ``gpumlp train`` (any of :data:`RUN_FILES`)."""
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


def _refuse_a_run(out: Path, resume: Path | None, overwrite: bool) -> None:
    continuing = resume is not None and out.resolve() == resume.parent.resolve()
    if holds_run(out) and not (continuing or overwrite):
        raise ValueError(
            f"--out {str(out)!r} already holds a run; continue it with --resume {out}, "
            "choose another --out, or pass --overwrite to replace it"
        )


def _default_folder(stem: str) -> Path:
    base = Path("runs") / time.strftime(f"{stem}-%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
    raise OSError(f"no free run folder name under {base.parent}")


def plan_folder(value: str | None, resume: Path | None, *, overwrite: bool) -> Path | None:
    """Check ``--out`` against the rules (module docstring) without touching anything.

    Returns the folder, or None for a default folder (created later by :func:`run_folder`).
    Raises ValueError naming ``--out`` and the reason.
    """
    if value is not None and not value.strip():
        raise ValueError("--out must name a folder, got an empty string")
    out = Path(value) if value else (resume.parent if resume is not None else None)
    if out is None:
        return None
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    _refuse_a_run(out, resume, overwrite)
    return out


@contextlib.contextmanager
def run_folder(
    planned: Path | None,
    *,
    stem: str = "mnist",
    resume: Path | None = None,
    overwrite: bool = False,
) -> Iterator[Path]:
    """Create the run folder (``planned``, else a unique default) and lock it for this process;
    check again, under the lock, that it holds no other run (:func:`plan_folder`'s rule, with
    the same ``resume`` and ``overwrite``); prove it writable; clean up stale temp files. The
    lock is released on the way out."""
    try:
        out = _default_folder(stem) if planned is None else planned
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = str(planned or "runs")
        raise ValueError(f"--out {where!r} is not writable: {exc.strerror or exc}") from None
    with lock_folder(out):
        _refuse_a_run(out, resume, overwrite)  # a run may have finished here since planning
        try:
            prefix = f".{_PROBE}.{os.getpid()}."  # named as remove_stale expects
            fd, probe = tempfile.mkstemp(dir=out, prefix=prefix, suffix=".tmp")
            try:
                os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise ValueError(f"--out {str(out)!r} is not writable: {exc.strerror or exc}") from None
        for name in (*RUN_FILES, _PROBE):
            for stale in remove_stale(out, name):
                logger.info("removed %s, left by a writer that was killed", stale)
        yield out
