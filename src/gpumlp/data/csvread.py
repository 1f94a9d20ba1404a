"""Reading a CSV table within bounds fixed before its rows are parsed.

The file is opened once and read as it was then: the first ``st_size`` bytes ``fstat`` gave
(a file that grows while it is read is read as of the open; a pseudo-file of size 0, such as
``/proc/self/mem``, is empty). A first pass counts its lines (``\\n``, ``\\r\\n`` or a lone
``\\r`` end one) a megabyte at a time, which bounds the rows; the second parses it a line at a
time, each line read with a bound on its length, so memory never grows with a line: the first
row may take what a quarter of the free memory can parse, each later row :data:`CELL_CHARS`
characters per cell of the first row (and no more than the first). Labels are kept as one
int64 code per row; the messages name the file, the row (counted from 1 as a spreadsheet shows
them, the header included) and the column.
"""

from __future__ import annotations

import array
import csv
import io
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..files.safeio import open_regular, require_memory
from ..memory import host_available_memory, size_text
from .tabular import Table, not_class_labels, reading
from .task import as_targets, label_task

__all__ = ["CELL_CHARS", "read_csv"]

CELL_CHARS = 4096
"""Characters a cell may take, on average over a row: a row of a ``w``-cell table may be
``w · CELL_CHARS`` characters long (numbers and class names are far shorter)."""

_PARSE_COST = 64
"""Bytes parsing one character of a row may take at most: the line as text (up to 4 bytes a
character), the csv module's field buffer (4), and, for a one-character cell, its ``str``
object and its slot in the row's list (~58)."""
_SHARE = 4  # a row may take at most 1/_SHARE of the free memory to parse
_UNKNOWN_FREE = 1 << 34  # the memory assumed free where the system says nothing
_CHUNK = 1 << 20  # bytes the line count reads at a time


class _Snapshot(io.RawIOBase):
    """The first ``size`` bytes of the file ``f`` (then end of file)."""

    def __init__(self, f: io.BufferedReader, size: int) -> None:
        super().__init__()
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self.left]
        n = self.f.readinto(view) if len(view) else 0
        self.left -= n
        return n


def _scan(f: io.RawIOBase, path: Path) -> tuple[str, int]:
    """The delimiter (``,``; a tab or ``;`` when the first line has no comma but one of them)
    and an upper bound on the rows (the lines), counted before anything is parsed."""
    ends, first, last = 0, b"", b""
    while chunk := f.read(_CHUNK):
        if b"\0" in chunk:
            raise ValueError(f"{path} holds NUL bytes: it is not a text (CSV) file")
        # a line ends at \n, at \r\n (counted once, also across two chunks), or at a lone \r
        ends += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
        ends -= last == b"\r" and chunk[:1] == b"\n"
        last = chunk[-1:]
        first = first or next((s for s in re.split(rb"[\r\n]", chunk) if s.strip()), b"")
    if not first.strip():
        raise ValueError(f"{path} is empty")
    for sep in ("\t", ";"):
        if b"," not in first and sep.encode() in first:
            return sep, ends + 1
    return ",", ends + 1


class _Rows:
    """The rows of the CSV text ``text``, numbered from 1, each read with a bound on its
    length: ``limit`` characters (line ends aside, over all the lines of a row whose quoted
    cell spans several), refused as a ValueError naming the file, the row and the limit
    before more of it is read."""

    def __init__(self, path: Path, text: io.TextIOWrapper, delimiter: str, free: int) -> None:
        self.path, self.text = path, text
        self.limit = free // (_PARSE_COST * _SHARE)
        self.why = f"what {size_text(free)} of free memory can parse"
        self.reader = csv.reader(self._lines(), delimiter=delimiter)
        self.row = self.taken = 0  # rows read; characters of the row being read

    def bound_by(self, width: int) -> None:
        """Later rows: at most ``CELL_CHARS`` characters per cell of a ``width``-cell table."""
        if width * CELL_CHARS < self.limit:
            self.limit = width * CELL_CHARS
            self.why = f"{CELL_CHARS:,} per cell of its {width} columns"

    def _lines(self) -> Iterator[str]:
        while line := self.text.readline(self.limit - self.taken + 3):  # with its end, and 1
            self.taken += len(line.rstrip("\r\n"))
            if self.taken > self.limit:
                raise ValueError(
                    f"{self.path}: row {self.row + 1} is longer than {self.limit:,} characters, "
                    f"the most a row may take ({self.why}); is it a CSV table?"
                )
            yield line

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        while True:
            try:
                row = next(self.reader)
            except StopIteration:
                return
            except csv.Error as exc:  # a cell past the csv module's own limit, say
                raise ValueError(f"{self.path}: row {self.row + 1}: {exc}") from None
            self.row, self.taken = self.row + 1, 0
            if any(c.strip() for c in row):
                yield self.row, row


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


