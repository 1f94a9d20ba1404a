"""Tests for gpumlp.signals through the real ``gpumlp train`` in a subprocess: SIGTERM and SIGHUP
stop a run as Ctrl-C does (the finished epochs saved, exit 143/129, the printed resume command
continuing bit for bit as an uninterrupted run), a second interrupt during the emergency save
loses nothing and prints no traceback, a third may end the process at once but leaves no
partial file; the messages count epochs as the epoch lines do.

Runs train [784, 200, 10] with batch size 1 on ``bar_mnist`` (500 training images): about
0.02 s an epoch on the native engine (0.15 s generic), so a run that a signal must stop is given
:data:`helpers.cli.UNTIL_STOPPED` epochs, which it cannot finish before the signal however
loaded the machine, and is resumed to two epochs past where it stopped. The save tests train a
[784, 3000, 10] network with Adam, whose 28 MB checkpoint takes long enough to write to be
interrupted in the middle.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import time
from pathlib import Path

import pytest

from gpumlp.files.checkpoint import read_checkpoint
from helpers.cli import (
    PATIENCE,
    UNTIL_STOPPED,
    assert_same_run,
    printed_epochs,
    run,
    run_gpumlp,
    saved_epochs,
)
from helpers.trainer import Trainer

FLAGS = ["--sizes", "784,200,10", "--batch-size", "1", "--seed", "5", "--quiet"]
BIG = ["--sizes", "784,3000,10", "--optimizer", "adam", "--lr", "0.001", "--batch-size", "100"]
BIG += ["--seed", "5", "--quiet", "--checkpoint-every", "1", "--epochs", "100"]


def assert_no_partial_file(run_dir: Path) -> None:
    """Every file a stopped run left is whole (the checkpoint and the history agree with each
    other), or a hidden temp file."""
    for path in run_dir.iterdir():
        if path.name.startswith("."):
            assert path.name.endswith(".tmp") or path.name == ".lock", path.name
        elif path.name == "checkpoint.npz":
            meta, _ = read_checkpoint(path)
            assert meta["epoch"] == len(meta["history"]["epochs"])
        elif path.name.endswith(".json"):
            json.loads(path.read_text())
        else:
            assert path.name in ("history.csv", "model.npz"), path.name
    if (run_dir / "history.json").exists() and (run_dir / "checkpoint.npz").exists():
        meta, _ = read_checkpoint(run_dir / "checkpoint.npz")
        assert [r["epoch"] for r in meta["history"]["epochs"]] == saved_epochs(run_dir)


@pytest.mark.signals
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"]
)
def test_signal_saves_the_finished_epochs_and_resumes_bit_identically(
    signum, code, bar_mnist, tmp_path
):
    run_dir = tmp_path / "run"
    trainer = Trainer("--data", bar_mnist, *FLAGS, "--epochs", UNTIL_STOPPED, "--out", run_dir)
    try:
        trainer.wait_for(r"Epoch 0: ")
        trainer.proc.send_signal(signum)
        got, stdout, stderr = trainer.finish()
    finally:
        trainer.kill()
    assert got == code, stderr
    assert "Traceback" not in stderr
    done = printed_epochs(stdout)
    assert 1 <= len(done) < UNTIL_STOPPED and done == list(range(len(done)))
    assert saved_epochs(run_dir) == done  # what was printed was saved, nothing more
    meta, _ = read_checkpoint(run_dir / "checkpoint.npz")
    assert meta["epoch"] == len(done) and not (run_dir / "model.npz").exists()
    name = signal.Signals(signum).name
    k = len(done)
    saved = f"saved epochs 0..{k - 1}" if k > 1 else "saved epoch 0"
    assert f"interrupted during epoch {k} ({name}); {saved} to {run_dir / 'checkpoint.npz'}" in (
        stderr
    )
    assert not list(run_dir.glob(".*")), "a lock or temp file was left"

    # The printed command continues it (to --epochs k + 2, where it was started with more), to
    # the bits of an uninterrupted run of k + 2 epochs.
    command = re.search(r"^resume with: (gpumlp train .*)$", stderr, re.M).group(1)
    resumed = run_gpumlp("train", *shlex.split(command)[2:], "--epochs", k + 2)
    assert resumed.returncode == 0, resumed.stderr
    assert printed_epochs(resumed.stdout) == [k, k + 1]
    reference = tmp_path / "reference"
    done = run_gpumlp("train", "--data", bar_mnist, *FLAGS, "--epochs", k + 2, "--out", reference)
    assert done.returncode == 0, done.stderr
    assert assert_same_run(run_dir, reference)["stop_reason"] is None


def _hidden_temp(run_dir: Path) -> bool:
    return any(p.name.endswith(".tmp") for p in run_dir.glob(".*"))


@pytest.mark.signals
@pytest.mark.parametrize("when", ["mid-save", "at-exit"])
def test_a_second_ctrl_c_loses_no_epoch_and_prints_no_traceback(when, bar_mnist, tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer("--data", bar_mnist, *BIG, "--out", run_dir)
    try:
        trainer.wait_for(r"Epoch 1: ")
        trainer.proc.send_signal(signal.SIGINT)
        if when == "mid-save":  # the emergency checkpoint or history being written
            deadline = time.monotonic() + PATIENCE
            while not _hidden_temp(run_dir) and trainer.proc.poll() is None:
                assert time.monotonic() < deadline, "no emergency save seen"
                time.sleep(0.0005)
            trainer.proc.send_signal(signal.SIGINT)
        else:  # everything saved, the process on its way out (the interpreter's shutdown)
            trainer.wait_for(r"resume with: ", stream="err")
            trainer.proc.send_signal(signal.SIGINT)
        code, stdout, stderr = trainer.finish()
    finally:
        trainer.kill()
    assert code == 130, stderr
    assert "Traceback" not in stderr and "threading" not in stderr, stderr
    done = printed_epochs(stdout)
    assert len(done) >= 2 and saved_epochs(run_dir) == done
    meta, _ = read_checkpoint(run_dir / "checkpoint.npz")
    assert meta["epoch"] == len(done)
    assert f"saved epochs 0..{len(done) - 1} to " in stderr
    assert stderr.count("gpumlp: interrupted") == 1, stderr  # one report, not a second
    assert_no_partial_file(run_dir)
    assert not list(run_dir.glob(".*"))


@pytest.mark.signals
@pytest.mark.parametrize("gap", [0.0005, 0.02])
def test_repeated_ctrl_c_may_force_exit_but_leaves_no_partial_file(gap, bar_mnist, tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer("--data", bar_mnist, *BIG, "--out", run_dir)
    try:
        trainer.wait_for(r"Epoch 1: ")
        deadline = time.monotonic() + PATIENCE
        while trainer.proc.poll() is None:  # Ctrl-C held down
            assert time.monotonic() < deadline, "the run does not stop"
            trainer.proc.send_signal(signal.SIGINT)
            time.sleep(gap)
        code, stdout, stderr = trainer.finish()
    finally:
        trainer.kill()
    assert code == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert_no_partial_file(run_dir)
    meta, _ = read_checkpoint(run_dir / "checkpoint.npz")  # at least epoch 1's is whole
    assert meta["epoch"] >= 2 and meta["epoch"] <= len(printed_epochs(stdout))

    # The next start removes what the forced exit left, and goes on from the checkpoint.
    resumed = run_gpumlp("train", "--resume", run_dir, "--epochs", meta["epoch"] + 1)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(run_dir.glob(".*"))
    assert saved_epochs(run_dir) == list(range(meta["epoch"] + 1))


def _nohup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@pytest.mark.signals
def test_a_hangup_under_nohup_does_not_stop_the_run(bar_mnist, tmp_path):
    # The hangup is sent first: had it stopped the run, the run would say so (SIGHUP, exit 129).
    # It goes on, until a SIGTERM stops it.
    run_dir = tmp_path / "run"
    argv = ["--data", bar_mnist, *FLAGS, "--epochs", UNTIL_STOPPED, "--out", run_dir]
    trainer = Trainer(*argv, preexec_fn=_nohup)
    try:
        trainer.wait_for(r"Epoch 0: ")
        trainer.proc.send_signal(signal.SIGHUP)
        trainer.wait_for(r"Epoch 2: ")
        trainer.proc.send_signal(signal.SIGTERM)
        code, stdout, stderr = trainer.finish()
    finally:
        trainer.kill()
    assert code == 143, stderr
    assert "(SIGTERM)" in stderr and "SIGHUP" not in stderr, stderr
    done = printed_epochs(stdout)
    assert len(done) >= 3 and done == saved_epochs(run_dir) == list(range(len(done)))


def test_handlers_are_restored_after_a_run(tmp_path, bar_mnist, monkeypatch):
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")
    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    code, _, stderr = run("train", "--data", bar_mnist, "--sizes", "784,8,10", "--epochs", 1,
                          "--quiet", "--out", tmp_path / "run")  # fmt: skip
    assert code == 0, stderr
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == before


def test_handled_by_leaves_an_ignored_signal_ignored_and_restores_the_rest():
    # What a sweep worker installs (gpumlp.sweeps.studies.run_worker): under nohup, SIGHUP stays
    # ignored inside the block; every handler is back afterwards. The test sets the dispositions
    # it starts from: a test run started in the background inherits SIGINT ignored.
    from gpumlp.signals import handled_by

    def mine(signum, frame):
        raise AssertionError("not delivered in this test")

    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    start = (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN)  # Python under nohup
    saved = [signal.signal(s, h) for s, h in zip(signums, start, strict=True)]
    try:
        with handled_by(mine):
            assert signal.getsignal(signal.SIGINT) is mine
            assert signal.getsignal(signal.SIGTERM) is mine
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert [signal.getsignal(s) for s in signums] == list(start)
    finally:
        for s, h in zip(signums, saved, strict=True):
            signal.signal(s, h)


@pytest.mark.parametrize("ends", ["normally", "with-an-exception"])
def test_a_signal_held_outside_a_command_arrives_when_the_window_closes(ends):
    # deferred() outside stop_on_signals (a library caller, a sweep worker's trial saving its
    # model): a signal held while files were written is delivered to the handler in place
    # before once the window ends, never dropped; a window ending with an exception (the work
    # stops anyway) does not add a second interrupt to it.
    import os

    from gpumlp.signals import deferred

    got: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with contextlib.suppress(RuntimeError), deferred() as held:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the holder runs, not the handler
            assert got == [] and held == [signal.SIGTERM]
            if ends != "normally":
                raise RuntimeError("the block fails")
        time.sleep(0.05)
        assert got == ([signal.SIGTERM] if ends == "normally" else [])
    finally:
        signal.signal(signal.SIGTERM, old)
