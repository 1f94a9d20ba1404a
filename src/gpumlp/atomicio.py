"""Files written whole or not at all: temp file in the same folder, fsync, rename.

Every file gpumlp writes (checkpoints, models, histories, run flags, plots, the MNIST cache)
goes through :func:`atomic_write_bytes` or :func:`atomic_file`, so a reader, or a run resumed
after ``kill -9``, sees the old file or the new one, never half of one. New files get the mode
a plain ``open(path, "w")`` would give them (0o666 less the umask), not ``mkstemp``'s 0o600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "TEMP_SUFFIXES",
    "alive",
    "atomic_file",
    "atomic_write_bytes",
    "check_replaceable",
    "fsync_dir",
    "kind_of",
    "new_file_mode",
    "remove_stale",
]

TEMP_SUFFIXES = (".tmp", ".part")
"""Suffixes of the hidden temp files (``.NAME.XXXX.tmp``) a killed writer can leave behind."""


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words ("a FIFO", "a directory", ...)."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"),
             (stat.S_ISREG, "a regular file"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_replaceable(path: Path) -> None:
    """Refuse (ValueError; IsADirectoryError for a directory) to replace ``path`` when it exists
    and is not a regular file or a symbolic link (a rename would turn a device, FIFO or socket
    into a plain file, or fail on a directory): nothing gpumlp writes is meant to land there."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode):  # what os.replace would say, before anything is written
        raise IsADirectoryError(errno.EISDIR, "a directory, not a file: gpumlp will not replace it",
                                str(path))  # fmt: skip
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise ValueError(f"{str(path)!r} is {kind_of(mode)}, not a regular file: gpumlp "
                         "writes files only where a regular file is or none")  # fmt: skip


def new_file_mode(path: Path) -> int:
    """The permission bits a new ``path`` gets: those of the regular file it replaces (never
    set-id bits, never those of what a symlink points at), else 0o666 less the umask."""
    try:
        st = path.lstat()
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        return st.st_mode & 0o777
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask: read from ``/proc`` where it can be (Linux 4.7+), since setting it
    to read it back would give files another thread creates meanwhile the wrong mode."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[IO[bytes]]:
    """Open a hidden temp file beside ``path`` for writing; on success it replaces ``path``.

    On any failure (disk full, permissions, an exception in the ``with`` body, Ctrl-C) the temp
    file is removed and the previous content of ``path``, if any, is untouched. A ``path`` that
    is a device, FIFO, socket or directory is refused before anything is written
    (:func:`check_replaceable`).
    """
    path = Path(path)
    check_replaceable(path)
    # The writer's pid in the name lets remove_stale tell a killed writer's file from a live one.
    prefix = f".{path.name}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, new_file_mode(path))
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """True when process ``pid`` exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(folder: Path, name: str) -> list[Path]:
    """Remove the temp files of writers of ``folder/name`` that died before renaming them
    (``kill -9``, a power cut): hidden ``.NAME.PID.*`` files whose process is gone. A live
    writer's file is left alone. Returns the paths removed."""
    removed = []
    for tmp in folder.glob(f".{name}.*"):
        parts = tmp.name[len(name) + 2 :].split(".", 1)
        if not tmp.name.endswith(TEMP_SUFFIXES) or not parts[0].isdigit():
            continue
        if int(parts[0]) != os.getpid() and not alive(int(parts[0])):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed
