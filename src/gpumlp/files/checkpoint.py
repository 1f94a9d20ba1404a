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
import json
import lzma
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomicio import atomic_file
from ..errors import CheckpointError
from .jsonfile import JSON_LIMIT as META_LIMIT  # bytes of metadata a file may declare
from .jsonfile import parse_json
from .safeio import Oversize, WrongShape, open_regular, read_npy_member

__all__ = ["FORMAT_VERSION", "read_checkpoint", "write_checkpoint"]

FORMAT_VERSION = 1

# What reading a damaged zip or .npy can raise, besides OSError/ValueError/EOFError: a flipped
# flag or version byte makes zipfile ask for a password (RuntimeError) or refuse an unknown
# method or version (NotImplementedError); a flipped method byte sends the data to zlib or lzma.
_DAMAGED = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError,
            NotImplementedError, zlib.error, lzma.LZMAError, struct.error, OverflowError,
            MemoryError)  # fmt: skip


def _digest(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.data)  # the bytes in place: no copy of a large array
    return h.hexdigest()


def _checked_path(path: Any) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    return Path(path)


def write_checkpoint(
    path: str | os.PathLike[str], meta: dict[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    """Save ``arrays`` (host NumPy) and JSON-able ``meta`` to ``path`` atomically.

    ``meta`` gains ``format`` and ``sha256``; array names must not start with ``__``. TypeError
    when ``path`` is not a str or path-like.
    """
    path = _checked_path(path)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    meta = {**meta, "format": FORMAT_VERSION}
    meta["sha256"] = _digest(arrays, meta)
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    savez: Any = np.savez  # its stub types **arrays as options
    with atomic_file(path) as f:  # streamed: no copy of the arrays in memory
        savez(f, __meta__=blob, **arrays)


Expect = Callable[[dict[str, Any]], Mapping[str, tuple[tuple[int, ...], bool]]]
"""Given a file's metadata, the arrays it must (True) or may (False) hold, by name, with shapes."""

INFLATE_LIMIT = 64
"""Read without ``expect``, a compressed member may inflate to at most this many times its
compressed size (plus 1 MiB): gpumlp writes checkpoints uncompressed, and trained weights
deflate by 10% or so, while a zip bomb inflates a thousandfold."""


def read_checkpoint(
    path: str | os.PathLike[str], expect: Expect | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
    """Load and verify a checkpoint, inflating nothing beyond what it should hold.

    Parameters
    ----------
    path : the ``.npz`` file
    expect : optional; from the metadata, the arrays the file must or may hold and their shapes
        (:func:`gpumlp.files.modelfile.expected_arrays`). Each member's declared size and header are
        checked against them before it is read, any other member is refused, and so is a file
        lacking an array it must hold. Without it, each member may hold at most the memory
        free, and a compressed one :data:`INFLATE_LIMIT` times its compressed size.

    Returns
    -------
    meta : dict, the JSON metadata
    arrays : dict of name -> host NumPy array (optional arrays the file lacks are left out)

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    CheckpointError
        When it is a directory, not a checkpoint, truncated, corrupted (checksum mismatch), of a
        newer format, or claims arrays it should not hold. The message names the file.
    """
    path = _checked_path(path)
    where = repr(str(path))
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {where} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {where} is a directory, expected a .npz file")
    try:
        with open_regular(path, "checkpoint") as f:  # opened here: zipfile leaks no handle
            if f.read(6) == b"\x93NUMPY":
                raise CheckpointError(f"{where} is a .npy array, not a gpumlp checkpoint")
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                meta, arrays, wanted = _read_members(zf, where, expect)
    except CheckpointError:
        raise
    except _DAMAGED as exc:
        raise CheckpointError(f"{where} is damaged or not a gpumlp checkpoint: {exc}") from None
    body = {k: v for k, v in meta.items() if k != "sha256"}
    if meta.get("sha256") != _digest(arrays, body):
        raise CheckpointError(f"{where} is corrupted: its content does not match its checksum")
    if missing := [name for name, (_, must) in wanted.items() if must and name not in arrays]:
        raise CheckpointError(f"{where} lacks parameter {missing[0]!r}")
    return meta, arrays


def _read_members(
    zf: zipfile.ZipFile, where: str, expect: Expect | None
) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]], Mapping[str, tuple[Any, bool]]]:
    members = {info.filename.removesuffix(".npy"): info for info in zf.infolist()}
    if "__meta__" not in members:
        raise CheckpointError(f"{where} is not a gpumlp checkpoint (no metadata)")
    try:
        blob = read_npy_member(zf, members.pop("__meta__"), kinds="u", max_bytes=META_LIMIT)
    except Oversize as exc:
        raise CheckpointError(f"{where} is damaged or hostile: {exc}") from None
    meta = parse_json(blob.tobytes(), "its metadata")
    if not isinstance(meta, dict) or "format" not in meta:
        raise CheckpointError(f"{where} has no format version in its metadata")
    if not isinstance(meta["format"], int) or meta["format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has checkpoint format {meta['format']!r}; this gpumlp reads up to "
            f"{FORMAT_VERSION}: upgrade gpumlp"
        )
    wanted = None if expect is None else expect(meta)
    arrays = {}
    for name, info in members.items():
        if wanted is not None and name not in wanted:
            raise CheckpointError(f"{where} holds an unexpected array {name!r}")
        shape = None if wanted is None else wanted[name][0]
        inflates = info.compress_type != zipfile.ZIP_STORED
        if shape is None and inflates and info.file_size > _inflate_limit(info):
            raise CheckpointError(
                f"{where} is damaged or hostile: array {name!r} declares {info.file_size:,} "
                f"bytes in {info.compress_size:,} compressed, more than {INFLATE_LIMIT} times as "
                "many (a zip bomb?)"
            )
        try:
            arrays[name] = read_npy_member(zf, info, shape=shape, kinds="f" if wanted else "biuf")
        except Oversize as exc:
            raise CheckpointError(f"{where} is damaged or hostile: {exc}") from None
        except WrongShape as exc:
            raise CheckpointError(f"{where} holds invalid parameters: {exc}") from None
    return meta, arrays, wanted or {}


def _inflate_limit(info: zipfile.ZipInfo) -> int:
    return INFLATE_LIMIT * info.compress_size + (1 << 20)
