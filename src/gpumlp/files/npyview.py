"""Rows of a 2-D ``.npy`` file read through its open file descriptor, never memory-mapped.

A memory-mapped file that shrinks while it is read kills the reader with SIGBUS at the first
page past its new end: no exception, nothing saved. A read of the descriptor comes back short
instead, which can be reported. :func:`open_rows` opens ``X.npy`` as :class:`NpyRows`, a
read-only, array-like view of its rows that reads only what is indexed:

- ``len``, ``shape``, ``ndim``, ``dtype``, ``itemsize``, ``size`` and ``nbytes`` as an
  ndarray's;
- ``rows[a:b]`` is a view of those rows (nothing is read); any other index (an int, an array
  of row indices or a mask, a tuple) reads the rows it names into a new ndarray, one ``pread``
  per run of consecutive rows, and applies the rest of the index to them;
- ``np.asarray(rows)`` reads all of it, the memory free checked first (for a cast, a
  standardization, a copy on a device);
- :class:`BatchReader` gathers training's mini-batches, each into a buffer kept for its size.

:func:`load_rows` reads such a file into memory whole by the same reads (one large ``pread``
or a few) when it fits comfortably, and opens it as :class:`NpyRows` only when it does not, or
when asked to.

:meth:`NpyRows.check` compares the file's size now (``fstat`` on the descriptor) with the end
of the rows its header declares, and a short read makes the same check: either raises
:class:`~gpumlp.errors.DataFileShrank` naming the file and both sizes.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFileShrank
from ..memory import host_available_memory
from .safeio import open_regular, read_npy, read_npy_header, require_memory

__all__ = ["BatchReader", "NpyRows", "load_rows", "open_rows"]

Host = np.ndarray[Any, Any]


class _File:
    """One open ``.npy`` file: its descriptor (closed once no view of it is left), the bytes
    where its rows begin and end, and its size when it was opened."""

    def __init__(self, path: Path, fd: int, start: int, end: int) -> None:
        self.path, self.fd, self.start, self.end = path, fd, start, end
        self.size = os.fstat(fd).st_size
        weakref.finalize(self, os.close, fd)

    def check(self) -> None:
        """Raise DataFileShrank when the file no longer holds every row."""
        now = os.fstat(self.fd).st_size
        if now < self.end:
            raise DataFileShrank(str(self.path), self.size, now)

    def read(self, view: memoryview, pos: int) -> None:
        """Fill ``view`` from byte ``pos`` on; DataFileShrank when the file ends first."""
        while view:
            n = os.preadv(self.fd, [view], pos)
            if not n:
                self.check()  # a file cut and grown again in between: still an error
                raise DataFileShrank(str(self.path), self.size, os.fstat(self.fd).st_size)
            view, pos = view[n:], pos + n


def _bytes(out: Host) -> memoryview:
    """The bytes of the C-contiguous array ``out``, to read into."""
    return out.reshape(-1).view(np.uint8).data


class NpyRows:
    """Rows ``first .. first+n-1`` (each ``d`` values of ``dtype``) of an open ``.npy`` file;
    see the module docstring."""

    ndim = 2

    def __init__(self, file: _File, first: int, n: int, d: int, dtype: np.dtype[Any]) -> None:
        self._file, self._first, self._n, self._d = file, first, n, d
        self.dtype = dtype
        self._row = d * dtype.itemsize

    shape = property(lambda self: (self._n, self._d), doc="(n, d)")
    itemsize = property(lambda self: self.dtype.itemsize, doc="Bytes per value.")
    size = property(lambda self: self._n * self._d, doc="Values in all.")
    nbytes = property(lambda self: self._n * self._row, doc="Bytes in all.")
    path = property(lambda self: self._file.path, doc="The file.")

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"NpyRows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def check(self) -> None:
        """Raise :class:`~gpumlp.errors.DataFileShrank` when the file has become shorter than
        its header declares (checked on the open descriptor)."""
        self._file.check()

    def pos(self, row: int) -> int:
        """The byte of the file where row ``row`` of this view begins."""
        return self._file.start + (self._first + row) * self._row

    def read(self, rows: Sequence[int], out: Host | None = None) -> Host:
        """Rows ``rows`` of this view (indices in ``[0, n)``, in order) as an array (m, d), read
        into ``out`` (C-ordered, this dtype) or a new one; one read per run of consecutive
        rows."""
        m = len(rows)
        out = np.empty((m, self._d), self.dtype) if out is None else out
        mv, rb, j = _bytes(out), self._row, 0
        if isinstance(rows, range) and rows.step == 1:
            if m:
                self._file.read(mv, self.pos(rows.start))
            return out
        while j < m:
            e = j + 1
            while e < m and rows[e] == rows[e - 1] + 1:
                e += 1
            self._file.read(mv[j * rb : e * rb], self.pos(rows[j]))
            j = e
        return out

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice) and key.step in (None, 1):  # a view, as NumPy's slices are
            r = range(self._n)[key]
            return NpyRows(self._file, self._first + r.start, len(r), self._d, self.dtype)
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if isinstance(first, int | np.integer) and not isinstance(first, bool):
            return self.read([range(self._n)[first]])[(0, *rest)]  # IndexError past the end
        if isinstance(first, slice):
            rows: Sequence[int] = range(self._n)[first]
        elif first is Ellipsis or first is None:
            return np.asarray(self)[key]
        else:
            rows = self._row_indices(first)
        block = self.read(rows)
        return block[(slice(None), *rest)] if rest else block

    def _row_indices(self, index: Any) -> list[int]:
        """A 1-D array of row indices (negative from the end) or a mask of n, as a list."""
        idx = np.asarray(index)
        if idx.dtype == bool and idx.shape == (self._n,):
            return np.flatnonzero(idx).tolist()
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise IndexError(f"rows of {self!r} are indexed by an int, a slice, 1-D ints or a mask")
        if idx.size and (idx.min() < -self._n or idx.max() >= self._n):
            raise IndexError(f"a row index is out of range for {self._n} rows")
        return np.where(idx < 0, idx + self._n, idx).tolist()  # type: ignore[no-any-return]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Host:
        if copy is False:
            raise ValueError(f"{self!r} is read from its file: it is never used without a copy")
        require_memory(self.nbytes, f"reading {self.path} ({self._n:,} rows of {self._d})")
        out = self.read(range(self._n))
        return out if dtype is None else out.astype(dtype, copy=False)


class BatchReader:
    """Training's reads from ``rows``: each mini-batch into the buffer kept for its size (valid
    until the next batch of that size is read), one ``pread`` a row of a shuffled batch (runs
    of consecutive rows are rare there, and finding them costs as much as it saves) and one for
    a batch of consecutive rows."""

    def __init__(self, rows: NpyRows) -> None:
        self.rows = rows
        self._buffers: dict[int, tuple[Host, memoryview, list[list[memoryview]]]] = {}

    def _buffer(self, m: int) -> tuple[Host, memoryview, list[list[memoryview]]]:
        if m not in self._buffers:
            out = np.empty((m, self.rows.shape[1]), self.rows.dtype)
            mv, rb = _bytes(out), self.rows.shape[1] * self.rows.itemsize
            self._buffers[m] = out, mv, [[mv[j * rb : (j + 1) * rb]] for j in range(m)]
        return self._buffers[m]

    def __call__(self, batch: Any) -> Host:
        """The rows ``batch`` names (a slice, or a 1-D NumPy int array of row indices in range)
        as an array (m, d) of the file's dtype."""
        if isinstance(batch, slice):
            rows = range(len(self.rows))[batch]
            return self.rows.read(rows, self._buffer(len(rows))[0])
        out, _, views = self._buffer(len(batch))
        file, preadv = self.rows._file, os.preadv
        fd, rb = file.fd, self.rows.shape[1] * self.rows.itemsize
        for view, pos in zip(views, (batch * rb + self.rows.pos(0)).tolist(), strict=True):
            if preadv(fd, view, pos) != rb:
                file.read(view[0], pos)  # the rest of a short read, or DataFileShrank
        return out


