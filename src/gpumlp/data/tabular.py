"""Readers of your own tables: ``.npz`` (X, y) and ``.npy`` pairs (X.npy, y.npy); the rules
every table's labels follow (CSV files are read by :mod:`gpumlp.data.csvread`).

Each returns a :class:`Table` of host arrays: ``X`` (n, d), numeric and finite, and ``y``,
either class labels (n,) int64, integers (integral floats accepted), or targets (n, k) float,
one column per output (one unit's targets in [0, 1]: shape (n, 1)); 1-D values of a regression
(fractions, or ``task`` "regression": :mod:`gpumlp.data.task`) become targets (n, 1). Sizes a
file declares are checked before anything large is read (npy headers against the memory free);
messages name the file, array, row and column.
``X.npy`` is never memory-mapped: it is read through its open descriptor
(:mod:`gpumlp.files.npyview`), into memory whole when it fits comfortably, else (or asked to)
batch by batch as training goes, so a file cut short while it is read is an error, not SIGBUS.
Labels are classes by value (the sorted distinct training labels: 1, 2, 3 are three classes)
or class names; :func:`label_classes` turns every split's labels into indices of the classes.
"""

from __future__ import annotations

import contextlib
import csv
import math
import typing
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from .._checks import first_nonfinite
from ..files.modeldata import class_indices, class_value, not_class_labels, shown
from ..files.npyview import load_rows
from ..files.safeio import (
    open_regular,
    read_npy,
    read_npy_header,
    read_npy_member,
    require_memory,
)
from .task import as_targets, label_task, targets_task

__all__ = [
    "LEARN",
    "Table",
    "label_classes",
    "not_class_labels",
    "read_npy_pair",
    "read_table_npz",
    "reading",
]

Host = np.ndarray[Any, Any]
Split = tuple[Host, Host]

LEARN = "learn"
"""``classes`` of :func:`label_classes`: the training split's labels are the classes."""


@dataclass
class Table:
    """The splits of a table file (host arrays); ``classes`` names labels 0..k-1 when the file
    gave class names (CSV), else None; a CSV's header names the ``features`` (the input
    columns) and the ``label`` column; ``notes`` say what the reader left out; ``task`` says
    what its labels are (:mod:`gpumlp.data.task`)."""

    train: Split
    validation: Split | None = None
    test: Split | None = None
    classes: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    label: str | None = None
    notes: tuple[str, ...] = ()
    task: str = "classification"


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


def _check_pair(X: Host, y: Host, names: tuple[str, str], task: str | None) -> tuple[Split, str]:
    """One split checked: X (n, d) numeric and finite; y labels (n,) -> int64, or targets
    (n, k) float (1-D values too, when the task, ``task`` or told by them, is regression);
    and the task."""
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
        return (X, y.astype(np.float64) if y.dtype.kind != "f" else y), targets_task(y, task)
    if label_task(y, task, yn) == "regression":
        return (X, as_targets(y)), "regression"
    if (bad_label := not_class_labels(y)).any():
        i = int(np.argmax(bad_label))
        raise ValueError(
            f"{yn} holds {y[i].item()!r} at index {i}, which is not a class label: 1-D {yn} holds "
            f"class labels, integers (targets are {yn} of shape (n, k))"
        )
    return (X, y.astype(np.int64)), "classification"


def _agree(path: Path, splits: dict[str, Split]) -> None:
    """Every split has the training split's width and kind of y."""
    X, y = splits["train"]
    for name, (X_s, y_s) in splits.items():
        if X_s.shape[1] != X.shape[1] or y_s.shape[1:] != y.shape[1:]:
            raise ValueError(
                f"{path}: the {name} split has X {X_s.shape} and y {y_s.shape}, but the "
                f"training split has X {X.shape} and y {y.shape}: their widths must agree"
            )


