"""The table readers (:mod:`gpumlp.data.tabular`): what each format reads, and what each refuses.
CSV files are :mod:`gpumlp.data.csvread`'s (``test_csvread.py``).

Every file is written here with the real writers (``np.savez``, ``np.save``) and read
back with the reader; the arrays that come back must equal those written. ``X.npy`` is read
into memory when it fits in half the memory free (with the copy training makes of it), else
read as it is used, which is checked where it matters: ``Network.fit`` on a float32 file must
not allocate anything near the file's size.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gpumlp.files.npyview
import gpumlp.memory
from gpumlp import Network, OutOfMemory
from gpumlp._checks import finite_host_array, first_nonfinite
from gpumlp.data.tabular import read_npy_pair, read_table_npz


@pytest.fixture
def table():
    """X (12, 3) float64 with values that need every digit, and labels 0..2."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 3)) * 1e3, np.arange(12) % 3


# -- npz ---------------------------------------------------------------------------------------


def test_npz_round_trips_every_split_and_targets(tmp_path, table):
    X, y = table
    Y = np.eye(3)[y].astype(np.float32)
    np.savez_compressed(tmp_path / "t.npz", X=X, y=Y, X_val=X[:4], y_val=Y[:4], X_test=X[4:],
                        y_test=Y[4:])  # fmt: skip
    got = read_table_npz(tmp_path / "t.npz")
    for split, (Xs, Ys) in zip(
        (got.train, got.validation, got.test), ((X, Y), (X[:4], Y[:4]), (X[4:], Y[4:])), strict=True
    ):
        assert np.array_equal(split[0], Xs) and np.array_equal(split[1], Ys)


def test_npz_reads_only_its_six_arrays(tmp_path, table, monkeypatch):
    X, y = table
    np.savez(tmp_path / "t.npz", X=X, y=y, notes=np.zeros(10**6))
    import gpumlp.data.tabular as tabular

    seen = []
    real = tabular.read_npy_member
    monkeypatch.setattr(
        tabular, "read_npy_member", lambda zf, i: seen.append(i.filename) or real(zf, i)
    )
    got = read_table_npz(tmp_path / "t.npz")
    assert seen == ["X.npy", "y.npy"] and np.array_equal(got.train[0], X)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"a": np.ones(3)}, r"holds no array 'X' \(it holds a\)"),
        ({"X": np.ones((3, 2))}, "holds X but no y"),
        (
            {"X": np.ones((3, 2)), "y": np.zeros(3), "y_val": np.zeros(2)},
            "holds y_val but no X_val",
        ),
        ({"X": np.ones((3, 2)), "y": np.zeros(4)}, r"y must be labels \(3,\) or targets"),
        ({"X": np.ones(3), "y": np.zeros(3)}, r"X must be 2-D \(n, d\)"),
        ({"X": np.ones((3, 2)), "y": np.array([0, -(2**40), 2])}, "y holds -1099511627776 at"),
        ({"X": np.array([[1, np.inf]]), "y": np.zeros(1)}, r"X holds inf at index \(0, 1\)"),
        (
            {
                "X": np.ones((3, 2)),
                "y": np.zeros(3),
                "X_val": np.ones((2, 3)),
                "y_val": np.zeros(2),
            },
            "the validation split has X",
        ),
        ({"X": np.array([["a"]]), "y": np.zeros(1)}, "expected a numeric array"),
    ],
    ids=[
        "no-X",
        "no-y",
        "no-X_val",
        "lengths",
        "1-D",
        "huge-negative",
        "inf",
        "widths",
        "strings",
    ],
)
def test_npz_errors_name_the_file_and_array(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message) as info:
        read_table_npz(tmp_path / "bad.npz")
    assert "bad.npz" in str(info.value)


# -- npy pairs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("from_disk", [False, True])
def test_npy_pair_round_trips_read_into_memory_or_from_its_file(tmp_path, table, from_disk):
    X, y = table
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    np.save(tmp_path / "y.npy", y.astype(np.uint8))
    got = read_npy_pair(tmp_path / "X.npy", tmp_path / "y.npy", from_disk=from_disk)
    assert isinstance(got.train[0], np.ndarray) is not from_disk  # else read as it is used
    assert not isinstance(got.train[0], np.memmap)  # never mapped
    assert from_disk is False or got.train[0].path == tmp_path / "X.npy"
    assert np.array_equal(got.train[0], X.astype(np.float32))
    assert np.array_equal(got.train[1], y) and got.train[1].dtype == np.int64