def load_rows(path: Path, *, from_disk: bool = False, beside: int = 0) -> NpyRows | Host:
    """The 2-D ``.npy`` file ``path`` read into memory whole, unless ``from_disk`` or it does
    not fit comfortably: its bytes and ``beside`` (what must fit with it: the copy training will
    make of it) more than half the memory free (when that is known); then the
    :class:`NpyRows` :func:`open_rows` opens (training reads each batch from the file).

    The whole is read through the open descriptor as :class:`NpyRows` reads (a few large
    ``pread`` calls, never a memory map), so a file that is short or shrinks while it is read is
    a ValueError naming it and both sizes, not SIGBUS; once read, the file is closed and a later
    cut changes nothing. ValueError as :func:`open_rows` raises.
    """
    rows = open_rows(path)
    if from_disk or not isinstance(rows, NpyRows):
        return rows
    free = host_available_memory()
    if free is not None and 2 * (rows.nbytes + beside) > free:
        return rows
    try:
        return np.asarray(rows)
    except DataFileShrank as exc:
        raise ValueError(
            f"{path} shrank from {exc.size:,} to {exc.now:,} bytes while it was read"
        ) from None


def open_rows(path: Path) -> NpyRows | Host:
    """The 2-D ``.npy`` file ``path`` (a regular file) as :class:`NpyRows` over its open
    descriptor; one in Fortran order (its rows are not contiguous) is read into memory whole,
    the memory free checked first. ValueError naming ``path`` when it is shorter than its
    header declares, or not a numeric (n, d) array."""
    with open_regular(path, ".npy file") as f:
        shape, fortran, dtype = read_npy_header(f)
        if len(shape) != 2 or dtype.hasobject or dtype.kind not in "biuf":
            raise ValueError(f"{path} must hold a numeric array (n, d), got {dtype} {shape}")
        start = f.tell()
        end = start + math.prod(shape) * dtype.itemsize
        if os.fstat(f.fileno()).st_size < end:
            raise ValueError(f"{path} is shorter than its header declares ({end:,} bytes)")
        if fortran and min(shape) > 1:
            require_memory(end - start, f"{path} (Fortran order, read whole)")
            f.seek(0)
            return read_npy(f, str(path), check=lambda s, d: None)
        file = _File(path, os.dup(f.fileno()), start, end)
    return NpyRows(file, 0, shape[0], shape[1], dtype)
