"""Readers of your own tables: ``.npz`` (X, y) and ``.npy`` pairs (X.npy, y.npy); the rules
every table's labels follow (CSV files are read by :mod:`gpumlp.data.csvread`).

Each returns a :class:`Table` of host arrays: ``X`` (n, d), numeric and finite, and ``y``,
either class labels (n,) int64, integers >= 0 (integral floats accepted, fractions and negatives
refused), or targets (n, k) float, one column per output (one unit's targets in [0, 1]: shape
(n, 1)). Sizes a file declares are checked before anything large is read (npy headers against
the memory free); messages name the file, array, row and column.
``X.npy`` is never memory-mapped: it is read through its open descriptor
(:mod:`gpumlp.files.npyview`), into memory whole when it fits comfortably, else (or asked to)
batch by batch as training goes, so a file cut short while it is read is an error, not SIGBUS.
Labels are class indices 0..k-1, k one more than the largest training label, or class names;
:func:`check_classes` holds a table to what its training split defines.
"""

from __future__ import annotations

import contextlib
import csv
import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from .._checks import first_nonfinite
from ..files.npyview import load_rows
from ..files.safeio import (
    open_regular,
    read_npy,
    read_npy_header,
    read_npy_member,
    require_memory,
)

__all__ = [
    "Table",
    "check_classes",
    "not_class_labels",
    "read_npy_pair",
    "read_table_npz",
    "reading",
]

Host = np.ndarray[Any, Any]
Split = tuple[Host, Host]

MAX_LABEL = 2**31
"""Labels from here on are not classes (ids, say); 2**63 and past would wrap in the int64 cast."""


@dataclass
class Table:
    """The splits of a table file (host arrays); ``classes`` names labels 0..k-1 when the file
    gave class names (CSV), else None."""

    train: Split
    validation: Split | None = None
    test: Split | None = None
    classes: tuple[str, ...] | None = None


