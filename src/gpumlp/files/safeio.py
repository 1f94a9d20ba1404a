"""Reading files whose contents cannot be trusted, within sizes fixed before anything inflates.

Every size a file claims (a zip member's declared length, an ``.npy`` header's shape, an IDX
header's dimensions) is checked against what the caller expects, or against the memory free,
before the bytes are read or decompressed; streams are read through :class:`LimitedReader`, so
a gzip bomb stops at its cap, or once it inflates far more than real data does, instead of
filling memory. A pickle is walked opcode by opcode (:func:`check_pickle`) before it is loaded,
since a few bytes of it can make the unpickler build gigabytes of objects.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import pickletools
import stat
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..atomicio import kind_of
from ..memory import host_available_memory, size_text

__all__ = [
    "HEADER_SLACK",
    "INFLATE_FLOOR",
    "INFLATE_RATIO",
    "LimitedReader",
    "Oversize",
    "WrongShape",
    "check_pickle",
    "open_regular",
    "open_untrusted",
    "parse_json",
    "read_npy",
    "read_npy_header",
    "read_npy_member",
    "require_memory",
]

HEADER_SLACK = 1 << 16
"""Bytes an ``.npy`` header may take beyond the array data (NumPy writes 128, caps at 10000)."""


class Oversize(ValueError):
    """A file claims, or decompresses to, more than it may; the message says how much and why."""


class WrongShape(ValueError):
    """An array's header states another shape than the one its reader expects."""


def require_memory(nbytes: int, what: str) -> None:
    """Refuse (Oversize) to allocate ``nbytes`` for ``what`` when the host has less free."""
    free = host_available_memory()
    if free is not None and nbytes > free:
        raise Oversize(
            f"{what} would need {size_text(nbytes)} but only {size_text(free)} of memory is free"
        )


INFLATE_RATIO = 100
"""How many times its compressed size a gzip'd data file may inflate to, past
:data:`INFLATE_FLOOR`: MNIST's files inflate 5 (IDX) to 13 (the book's pickle) times, a gzip
bomb of zeros a thousand times."""
INFLATE_FLOOR = 64 << 20
_CHUNK = 1 << 20  # bytes inflated between two checks


class LimitedReader(io.RawIOBase):
    """A read-only stream over ``raw`` that raises :class:`Oversize` past ``limit`` bytes, or,
    given the compressed file ``packed`` that ``raw`` inflates, once it has given more than
    :data:`INFLATE_FLOOR` bytes and :data:`INFLATE_RATIO` times those read from ``packed``."""

    def __init__(
        self, raw: io.BufferedIOBase, limit: int, what: str, *, packed: IO[bytes] | None = None
    ) -> None:
        super().__init__()
        self.raw, self.limit, self.what, self.done, self.packed = raw, limit, what, 0, packed

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.done

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[:_CHUNK]
        n = self.raw.readinto(view)
        self.done += n
        if self.done > self.limit:
            raise Oversize(f"{self.what} holds more than {self.limit:,} bytes")
        if self.packed is not None and self.done > INFLATE_FLOOR:
            packed = self.packed.tell()
            if self.done > INFLATE_RATIO * packed:
                raise Oversize(
                    f"{self.what} inflates to more than {INFLATE_RATIO} times its compressed "
                    f"size ({self.done:,} bytes from the first {packed:,}): a gzip bomb?"
                )
        return n


