"""MNIST: find, fetch, verify and load it as NumPy arrays on the host.

Every loader returns the book's three splits ``(train, validation, test)``, each a pair ``(x, y)``
with ``x`` a C-contiguous float32 array of shape (n, 784) in [0, 1] and ``y`` int64 labels of shape
(n,). Three on-disk formats are recognised by their content, not their name:

* the book's ``mnist.pkl.gz`` (a gzip'd Python 2 pickle of the three splits, pixels byte/256);
* a folder with the four IDX files of the original distribution (gzip'd or not, pixels byte/255);
* a Keras-style ``mnist.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (byte/255).

IDX and npz hold only train and test; the last ``n // 6`` training images become the validation
set. For the full 60,000 that is the last 10,000, the book's 50,000/10,000 split (its validation
set is the tail of the original training set). The pickle is read with an unpickler that only
resolves the NumPy globals needed to rebuild arrays, so a hostile file cannot run code, after a
walk through its opcodes, so it cannot build more than it holds. Every reader stops a gzip bomb
(:func:`.safeio.open_untrusted`) and checks the memory an IDX header or npz member claims
before reading it.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import gzip
import math
import os
import pickle
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..files.safeio import Oversize, check_pickle, open_untrusted, read_npy_member, require_memory
from .fetch import MNIST_FILENAME, cache_dir, fetch_mnist

__all__ = ["PICKLE_LIMIT", "Split", "load_mnist"]

Split = tuple[NDArray[np.float32], NDArray[np.int64]]

PICKLE_LIMIT = 512 << 20
"""The most bytes an MNIST pickle may decompress to: the book's file is 220 MB, all 70,000
images as float64 with their labels 440 MB."""
PICKLE_OPS = 10_000
"""The most opcodes an MNIST pickle may hold: the book's holds about a hundred."""

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {2051: 3, 2049: 1}  # unsigned bytes, 3-d images / 1-d labels
_GZIP, _ZIP = b"\x1f\x8b", b"PK\x03\x04"
_FORMATS = "the book's mnist.pkl.gz, a Keras-style mnist.npz, or a folder with the four IDX files"
# Whatever a corrupt or truncated file makes the readers raise; reported as ValueError. A flipped
# byte in a zip header can make zipfile ask for a password (RuntimeError) or refuse a method
# (NotImplementedError); in a .npy header it reaches numpy's header parser (TokenError,
# SyntaxError) or asks for a huge array (MemoryError, OverflowError). OSErrors are corrupt data
# only without an errno (BadGzipFile) or with EINVAL (a seek before the start of the file).
_CORRUPT = (EOFError, zlib.error, pickle.UnpicklingError, zipfile.BadZipFile, LookupError,
            TypeError, AttributeError, ValueError, struct.error, RuntimeError, NotImplementedError,
            SyntaxError, tokenize.TokenError, MemoryError, OverflowError)  # fmt: skip
# The only globals an MNIST pickle may name: the book's file needs _reconstruct, ndarray and
# dtype; _frombuffer is what protocol 5 (Python 3.14's default) writes for arrays. The functions
# are taken from ndarray's own reduce, so the deprecated numpy.core is never imported.
_RECONSTRUCT, _FROMBUFFER = np.empty(0).__reduce__()[0], np.empty(0).__reduce_ex__(5)[0]


