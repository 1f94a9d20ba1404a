"""The BLAS threads of this process: how many the BLAS libraries NumPy loaded use, and a limit
on them for the length of a command (threadpoolctl, which sets them after NumPy is imported,
where the ``OPENBLAS_NUM_THREADS``-style variables are read only at import).

Commands run side by side on one machine (several ``gpumlp train``, a sweep's workers, the
workers of several machines' sweeps in containers on one host) each take every core by
default, and then wait on each other: give each its share (``--threads``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["blas_threads", "check_threads", "limited", "usable_cpus"]


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where there is one, else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(n: object, name: str = "--threads") -> int:
    """``n`` as a number of threads: a positive int. Raises ValueError (TypeError for a
    non-integer) naming ``name``."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be a whole number of threads, got {n!r}")
    if n < 1:
        raise ValueError(f"{name} must be 1 or more threads, got {n}")
    return n


@contextlib.contextmanager
def limited(n: int | None, name: str = "--threads") -> Iterator[None]:
    """Limit the BLAS libraries loaded by this process to ``n`` threads in the block, as they
    were after it; None leaves them as they are (BLAS's own count). Raises as
    :func:`check_threads`."""
    if n is None:
        yield
        return
    check_threads(n, name)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


def blas_threads() -> int | None:
    """The threads the BLAS libraries loaded by this process use now (the most of any), or
    None where threadpoolctl finds none."""
    from threadpoolctl import threadpool_info

    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None
