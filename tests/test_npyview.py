"""gpumlp.files.npyview: an ``.npy`` file's rows read through its descriptor, never mapped.

Every index gives what NumPy gives on the array the file holds; a file cut short after it
was opened raises DataFileShrank naming it and both sizes (where a memory map dies of SIGBUS),
however it is read: its size checked, a row read, a batch gathered, the whole read.
``load_rows`` reads a file that fits comfortably into memory whole by the same reads, and
leaves one that does not (or when asked) in its file.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from gpumlp import DataFileShrank
from gpumlp.files import npyview
from gpumlp.files.npyview import BatchReader, NpyRows, load_rows, open_rows


@pytest.fixture
def stored(tmp_path):
    """X (50, 7) float32 saved as X.npy, and the path."""
    X = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    return X, tmp_path / "X.npy"


INDEXES = [
    3,
    -1,
    np.int64(49),
    (4, 2),
    (slice(5, 9), ...),
    (slice(None), 3),
    slice(None, None, 3),
    slice(40, 10, -2),
    np.array([7, 7, 0, -3, 8, 9, 10]),
    np.arange(50) % 3 == 0,
    [2, 1],
    (np.array([4, 5, 6]), slice(1, 3)),
    ...,
]


@pytest.mark.parametrize("index", INDEXES, ids=repr)
def test_an_index_reads_what_numpy_gives(stored, index):
    X, path = stored
    got = open_rows(path)[index]
    assert isinstance(got, np.ndarray | np.generic) and got.dtype == X.dtype
    assert np.array_equal(got, X[index])


def test_a_slice_of_rows_is_a_view_and_reads_as_the_array(stored):
    X, path = stored
    rows = open_rows(path)
    part = rows[10:30][5:]
    assert isinstance(part, NpyRows) and part.shape == (15, 7) and len(part) == 15
    assert np.array_equal(part, X[15:30]) and np.array_equal(part[[0, -1]], X[[15, 29]])
    assert (rows.ndim, rows.size, rows.nbytes, rows.itemsize) == (2, 350, 1400, 4)
    assert len(rows[60:]) == 0 and np.asarray(rows[60:]).shape == (0, 7)


def test_a_bad_index_is_an_index_error(stored):
    rows = open_rows(stored[1])
    for index in (50, -51, np.array([0, 50]), np.array([0.5]), np.ones((2, 2), int)):
        with pytest.raises(IndexError):
            rows[index]
    with pytest.raises(ValueError, match="never used without a copy"):
        np.asarray(rows, copy=False)


def test_batches_are_gathered_as_take_gives_them(stored):
    X, path = stored
    read = BatchReader(open_rows(path)[5:])
    perm = np.random.default_rng(1).permutation(45)
    for k in range(0, 45, 10):
        idx = perm[k : k + 10]
        assert np.array_equal(read(idx), X[5:][idx])
    assert np.array_equal(read(slice(40, 50)), X[45:50])


def test_a_fortran_ordered_file_is_read_into_memory(tmp_path):
    X = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    np.save(tmp_path / "F.npy", X)
    got = open_rows(tmp_path / "F.npy")
    assert isinstance(got, np.ndarray) and np.array_equal(got, X)


def test_a_file_shorter_than_its_header_is_refused(stored):
    path = stored[1]
    os.truncate(path, path.stat().st_size - 1)
    with pytest.raises(ValueError, match=r"X\.npy is shorter than its header declares"):
        open_rows(path)


@pytest.mark.parametrize(
    "read",
    [
        lambda rows: rows.check(),
        lambda rows: rows[49],
        lambda rows: rows[10:][[0, 39]],
        lambda rows: np.asarray(rows),
        lambda rows: BatchReader(rows)(np.array([3, 48])),
        lambda rows: BatchReader(rows)(slice(40, 50)),
    ],
    ids=["check", "row", "rows", "whole", "batch", "slice"],
)
def test_a_file_cut_short_after_opening_raises_data_file_shrank(stored, read):
    X, path = stored
    rows = open_rows(path)
    size = path.stat().st_size
    os.truncate(path, 1000)
    message = f"{path} shrank from {size:,} to 1,000 bytes during training"
    with pytest.raises(DataFileShrank, match=f"^{re.escape(message)}$") as info:
        read(rows)
    assert (info.value.size, info.value.now, info.value.history) == (size, 1000, None)
    assert np.array_equal(rows[:5], X[:5])  # rows still in the file read as before


def test_the_file_is_closed_with_the_last_view(stored):
    def open_files():  # this file's descriptors only: others close as the collector runs
        target = os.path.realpath(stored[1])
        links = (os.path.join("/proc/self/fd", fd) for fd in os.listdir("/proc/self/fd"))
        return sum(1 for link in links if _link(link) == target)

    before = open_files()
    rows = open_rows(stored[1])
    part = rows[3:]
    del rows
    assert open_files() == before + 1 and np.array_equal(part[0], stored[0][3])
    del part
    assert open_files() == before


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # the descriptor listdir used, closed already
        return None


# -- load_rows: into memory when it fits comfortably ---------------------------------------------


@pytest.mark.parametrize(
    ("free", "from_disk", "beside", "in_memory"),
    [
        (None, False, 0, True),  # the memory free unknown: read
        (2 * 1400, False, 0, True),  # 50 x 7 float32 = 1,400 bytes: just within half
        (2 * 1400 - 1, False, 0, False),
        (2 * 1400 + 2 * 2800, False, 2800, True),  # with a float64 copy beside it
        (2 * 1400 + 2 * 2800 - 1, False, 2800, False),
        (None, True, 0, False),  # asked for: read batch by batch from the file
    ],
    ids=["unknown", "fits", "too-big", "fits-with-copy", "copy-too-big", "from-disk"],
)
def test_load_rows_reads_into_memory_what_fits_in_half_the_free_memory(
    stored, monkeypatch, free, from_disk, beside, in_memory
):
    X, path = stored
    monkeypatch.setattr(npyview, "host_available_memory", lambda: free)
    got = load_rows(path, from_disk=from_disk, beside=beside)
    assert isinstance(got, np.ndarray) is in_memory
    assert isinstance(got, NpyRows) is not in_memory
    assert np.array_equal(np.asarray(got), X)
    if in_memory:  # read, the file closed: a later cut changes nothing
        os.truncate(path, 100)
        assert np.array_equal(got, X)


def test_load_rows_of_a_file_cut_while_it_is_read_is_a_value_error(stored, monkeypatch):
    _, path = stored
    size = path.stat().st_size

    def cut_once_opened(path):
        rows = open_rows(path)
        os.truncate(path, 1000)
        return rows

    monkeypatch.setattr(npyview, "open_rows", cut_once_opened)
    message = f"{path} shrank from {size:,} to 1,000 bytes while it was read"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        load_rows(path)