def _latin1(text: str, encoding: str = "utf-8") -> bytes:
    """What Python 3's protocol 2 writes bytes as: ``_codecs.encode(text, "latin1")``. Any
    other codec (they include zlib and bz2, which would inflate) is refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"forbidden call _codecs.encode(..., {encoding!r:.20})")
    return codecs.encode(text, "latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[f"{_core}.multiarray", "_reconstruct"] = _RECONSTRUCT
    _ALLOWED[f"{_core}.numeric", "_frombuffer"] = _FROMBUFFER


def load_mnist(
    path: str | os.PathLike[str] | None = None, *, fetch: bool = True
) -> tuple[Split, Split, Split]:
    """Load MNIST as ``(train, validation, test)``.

    Parameters
    ----------
    path : str or path-like, optional
        ``mnist.pkl.gz``, ``mnist.npz`` or a folder of IDX files (see the module docstring).
        ``None`` reads ``cache_dir() / MNIST_FILENAME``.
    fetch : bool, default True
        With ``path=None``, call :func:`fetch_mnist` if the cached file is missing.

    Returns
    -------
    train, validation, test : tuple of (x, y)
        ``x`` : ndarray, shape (n, 784), float32, C-contiguous, values in [0, 1].
        ``y`` : ndarray, shape (n,), int64, values 0..9.
        n is 50,000 / 10,000 / 10,000 for the full data set.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or the cached file is missing and ``fetch`` is false.
    ValueError
        If the data is in none of the formats, or corrupt; the message names the file.
    """
    if path is None:
        p = cache_dir() / MNIST_FILENAME
        if not p.exists():
            if not fetch:
                raise FileNotFoundError(
                    f"MNIST is not cached at {p}; run `gpumlp data fetch` (or pass fetch=True)"
                )
            p = fetch_mnist()
        if not p.is_file():
            raise ValueError(f"cached MNIST path {p} exists but is not a file")
    elif isinstance(path, str | os.PathLike):
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"path={str(p)!r} does not exist; expected {_FORMATS}")
    else:
        raise TypeError(f"path must be a str, a path-like or None, got {type(path).__name__}")
    if p.is_dir():
        return _read_idx_dir(p)
    with p.open("rb") as f:
        head = f.read(4)
    if head.startswith(_ZIP):
        return _read_npz(p)
    if head.startswith(_GZIP):
        with _reading(p, "gzip file"), gzip.open(p, "rb") as f:
            head = f.read(4)
    if len(head) == 4 and int.from_bytes(head, "big") in _IDX_MAGIC:
        raise ValueError(f"{p} is a single IDX file; pass the folder holding all four IDX files")
    if head.startswith(b"\x80"):  # pickle protocol >= 2
        return _read_pickle(p)
    what = "is empty" if p.stat().st_size == 0 else "is in no known format"
    raise ValueError(f"{p} {what}; expected {_FORMATS}")


# --- readers -------------------------------------------------------------------------------


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    try:
        yield
    except Oversize as e:  # a bomb, or more than fits: the message says how much
        raise ValueError(f"{path}: {e}") from None
    except MemoryError as e:
        raise ValueError(
            f"{path}: not a valid {what}: it claims more memory than is free ({e or 'MemoryError'})"
        ) from None
    except OSError as e:
        if e.errno not in (None, errno.EINVAL):
            raise  # the file system's error (permission, I/O), not the data's
        raise ValueError(f"{path}: not a valid {what} ({type(e).__name__}: {e})") from e
    except _CORRUPT as e:
        raise ValueError(f"{path}: not a valid {what} ({type(e).__name__}: {e})") from e


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def _read_pickle(path: Path) -> tuple[Split, Split, Split]:
    with _reading(path, "MNIST pickle"):
        with open_untrusted(path, "the pickle", PICKLE_LIMIT) as f:
            check_pickle(f, "the pickle", max_ops=PICKLE_OPS)
        with open_untrusted(path, "the pickle", PICKLE_LIMIT) as f:
            data = _ArrayUnpickler(f, encoding="latin1").load()
        if not (isinstance(data, tuple | list) and len(data) == 3):
            raise ValueError("expected a 3-tuple (train, validation, test)")
        if not all(isinstance(s, tuple | list) and len(s) == 2 for s in data):
            raise ValueError("expected each split to be a pair (x, y)")
        (x0, y0), (x1, y1), (x2, y2) = data
        return _split(x0, y0, "train"), _split(x1, y1, "validation"), _split(x2, y2, "test")


def _read_npz(path: Path) -> tuple[Split, Split, Split]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    with _reading(path, "MNIST npz"), path.open("rb") as f, zipfile.ZipFile(f) as zf:
        members = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
        if missing := [k for k in keys if k not in members]:
            raise ValueError(f"missing array(s) {', '.join(missing)}; has {sorted(members)}")
        # Only the four arrays are read, each within the memory free, header checked first.
        x_train, y_train, x_test, y_test = (read_npy_member(zf, members[k]) for k in keys)
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if x.dtype != np.uint8 or x.shape[1:] != (28, 28):
                raise ValueError(f"x_{name} must be uint8 (n, 28, 28), got {x.dtype} {x.shape}")
            _same_count(path, name, x, y)
        require_memory(4 * (x_train.size + x_test.size), f"{path} as float32")
        return (*_hold_out(x_train, y_train), _split(_bytes(x_test), y_test, "test"))


def _read_idx_dir(folder: Path) -> tuple[Split, Split, Split]:
    found = {}
    for key, name in _IDX_FILES.items():
        candidates = [folder / (name + ".gz"), folder / name]
        hit = next((c for c in candidates if c.exists()), None)
        if hit is None:
            raise ValueError(
                f"{folder} is a folder but has no {name}[.gz]; expected {_FORMATS} "
                f"({', '.join(n + '[.gz]' for n in _IDX_FILES.values())})"
            )
        if not hit.is_file():
            raise ValueError(f"{hit} should be an IDX file but is not a regular file")
        found[key] = _read_idx(hit, 3 if key.endswith("images") else 1)
    for part in ("train", "test"):
        _same_count(folder, part, found[f"{part}_images"], found[f"{part}_labels"])
    with _reading(folder, "MNIST IDX folder"):
        train, validation = _hold_out(found["train_images"], found["train_labels"])
        test = _split(_bytes(found["test_images"]), found["test_labels"], "test")
    return train, validation, test


def _read_idx(path: Path, ndim: int) -> NDArray[np.uint8]:
    """One IDX file, streamed: the header's dimensions fix how many bytes may follow, which
    must fit in memory, so a small gzip file claiming gigabytes is refused before inflating
    (and one inflating a hundredfold is stopped)."""
    with _reading(path, "IDX file"), open_untrusted(path, "the IDX file") as f:
        head = f.read(4 + 4 * ndim)
        magic = int.from_bytes(head[:4], "big")
        if len(head) < 4 or _IDX_MAGIC.get(magic) != ndim:
            want = 2051 if ndim == 3 else 2049
            raise ValueError(f"magic number {magic}, expected {want}")
        if len(head) < 4 + 4 * ndim:
            raise ValueError(f"header truncated ({len(head)} bytes)")
        dims = struct.unpack(f">{ndim}I", head[4:])
        if ndim == 3 and dims[1:] != (28, 28):
            raise ValueError(f"images are {dims[1]}x{dims[2]}, expected 28x28")
        expected = math.prod(dims)
        require_memory(5 * expected, f"the {dims} bytes its header claims, as bytes and float32,")
        array = np.empty(dims, np.uint8)
        got = f.readinto(array.reshape(-1).data) + len(f.read(1))  # one more tells trailing data
        if got != expected:
            raise ValueError(f"{got} data bytes, expected {expected} for {dims}")
        if ndim == 1 and array.size and array.max() > 9:
            raise ValueError(f"labels must be 0..9, found {array.max()}")
        return array


def _same_count(path: Path, part: str, x: NDArray[Any], y: NDArray[Any]) -> None:
    if len(x) != len(y):
        raise ValueError(f"{path}: {len(x)} {part} images but {len(y)} {part} labels")


def _bytes(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Byte images (n, 28, 28) as a new float32 array (n, 784) of byte/255: one allocation."""
    out: NDArray[np.float32] = np.divide(images.reshape(len(images), -1), 255, dtype=np.float32)
    return out


