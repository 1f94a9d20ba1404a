"""Tests for gpumlp.data.mnist: the three MNIST formats and bad files (each data set written
small into tmp_path by the writers in helpers/data.py). The cache and fetching are in
test_fetch.py; the same bad files given to ``gpumlp train`` in test_cli_train.py."""

from __future__ import annotations

import gzip
import os
import pickle
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpumlp.data.mnist import load_mnist
from helpers.bad_files import BAD_DATA_FILES, npz_maker, raises_exactly
from helpers.cli import run
from helpers.data import (
    IDX_NAMES,
    assert_split,
    book_splits,
    write_idx,
    write_idx_dir,
    write_npz,
    write_pkl,
)

# --- the three formats ------------------------------------------------------------------------


BOOK_GLOBALS = {"numpy ndarray", "numpy dtype", "numpy.core.multiarray _reconstruct"}
PICKLE_GLOBALS = {  # what each protocol names: the helper writes what the real files hold
    "py2": BOOK_GLOBALS,  # the book's file
    2: {"numpy ndarray", "numpy dtype", "numpy._core.multiarray _reconstruct", "_codecs encode"},
    3: {"numpy ndarray", "numpy dtype", "numpy._core.multiarray _reconstruct"},
}


@pytest.mark.parametrize("protocol", ["py2", 2, 3, 4, 5])
def test_pickle_loads_book_splits_exactly(tmp_path, protocol):
    # Protocols 2 and 3 are the book's splits pickled by Python 3 (2 writes array bytes as
    # _codecs.encode(text, "latin1")); 4 and 5 name globals from the stack.
    splits = book_splits()
    if protocol in PICKLE_GLOBALS:
        raw = gzip.decompress(write_pkl(tmp_path / "probe", splits, protocol=protocol).read_bytes())
        globals_ = {a for op, a, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
        assert globals_ == PICKLE_GLOBALS[protocol]
    train, validation, test = load_mnist(
        write_pkl(tmp_path / "m.pkl.gz", splits, protocol=protocol)
    )
    for got, want, n in zip((train, validation, test), splits, (20, 5, 7), strict=True):
        assert_split(got, n)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_pickle_dtypes_and_layout_are_coerced(tmp_path):
    splits = tuple(
        (np.asfortranarray(x, dtype=np.float64), y.astype(np.int32)) for x, y in book_splits()
    )
    train, _, _ = load_mnist(write_pkl(tmp_path / "m.pkl.gz", splits))
    assert_split(train, 20)
    np.testing.assert_array_equal(train[0], splits[0][0].astype(np.float32))


def test_format_is_detected_by_content_not_name(tmp_path):
    pkl = write_pkl(tmp_path / "data.bin", book_splits())
    npz = tmp_path / "other.bin"
    write_npz(tmp_path / "tmp.npz")
    (tmp_path / "tmp.npz").rename(npz)
    assert len(load_mnist(pkl)[0][0]) == 20
    assert len(load_mnist(npz)[0][0]) == 50


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_idx_folder_round_trips_bytes_over_255(tmp_path, gz):
    arrays = write_idx_dir(tmp_path / "idx", gz=gz)
    train, validation, test = load_mnist(str(tmp_path / "idx"))
    for split, n in ((train, 50), (validation, 10), (test, 12)):
        assert_split(split, n)
    x_all = np.concatenate([train[0], validation[0]])
    y_all = np.concatenate([train[1], validation[1]])
    flat = arrays["train_images"].reshape(60, 784)
    np.testing.assert_array_equal(x_all, (flat / 255).astype(np.float32))
    np.testing.assert_array_equal(np.rint(x_all * 255).astype(np.uint8), flat)
    np.testing.assert_array_equal(y_all, arrays["train_labels"])
    np.testing.assert_array_equal(test[1], arrays["test_labels"])
    assert x_all.max() == 1.0 and x_all.min() == 0.0


def test_npz_round_trips_bytes_over_255(tmp_path):
    arrays = write_npz(tmp_path / "mnist.npz")
    train, validation, test = load_mnist(tmp_path / "mnist.npz")
    for split, n in ((train, 50), (validation, 10), (test, 12)):
        assert_split(split, n)
    np.testing.assert_array_equal(
        validation[0], arrays["x_train"][50:].reshape(10, 784) / np.float32(255)
    )
    np.testing.assert_array_equal(train[1], arrays["y_train"][:50])
    np.testing.assert_array_equal(test[0] * 255, arrays["x_test"].reshape(12, 784))


@pytest.mark.parametrize(("n_train", "n_val"), [(6, 1), (11, 1), (12, 2), (60, 10), (70, 11)])
def test_split_holds_out_last_sixth(tmp_path, n_train, n_val):
    arrays = write_npz(tmp_path / "m.npz", n_train=n_train)
    train, validation, _ = load_mnist(tmp_path / "m.npz")
    assert len(train[1]) == n_train - n_val and len(validation[1]) == n_val
    np.testing.assert_array_equal(validation[1], arrays["y_train"][n_train - n_val :])


def test_full_size_split_is_the_books_50000_10000(tmp_path):
    labels = np.random.default_rng(0).integers(0, 10, size=60_000).astype(np.uint8)
    images = np.zeros((60_000, 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(60_000) % 256
    np.savez(
        tmp_path / "mnist.npz",
        x_train=images,
        y_train=labels,
        x_test=images[:10_000],
        y_test=labels[:10_000],
    )
    train, validation, test = load_mnist(tmp_path / "mnist.npz")
    assert [len(s[1]) for s in (train, validation, test)] == [50_000, 10_000, 10_000]
    np.testing.assert_array_equal(validation[1], labels[50_000:])
    np.testing.assert_array_equal(validation[0][:, 0] * 255, images[50_000:, 0, 0])


def test_too_few_training_images_to_split(tmp_path):
    write_npz(tmp_path / "m.npz", n_train=5)
    with pytest.raises(ValueError, match="too few"):
        load_mnist(tmp_path / "m.npz")


# --- bad input -----------------------------------------------------------------------------------


def test_nonexistent_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pkl\.gz"):
        load_mnist(tmp_path / "nope.pkl.gz")


def test_path_of_wrong_type():
    with pytest.raises(TypeError, match="path"):
        load_mnist(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is a text file\n", b"\x1f\x8b\x08garbage", gzip.compress(b"not a pickle")],
    ids=["empty", "text", "bad-gzip", "gzip-of-text"],
)
def test_unknown_or_corrupt_file(tmp_path, content):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(content)
    with raises_exactly(ValueError, None, naming=path):
        load_mnist(path)


def test_truncated_pickle(tmp_path):
    path = write_pkl(tmp_path / "mnist.pkl.gz", book_splits())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with raises_exactly(ValueError, None, naming=path):
        load_mnist(path)


@pytest.mark.parametrize("protocol", ["py2", 2, 3, 5])
def test_pickle_with_forbidden_global_does_not_run(tmp_path, protocol):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = write_pkl(tmp_path / "mnist.pkl.gz", (Evil(), None, None), protocol=protocol)
    with raises_exactly(ValueError, r"forbidden global (posix|nt|os)\.system", naming=path):
        load_mnist(path)
    assert not marker.exists()


@pytest.mark.parametrize("codec", ["rot13", "zlib_codec", "utf-8"])
def test_pickle_may_call_codecs_encode_only_for_latin1(tmp_path, codec):
    # _codecs.encode is allowed for what protocol 2 writes; any other codec (zlib and bz2
    # would inflate, rot13 would hide text) is refused before it runs.
    text = pickle.dumps("abc", protocol=2)[2:-1]  # BINUNICODE 'abc'
    call = b"c_codecs\nencode\n" + text + pickle.dumps(codec, protocol=2)[2:-1] + b"\x86R."
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(b"\x80\x02" + call))
    with raises_exactly(
        ValueError, rf"forbidden call _codecs\.encode\(\.\.\., '{codec}'\)", naming=path
    ):
        load_mnist(path)


@pytest.mark.parametrize("protocol", [2, 3])
def test_python3_pickles_train_on_the_command_line(tmp_path, protocol, numpy_env):
    path = write_pkl(tmp_path / "mnist.pkl.gz", book_splits((40, 10, 10)), protocol=protocol)
    code, _, stderr = run("train", "--data", path, "--sizes", "784,8,10", "--epochs", "1",
                          "--quiet", "--out", tmp_path / "run")  # fmt: skip
    assert (code, stderr) == (0, ""), stderr
    assert (tmp_path / "run" / "model.npz").is_file()


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        (book_splits()[:2], "3-tuple"),
        ((*book_splits()[:2], (np.zeros((3, 783), np.float32), np.zeros(3, np.int64))), "784"),
        (
            (*book_splits()[:2], (np.full((3, 784), 1.5, np.float32), np.zeros(3, np.int64))),
            r"\[0, 1\]",
        ),
        (
            (*book_splits()[:2], (np.full((3, 784), np.nan, np.float32), np.zeros(3, np.int64))),
            r"\[0, 1\]",
        ),
        ((*book_splits()[:2], (np.zeros((3, 784), np.float32), np.array([0, 1, 10]))), "0..9"),
        ((*book_splits()[:2], (np.zeros((3, 784), np.float32), np.zeros(3))), "integers"),
        (
            (*book_splits()[:2], (np.zeros((3, 784), np.float32), np.zeros(2, np.int64))),
            r"shape \(3,\)",
        ),
    ],
    ids=["two-splits", "783-pixels", "pixel-1.5", "nan", "label-10", "float-labels", "count"],
)
def test_invalid_pickle_contents(tmp_path, splits, message):
    path = write_pkl(tmp_path / "mnist.pkl.gz", splits)
    with raises_exactly(ValueError, message, naming=path):
        load_mnist(path)