@contextlib.contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Word what a corrupt file makes the readers raise as a ValueError naming ``path``."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError,
            SyntaxError, OverflowError, UnicodeDecodeError, csv.Error) as exc:  # fmt: skip
        raise ValueError(f"{path}: not a valid {what} ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from None


def not_class_labels(values: Host) -> Host:
    """Where the labels ``values`` (a numeric host array) are no class index: not finite,
    negative, fractions, or :data:`MAX_LABEL` and past (bool, the shape of ``values``)."""
    bad: Host = (values < 0) | (values >= MAX_LABEL)
    if values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad |= ~np.isfinite(values) | (values % 1 != 0)
    return bad


def _check_pair(X: Host, y: Host, names: tuple[str, str]) -> Split:
    """One split checked: X (n, d) numeric and finite; y labels (n,) -> int64, or targets."""
    xn, yn = names
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{xn} must be 2-D (n, d) with n, d >= 1, got shape {X.shape}")
    if y.ndim not in (1, 2) or len(y) != len(X):
        raise ValueError(
            f"{yn} must be labels ({len(X)},) or targets ({len(X)}, k) for the {len(X)} rows of "
            f"{xn}, got shape {y.shape}"
        )
    for name, a in ((xn, X), (yn, y)):
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
        if (bad := first_nonfinite(a)) is not None:
            raise ValueError(
                f"{name} holds {a[bad].item()!r} at index {bad}: values must be finite"
            )
    if y.ndim == 2:
        return X, y.astype(np.float64) if y.dtype.kind != "f" else y
    if (bad_label := not_class_labels(y)).any():
        i = int(np.argmax(bad_label))
        raise ValueError(
            f"{yn} holds {y[i].item()!r} at index {i}, which is not a class label: 1-D {yn} holds "
            f"class labels 0..k-1 (targets are {yn} of shape (n, k))"
        )
    return X, y.astype(np.int64)


def _agree(path: Path, splits: dict[str, Split]) -> None:
    """Every split has the training split's width and kind of y."""
    X, y = splits["train"]
    for name, (X_s, y_s) in splits.items():
        if X_s.shape[1] != X.shape[1] or y_s.shape[1:] != y.shape[1:]:
            raise ValueError(
                f"{path}: the {name} split has X {X_s.shape} and y {y_s.shape}, but the "
                f"training split has X {X.shape} and y {y.shape}: their widths must agree"
            )


def check_classes(
    source: str, splits: dict[str, Split | None], classes: tuple[str, ...] | None = None
) -> None:
    """Hold the labels (n,) of ``splits`` to the classes of its ``"training"`` split.

    Numeric labels are class indices 0..k-1, k one more than the largest training label:
    refused when more than half of those k classes have no training row (a label 1000000
    would make a million outputs). Labels of the other splits must be classes of the
    training split: indices below k, or, with ``classes`` (the names of codes 0..), names a
    training row has. ValueError naming ``source``, the split, the label and the classes.
    Targets (n, k) pass as they are.
    """
    y = splits["training"][1] if splits["training"] is not None else None
    if y is None or y.ndim != 1:
        return
    present = np.unique(y)
    k = int(present[-1]) + 1
    if classes is None and 2 * len(present) < k:
        raise ValueError(
            f"{source}: the largest training label is {present[-1]}, which makes k = {k:,} "
            f"classes, but only {len(present):,} of them occur in the training rows: labels "
            "are class indices 0..k-1 (or class names)"
        )
    for name, split in splits.items():
        if name == "training" or split is None or split[1].ndim != 1:
            continue
        labels = split[1]
        bad = labels >= k if classes is None else ~np.isin(labels, present)
        if bad.any():
            i = int(np.argmax(bad))
            label = labels[i].item() if classes is None else classes[labels[i]]
            known = (
                f"0..{k - 1}"
                if classes is None
                else ", ".join(repr(classes[c]) for c in present[:20])
                + (", ..." if len(present) > 20 else "")
            )
            raise ValueError(
                f"{source}: the {name} split holds label {label!r} (at its index {i}), which "
                f"no training row has; the classes are those of the training split: {known}"
            )


def read_table_npz(path: Path) -> Table:
    """A table ``.npz``: ``X`` (n, d) and ``y``, optionally ``X_val``/``y_val`` and
    ``X_test``/``y_test``. Only those six arrays are ever inflated, each after its member's
    declared size and its header were checked against the memory free."""
    with reading(path, "npz file"), open_regular(path, "npz file") as f, zipfile.ZipFile(f) as zf:
        members = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
        if "X" not in members:
            raise ValueError(
                f"{path} holds no array 'X' (it holds {', '.join(sorted(members)) or 'none'}); a "
                "table .npz holds X and y, optionally X_val, y_val, X_test, y_test"
            )
        splits = {}
        for suffix, split in (("", "train"), ("_val", "validation"), ("_test", "test")):
            names = (f"X{suffix}", f"y{suffix}")
            have = [n for n in names if n in members]
            if len(have) == 1:
                missing = (set(names) - set(have)).pop()
                raise ValueError(f"{path} holds {have[0]} but no {missing}")
            if have:
                X, y = (read_npy_member(zf, members[n]) for n in names)
                splits[split] = _check_pair(X, y, names)
    _agree(path, splits)
    return Table(splits["train"], splits.get("validation"), splits.get("test"))


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Shape, dtype and data offset of the ``.npy`` file ``path``, its size checked."""
    with reading(path, ".npy file"), open_regular(path, ".npy file") as f:
        shape, _, dtype = read_npy_header(f)
        offset = f.tell()
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(f"{path}: dtype {dtype} is not numeric (objects are never loaded)")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes > path.stat().st_size:
        raise ValueError(
            f"{path} is truncated: its header declares {dtype} {shape} ({nbytes:,} bytes), "
            f"but it holds {path.stat().st_size - offset:,}"
        )
    return shape, dtype, nbytes


def read_npy_pair(x_path: Path, y_path: Path, *, from_disk: bool = False,
                  dtype: str | None = None, standardize: bool = False) -> Table:  # fmt: skip
    """``X.npy`` (n, d) and ``y.npy`` (n,) labels or (n, k) targets: y read into memory (its
    header checked against the memory free first), X as :func:`~gpumlp.files.npyview.load_rows`
    reads it: whole when it fits in half the memory free beside the copy training makes of it
    (in ``dtype``, the network's, when X's differs or with ``standardize``; None: no copy),
    else, or with ``from_disk``, batch by batch from its file."""
    shape, x_dtype, _ = _npy_header(x_path)
    if len(shape) != 2 or 0 in shape:
        raise ValueError(f"{x_path} must hold X of shape (n, d) with n, d >= 1, got {shape}")
    y_shape, _, y_bytes = _npy_header(y_path)
    require_memory(3 * y_bytes, f"{y_path} ({y_shape})")  # y, its check and int64 copy
    beside = 0
    if dtype is not None and (standardize or x_dtype != np.dtype(dtype)):
        beside = math.prod(shape) * np.dtype(dtype).itemsize
    with reading(x_path, ".npy file"):  # never mapped: a file cut short is an error, not SIGBUS
        X = load_rows(x_path, from_disk=from_disk, beside=beside)
    with reading(y_path, ".npy file"), open_regular(y_path, ".npy file") as f:
        y = read_npy(f, "y", check=lambda s, d: None)  # the header was checked above
    # NpyRows stands for an array in the Table: its readers index it as one
    return Table(_check_pair(cast(Host, X), y, (str(x_path), str(y_path))))
