"""A run folder's lock: two live runs never write one folder.

``out/.lock`` is held with an exclusive ``flock`` for as long as a run writes its folder, and
names its holder (pid, host, start time) for the message that refuses a second run. The kernel
drops a ``flock`` when its process dies however it dies (``kill -9`` included), so a lock file
a dead run left behind is simply taken over, with a message; no guess from pids is needed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomicio import alive, kind_of

__all__ = ["lock_folder"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def lock_folder(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for the block: an exclusive ``flock`` (the kernel drops it when the
    process dies, however it dies), and in the file who holds it (pid, host, start time)."""
    lock = out / ".lock"
    for _ in range(100):
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(lock, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValueError(
                    f"--out {str(out)!r}: its lock {str(lock)!r} is a symbolic "
                    "link; gpumlp never writes through one (remove it)"
                ) from None
            raise ValueError(f"--out {str(out)!r} is not writable: {exc.strerror or exc}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise ValueError(f"--out {str(out)!r}: its lock {str(lock)!r} is {kind_of(mode)}, "
                             "not a regular file (remove it)")  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise ValueError(_in_use(out, lock)) from None
            raise ValueError(
                f"--out {str(out)!r} cannot be locked: {exc.strerror or exc}"
            ) from None
        try:  # the file still at the path, not one its last holder removed after we opened it
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise ValueError(f"--out {str(out)!r}: could not take its lock {str(lock)!r}")
    try:
        held = _holder(fd)
        if held.get("pid") is not None:
            logger.warning(
                "gpumlp: %s was locked by process %s on %s (since %s), which %s; taking it over",
                out,
                held.get("pid"),
                held.get("host"),
                _when(held.get("started")),
                "is gone" if not _alive_here(held) else "no longer holds it",
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still holding it: no one else holds this file now
        os.close(fd)


def _holder(fd: int) -> dict[str, Any]:
    """Who a lock file (open as ``fd``) names; {} when empty or unreadable."""
    try:
        return _parse(os.pread(fd, 4096, 0))
    except OSError:
        return {}


def _parse(raw: bytes) -> dict[str, Any]:
    """A lock file's record of its holder; {} when empty, malformed or not an object."""
    try:
        held = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        return {}
    return held if isinstance(held, dict) else {}


def _alive_here(held: dict[str, Any]) -> bool:
    pid = held.get("pid")
    return held.get("host") == socket.gethostname() and isinstance(pid, int) and alive(pid)


def _when(started: Any) -> str:
    if not isinstance(started, int | float) or not math.isfinite(started):
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))


def _in_use(out: Path, lock: Path) -> str:
    """The refusal of a folder whose lock a live run holds, naming that run."""
    held: dict[str, Any] = {}
    for _ in range(20):  # the holder writes who it is just after taking the lock
        with contextlib.suppress(OSError):
            held = _parse(lock.read_bytes())
        if held.get("pid") is not None:
            break
        time.sleep(0.05)
    if held.get("pid") is None:
        return f"--out {str(out)!r} is in use by another live run; wait for it or choose another"
    return (
        f"--out {str(out)!r} is in use by a live run (pid {held.get('pid')} on "
        f"{held.get('host')}, since {_when(held.get('started'))}); wait for it or choose "
        "another --out"
    )