def test_idx_folder_missing_a_file(tmp_path):
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with raises_exactly(ValueError, "t10k-labels-idx1-ubyte", naming=tmp_path):
        load_mnist(tmp_path)


def test_idx_member_is_a_directory(tmp_path):
    write_idx_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    ("key", "mangle", "message"),
    [
        ("train_images", lambda p, a: write_idx(p, a, magic=2049), "2051"),
        ("train_labels", lambda p, a: write_idx(p, a, magic=2051), "2049"),
        ("test_images", lambda p, a: p.write_bytes(p.read_bytes()[:-40]), "not a valid IDX"),
        (
            "test_images",
            lambda p, a: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-5])),
            "bytes",
        ),
        ("test_images", lambda p, a: write_idx(p, a.reshape(12, 784, 1)), "28x28"),
        ("train_labels", lambda p, a: write_idx(p, np.where(a == 3, 10, a)), "0..9"),
        ("test_labels", lambda p, a: write_idx(p, a[:-1]), "12 test images but 11 test labels"),
    ],
    ids=[
        "image-magic",
        "label-magic",
        "truncated-gzip",
        "truncated-data",
        "dims",
        "label-10",
        "counts",
    ],
)
def test_bad_idx_file(tmp_path, key, mangle, message):
    arrays = write_idx_dir(tmp_path)
    path = tmp_path / (IDX_NAMES[key] + ".gz")
    mangle(path, arrays[key])
    # A mismatch between two files names the folder; a fault inside one file names that file.
    with raises_exactly(ValueError, message, naming=tmp_path if "but" in message else path):
        load_mnist(tmp_path)