def read_csv(path: Path, label_column: str | int | None = None, task: str | None = None) -> Table:
    """A CSV table: one row per example, numeric feature columns and one label column.

    A first row that is not all numbers is a header (its names can pick the label column).
    Rows whose cells are all empty are skipped; rows are numbered from 1 as a spreadsheet
    shows them, the header included. Labels are class indices (integers >= 0) or class names:
    when any label is not a number, all are names, mapped to 0..k-1 in sorted order and kept
    in :attr:`Table.classes`. Numbers that are values to predict (``task`` "regression",
    given or told by the labels: :func:`~gpumlp.data.task.label_task`) are targets (n, 1)
    float64. Everything goes to the training split (hold out a validation
    split with ``--val-split``). The file is read as ``fstat`` found it when opened, each row
    within a bound on its length (see the module docstring).
    """
    with reading(path, "UTF-8 CSV file"), open_regular(path, "CSV file") as f:
        size = os.fstat(f.fileno()).st_size
        delimiter, lines = _scan(_Snapshot(f, size), path)
        f.seek(0)
        snapshot = io.BufferedReader(_Snapshot(f, size))
        text = io.TextIOWrapper(snapshot, encoding="utf-8-sig", newline="")
        free = host_available_memory()
        rows = _Rows(path, text, delimiter, _UNKNOWN_FREE if free is None else free)
        first_row, first = next(iter(rows), (0, []))
        if not first:
            raise ValueError(f"{path} is empty (no row has a value)")
        width, names = len(first), None
        rows.bound_by(width)
        if not all(_is_number(c) for c in first):
            names = [c.strip() for c in first]
        if width < 2:
            raise ValueError(f"{path} has 1 column; it needs a label column and a feature column")
        li = _label_index(label_column, names, width, path)

        def where(j: int) -> str:
            return f"column {names[j]!r} (index {j})" if names else f"column index {j}"

        # X (float64), and each row's label as an int64 code, the code of its text
        require_memory(8 * lines * (width + 1), f"{path} ({lines:,} lines, {width} columns)")
        X = np.empty((lines, width - 1))
        codes = array.array("q")
        seen: dict[str, int] = {}  # label text -> code, in the order first seen
        first_rows: list[int] = []  # the row each label text is first seen in
        data = iter(rows) if names else _chain((first_row, first), rows)
        for r, row in data:
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
            X[len(codes)] = values
            label = row[li].strip()
            if (code := seen.get(label)) is None:
                code = seen[label] = len(first_rows)
                first_rows.append(r)
            codes.append(code)
    if not codes:
        raise ValueError(f"{path} has a header row but no data rows")
    y, classes, task = _csv_labels(
        path, np.frombuffer(codes, np.int64), seen, first_rows, where(li), task
    )
    header_is_data = all(_is_number(c) for j, c in enumerate(names or ()) if j != li)
    if names is not None and classes and names[li] in classes and header_is_data:
        raise ValueError(
            f"{path}: row {first_row} looks like data, not a header ({names[li]!r} is also a label "
            "below and its other cells are numbers): add a header row naming the columns"
        )
    return Table((X[: len(codes)], y), classes=classes, task=task)


def _chain(head: tuple[int, list[str]], rest: _Rows) -> Iterator[tuple[int, list[str]]]:
    yield head
    yield from rest


def _bad_cell(path: Path, row: int, column: str, text: str) -> ValueError:
    what = "is empty" if not text.strip() else f"holds {text.strip()!r}, not a finite number"
    return ValueError(f"{path}: row {row}, {column} {what}")


def _csv_labels(
    path: Path,
    codes: np.ndarray[Any, Any],
    seen: dict[str, int],
    rows: list[int],
    column: str,
    task: str | None,
) -> tuple[np.ndarray[Any, Any], tuple[str, ...] | None, str]:
    """The labels (n,) int64 from each row's ``codes`` (the codes of the texts ``seen``, first
    in ``rows``), or the targets (n, 1) of a regression; the class names when they are names;
    the task (``task`` when given)."""
    texts = list(seen)
    if "" in seen:
        raise _bad_cell(path, rows[seen[""]], column, "")
    if not all(_is_number(s) for s in texts):
        if task == "regression":
            i = next(i for i, s in enumerate(texts) if not _is_number(s))
            raise ValueError(
                f"{path}: row {rows[i]}, {column} holds {texts[i]!r}, not a number: --task "
                "regression predicts numbers (class names are classification)"
            )
        classes = tuple(sorted(texts))
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[s] for s in texts], dtype=np.int64)[codes], classes, "classification"
    values = np.array([float(s) for s in texts])
    if label_task(values[codes], task, f"{path}: {column}") == "regression":
        if not (finite := np.isfinite(values)).all():
            i = int(np.argmin(finite))
            raise _bad_cell(path, rows[i], column, texts[i])
        return as_targets(values[codes]), None, "regression"
    if (bad := not_class_labels(values)).any():
        i = int(np.argmax(bad))  # texts are in the order first seen: the earliest row
        raise ValueError(
            f"{path}: row {rows[i]}, {column} holds {texts[i]!r}, which is not a class label: "
            "labels are class indices 0, 1, 2, ... or class names"
        )
    return values.astype(np.int64)[codes], None, "classification"
