"""Tests for gpumlp.runs.rundir and gpumlp.runs.runlock through the real ``gpumlp train`` in a
subprocess: a folder holding a run is never overwritten without ``--resume``/``--overwrite``, a
refused command writes nothing at all (a refused resume leaves its run to resume; an unreadable
``args.json``, a run file gpumlp would not replace, an ``--out`` past the system's path limits
are refused before anything is made), default folders are unique for runs started together, two
live runs never share a folder (the second is told who holds it), a lock left by a killed run is
taken over with a message, stale temp files of killed writers are removed at the next start,
and new files get the umask's mode (never a setuid bit, never through a symlink).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from gpumlp.files.checkpoint import read_checkpoint
from helpers.cli import (
    PATIENCE,
    UNTIL_STOPPED,
    assert_refused,
    finish_all,
    folder_state,
    gpumlp_cmd,
    gpumlp_env,
    reap,
    run,
    run_gpumlp,
    start_gpumlp,
    wait_for,
)
from helpers.data import write_table

QUICK = ["--sizes", "784,16,10", "--epochs", "1", "--quiet"]
SLOW = ["--sizes", "784,200,10", "--batch-size", "1", "--epochs", UNTIL_STOPPED, "--quiet"]
SLOW += ["--checkpoint-every", "1", "--seed", "0"]
PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


def lock_holder(folder: Path) -> int | None:
    try:
        return json.loads((folder / ".lock").read_text()).get("pid")
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def finished(bar_mnist, tmp_path_factory) -> Path:
    """The folder of a finished run (tests may only read it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    done = run_gpumlp("train", "--data", bar_mnist, *QUICK, "--seed", "0", "--out", out)
    assert done.returncode == 0, done.stderr
    return out


REFUSED = [
    ("same-flags", [], r"already holds a run; continue it with --resume .*--overwrite"),
    ("other-sizes", ["--sizes", "100,10"], r"--sizes 100,10 takes 100 inputs, but the data"),
    ("graph-on-cpu", ["--engine", "graph"], r"engine='graph' needs the CuPy backend"),
    ("classes", ["--sizes", "784,8,3"], r"--sizes ends with 3 outputs, but the data has 10"),
    ("overwrite-sizes", ["--overwrite", "--sizes", "100,10"], r"--sizes 100,10 takes 100 inputs"),
]


@pytest.mark.parametrize(("argv", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_refused_command_writes_nothing(argv, message, finished, bar_mnist, tmp_path):
    before = folder_state(finished)
    train = ["train", "--data", bar_mnist, *QUICK, *argv]
    procs = [start_gpumlp(*train, "--out", finished, **PIPES)]
    if argv:  # also into a new folder, and into the default one: neither is made
        procs.append(start_gpumlp(*train, "--out", tmp_path / "new", **PIPES))
        procs.append(start_gpumlp(*train, cwd=tmp_path, **PIPES))
    for proc, stdout, stderr in finish_all(procs):
        assert proc.returncode == 2, stderr
        assert stdout == "" and re.fullmatch(rf"gpumlp: error: [^\n]*{message}[^\n]*\n", stderr)
    assert folder_state(finished) == before  # args.json, history, model, checkpoint: untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _copy(finished: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    return run_dir


def test_a_refused_resume_leaves_the_run_to_evaluate_and_resume(finished, tmp_path):
    # Issue 28's case: other data and --hidden given to --resume rewrote args.json, after
    # which eval and every --resume of the run failed.
    run_dir, other = _copy(finished, tmp_path), write_table(tmp_path / "other.npz", 5)
    before = folder_state(tmp_path)
    done = run_gpumlp("train", "--data", other, "--hidden", "4", "--resume", run_dir)
    assert done.returncode == 2 and done.stdout == ""  # no banner, no "resuming: ..."
    assert re.fullmatch(
        r"gpumlp: error: '[^']*checkpoint\.npz' is for a network with sizes=\[784, 16, 10\], "
        r"but this network has sizes=\[5, 4, 2\]\n",
        done.stderr,
    ), done.stderr
    assert folder_state(tmp_path) == before
    assert run_gpumlp("eval", run_dir).returncode == 0
    again = run_gpumlp("train", "--resume", run_dir, "--epochs", "2")
    assert again.returncode == 0, again.stderr


BAD_ARGS_JSON = [
    ("fifo", None, r"is a FIFO, not a regular file"),
    ("not-utf8", b'{"epochs": "\xff"}', r"is not UTF-8 text \(byte 12 is 0xff\)"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, r"nests lists or objects more than 32 deep"),
    (
        "truncated",
        b'{"epochs": ',
        r"is not valid JSON: Expecting value: line 1 column 12 \(char 11\)",
    ),
    ("a-list", b"[1, 2]", r"does not hold a JSON object of flags"),
]


@pytest.mark.parametrize(
    ("content", "message"), [pytest.param(*c[1:], id=c[0]) for c in BAD_ARGS_JSON]
)
def test_a_resume_refuses_an_unreadable_args_json_at_once(content, message, finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    (run_dir / "args.json").unlink()
    if content is None:
        os.mkfifo(run_dir / "args.json")  # a reader that waited for a writer would never end
    else:
        (run_dir / "args.json").write_bytes(content)
    before = folder_state(tmp_path)
    done = run_gpumlp("train", "--resume", run_dir, "--epochs", "2")
    assert done.returncode == 2 and done.stdout == ""
    assert re.fullmatch(
        rf"gpumlp: error: flags file '{re.escape(str(run_dir / 'args.json'))}' {message}\n",
        done.stderr,
    ), done.stderr
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", r"history\.json' is a FIFO, not a regular file: gpumlp writes files only where"),
        ("folder", r"a directory, not a file: gpumlp will not replace it: '.*history\.json'"),
    ],
    ids=["fifo", "folder"],
)
def test_overwrite_refuses_a_run_file_it_would_not_replace_before_writing(
    kind, message, finished, bar_mnist, tmp_path
):
    run_dir = _copy(finished, tmp_path)
    (run_dir / "history.json").unlink()
    if kind == "fifo":
        os.mkfifo(run_dir / "history.json")
    else:
        (run_dir / "history.json").mkdir()
    before = folder_state(tmp_path)
    done = run_gpumlp("train", "--data", bar_mnist, *QUICK, "--out", run_dir, "--overwrite")
    assert done.returncode == 2 and done.stdout == ""
    assert re.fullmatch(rf"gpumlp: error: [^\n]*{message}[^\n]*\n", done.stderr), done.stderr
    assert folder_state(tmp_path) == before  # args.json, checkpoint, model: as they were


def _long_path(base: Path, total: int) -> Path:
    """A path under ``base`` of names of 200 bytes or fewer, ``total`` bytes long."""
    path = base
    while len(str(path)) + 201 < total:
        path /= "d" * 200
    return path / ("e" * (total - len(str(path)) - 1))


LONG_PATHS = [  # (id, argv(tmp_path, NAME_MAX, PATH_MAX), the message)
    ("name", lambda p, n, m: ["--out", p / "made" / ("n" * (n + 1)) / "r"],
     r"--out '[^']*': the name 'n+\.\.\.n+' is {n1:,} bytes long, past NAME_MAX, the {n:,} bytes "
     r"a name may have on this file system"),
    ("path", lambda p, n, m: ["--out", _long_path(p / "made", m + 10)],
     r"--out '[^']*' is too long: [\d,]+ bytes as an absolute path with the names of the files "
     r"gpumlp writes in it, past PATH_MAX, the {m1:,} bytes a path may have on this system"),
    ("with-its-files", lambda p, n, m: ["--out", _long_path(p / "made", m - 20)],
     r"--out '[^']*' is too long: [\d,]+ bytes as an absolute path with the names of the files"),
    ("resume-name", lambda p, n, m: ["--resume", p / ("n" * (n + 1))],
     r"--resume '[^']*': the name 'n+\.\.\.n+' is {n1:,} bytes long, past NAME_MAX"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), [pytest.param(*c[1:], id=c[0]) for c in LONG_PATHS])
def test_a_path_past_the_systems_limits_is_refused_naming_the_flag_and_limit(
    argv, message, bar_mnist, tmp_path
):
    n, m = os.pathconf(tmp_path, "PC_NAME_MAX"), os.pathconf(tmp_path, "PC_PATH_MAX")
    code, stdout, stderr = run(
        "train", "--data", bar_mnist, *QUICK, "--backend", "numpy", *argv(tmp_path, n, m)
    )
    assert_refused(code, stderr, message.format(n=n, n1=n + 1, m1=m - 1))
    assert stdout == "" and list(tmp_path.iterdir()) == []  # not even the folders above it


def test_default_folders_are_unique_for_runs_started_together(bar_mnist, tmp_path):
    # Every name of the coming half minute is taken, so both runs, started in one second,
    # must pick a suffixed name, and not the same one.
    now, runs = time.time(), tmp_path / "runs"
    taken = {time.strftime("mnist-%Y%m%d-%H%M%S", time.localtime(now + s)) for s in range(30)}
    for name in taken:
        (runs / name).mkdir(parents=True)
    train = ["train", "--data", bar_mnist, *QUICK]
    results = finish_all([start_gpumlp(*train, cwd=tmp_path, **PIPES) for _ in range(2)])
    folders = []
    for proc, stdout, stderr in results:
        assert proc.returncode == 0, stderr
        folder = re.search(r"^saved model, checkpoint and history to (runs/\S+)/$", stdout, re.M)
        seed = int(re.search(r"; seed (\d+)$", stdout, re.M).group(1))
        folders.append(folder.group(1))
        assert json.loads((tmp_path / folder.group(1) / "args.json").read_text())["seed"] == seed
    new = sorted(set(os.listdir(runs)) - taken)
    assert sorted(Path(f).name for f in folders) == new and len(new) == 2
    assert all(re.fullmatch(r"mnist-\d{8}-\d{6}-\d+", name) for name in new)


def test_a_second_live_run_into_a_folder_is_refused_naming_the_first(bar_mnist, tmp_path):
    out = tmp_path / "run"
    first = start_gpumlp("train", "--data", bar_mnist, *SLOW, "--out", out, **PIPES)
    try:
        wait_for(out / "checkpoint.npz", first)
        assert lock_holder(out) == first.pid
        args = (out / "args.json").read_bytes()
        again = ["train", "--data", bar_mnist, *QUICK]
        refused = finish_all(
            [
                start_gpumlp(*again, "--out", out, "--overwrite", **PIPES),
                start_gpumlp("train", "--resume", out, "--epochs", "1", **PIPES),
            ]
        )
        for proc, _, stderr in refused:
            assert proc.returncode == 2, stderr
            assert re.fullmatch(
                rf"gpumlp: error: --out '{out}' is in use by a live run \(pid {first.pid} on "
                rf"{re.escape(socket.gethostname())}, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\); "
                r"wait for it or choose another --out\n",
                stderr,
            ), stderr
        assert (out / "args.json").read_bytes() == args and first.poll() is None
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=PATIENCE)
    finally:
        reap(first)
    assert first.returncode == 143, stderr
    assert not (out / ".lock").exists()


def test_two_runs_started_together_into_one_new_folder(bar_mnist, tmp_path):
    out = tmp_path / "run"
    train = ["train", "--data", bar_mnist, *QUICK, "--out", out]
    results = finish_all([start_gpumlp(*train, "--seed", seed, **PIPES) for seed in "12"])
    codes = sorted(proc.returncode for proc, _, _ in results)
    assert codes == [0, 2], [stderr for *_, stderr in results]
    for proc, stdout, stderr in results:
        if proc.returncode == 2:
            assert re.fullmatch(
                r"gpumlp: error: [^\n]*(in use by|already holds a run)[^\n]*\n", stderr
            )
        else:
            seed = int(re.search(r"; seed (\d+)$", stdout, re.M).group(1))
    assert json.loads((out / "args.json").read_text())["seed"] == seed  # one run's files only
    assert json.loads((out / "history.json").read_text())["seed"] == seed
    assert read_checkpoint(out / "checkpoint.npz")[0]["history"]["seed"] == seed


@pytest.mark.signals
def test_a_killed_runs_lock_and_temp_files_are_taken_over(bar_mnist, tmp_path):
    out = tmp_path / "run"
    killed = start_gpumlp("train", "--data", bar_mnist, *SLOW, "--out", out, **PIPES)
    try:
        wait_for(out / "checkpoint.npz", killed)
        killed.kill()
        killed.communicate(timeout=PATIENCE)
    finally:
        reap(killed)
    assert lock_holder(out) == killed.pid  # left behind
    dead = out / f".checkpoint.npz.{killed.pid}.x1y2z3.tmp"  # a write cut short by the kill
    live = out / f".history.json.{os.getpid()}.x1y2z3.tmp"  # a live writer's: left alone
    for path in (dead, live):
        path.write_bytes(b"half a file")
    epoch = read_checkpoint(out / "checkpoint.npz")[0]["epoch"]
    done = run_gpumlp("train", "--resume", out, "--epochs", epoch + 1)
    assert done.returncode == 0, done.stderr
    assert re.search(
        rf"^gpumlp: {re.escape(str(out))} was locked by process {killed.pid} on "
        rf"{re.escape(socket.gethostname())} \(since [-\d: ]+\), which is gone; taking it over$",
        done.stderr,
        re.M,
    ), done.stderr
    assert not dead.exists() and live.exists()
    assert not (out / ".lock").exists() and (out / "model.npz").exists()


def _train_with_umask(umask: int, *argv) -> subprocess.CompletedProcess:
    return subprocess.run(
        gpumlp_cmd("train", *argv),
        env=gpumlp_env(),
        umask=umask,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["022", "077"])
def test_new_files_get_the_umask_mode(umask, bar_mnist, tmp_path):
    out = tmp_path / "run"
    done = _train_with_umask(umask, "--data", bar_mnist, *QUICK, "--out", out)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in out.iterdir()}
    assert modes == dict.fromkeys(
        ["args.json", "checkpoint.npz", "history.csv", "history.json", "model.npz"], 0o666 & ~umask
    )


def test_replaced_files_never_keep_setuid_nor_follow_a_symlink(bar_mnist, tmp_path):
    out, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    first = _train_with_umask(0o022, "--data", bar_mnist, *QUICK, "--out", out)
    assert first.returncode == 0, first.stderr
    elsewhere.write_bytes(b"not gpumlp's")
    elsewhere.chmod(0o4755)
    linked = ["model.npz", "checkpoint.npz", "history.json", "history.csv"]
    for name in linked:
        (out / name).unlink()
        (out / name).symlink_to(elsewhere)
    (out / "args.json").chmod(0o4640)
    again = _train_with_umask(0o022, "--data", bar_mnist, *QUICK, "--out", out, "--overwrite")
    assert again.returncode == 0, again.stderr
    for name in linked:
        written = (out / name).lstat()
        assert stat.S_ISREG(written.st_mode) and stat.S_IMODE(written.st_mode) == 0o644, name
    assert elsewhere.read_bytes() == b"not gpumlp's"
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o4755
    assert stat.S_IMODE((out / "args.json").stat().st_mode) == 0o640  # its bits, not setuid