def label_classes(
    source: str, splits: dict[str, Split | None], names: tuple[str, ...] | None, classes: Any
) -> tuple[dict[str, Split | None], tuple[Any, ...] | None]:
    """The ``splits`` (``"training"`` first) with their labels (n,) as indices of the classes,
    and the classes; targets (n, k) pass as they are, with classes None.

    ``names`` are the file's class names of codes 0.. (a CSV's), None when the labels are
    numbers (values, not yet indices). ``classes``:

    - :data:`LEARN`: the training split's distinct labels, sorted, are the classes (numbers by
      value: 1, 2, 3 are three classes, never an empty class 0); a label of another split
      that training lacks is refused;
    - a tuple: a trained model's classes; a label that is not one of them is refused;
    - None (a model without classes: its outputs' indices): numbers are class indices as they
      are; names are refused.

    ValueError naming ``source``, the split, the label and the classes.
    """
    y = splits["training"][1] if splits["training"] is not None else None
    if y is None or y.ndim != 1:
        return splits, None
    if classes is None:
        if names is None:
            return splits, None
        raise ValueError(
            f"{source} holds class names ({shown(names)}), but the model has none: its classes "
            "are its outputs' indices 0..k-1 (a model trained on MNIST, or written before gpumlp "
            "kept class names)"
        )
    ys = [s[1] for s in splits.values() if s is not None]
    values: Any = names if names is not None else np.unique(np.concatenate(ys))
    codes = {k: s if names is not None or s is None else (s[0], np.searchsorted(values, s[1]))
             for k, s in splits.items()}  # fmt: skip
    values = [class_value(v) for v in values]
    if learning := classes == LEARN:
        present = np.unique(typing.cast(Split, codes["training"])[1])
        classes, to = tuple(values[i] for i in present), np.full(len(values), -1)
        to[present] = np.arange(len(present))
        why = "which no training row has; the classes are those of the training split: "
    else:
        to = class_indices(values, classes)
        why = "which is not a class of the model: its classes are "
    out: dict[str, Split | None] = {}
    for name, split in codes.items():
        if split is None:
            out[name] = None
            continue
        mapped = to[split[1]]
        if (bad := mapped < 0).any():
            i = int(np.argmax(bad))
            # a file of examples to score: its rows are the training split's, which is no split
            where = f": the {name} split" if name != "training" or learning else ""
            raise ValueError(
                f"{source}{where} holds label {values[split[1][i]]!r} (at its index {i}), "
                f"{why}{shown(classes)}"
            )
        out[name] = (split[0], mapped.astype(np.int64))
    return out, tuple(classes)


def read_table_npz(path: Path, task: str | None = None) -> Table:
    """A table ``.npz``: ``X`` (n, d) and ``y``, optionally ``X_val``/``y_val`` and
    ``X_test``/``y_test``. Only those six arrays are ever inflated, each after its member's
    declared size and its header were checked against the memory free. ``task`` (None:
    told by ``y``) holds for every split."""
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
                splits[split], task = _check_pair(X, y, names, task)  # y's task for them all
    _agree(path, splits)
    return Table(splits["train"], splits.get("validation"), splits.get("test"), task=str(task))


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


def read_npy_pair(x_path: Path, y_path: Path, task: str | None = None, *,
                  from_disk: bool = False, dtype: str | None = None,
                  standardize: bool = False) -> Table:  # fmt: skip
    """``X.npy`` (n, d) and ``y.npy`` (n,) labels or (n, k) targets: y read into memory (its
    header checked against the memory free first), X as :func:`~gpumlp.files.npyview.load_rows`
    reads it: whole when it fits in half the memory free beside the copy training makes of it
    (in ``dtype``, the network's, when X's differs or with ``standardize``; None: no copy),
    else, or with ``from_disk``, batch by batch from its file. ``task`` as for
    :func:`read_table_npz`."""
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
    split, task = _check_pair(cast(Host, X), y, (str(x_path), str(y_path)), task)
    return Table(split, task=task)
