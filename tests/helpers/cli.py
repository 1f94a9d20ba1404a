"""The command line: ``run`` (``gpumlp.cli.main`` in process), ``gpumlp`` in a subprocess with a
clean environment (``start_gpumlp``, ``run_gpumlp``, ``reap``), waits on events (``wait_for``),
``run_python``, the flags of the shared runs, and what a run folder holds."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from helpers.nets import history_columns


def run(*argv) -> tuple[int, str, str]:
    """``gpumlp.cli.main(argv)`` in this process -> (exit code, stdout, stderr)."""
    from gpumlp.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, stderr: str, match: str | None = None) -> None:
    """A refused command: exit code 2 and one line on stderr, ``gpumlp: error: ...``, in which
    the regular expression ``match`` (when given) is found."""
    assert code == 2, (code, stderr)
    assert stderr.startswith("gpumlp: error: ") and stderr.count("\n") == 1, stderr
    if match is not None:
        assert re.search(match, stderr), stderr


def gpumlp_env() -> dict[str, str]:
    """The environment of a ``gpumlp`` subprocess: this one's, with the NumPy backend by default
    and one BLAS thread (runs share the cores, and numbers must not depend on threading)."""
    one = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return {**os.environ, "GPUMLP_BACKEND": "numpy", **one}


def gpumlp_cmd(*argv) -> list[str]:
    """The command line ``python -m gpumlp ARGV...``."""
    return [sys.executable, "-m", "gpumlp", *(str(a) for a in argv)]


def start_gpumlp(*argv, **popen) -> subprocess.Popen:
    """Start ``gpumlp ARGV...`` in a subprocess (``gpumlp_env()``); ``reap`` it in a finally."""
    return subprocess.Popen(gpumlp_cmd(*argv), env=gpumlp_env(), **popen)


PATIENCE = 600.0
"""Seconds a test waits for an event (a line, a file, a process's end) before it fails. A wait
ends as soon as its event comes, so the limit costs nothing on a green run; it is generous
because CI runs under load (a load average of 270 on two cores turned a second into minutes)."""

UNTIL_STOPPED = 100_000
"""Epochs of a run that a test stops (a signal, a kill, a file cut short) or ends another way:
hours of training (a small network's epoch takes ~0.02 s on the native engine), so the run
cannot end of itself first, however loaded the machine."""


def run_gpumlp(
    *argv, timeout: float = PATIENCE, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``gpumlp ARGV...`` in a subprocess (``gpumlp_env()``, in ``cwd``) to its end; text
    output."""
    return subprocess.run(
        gpumlp_cmd(*argv), env=gpumlp_env(), cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def wait_until(
    event, what: str, proc: subprocess.Popen | Sequence[subprocess.Popen] | None = None, *,
    timeout: float = PATIENCE, poll: float = 0.01,
):  # fmt: skip
    """Poll ``event()`` until it returns something true, and return that; fail when ``proc``
    (given: a process, or several) ends first or after ``timeout`` s, naming ``what`` was
    awaited."""
    watched = [proc] if isinstance(proc, subprocess.Popen) else list(proc or ())
    deadline = time.monotonic() + timeout
    while not (got := event()):
        if ended := [p for p in watched if p.poll() is not None]:
            got = event()  # the process may have done it just before it ended
            assert got, f"the process ended (exit {ended[0].returncode}) before {what}"
            return got
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(poll)
    return got


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = PATIENCE) -> None:
    """Wait until the running ``proc`` has written ``path``; fail if it ends or time runs out."""
    wait_until(path.exists, f"{path.name} was written", proc, timeout=timeout)


def reap(proc) -> None:
    """Kill a test's subprocess if it still runs, and wait: no trainer outlives a failed test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def finish_all(procs: list[subprocess.Popen], timeout: float = PATIENCE) -> list[tuple]:
    """Wait for processes started together: [(process, stdout, stderr)]; reaps them all, also
    when one of them runs out of time."""
    try:
        return [(p, *p.communicate(timeout=timeout)) for p in procs]
    finally:
        for p in procs:
            reap(p)


def dead_pid() -> int:
    """The id of a process that has ended and been reaped: no process has it now."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait(timeout=PATIENCE)
    return proc.pid


def _parents() -> dict[int, list[int]]:
    """Every process's children by its parent's id, from one scan of ``/proc/*/stat``."""
    found: dict[int, list[int]] = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while we looked
        found.setdefault(int(fields[1]), []).append(int(path.parent.name))
    return found


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from ``/proc/*/stat``)."""
    return _parents().get(pid, [])


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, theirs, ...), from one scan of /proc."""
    parents, found, todo = _parents(), [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def run_python(code: str) -> str:
    """Run ``code`` in a fresh Python with the tests importable; its stdout (fails on exit != 0)."""
    tests = str(Path(__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=PATIENCE)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def file_in_the_way(path: Path) -> Path:
    """A plain file ``path / "file"`` where a folder or an image is expected."""
    (path / "file").write_text("x")
    return path / "file"


TRAIN_FLAGS = ["--epochs", "2", "--limit", "300", "--sizes", "784,16,10", "--quiet", "--seed", "0"]
"""``gpumlp train`` flags of ``trained_run``: 2 epochs on 300 images of ``bar_mnist``."""


QUICK_FLAGS = ["--epochs", "1", "--limit", "40", "--sizes", "784,8,10", "--quiet"]
QUICK_FLAGS += ["--backend", "numpy"]
"""``gpumlp train`` flags of ``quick_run``: 1 epoch on 40 images, NumPy."""


def printed_epochs(stdout: str) -> list[int]:
    """The epoch numbers of the ``Epoch k: ...`` lines ``gpumlp train`` printed."""
    return [int(k) for k in re.findall(r"^Epoch (\d+): ", stdout, re.M)]


def saved_epochs(run_dir: Path) -> list[int]:
    """The epoch numbers a run folder's history.json holds."""
    return [r["epoch"] for r in json.loads((run_dir / "history.json").read_text())["epochs"]]


def trial_mid_run(out: Path, most: int) -> Path | None:
    """A trial folder of the sweep in ``out`` whose history.json holds 1 to ``most`` epochs
    and which has no model.npz yet (its training is under way), or None."""
    for folder in out.glob("trial-*"):
        try:
            epochs = json.loads((folder / "history.json").read_text())["epochs"]
        except (OSError, ValueError, KeyError):
            continue
        if 1 <= len(epochs) <= most and not (folder / "model.npz").exists():
            return folder
    return None


@contextlib.contextmanager
def stopped(proc: subprocess.Popen) -> Iterator[None]:
    """``proc`` and every process below it stopped (SIGSTOP) for the block and continued
    (SIGCONT) after it, also when the block fails: nothing they do can race the block (one
    that has ended has nothing to stop)."""
    pids = [] if proc.poll() is not None else [proc.pid, *descendants(proc.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def both_take_a_trial(procs: list[subprocess.Popen], outs: list[Path]) -> None:
    """Make two sweeps started together (``procs``, writing their trial folders into ``outs``)
    each take a trial, however unevenly they start: the first with a trial folder is stopped
    until the other has one too. Their trials must not go stale meanwhile: run them with a
    long ``GPUMLP_HEARTBEAT``."""

    def with_trial() -> list[int]:
        return [i for i in (0, 1) if any(outs[i].glob("trial-*"))]

    first = wait_until(with_trial, "a sweep took a trial", procs)[0]
    other = 1 - first
    with stopped(procs[first]):
        wait_until(lambda: other in with_trial(), "the other sweep took a trial", procs[other])


def saved_params(path: Path) -> dict[str, np.ndarray]:
    """The ``param/i`` arrays of a model file, read as they are stored."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k.startswith("param/")}


def assert_same_run(got: Path, want: Path, params: list[str] | None = None) -> dict:
    """Two run folders hold the same model (parameter names and bits; the names ``params``
    when given) and the same history, timings aside. Returns ``got``'s history.json."""
    got_params, want_params = saved_params(got / "model.npz"), saved_params(want / "model.npz")
    assert sorted(got_params) == sorted(want_params)
    if params is not None:
        assert sorted(got_params) == params
    for key in want_params:
        assert np.array_equal(got_params[key], want_params[key]), key
    h_got, h_want = (json.loads((d / "history.json").read_text()) for d in (got, want))
    assert history_columns(h_got["epochs"]) == history_columns(h_want["epochs"])
    return h_got


def folder_state(folder: Path) -> dict[str, tuple]:
    """Everything under ``folder``, recursively (symbolic links not followed), by path relative
    to it: a file's bytes, modification time and mode; a folder's mode; a link's target.
    Equal before and after a command: it wrote, replaced, removed nor made anything there."""
    state: dict[str, tuple] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                what: tuple = (path.read_bytes(), st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                what = (os.readlink(path),)
            else:
                what = ()
            state[str(path.relative_to(folder))] = (*what, st.st_mode)
    return state
