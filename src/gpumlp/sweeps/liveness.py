"""Who runs a sweep's trial, and when its worker is known to be gone without waiting for its
heartbeat. No Optuna here.

A worker records on each trial it runs (user attribute ``"worker"``) a random id drawn once
per process (``id``: the authority on whose trial it is), ``host``, ``pid``, ``boot_id``
(``/proc/sys/kernel/random/boot_id``, new at every boot) and ``pid_ns`` (its PID namespace,
``/proc/self/ns/pid``), with the trial's number. Optuna's heartbeat is the authority on
whether a worker lives: a trial whose heartbeat stopped for the grace period is failed
wherever its worker ran. The shortcut "its process is gone" applies only where a process id
means the same process as here: the same host name (cloned machines and containers share
one), the same boot (containers share the host's boot id) and the same PID namespace (the
initial one has the same id on every host) — all three, each known.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from ..atomicio import alive

__all__ = ["BOOT_ID", "HOST", "PID_NS", "WORKER_ID", "gone_here", "mine", "worker_record"]


def _read_boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, ValueError):  # not Linux, or no /proc
        return None


def _read_pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError):
        return None


HOST = socket.gethostname()
BOOT_ID = _read_boot_id()
PID_NS = _read_pid_namespace()
WORKER_ID = uuid.uuid4().hex
"""This process's worker id: random, so no two workers anywhere share one (a forked child
draws its own)."""


def _new_worker_id() -> None:
    global WORKER_ID
    WORKER_ID = uuid.uuid4().hex


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_worker_id)


def worker_record(trial: int) -> dict[str, Any]:
    """What this worker records on the trial numbered ``trial`` that it runs."""
    return {"id": WORKER_ID, "host": HOST, "pid": os.getpid(), "boot_id": BOOT_ID,
            "pid_ns": PID_NS, "trial": trial}  # fmt: skip


def mine(record: Any) -> bool:
    """Whether ``record`` (a trial's ``"worker"`` attribute) is this worker's."""
    return isinstance(record, Mapping) and record.get("id") == WORKER_ID


def gone_here(record: Any) -> bool:
    """Whether the worker of ``record`` is known dead without its heartbeat: it ran on this
    host, in this boot, in this PID namespace (each known on both sides), it is not this
    worker, and no process has its pid. False for anything else, an older record included."""
    if not isinstance(record, Mapping) or mine(record):
        return False
    here = {"host": HOST, "boot_id": BOOT_ID, "pid_ns": PID_NS}
    if any(value is None or record.get(key) != value for key, value in here.items()):
        return False
    pid = record.get("pid")
    return isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 and not alive(pid)