def open_regular(path: Path, what: str) -> io.BufferedReader:
    """``path`` opened for reading, refused (ValueError naming ``what``) unless it is a regular
    file. The check is made on the opened file (open without blocking, then ``fstat``), so a
    FIFO never hangs the reader and nothing can be swapped in between check and read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValueError(f"{what} {str(path)!r} is {kind_of(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def open_untrusted(path: Path, what: str, limit: int = 1 << 62) -> Iterator[io.BufferedReader]:
    """``path`` opened for reading, inflated if it is gzip'd, through a :class:`LimitedReader`
    (``limit`` bytes at most; a gzip bomb stops early)."""
    with open_regular(path, what) as packed:
        zipped = packed.read(2) == b"\x1f\x8b"
        packed.seek(0)
        inner: Any = gzip.GzipFile(fileobj=packed, mode="rb") if zipped else packed
        with inner:
            raw = LimitedReader(inner, limit, what, packed=packed if zipped else None)
            yield io.BufferedReader(raw, _CHUNK)


def check_pickle(f: IO[bytes], what: str, *, max_ops: int) -> None:
    """Walk the pickle in ``f`` without building anything, refusing (ValueError) one of more
    than ``max_ops`` opcodes or with a memo index past that (the unpickler sizes its memo by
    the largest index: five bytes can ask for gigabytes), so that loading it can only build
    what its bytes hold. Truncated or malformed pickles raise ValueError too."""
    for count, (op, arg, _) in enumerate(pickletools.genops(f), 1):
        if count > max_ops:
            raise ValueError(f"{what} has more than {max_ops:,} opcodes")
        if op.name.endswith("PUT") and isinstance(arg, int) and arg > max_ops:
            raise ValueError(f"{what} stores at memo index {arg:,}, past {max_ops:,}")


def parse_json(data: bytes | str, what: str) -> Any:
    """``data``, UTF-8 JSON, parsed. ValueError naming ``what`` (the file, or its part) and the
    cause when it is not UTF-8, not JSON, or nests deeper than Python's recursion limit lets
    the parser go (gpumlp's own files nest a few levels)."""
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} is not valid UTF-8 JSON ({exc})") from None
    except RecursionError:
        raise ValueError(
            f"{what} nests its JSON deeper than the {sys.getrecursionlimit()} levels Python "
            "can parse"
        ) from None


def read_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """The header of the ``.npy`` stream ``f`` (format 1.0 or 2.0): shape, Fortran order and
    dtype, as declared; ``f`` is left at the first byte of the data."""
    version = np.lib.format.read_magic(f)
    reader = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = reader(f)
    return shape, fortran, dtype


def read_npy(
    f: IO[bytes], name: str, *, check: Callable[[tuple[int, ...], np.dtype[Any]], None]
) -> np.ndarray[Any, Any]:
    """Read one ``.npy`` array from ``f``: its header first, which ``check(shape, dtype)`` may
    refuse (by raising), then exactly the bytes it declares, into a fresh array. Object dtypes
    (pickles) are refused."""
    shape, fortran, dtype = read_npy_header(f)
    if dtype.hasobject:
        raise ValueError(f"array {name!r} holds Python objects, which are never loaded")
    check(shape, dtype)
    out = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    flat: Any = out.reshape(-1, order="A")
    view = memoryview(flat).cast("B") if out.size else memoryview(b"")
    got = 0
    while got < out.nbytes:
        n = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise ValueError(f"array {name!r} is truncated ({got} of {out.nbytes} bytes)")
        got += n
    return out


def read_npy_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    *,
    shape: tuple[int, ...] | None = None,
    kinds: str = "biuf",
    max_bytes: int | None = None,
) -> np.ndarray[Any, Any]:
    """Read the ``.npy`` member ``info`` of ``zf`` without inflating more than it should hold.

    With ``shape`` given, the member's declared size must fit that shape's data (plus a header)
    and its header must state that shape; otherwise its data may not exceed ``max_bytes`` (by
    default the memory free). ``kinds`` are the dtype kinds allowed.
    """
    name = info.filename.removesuffix(".npy")
    if shape is not None:
        limit = 8 * math.prod(shape) + HEADER_SLACK
    else:
        limit = max_bytes if max_bytes is not None else host_available_memory() or 2**62
        limit += HEADER_SLACK
    if info.file_size > limit:
        raise Oversize(
            f"array {name!r} declares {info.file_size:,} bytes, more than the {limit:,} it may hold"
        )

    def check(found: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        if dtype.kind not in kinds:
            raise ValueError(f"array {name!r} has dtype {dtype}, expected a numeric array")
        if shape is not None and tuple(found) != tuple(shape):
            raise WrongShape(f"array {name!r} has shape {tuple(found)}, expected {tuple(shape)}")
        nbytes = math.prod(found) * dtype.itemsize
        if nbytes > info.file_size:
            raise ValueError(f"array {name!r} declares {nbytes:,} bytes in a smaller member")
        require_memory(nbytes, f"array {name!r}")

    with zf.open(info) as f:
        return read_npy(f, name, check=check)
