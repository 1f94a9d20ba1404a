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
- ``--out`` must be a path the system takes (no name past ``NAME_MAX``, the folder and the
  files in it within ``PATH_MAX``), and every run file in it a regular file, a symbolic link
  (replaced, never written through) or absent;
- a command refused once it made the folder (its lock taken by a live run, a failed probe
  write) removes the folders it made, which are empty;
- temp files a killed writer left behind are removed when a run starts in the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomicio import check_replaceable, remove_stale
from ..errors import CheckpointError
from ..files.checkpoint import read_checkpoint
from ..files.jsonfile import read_json
from ..files.modelfile import expected_arrays
from ..files.pathlimits import check_path_length
from ..settings import FLAGS, HYPER_KEYS, SETTINGS, defaults
from .runlock import lock_folder

__all__ = [
    "RUN_FILES",
    "TRAIN_DEFAULTS",
    "check_flags",
    "holds_run",
    "plan_folder",
    "read_args",
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
# The bytes the longest path in a run folder adds to the folder's: "/.NAME.PID.XXXXXXXX.tmp",
# a temp file of the longest name, with a pid of up to 7 digits (Linux's pid_max is 2**22).
_ROOM = len("/.") + max(map(len, (*RUN_FILES, _PROBE))) + len(".1234567.XXXXXXXX.tmp")
_FROM_CHECKPOINT = ("sizes", "activation", "output_activation", "cost", "init", "dtype")


def check_flags(flags: dict[str, Any], source: Path) -> dict[str, Any]:
    """Check flags read back from a file (``args.json``, a checkpoint) before they are used:
    each known key must hold a value of its flag's type and bounds, or null where the flag
    allows none (:meth:`gpumlp.setting.Setting.check_file`).

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
    check_path_length(value, "--resume")
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
    hyper = hyper if isinstance(hyper, dict) else {}
    # A hyperparameter the checkpoint lacks is newer than the run, which trained as its book
    # default says (stop_on: the validation accuracy), whatever a table's default is now.
    flags |= {k: hyper.get(k, SETTINGS[k].default) for k in HYPER_KEYS}
    if len(flags.get("sizes", ())) == 2:  # no hidden layer: "activation" is the output's
        flags.pop("activation", None)
    check_flags(flags, checkpoint)
    try:
        saved = read_args(checkpoint.parent)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    if saved is not None:  # else a checkpoint outside a run folder: its metadata only
        stored = checkpoint.parent / "args.json"
        flags |= check_flags({k: v for k, v in saved.items() if k in FLAGS}, stored)
    return flags, int(meta["epoch"])


def read_args(folder: Path) -> dict[str, Any] | None:
    """The flags a run folder's ``args.json`` records, as stored (None when it has none).

    Raises ValueError naming the file when it is not a regular file, not UTF-8 JSON, nested
    too deep (:func:`gpumlp.files.jsonfile.read_json`), or not an object; OSError when it
    cannot be read.
    """
    path = folder / "args.json"
    try:
        saved = read_json(path, "flags file")
    except FileNotFoundError:
        return None
    if not isinstance(saved, dict):
        raise ValueError(f"flags file {str(path)!r} does not hold a JSON object of flags")
    return saved


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


def _check_files(out: Path) -> None:
    """Refuse a folder where a run file is something gpumlp would not replace (a folder, a
    FIFO, a device, a socket: :func:`gpumlp.atomicio.check_replaceable`)."""
    for name in RUN_FILES:
        check_replaceable(out / name)


def _missing(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    return missing


def _default_folder(stem: str, made: list[Path]) -> Path:
    """Make a new ``runs/<stem>-<date>-<time>[-n]``, adding the folders made to ``made``."""
    runs = Path("runs")
    missing = _missing(runs)
    base = runs / time.strftime(f"{stem}-%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        made += [candidate, *missing]
        return candidate
    raise OSError(f"no free run folder name under {base.parent}")


def plan_folder(value: str | None, resume: Path | None, *, overwrite: bool) -> Path | None:
    """Check ``--out`` against the rules (module docstring) without touching anything.

    Returns the folder, or None for a default folder (created later by :func:`run_folder`).
    Raises ValueError naming ``--out`` and the reason.
    """
    if value is not None and not value.strip():
        raise ValueError("--out must name a folder, got an empty string")
    if value:
        check_path_length(value, "--out", room=_ROOM)
    out = Path(value) if value else (resume.parent if resume is not None else None)
    if out is None:
        return None
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    _refuse_a_run(out, resume, overwrite)
    _check_files(out)
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
    check again, under the lock, that it holds no other run and no file gpumlp would not
    replace (:func:`plan_folder`'s rules, with the same ``resume`` and ``overwrite``); prove it
    writable; clean up stale temp files. The lock is released on the way out. Refused before
    the folder is handed over, it removes the folders it made (empty: nothing was written)."""
    made: list[Path] = []  # deepest first
    try:
        try:
            if planned is None:
                out = _default_folder(stem, made)
            else:
                out, made = planned, _missing(planned)
                out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            where = str(planned or "runs")
            raise ValueError(f"--out {where!r} is not writable: {exc.strerror or exc}") from None
        with lock_folder(out):
            _refuse_a_run(out, resume, overwrite)  # a run may have finished here since planning
            _check_files(out)
            _probe(out)
            for name in (*RUN_FILES, _PROBE):
                for stale in remove_stale(out, name):
                    logger.info("removed %s, left by a writer that was killed", stale)
            made = []  # the folder is the run's from here on, whatever happens
            yield out
    except BaseException:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only ever an empty folder
        raise


def _probe(out: Path) -> None:
    """Prove ``out`` writable with a 4 KiB temp file (removed); ValueError naming --out."""
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
