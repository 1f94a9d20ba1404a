"""Faults: a disk that fills up mid-write, a training step that runs out of memory, the
peak memory of a fresh process, and files or folders this process cannot write."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def temp_files(folder: Path) -> list[str]:
    """The names of the temp files (``*.tmp``) in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class DiskFull:
    """Make writes of temp files named ``prefix...`` fail half-way with ENOSPC, from the
    ``after + 1``-th such file on (patches what checkpoint.atomic_write_bytes calls)."""

    def __init__(self, monkeypatch, prefix: str, after: int) -> None:
        real_mkstemp, real_fdopen = tempfile.mkstemp, os.fdopen
        self.seen, doomed = 0, set()

        def mkstemp(*args, **kwargs):
            fd, name = real_mkstemp(*args, **kwargs)
            if Path(name).name.startswith(prefix):
                self.seen += 1
                if self.seen > after:
                    doomed.add(fd)
            return fd, name

        def fdopen(fd, *args, **kwargs):
            f = real_fdopen(fd, *args, **kwargs)
            if fd in doomed:
                doomed.discard(fd)
                return _HalfWrite(f)
            return f

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(os, "fdopen", fdopen)


class _HalfWrite:
    def __init__(self, f) -> None:
        self.f = f

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def fail_on_step(monkeypatch, call: int, exc: BaseException) -> None:
    """Make the ``call``-th training step raise ``exc`` (as an allocation failure would), with
    the memory check before training passed (the memory runs out later, mid-run)."""
    import gpumlp.engines._numpy_fast
    import gpumlp.engines.select
    import gpumlp.memory
    import gpumlp.model

    real, calls = gpumlp.engines._numpy_fast.NumpyStep.__call__, [0]

    def failing(self, *a, **k):
        calls[0] += 1
        if calls[0] == call:
            raise exc
        return real(self, *a, **k)

    monkeypatch.setattr(gpumlp.engines._numpy_fast.NumpyStep, "__call__", failing)
    # auto trains with that step (the fused one), not the native engine's whole-epoch call
    monkeypatch.setattr(gpumlp.engines.select, "native_wins", lambda state: False)
    monkeypatch.setattr(gpumlp.model, "check_training_fits", lambda *a, **k: None)


PEAK_RSS = """
def peak_rss():
    # This process's own peak resident bytes (VmHWM). Not ru_maxrss: a child started by a big
    # process (pytest with torch imported) inherits its parent's peak there across exec.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
"""
"""Python source of ``peak_rss()``, for the snippets the memory tests run in a fresh process."""


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (a file or a folder) made unwritable for this process while the block runs:
    its write bits removed, and as root (who writes anyway) the immutable attribute set
    (``chattr +i``); the test is skipped where neither holds. Restored on the way out."""
    import pytest

    mode = path.stat().st_mode
    path.chmod(mode & ~0o222)
    immutable, chattr = False, shutil.which("chattr") or "chattr"
    try:
        if os.geteuid() == 0:
            done = shutil.which(chattr) and subprocess.run(
                [chattr, "+i", str(path)], capture_output=True
            )
            if not done or done.returncode != 0:
                pytest.skip("running as root, and chattr +i does not work here")
            immutable = True
        yield path
    finally:
        if immutable:
            subprocess.run([chattr, "-i", str(path)], check=True)
        path.chmod(mode)
