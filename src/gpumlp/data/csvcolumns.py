"""Which columns of a CSV table are its inputs.

- The label column: a header's name or a 0-based index (negative from the end), the last by
  default (``--label-column``); for a file of examples to predict, the training file's label
  column is left out when the file has it.
- The columns ``--drop`` leaves out, by name or index.
- pandas' index: an unnamed first column (an empty header cell) holding exactly 0..n-1, as
  ``DataFrame.to_csv`` writes it, is left out, with a note.
- ID columns: a column holding a different string in every row is no feature; it is refused,
  naming ``--drop`` as the way to leave it out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files.modeldata import shown

__all__ = ["dropped", "ids_error", "index_note", "is_index", "is_number", "label_index",
           "looks_like_ids", "optional_label"]  # fmt: skip


def _index(flag: str, spec: str | int, names: list[str] | None, width: int, path: Path) -> int:
    """The column ``spec`` names: a header's name, else a 0-based index (negative from the
    end); ValueError naming ``flag`` and the file when there is none."""
    text = str(spec).strip()
    if names is not None and text in names:
        if names.count(text) > 1:
            raise ValueError(f"{flag} {text!r}: {path} has more than one column so named")
        return names.index(text)
    try:
        i = int(text)
    except ValueError:
        if names is None:
            raise ValueError(
                f"{flag} {text!r}: {path} has no header row, so give the column's index "
                f"(0..{width - 1}, or -1 for the last)"
            ) from None
        raise ValueError(
            f"{flag} {text!r}: {path} has no column of that name; its columns are {shown(names)}"
        ) from None
    if not -width <= i < width:
        raise ValueError(
            f"{flag} {i} is out of range: {path} has {width} columns (indices "
            f"0..{width - 1}, or -{width}..-1)"
        )
    return i % width


def label_index(spec: str | int | None, names: list[str] | None, width: int, path: Path) -> int:
    """The label column of a table to train on or score: ``spec``, the last by default."""
    return width - 1 if spec is None else _index("--label-column", spec, names, width, path)


def optional_label(
    spec: str | int | None, names: list[str] | None, width: int, inputs: int
) -> int | None:
    """The training file's label column ``spec`` (a name, or an index; the last by default)
    in a file of examples to predict, which may lack it: the column so named in a header;
    without a header, the column at that index when the file has one column more than the
    ``inputs`` it must give. None when the file has no such column."""
    if names is not None:
        return names.index(spec) if isinstance(spec, str) and names.count(spec) == 1 else None
    if width != inputs + 1:
        return None
    try:
        i = int(spec) if spec is not None else -1
    except ValueError:
        i = -1  # a name at training; here no names: the last column, as by default
    return i % width if -width <= i < width else None


def dropped(
    drop: Sequence[str | int], names: list[str] | None, width: int, path: Path,
    label: int | None, *, strict: bool = True,
) -> set[int]:  # fmt: skip
    """The columns ``--drop`` names (names or indices), none of them the ``label`` column.
    ``strict`` False (a file of examples to predict): a name the file lacks is passed over."""
    out = set()
    for spec in drop:
        if not strict and names is not None and str(spec) not in names and not _is_int(spec):
            continue
        j = _index("--drop", spec, names, width, path)
        if j == label and strict:
            raise ValueError(f"--drop {str(spec)!r} is the label column of {path}")
        out.add(j)
    return out


def _is_int(spec: Any) -> bool:
    try:
        int(str(spec))
    except ValueError:
        return False
    return True


def is_index(values: np.ndarray[Any, Any]) -> bool:
    """Whether ``values`` (n,) are exactly 0, 1, ..., n-1: pandas' index, not a feature."""
    return bool(np.array_equal(values, np.arange(len(values))))


def index_note(path: Path) -> str:
    """The note said when pandas' index column is left out of ``path``."""
    return (
        f"{path}: left out its first column, unnamed and holding 0..n-1 (pandas' index, as "
        "DataFrame.to_csv writes it)"
    )


def looks_like_ids(first: str, rest: Iterator[tuple[int, list[str]]], j: int) -> bool:
    """Whether column ``j`` holds a different string, not a number, in every row: ``first``
    then each row of ``rest`` (which this reads to its end, or to the first row that says
    no)."""
    seen = {first}
    for _, row in rest:
        cell = row[j].strip() if j < len(row) else ""
        if not cell or cell in seen or is_number(cell):
            return False
        seen.add(cell)
    return len(seen) > 1


def is_number(text: str) -> bool:
    """Whether the cell ``text`` reads as a number (``float`` takes it: nan and inf too)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def ids_error(path: Path, column: str, spec: str | int, first: str) -> ValueError:
    """The refusal of an ID column (``column`` in messages, ``spec`` as ``--drop`` takes it)."""
    return ValueError(
        f"{path}: {column} holds a different text in every row ({first!r}, ...), as an ID "
        f"column does, not a feature: leave it out with --drop {spec}"
    )
