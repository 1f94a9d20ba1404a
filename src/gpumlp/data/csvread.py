"""Reading a CSV table: its inputs as float64 and its labels, within bounds fixed before its
rows are parsed (:mod:`.csvrows`: the file read as it was when opened, each row bounded).

Which columns are inputs is :mod:`.csvcolumns`' (the label column, ``--drop``, pandas'
index, ID columns). Labels are kept as one int64 code per row; the messages name the file,
the row (counted from 1 as a spreadsheet shows them, the header included) and the column.
"""

from __future__ import annotations

import array
import io
import math
import os
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files.safeio import open_regular, require_memory
from ..memory import host_available_memory
from .csvcolumns import (
    dropped,
    ids_error,
    index_note,
    is_index,
    is_number,
    label_index,
    looks_like_ids,
    optional_label,
)
from .csvrows import CELL_CHARS, Rows, Snapshot, chain, scan
from .tabular import Table, not_class_labels, reading
from .task import as_targets, label_task

__all__ = ["CELL_CHARS", "read_csv", "read_csv_inputs"]

_UNKNOWN_FREE = 1 << 34  # the memory assumed free where the system says nothing


@dataclass
class _Parsed:
    """A CSV table as read: X (n, kept columns) float64, each row's label code (the code of
    its text in ``seen``; ``rows`` says where each text was first seen), the header, the
    label column, the kept columns, notes, and the first row's number."""

    X: np.ndarray[Any, Any]
    codes: array.array[int]
    seen: dict[str, int]
    rows: list[int]
    names: list[str] | None
    label: int | None
    keep: list[int]
    notes: list[str]
    first_row: int

    def where(self, j: int) -> str:
        names = self.names
        return f"column {names[j]!r} (index {j})" if names else f"column index {j}"

    def features(self) -> tuple[str, ...] | None:
        """The kept columns' names, when the header gives each a name of its own."""
        if self.names is None:
            return None
        kept = tuple(self.names[j] for j in self.keep)
        return kept if len(set(kept)) == len(kept) else None


def _parse(
    path: Path, label_column: str | int | None, drop: Sequence[str | int], *,
    inputs: int | None = None,
) -> _Parsed:  # fmt: skip
    """Read ``path``: with ``inputs`` None, a table with a label column; else a file of
    examples to predict, ``inputs`` wide, which may have the training file's label column.
    ValueError naming the file when it has no data row."""
    with reading(path, "UTF-8 CSV file"), open_regular(path, "CSV file") as f:
        size = os.fstat(f.fileno()).st_size
        delimiter, lines = scan(Snapshot(f, size), path)
        f.seek(0)
        snapshot = io.BufferedReader(Snapshot(f, size))
        text = io.TextIOWrapper(snapshot, encoding="utf-8-sig", newline="")
        free = host_available_memory()
        rows = Rows(path, text, delimiter, _UNKNOWN_FREE if free is None else free)
        first_row, first = next(iter(rows), (0, []))
        if not first:
            raise ValueError(f"{path} is empty (no row has a value)")
        width, names = len(first), None
        rows.bound_by(width)
        if not all(is_number(c) for c in first):
            names = [c.strip() for c in first]
        li: int | None
        if inputs is None:
            if width < 2:
                raise ValueError(
                    f"{path} has 1 column; it needs a label column and a feature column"
                )
            li = label_index(label_column, names, width, path)
            out = dropped(drop, names, width, path, li)
        else:
            out = dropped(drop, names, width, path, None, strict=False)
            li = optional_label(label_column, names, width - len(out), inputs)
        index = names is not None and names[0] == "" and li != 0 and 0 not in out
        keep = [j for j in range(width) if j != li and j not in out and not (index and j == 0)]
        p = _Parsed(np.empty(0), array.array("q"), {}, [], names, li, keep, [], first_row)
        if li is not None and inputs is not None:
            p.notes.append(f"{path}: left out {p.where(li)}, the label column at training")
        # X (float64), each row's label as an int64 code, the code of its text
        require_memory(8 * lines * (width + 2), f"{path} ({lines:,} lines, {width} columns)")
        X = np.empty((lines, len(keep)))
        first_cells = np.empty(lines) if index else None  # pandas' index, or a feature
        cells = [0, *keep] if index else keep  # the cells read as numbers, in column order
        data = iter(rows) if names else chain((first_row, first), rows)
        for r, row in data:
            if len(row) != width:
                header = " (the header)" if names else ""
                raise ValueError(
                    f"{path}: row {r} has {len(row)} cells, but row {first_row}{header} has {width}"
                )
            n = len(p.codes)
            try:
                X[n] = values = [float(row[j]) for j in keep]
                if first_cells is not None:
                    first_cells[n] = float(row[0])
            except ValueError:
                raise _not_a_number(path, p, r, row, cells, data) from None
            # the sum first (the floats: summing X[n] takes twice as long); one that overflows
            # from finite values is no refusal
            if (not math.isfinite(sum(values)) and not all(map(math.isfinite, values))) or (
                first_cells is not None and not math.isfinite(first_cells[n])
            ):
                j = next(j for j in cells if not math.isfinite(float(row[j])))
                raise _bad_cell(path, r, p.where(j), row[j])
            label = row[li].strip() if li is not None else ""
            if (code := p.seen.get(label)) is None:
                code = p.seen[label] = len(p.rows)
                p.rows.append(r)
            p.codes.append(code)
    if not (n := len(p.codes)):
        raise ValueError(f"{path} has a header row but no data rows")
    if first_cells is not None and is_index(first_cells[:n]):
        p.notes.append(index_note(path))
    elif first_cells is not None:  # an unnamed first column of numbers: a feature after all
        p.keep.insert(0, 0)
        X = np.concatenate([first_cells[:, None], X], axis=1)
    p.X = X[:n]
    return p