def _hold_out(images: NDArray[np.uint8], y: NDArray[Any]) -> tuple[Split, Split]:
    """Split the training bytes: the last ``n // 6`` (10,000 of 60,000) become validation."""
    n_val = len(images) // 6
    if n_val == 0:
        raise ValueError(f"{len(images)} training images are too few to hold out a validation set")
    train = _split(_bytes(images[:-n_val]), y[:-n_val], "train")
    return train, _split(_bytes(images[-n_val:]), y[-n_val:], "validation")


def _split(x: Any, y: Any, name: str) -> Split:
    """Validate one split and return C-contiguous float32/int64 arrays of its own (``x`` itself
    when it is one already: no second copy of the images)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 784 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} images must be float of shape (n, 784), got {x.dtype} {x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers of shape ({len(x)},), got {y.shape}")
    if x.size and not (x.min() >= 0.0 and x.max() <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} pixel values must lie in [0, 1]")
    if y.size and not (y.min() >= 0 and y.max() <= 9):
        raise ValueError(f"{name} labels must be 0..9, got {y.min()}..{y.max()}")
    x = np.asarray(x, dtype=np.float32, order="C")
    if not (x.flags.owndata and x.flags.writeable):
        x = x.copy()
    return x, np.array(y, dtype=np.int64, order="C")
