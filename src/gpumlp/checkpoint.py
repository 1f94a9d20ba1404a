"""Checkpoints: one ``.npz`` file of host arrays plus JSON metadata, written atomically.

Layout of the file (a plain NumPy ``.npz``, readable without CuPy or gpumlp):

- ``__meta__``: a uint8 array holding UTF-8 JSON: ``format`` (this module's
  :data:`FORMAT_VERSION`), ``library`` (gpumlp's version), the network config (``sizes``,
  ``activation``, ``output_activation``, ``cost``, ``dtype``), ``epoch`` (epochs finished),
  optimizer name, hyperparameters and scalar state, schedule and early-stopping state, the host
  RNG's state, the history so far, and ``sha256``: a digest of the rest of the metadata and of
  every array's name, dtype, shape and bytes, so any corruption of the file is detected on load.
- ``param/<i>``: the tensors w_0, b_0, w_1, b_1, ... ; ``opt/<key>/<i>``: optimizer buffers.

Writes go to a temporary file in the same directory, are fsynced, then renamed over the
target, so a reader (or a resume after ``kill -9``) sees the old file or the new one, never half.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "read_checkpoint",
    "write_checkpoint",
]

FORMAT_VERSION = 1

# What reading a damaged zip or .npy can raise, besides OSError/ValueError/EOFError: a flipped
# flag or version byte makes zipfile ask for a password (RuntimeError) or refuse an unknown
# method or version (NotImplementedError); a flipped method byte sends the data to zlib or lzma.
_DAMAGED = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError,
            NotImplementedError, zlib.error, lzma.LZMAError, struct.error, OverflowError,
            MemoryError)  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, of an unknown format, or does not fit."""


def _digest(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    The file gets the permissions a plain ``open(path, "wb")`` would give it (those of the file
    it replaces, else 0o666 less the umask), not ``mkstemp``'s owner-only 0o600. On any failure
    (disk full, permissions) the temporary file is removed and the previous content of
    ``path``, if any, is left untouched.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_checkpoint(
    path: str | os.PathLike[str], meta: dict[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    """Save ``arrays`` (host NumPy) and JSON-able ``meta`` to ``path`` atomically.

    ``meta`` gains ``format`` and ``sha256``; array names must not start with ``__``.
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    meta = {**meta, "format": FORMAT_VERSION}
    meta["sha256"] = _digest(arrays, meta)
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, __meta__=blob, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Load and verify a checkpoint.

    Returns
    -------
    meta : dict, the JSON metadata
    arrays : dict of name -> host NumPy array

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CheckpointError
        When it is a directory, not a checkpoint, truncated or corrupted (checksum mismatch), or
        of a newer format version than this gpumlp reads. The message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, expected a .npz file")
    try:
        # Open the file here: np.load(path) leaks its handle when the zip is damaged.
        with path.open("rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy: one array
                raise CheckpointError(f"{str(path)!r} is a .npy array, not a gpumlp checkpoint")
            with npz:
                if "__meta__" not in npz.files:
                    raise CheckpointError(f"{str(path)!r} is not a gpumlp checkpoint (no metadata)")
                meta = json.loads(bytes(npz["__meta__"]).decode("utf-8"))
                arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
    except CheckpointError:
        raise
    except _DAMAGED as exc:
        raise CheckpointError(
            f"{str(path)!r} is damaged or not a gpumlp checkpoint: {exc}"
        ) from None
    if not isinstance(meta, dict) or "format" not in meta:
        raise CheckpointError(f"{str(path)!r} has no format version in its metadata")
    if not isinstance(meta["format"], int) or meta["format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format {meta['format']!r}; this gpumlp reads up to "
            f"{FORMAT_VERSION}: upgrade gpumlp"
        )
    body = {k: v for k, v in meta.items() if k != "sha256"}
    if meta.get("sha256") != _digest(arrays, body):
        raise CheckpointError(
            f"{str(path)!r} is corrupted: its content does not match its checksum"
        )
    return meta, arrays