def _not_a_number(
    path: Path,
    p: _Parsed,
    r: int,
    row: list[str],
    cells: list[int],
    rest: Iterator[tuple[int, list[str]]],
) -> ValueError:
    """The refusal of row ``r``, one of whose ``cells`` (the columns read as numbers) is no
    number: of an ID column (a different text in every row, from the first, which is ``r``)
    naming ``--drop``; else of the cell."""
    j = next(j for j in cells if not is_number(row[j]))
    cell = row[j].strip()
    if cell and not p.codes and looks_like_ids(cell, rest, j):
        spec = p.names[j] if p.names and p.names[j] else j
        return ids_error(path, p.where(j), spec, cell)
    return _bad_cell(path, r, p.where(j), row[j])


def read_csv(
    path: Path,
    label_column: str | int | None = None,
    *,
    drop: Sequence[str | int] = (),
    task: str | None = None,
) -> Table:
    """A CSV table: one row per example, numeric feature columns and one label column.

    A first row that is not all numbers is a header (its names can pick the label column and
    name the features, :attr:`Table.features`). Rows whose cells are all empty are skipped;
    rows are numbered from 1 as a spreadsheet shows them, the header included. Labels are
    integers (classes by value) or class names: when any label is not a number, all are
    names, mapped to 0..k-1 in sorted order and kept in :attr:`Table.classes`. Numbers that
    are values to predict (``task`` "regression", given or told by the labels:
    :func:`~gpumlp.data.task.label_task`) are targets (n, 1) float64. The columns
    ``drop`` names and pandas' index are left out (:mod:`.csvcolumns`); an ID column is
    refused. Everything goes to the training split (hold out a validation split with
    ``--val-split``). The file is read as ``fstat`` found it when opened, each row within a
    bound on its length (see the module docstring).
    """
    p = _parse(path, label_column, drop)
    li, names = typing.cast(int, p.label), p.names
    codes = np.frombuffer(p.codes, np.int64)
    y, classes, task = _csv_labels(path, codes, p.seen, p.rows, p.where(li), task)
    header_is_data = all(is_number(c) for j, c in enumerate(names or ()) if j != li)
    if names is not None and classes and names[li] in classes and header_is_data:
        raise ValueError(
            f"{path}: row {p.first_row} looks like data, not a header ({names[li]!r} is also a "
            "label below and its other cells are numbers): add a header row naming the columns"
        )
    label = names[li] if names else None
    return Table((p.X, y), classes=classes, features=p.features(), label=label,
                 notes=tuple(p.notes), task=task)  # fmt: skip


def read_csv_inputs(
    path: Path, inputs: int, *, label_column: str | int | None = None,
    drop: Sequence[str | int] = (),
) -> tuple[np.ndarray[Any, Any], tuple[str, ...] | None, tuple[str, ...]]:  # fmt: skip
    """The examples of a CSV file to predict, for a model of ``inputs`` inputs: X (n, d)
    float64, the columns' names (None without a header, or when two share a name) and notes.
    The columns ``drop`` names (those the file has) and pandas' index are left out, and so is
    the training file's label column ``label_column`` when the file has it
    (:func:`.csvcolumns.optional_label`; a note says so)."""
    p = _parse(path, label_column, drop, inputs=inputs)
    return p.X, p.features(), tuple(p.notes)


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
    if not all(is_number(s) for s in texts):
        if task == "regression":
            i = next(i for i, s in enumerate(texts) if not is_number(s))
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
            "labels are integers or class names"
        )
    return values.astype(np.int64)[codes], None, "classification"