def test_single_idx_file_instead_of_folder(tmp_path):
    write_idx_dir(tmp_path)
    with pytest.raises(ValueError, match="single IDX file"):
        load_mnist(tmp_path / "train-images-idx3-ubyte.gz")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"y_test": None}, "y_test"),
        ({"y_train": np.arange(59) % 10}, "60 train images but 59 train labels"),
        ({"y_train": np.arange(60) % 11}, "0..9"),
        ({"x_test": np.zeros((12, 784), np.uint8)}, "28, 28"),
        ({"x_train": np.zeros((60, 28, 28), np.float32)}, "uint8"),
    ],
    ids=["missing-key", "counts", "label-10", "flat-images", "float-images"],
)
def test_bad_npz(tmp_path, override, message):
    path = tmp_path / "mnist.npz"
    write_npz(path, **override)
    with raises_exactly(ValueError, message, naming=path):
        load_mnist(path)


def test_corrupt_zip(tmp_path):
    path = tmp_path / "mnist.npz"
    write_npz(path)
    path.write_bytes(path.read_bytes()[:200])
    with raises_exactly(ValueError, None, naming=path):
        load_mnist(path)


@pytest.mark.parametrize(
    ("make", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_DATA_FILES]
)
def test_bad_data_file(make, exc, match, tmp_path):
    path = make(tmp_path)
    with raises_exactly(exc, match, naming=path):
        load_mnist(path)


def test_data_path_of_wrong_type():
    with pytest.raises(TypeError, match="path must be a str"):
        load_mnist(123)


def header_positions(path: Path) -> list[int]:
    """Byte offsets of every zip header and .npy header in ``path`` (where parsers look)."""
    with zipfile.ZipFile(path) as zf:
        starts = [info.header_offset for info in zf.infolist()]
    size = path.stat().st_size
    spans = [range(s, s + 30 + 64 + 128) for s in starts] + [range(size - 400, size)]
    return sorted({i for span in spans for i in span if 0 <= i < size})


def test_damaged_npz_headers_give_value_errors(tmp_path):
    path = npz_maker(n_train=6, n_test=1, y_train=np.arange(6), y_test=np.arange(1))(tmp_path)
    original = path.read_bytes()
    damaged = tmp_path / "damaged.npz"
    outcomes = set()
    for i in header_positions(path):
        for mask in (0x01, 0xFF):
            data = bytearray(original)
            data[i] ^= mask
            damaged.write_bytes(bytes(data))
            try:
                load_mnist(damaged)
                outcomes.add("loaded")  # a byte no reader looks at (time stamp, padding)
            except ValueError as e:  # never NotImplementedError, RuntimeError, TokenError...
                assert str(damaged) in str(e)
                outcomes.add("refused")
    assert outcomes == {"loaded", "refused"}
