"""What a ``--data`` path holds, told by its content, and which data flags fit it.

:func:`data_format` tells "mnist", "npz" (a table), "npy" (inputs X) or "csv" apart (see
:mod:`gpumlp.data.sources` for what each is); :func:`check_flags` refuses the flags another
format takes (``--labels``, ``--label-column``, ``--drop``, ``--from-disk``, ``--task
regression`` for pictures of digits), and :func:`check_mnist_flags` those of MNIST from the
cache, before it is fetched. ValueError naming the flag and the file.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files.safeio import open_regular

__all__ = ["FORMATS", "check_flags", "check_mnist_flags", "data_format"]

FORMATS = (
    "MNIST (mnist.pkl.gz, a Keras-style mnist.npz, a folder of IDX files), a table .npz "
    "(X, y), a .csv file, or X.npy with --labels y.npy"
)


def check_mnist_flags(
    labels: str | None,
    label_column: str | int | None,
    val_split: float | None,
    drop: Sequence[str | int] | None = None,
    *,
    from_disk: bool = False,
    task: str | None = None,
) -> None:
    """Refuse the table flags for MNIST (ValueError naming the flag), before it is fetched."""
    check_flags("mnist", "MNIST", labels, label_column, drop, from_disk=from_disk, task=task)
    if val_split is not None:
        raise ValueError(
            "--val-split: MNIST already has a validation split (the last 10,000 training "
            "images); leave --val-split out"
        )


def check_flags(
    fmt: str,
    what: str,
    labels: Any,
    label_column: Any,
    drop: Any,
    *,
    from_disk: bool = False,
    task: str | None = None,
) -> None:
    """Refuse the data flags that do not fit data of format ``fmt`` (:func:`data_format`),
    ``what`` naming it in the message (ValueError)."""
    if labels is not None and fmt != "npy":
        raise ValueError(
            f"--labels is for --data X.npy (inputs as an .npy file); {what} holds its own labels"
        )
    if label_column is not None and fmt != "csv":
        raise ValueError(f"--label-column is for --data FILE.csv; {what} is not a CSV file")
    if drop and fmt != "csv":
        raise ValueError(f"--drop is for --data FILE.csv; {what} is not a CSV file")
    if labels is None and fmt == "npy":
        raise ValueError(
            f"{what} is an .npy file of inputs X: give its labels or targets with --labels y.npy"
        )
    if from_disk and fmt != "npy":
        raise ValueError(
            f"--from-disk is for --data X.npy (inputs as an .npy file, read batch by batch); "
            f"{what} is not one"
        )
    if task == "regression" and fmt == "mnist":
        raise ValueError(
            f"--task regression: {what} holds images of digits, whose labels are classes"
        )


def data_format(path: Path) -> str:
    """What ``path`` holds: "mnist", "npz" (a table), "npy" (inputs X) or "csv", told by its
    content (a zip by its member names alone). ValueError naming it when none fits."""
    if path.is_dir():
        return "mnist"
    with open_regular(path, "--data") as f:
        # no more than fstat's size: a pseudo-file of size 0 (/proc/self/mem) is empty
        size = os.fstat(f.fileno()).st_size
        try:
            head = f.read(min(size, 1 << 16))
        except OSError as exc:
            raise OSError(f"--data {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise ValueError(f"{path} is empty; --data takes {FORMATS}")
    npy = head.startswith(np.lib.format.MAGIC_PREFIX)
    if path.suffix.lower() == ".npy" and not npy:
        what = "a pickle" if head.startswith(b"\x80") else "something else"
        raise ValueError(
            f"{path} is not an .npy file (it holds {what}): --data X.npy takes the inputs saved "
            "by numpy.save"
        )
    if head.startswith(b"PK"):
        try:
            with open_regular(path, "--data") as f, zipfile.ZipFile(f) as zf:
                names = {n.removesuffix(".npy") for n in zf.namelist()}
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path}: not a valid MNIST npz or table npz ({exc})") from None
        return "mnist" if "x_train" in names else "npz"
    if npy:
        return "npy"
    if head.startswith((b"\x1f\x8b", b"\x80", b"\0\0\x08")):  # gzip, pickle, IDX: MNIST's
        return "mnist"
    try:
        head.decode("utf-8")
        text = b"\0" not in head
    except UnicodeDecodeError as exc:  # a character cut at the end of the sample is fine
        text = b"\0" not in head and exc.start >= len(head) - 3
    binary = path.suffix.lower() in (".npz", ".npy", ".gz", ".pkl", ".zip")  # named, not text
    if (text and not binary) or path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return "csv"
    raise ValueError(f"{path} is in no known format; --data takes {FORMATS}")
