"""A CSV file's rows, read within bounds fixed before they are parsed (for
:mod:`gpumlp.data.csvread`).

The file is opened once (by the caller) and read as it was then: the first ``st_size`` bytes
``fstat`` gave (:class:`Snapshot`; a file that grows while it is read is read as of the open;
a pseudo-file of size 0, such as ``/proc/self/mem``, is empty). A first pass (:func:`scan`)
counts its lines (``\\n``, ``\\r\\n`` or a lone ``\\r`` end one) a megabyte at a time, which
bounds the rows; the second (:class:`Rows`) parses it a line at a time, each line read with a
bound on its length, so memory never grows with a line: the first row may take what a quarter
of the free memory can parse, each later row :data:`CELL_CHARS` characters per cell of the
first row (and no more than the first).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..memory import size_text

__all__ = ["CELL_CHARS", "Rows", "Snapshot", "chain", "scan"]

CELL_CHARS = 4096
"""Characters a cell may take, on average over a row: a row of a ``w``-cell table may be
``w · CELL_CHARS`` characters long (numbers and class names are far shorter)."""

_PARSE_COST = 64
"""Bytes parsing one character of a row may take at most: the line as text (up to 4 bytes a
character), the csv module's field buffer (4), and, for a one-character cell, its ``str``
object and its slot in the row's list (~58)."""
_SHARE = 4  # a row may take at most 1/_SHARE of the free memory to parse
_CHUNK = 1 << 20  # bytes the line count reads at a time


class Snapshot(io.RawIOBase):
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


def scan(f: io.RawIOBase, path: Path) -> tuple[str, int]:
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


class Rows:
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


def chain(head: tuple[int, list[str]], rest: Rows) -> Iterator[tuple[int, list[str]]]:
    yield head
    yield from rest
