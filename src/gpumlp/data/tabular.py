"""Readers of your own tables: ``.npz`` (X, y), ``.npy`` pairs (X.npy, y.npy) and ``.csv``.

Each returns a :class:`Table` of host arrays: ``X`` (n, d), numeric and finite, and ``y``,
either class labels (n,) int64, integers >= 0 (integral floats accepted, fractions and negatives
refused), or targets (n, k) float, one column per output (one unit's targets in [0, 1]: shape
(n, 1)). Sizes a file declares are checked before anything large is read (npy headers against
the memory free, a CSV's lines counted first); messages name the file, array, row and column.
``X.npy`` is never memory-mapped: it is read through its open descriptor
(:mod:`gpumlp.files.npyview`), into memory whole when it fits comfortably, else (or asked to)
batch by batch as training goes, so a file cut short while it is read is an error, not SIGBUS.
"""

from __future__ import annotations

import array
import contextlib
import csv
import io
import itertools
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

__all__ = ["Table", "read_csv", "read_npy_pair", "read_table_npz"]

Host = np.ndarray[Any, Any]
Split = tuple[Host, Host]


@dataclass
class Table:
    """The splits of a table file (host arrays); ``classes`` names labels 0..k-1 when the file
    gave class names (CSV), else None."""

    train: Split
    validation: Split | None = None
    test: Split | None = None
    classes: tuple[str, ...] | None = None


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
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
    # 2**31 and past: an id, not a class, and would wrap in the int64 cast once past 2**63
    bad_label = (y < 0) | (y >= 2**31) | ((y != np.round(y)) if y.dtype.kind == "f" else False)
    if bad_label.any():
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


def read_table_npz(path: Path) -> Table:
    """A table ``.npz``: ``X`` (n, d) and ``y``, optionally ``X_val``/``y_val`` and
    ``X_test``/``y_test``. Only those six arrays are ever inflated, each after its member's
    declared size and its header were checked against the memory free."""
    with _reading(path, "npz file"), open_regular(path, "npz file") as f, zipfile.ZipFile(f) as zf:
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
    with _reading(path, ".npy file"), open_regular(path, ".npy file") as f:
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
    with _reading(x_path, ".npy file"):  # never mapped: a file cut short is an error, not SIGBUS
        X = load_rows(x_path, from_disk=from_disk, beside=beside)
    with _reading(y_path, ".npy file"), open_regular(y_path, ".npy file") as f:
        y = read_npy(f, "y", check=lambda s, d: None)  # the header was checked above
    # NpyRows stands for an array in the Table: its readers index it as one
    return Table(_check_pair(cast(Host, X), y, (str(x_path), str(y_path))))


# --- CSV -------------------------------------------------------------------------------------


def _scan(path: Path) -> tuple[str, int]:
    """The delimiter (``,``; a tab or ``;`` when the first line has no comma but one of them)
    and an upper bound on the rows (lines), counted before anything is parsed."""
    lines, first = 1, b""
    with open_regular(path, "CSV file") as f:
        while chunk := f.read(1 << 20):
            if b"\0" in chunk:
                raise ValueError(f"{path} holds NUL bytes: it is not a text (CSV) file")
            lines += chunk.count(b"\n")
            first = first or chunk.lstrip(b"\r\n").split(b"\n", 1)[0]
    if not first.strip():
        raise ValueError(f"{path} is empty")
    for sep in ("\t", ";"):
        if b"," not in first and sep.encode() in first:
            return sep, lines
    return ",", lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_index(spec: str | int | None, names: list[str] | None, width: int, path: Path) -> int:
    """The label column: by name (a header's), else a 0-based index (negative from the end);
    the last column by default."""
    if spec is None:
        return width - 1
    text = str(spec).strip()
    if names is not None and text in names:
        if names.count(text) > 1:
            raise ValueError(f"--label-column {text!r}: {path} has more than one column so named")
        return names.index(text)
    try:
        i = int(text)
    except ValueError:
        if names is None:
            raise ValueError(
                f"--label-column {text!r}: {path} has no header row, so give the column's index "
                f"(0..{width - 1}, or -1 for the last)"
            ) from None
        raise ValueError(
            f"--label-column {text!r}: {path} has no column of that name; its columns are "
            f"{', '.join(map(repr, names[:20]))}{', ...' if width > 20 else ''}"
        ) from None
    if not -width <= i < width:
        raise ValueError(
            f"--label-column {i} is out of range: {path} has {width} columns (indices "
            f"0..{width - 1}, or -{width}..-1)"
        )
    return i % width


