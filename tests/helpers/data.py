"""MNIST files in every format, small: Keras npz, IDX files (gzipped or not), the book's
Python 2 pickle, and the learnable ``bar_digits``; the checks on a loaded split."""

from __future__ import annotations

import csv
import gzip
import io
import pickle
from pathlib import Path

import numpy as np


def write_tiny_mnist(path, n_train: int, n_test: int, *, seed: int = 0):
    """Write a Keras-style mnist.npz of random 28x28 images and labels; returns ``path``.

    ``load_mnist`` holds out the last ``n_train // 6`` training images as validation.
    """
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test),
    )
    return path


IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


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
    """A compressed Keras-style npz; ``override`` replaces arrays (None leaves one out)."""
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


def _bar_shape(d: int) -> np.ndarray:
    """Class d as a bright shape in a 20×20 box, centred like an MNIST digit: a bar, a column,
    a plus, an X, a frame, a block, an L, a T, two bars, two columns."""
    s = np.zeros((20, 20), bool)
    eye = np.eye(20, dtype=bool)
    bars = {0: [(8, 12, 0, 20)], 1: [(0, 20, 8, 12)], 2: [(8, 12, 0, 20), (0, 20, 8, 12)],
            4: [(0, 3, 0, 20), (17, 20, 0, 20), (0, 20, 0, 3), (0, 20, 17, 20)],
            5: [(3, 17, 3, 17)], 6: [(0, 20, 0, 4), (16, 20, 0, 20)],
            7: [(0, 4, 0, 20), (0, 20, 8, 12)], 8: [(3, 7, 0, 20), (13, 17, 0, 20)],
            9: [(0, 20, 3, 7), (0, 20, 13, 17)]}  # fmt: skip
    for r0, r1, c0, c1 in bars.get(d, []):
        s[r0:r1, c0:c1] = True
    if d == 3:
        s = eye | eye[::-1] | np.roll(eye, 1, 1) | np.roll(eye[::-1], 1, 1)
    return s


def bar_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, 28, 28) uint8 of class d = ``_bar_shape(d)`` on faint noise, labels 0..9:
    "digits" a small network learns in a few epochs."""
    y = (np.arange(n) % 10).astype(np.uint8)
    x = np.random.default_rng(seed).integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, d in enumerate(y):
        x[i, 4:24, 4:24][_bar_shape(int(d))] = 255
    return x, y


def write_bar_mnist(path: Path, n_train: int = 600, n_test: int = 100) -> Path:
    """An mnist.npz of ``bar_digits``; returns ``path``."""
    x_train, y_train = bar_digits(n_train, 1)
    x_test, y_test = bar_digits(n_test, 2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def write_csv(path: Path, rows: list[list[object]], *, delimiter: str = ",") -> Path:
    """``rows`` (the header first, if any) written to ``path`` by the ``csv`` module, UTF-8."""
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def write_table(path: Path, width: int, n: int = 40) -> Path:
    """A table .npz (X float32 (n, width), y: 2 classes, by the sign of the first feature)."""
    X = np.random.default_rng(width).normal(size=(n, width)).astype(np.float32)
    np.savez(path, X=X, y=(X[:, 0] > 0).astype(np.int64))
    return path


def write_unscaled_table(path: Path, n: int = 300, *, seed: int = 0) -> Path:
    """A CSV of ``n`` rows of three well-separated Gaussian classes (named ``a``, ``b``, ``c``,
    the last column) whose four columns come in units 1000, 1, 0.01 and 10 apart, as a table
    of measurements does (wine's run from 0.1 to 1,680)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.array([[0.0, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 3]])
    X = (centres[y] + rng.standard_normal((n, 4))) * np.array([1000.0, 1.0, 0.01, 10.0])
    rows = [",".join([*(f"{v:.5g}" for v in x), "abc"[k]]) for x, k in zip(X, y, strict=True)]
    path.write_text("\n".join(["w,x,y,z,label", *rows]) + "\n")
    return path


def write_regression_table(path: Path, n: int = 300, *, seed: int = 0, integers: bool = False):
    """A CSV of ``n`` rows of four features and a target near 150 + 50·(x·w) (the last column,
    ``target``), as diabetes' run from 25 to 346: integers with ``integers`` (then many distinct
    values, as diabetes' targets), else fractions. Returns ``(path, X, y)``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = 150.0 + 50.0 * (X @ np.array([1.0, -0.5, 0.25, 0.0])) + rng.normal(0.0, 5.0, n)
    y = np.round(y) if integers else np.round(y, 3)
    shown = (str(int(t)) if integers else repr(float(t)) for t in y)
    rows = [",".join([*(repr(float(v)) for v in x), t]) for x, t in zip(X, shown, strict=True)]
    path.write_text("\n".join(["a,b,c,d,target", *rows]) + "\n")
    return path, X, y