@pytest.mark.parametrize(
    ("dtype", "standardize", "copy"),
    [(None, False, 0), ("float32", False, 0), ("float64", False, 8), ("float32", True, 4)],
)
def test_npy_pair_counts_the_copy_training_makes_beside_x(
    tmp_path, monkeypatch, dtype, standardize, copy
):
    # 100 x 4 float32 (1,600 bytes): in memory when X and the copy training will make of it
    # (cast to the network's dtype, or standardized) fit in half the memory free, else read
    # from its file as training goes.
    np.save(tmp_path / "X.npy", np.ones((100, 4), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(100, int))
    need = 1600 + 400 * copy
    for free, in_memory in ((2 * need, True), (2 * need - 1, False)):
        monkeypatch.setattr(gpumlp.files.npyview, "host_available_memory", lambda f=free: f)
        X, _ = read_npy_pair(
            tmp_path / "X.npy", tmp_path / "y.npy", dtype=dtype, standardize=standardize
        ).train
        assert isinstance(X, np.ndarray) is in_memory, free


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.ones((4, 2)), np.zeros(3), r"y.npy must be labels \(4,\)"),
        (np.ones((4, 2, 2)), np.zeros(4), r"X.npy must hold X of shape \(n, d\)"),
        (np.array([[1.0], [np.nan]]), np.zeros(2), r"X.npy holds nan at index \(1, 0\)"),
        (np.ones((2, 1)), np.array(["a", "b"]), "dtype <U1 is not numeric"),
        (np.ones((3, 1)), np.array([0, 1e300, 1]), "y.npy holds 1e[+]300 at index 1, which is not"),
        (np.ones((3, 1)), np.array([0, 2**31, 1]), "y.npy holds 2147483648 at index 1"),
    ],
    ids=["lengths", "3-D", "nan", "strings", "1e300", "2**31"],
)
def test_npy_pair_errors_name_the_file(tmp_path, X, y, message):
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(ValueError, match=message):
        read_npy_pair(tmp_path / "X.npy", tmp_path / "y.npy")


def test_truncated_npy_is_refused_before_mapping(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((100, 4), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(100, int))
    data = (tmp_path / "X.npy").read_bytes()
    (tmp_path / "X.npy").write_bytes(data[:-8])
    with pytest.raises(ValueError, match=r"X.npy is truncated: its header declares float32"):
        read_npy_pair(tmp_path / "X.npy", tmp_path / "y.npy")


# -- the finiteness check, a block at a time -----------------------------------------------------


def test_first_nonfinite_finds_the_first_bad_value_across_blocks(monkeypatch):
    import gpumlp._checks as checks

    monkeypatch.setattr(checks, "_BLOCK_BYTES", 64)  # 2 rows of 8 float32 per block
    X = np.zeros((9, 8), np.float32)
    assert first_nonfinite(X) is None
    X[7, 3], X[8, 0] = np.inf, np.nan
    assert first_nonfinite(X) == (7, 3)
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index \(7, 3\)\)"):
        finite_host_array("X", X, "float32")
    big = np.full((3, 2), 1e300)
    with pytest.raises(ValueError, match=r"X holds np.float64\(1e\+300\) at index \(0, 0\)"):
        finite_host_array("X", big, "float32")


def test_fit_on_a_float32_npy_file_makes_no_full_size_copy(tmp_path, monkeypatch):
    n, d = 100_000, 256  # 100 MB of float32
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    for r in range(0, n, 20_000):
        X[r : r + 20_000] = rng.standard_normal((20_000, d), dtype=np.float32)
    X.flush()
    del X
    np.save(tmp_path / "y.npy", np.arange(n) % 2)
    # A file larger than the free memory trains: it is read as it is used (more than half the
    # memory free: without --from-disk too) and not counted against it (a copy would be).
    for module in (gpumlp.memory, gpumlp.files.npyview):
        monkeypatch.setattr(module, "host_available_memory", lambda: 60 * 2**20)
    table = read_npy_pair(tmp_path / "X.npy", tmp_path / "y.npy")
    X, y = table.train
    net = Network([d, 4, 2], backend="numpy", seed=0)
    assert net.inputs.x(X) is X  # what the batches are read from: the file, not a copy
    assert not isinstance(X, np.ndarray)
    with pytest.raises(OutOfMemory, match="needs about"):
        Network([d, 4, 2], backend="numpy", seed=0).fit(X, y, epochs=1, standardize=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = net.fit(X, y, epochs=1, batch_size=500, lr=0.1)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    size = (tmp_path / "X.npy").stat().st_size
    # The labels, one-hot targets and epoch order take ~3 MB, a finiteness block read from the
    # file 4 MB and its mask 1 MB; a full-size copy (100 MB) or a full-size bool mask (25 MB)
    # would show.
    assert peak < size / 6, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"
    assert len(history) == 1 and history[0]["train_cost"] > 0