def read_csv(path: Path, label_column: str | int | None = None) -> Table:
    """A CSV table: one row per example, numeric feature columns and one label column.

    A first row that is not all numbers is a header (its names can pick the label column).
    Rows whose cells are all empty are skipped; rows are numbered from 1 as a spreadsheet
    shows them, the header included. Labels are class indices (integers >= 0) or class names:
    when any label is not a number, all are names, mapped to 0..k-1 in sorted order and kept
    in :attr:`Table.classes`. Everything goes to the training split (hold out a validation
    split with ``--val-split``).
    """
    delimiter, lines = _scan(path)
    with (
        _reading(path, "UTF-8 CSV file"),
        io.TextIOWrapper(open_regular(path, "CSV file"), encoding="utf-8-sig", newline="") as f,
    ):
        rows = ((r, row) for r, row in enumerate(csv.reader(f, delimiter=delimiter), start=1)
                if any(c.strip() for c in row))  # fmt: skip
        first_row, first = next(rows, (0, []))
        if not first:
            raise ValueError(f"{path} is empty (no row has a value)")
        width, names = len(first), None
        if not all(_is_number(c) for c in first):
            names = [c.strip() for c in first]
        if width < 2:
            raise ValueError(f"{path} has 1 column; it needs a label column and a feature column")
        li = _label_index(label_column, names, width, path)

        def where(j: int) -> str:
            return f"column {names[j]!r} (index {j})" if names else f"column index {j}"

        require_memory(8 * lines * (width - 1), f"{path} ({lines:,} lines, {width} columns)")
        X = np.empty((lines, width - 1))
        labels: list[str] = []
        numbers = array.array("q")  # the row number of each example, for messages
        for r, row in rows if names else itertools.chain([(first_row, first)], rows):
            if len(row) != width:
                header = " (the header)" if names else ""
                raise ValueError(
                    f"{path}: row {r} has {len(row)} cells, but row {first_row}{header} has {width}"
                )
            cells = row[:li] + row[li + 1 :]
            try:
                values = [float(c) for c in cells]
            except ValueError:
                j = next(j for j, c in enumerate(cells) if not _is_number(c))
                raise _bad_cell(path, r, where(j + (j >= li)), cells[j]) from None
            if not math.isfinite(sum(values)) and not all(map(math.isfinite, values)):
                j = next(j for j, v in enumerate(values) if not math.isfinite(v))
                raise _bad_cell(path, r, where(j + (j >= li)), cells[j])
            X[len(labels)] = values
            labels.append(row[li].strip())
            numbers.append(r)
    if not labels:
        raise ValueError(f"{path} has a header row but no data rows")
    y, classes = _csv_labels(path, labels, numbers, where(li))
    header_is_data = all(_is_number(c) for j, c in enumerate(names or ()) if j != li)
    if names is not None and classes and names[li] in classes and header_is_data:
        raise ValueError(
            f"{path}: row {first_row} looks like data, not a header ({names[li]!r} is also a label "
            "below and its other cells are numbers): add a header row naming the columns"
        )
    return Table((X[: len(labels)], y), classes=classes)


def _bad_cell(path: Path, row: int, column: str, text: str) -> ValueError:
    what = "is empty" if not text.strip() else f"holds {text.strip()!r}, not a finite number"
    return ValueError(f"{path}: row {row}, {column} {what}")


def _csv_labels(
    path: Path, labels: list[str], rows: array.array[int], column: str
) -> tuple[Host, tuple[str, ...] | None]:
    """The label cells as int64 labels (n,), and the class names when they are names."""
    if "" in labels:
        raise _bad_cell(path, rows[labels.index("")], column, "")
    if not all(_is_number(s) for s in labels):
        classes = tuple(sorted(set(labels)))
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[s] for s in labels], dtype=np.int64), classes
    values = np.array([float(s) for s in labels])
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{path}: row {rows[i]}, {column} holds {labels[i]!r}, which is not a class label: "
            "labels are class indices 0, 1, 2, ... or class names"
        )
    return values.astype(np.int64), None
