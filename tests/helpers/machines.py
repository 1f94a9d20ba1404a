"""Several machines on this one: a PostgreSQL server of a test's own for them to share
(``server``), listening only on a Unix socket, and Linux namespaces that make a process look
like another machine with the same host name (``as_machine``). Each says why it cannot run
here (``server_unavailable``, ``machines_unavailable``), for a test to skip with that reason."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from helpers.cli import PATIENCE


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    which = shutil.which("initdb")
    return found[-1].parent if found else (Path(which).parent if which else None)


def server_unavailable() -> str | None:
    """Why no server can be started here, or None."""
    if _bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg, the PostgreSQL driver, is not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root and there is no runuser to start PostgreSQL as nobody"
    return None


@contextlib.contextmanager
def server(tmp_path: Path) -> Iterator[str]:
    """Start a server (see :func:`server_unavailable` first) and yield its SQLAlchemy URL;
    stopped at the end.

    As root (which PostgreSQL refuses) the server runs as ``nobody`` in a temporary folder
    nobody owns (pytest's tmp_path lies under a folder only root may enter).
    """
    bin_dir = _bin_dir()
    assert bin_dir is not None
    as_root = os.geteuid() == 0
    if as_root:
        base = Path(tempfile.mkdtemp(prefix="gpumlp-pg-"))
        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        prefix = ["runuser", "-u", "nobody", "--"]
    else:
        base, prefix = tmp_path, []
    data, sock, log = base / "data", base / "sock", base / "server.log"

    def pg(*argv: str) -> None:
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=PATIENCE)
        assert done.returncode == 0, done.stdout + done.stderr

    pg("mkdir", "-p", str(sock))
    pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "sweep", "-A", "trust", "--no-sync",
       "--no-locale", "-E", "UTF8")  # fmt: skip
    options = f"-c listen_addresses='' -k {sock} -c fsync=off"  # no TCP port at all
    pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    try:
        yield f"postgresql+psycopg://sweep@/postgres?host={sock}"
    finally:
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        if as_root:
            shutil.rmtree(base, ignore_errors=True)


HOSTNAME = "same"
"""The host name of every machine :func:`as_machine` makes: cloned machines, containers."""

_MACHINE = 'hostname {host} && {{ echo "$0" > /proc/sys/kernel/ns_last_pid; }} 2>/dev/null; "$@"'


def as_machine(argv: list[str], last_pid: int) -> list[str]:
    """``argv`` run as on a machine of its own: new UTS and PID namespaces (and /proc), the
    host name :data:`HOSTNAME`; its processes numbered from ``last_pid`` + 1 where the kernel
    lets it (so that the pids of two machines differ, as they would). Killing the command
    (SIGKILL) kills every process of the machine."""
    script = _MACHINE.format(host=HOSTNAME)
    unshare = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child"]
    return [*unshare, "sh", "-c", script, str(last_pid), *argv]


def machines_unavailable() -> str | None:
    """Why :func:`as_machine` cannot run here (no unshare, the kernel refuses namespaces), or
    None."""
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux) to make namespaces"
    try:
        done = subprocess.run(
            as_machine(["hostname"], 1000), capture_output=True, text=True, timeout=PATIENCE
        )
    except OSError as exc:
        return f"unshare cannot run: {exc}"
    if done.returncode != 0 or done.stdout.strip() != HOSTNAME:
        why = (done.stderr.strip() or f"exit {done.returncode}").splitlines()[-1]
        return f"UTS and PID namespaces are refused here: {why}"
    return None
