"""Worker processes of a sweep on one machine: how many it can take, started so that they die
with their parent, and ended when their parent fails. Rules:

- ``--workers N`` is checked before any worker starts (and before anything is written) against
  the CPUs this process may use (its affinity mask, else the CPU count) and the memory free
  (:func:`gpumlp.memory.host_available_memory`: the cgroup's and the rlimits' headroom
  included), each worker taken as :data:`WORKER_BYTES` plus its own copy of the data;
- each worker's BLAS runs on ``--threads`` threads, by default its share of those CPUs
  (:func:`threads_each`), so that K workers do not each take every core;
- on Linux a worker gets SIGTERM when its parent ends, even by SIGKILL (``PR_SET_PDEATHSIG``):
  it then fails its trial and queues it again, as on Ctrl-C; each runs in its own session, so a
  Ctrl-C reaches only the parent, which passes it on once;
- a parent that fails while it starts or waits for its workers (an exception, Ctrl-C twice)
  ends those it started: SIGTERM, then SIGKILL after :data:`GRACE` s, waiting for each to exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import memory
from ..data.sources import DataSet
from ..threads import usable_cpus

__all__ = ["GRACE", "WORKER_BYTES", "check_workers", "end_all", "started", "threads_each"]

WORKER_BYTES = 128 << 20
"""Memory one worker takes besides its data: a Python process with NumPy, Optuna and
SQLAlchemy loaded, training a small network (~95 MB resident measured), with a margin."""
GRACE = 30.0
"""Seconds a worker sent SIGTERM has to fail its trial and exit before it is killed."""
_PR_SET_PDEATHSIG = 1


def threads_each(workers: int) -> int:
    """The BLAS threads each of ``workers`` workers gets by default: its share of the CPUs this
    process may use, at least 1."""
    return max(1, usable_cpus() // workers)


def _in_memory(array: np.ndarray[Any, Any]) -> int:
    """Bytes of ``array`` a process holds itself: none for a memory-mapped file's pages, which
    the processes reading them share."""
    base: Any = array
    while base is not None:
        if isinstance(base, np.memmap | mmap.mmap):
            return 0
        base = getattr(base, "base", None)
    return int(array.nbytes)


def check_workers(n: int, data: DataSet) -> None:
    """Refuse ``n`` workers where this machine cannot run them all at once (the module's rule).
    Raises ValueError naming ``--workers``, the most it takes and why."""
    cpus = usable_cpus()
    splits = [s for s in (data.train, data.validation, data.test) if s is not None]
    each = WORKER_BYTES + sum(_in_memory(a) for split in splits for a in split)
    free = memory.host_available_memory()
    by_memory = cpus if free is None else free // each
    most = min(cpus, by_memory)
    if n <= most:
        return
    if by_memory < cpus and free is not None:
        why = (
            f"each needs about {memory.size_text(each)} (a Python process and its copy of the "
            f"data) and {memory.size_text(free)} of memory is free"
        )
    else:
        why = f"{cpus} CPU{'s' * (cpus > 1)} {'are' if cpus > 1 else 'is'} usable by this process"
    raise ValueError(
        f"--workers {n}: this machine takes at most {most} worker{'s' * (most != 1)}: {why}"
    )


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent SIGTERM when this process ends (Linux), and
    ends the child at once if this process ended before that was armed; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded now: no imports after fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + signal.SIGTERM)

    return arm


@contextlib.contextmanager
def started(
    children: Sequence[tuple[list[str], dict[str, str]]],
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start a worker process for each ``(command, environment)`` of ``children`` (the module's
    rules) and yield them; any exception on the way in or in the block, Ctrl-C included, ends
    those started (:func:`end_all`) before it propagates. Raises RuntimeError naming the worker
    that could not start."""
    procs: list[subprocess.Popen[bytes]] = []
    arm = _die_with_parent()
    try:
        for i, (command, env) in enumerate(children, 1):
            try:
                procs.append(
                    subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=arm)
                )
            except OSError as exc:
                why = exc.strerror or str(exc)
                raise RuntimeError(f"cannot start worker {i} of {len(children)}: {why}") from None
        yield procs
    except BaseException:
        end_all(procs)
        raise


def end_all(procs: Sequence[subprocess.Popen[Any]], grace: float = GRACE) -> None:
    """End the processes ``procs`` still running: SIGTERM to all, then SIGKILL to those not
    gone after ``grace`` s; returns once each has exited (and been waited for)."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()
