"""Workers of ``gpumlp sweep`` in separate processes: sharing a study without losing or
repeating a trial, dying (kill -9) or interrupted mid-trial and resumed by rerunning the
command, ended with their parent (killed, or failing as it starts them), and sharing a study
through a real PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from helpers.cli import (
    PATIENCE,
    UNTIL_STOPPED,
    both_take_a_trial,
    children,
    finish_all,
    reap,
    run,
    run_gpumlp,
    start_gpumlp,
    trial_mid_run,
    wait_until,
)
from helpers.data import write_tiny_mnist

optuna = pytest.importorskip("optuna")

pytestmark = pytest.mark.workers

SPACE = "lr = {log = [0.5, 5]}\nhidden = {int = [8, 16]}\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """MNIST-format random images: 1000 training (an epoch of a few ms), 200 validation."""
    return write_tiny_mnist(tmp_path_factory.mktemp("data") / "mnist.npz", 1200, 50)


def sweep_argv(tmp_path: Path, data: Path, out: Path, trials: int, epochs: int, *more) -> list:
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    argv = ["sweep", space, "--data", data, "--out", out, "--trials", trials, "--epochs", epochs]
    return [*argv, "--backend", "numpy", "--seed", "1", "--pruner", "none", *more]


def load(out: Path, storage: str | None = None):
    storage = storage or f"sqlite:///{out / 'study.db'}"
    return optuna.load_study(study_name="space", storage=storage)


def finished(study) -> list:
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


def check_folders(study, *outs: Path) -> None:
    """Each trial has one run folder, under one of ``outs``, that ran that trial's flags."""
    folders = sorted((p.name, p) for out in outs for p in out.glob("trial-*"))
    assert [name for name, _ in folders] == [
        f"trial-{t.number:04d}" for t in study.get_trials() if t.state.name != "WAITING"
    ]
    by_number = {t.number: t for t in study.get_trials()}
    for name, folder in folders:
        t = by_number[int(name[6:])]
        args = json.loads((folder / "args.json").read_text())
        assert (args["lr"], args["hidden"]) == (t.params["lr"], [t.params["hidden"]])
        if t.state.name == "COMPLETE":
            assert (folder / "model.npz").is_file()
            epochs = json.loads((folder / "history.json").read_text())["epochs"]
            assert len(epochs) == len(t.intermediate_values)


def test_two_workers_share_a_study_without_losing_or_repeating_a_trial(tmp_path, tiny):
    out = tmp_path / "out"
    done = run_gpumlp(*sweep_argv(tmp_path, tiny, out, 6, 3, "--workers", "2"))
    assert done.returncode == 0, done.stderr
    assert "[worker 1] trial" in done.stdout and "[worker 2] trial" in done.stdout
    study = load(out)
    # Both may start the last trial at once: at most the trials in flight (1) over.
    assert 6 <= len(finished(study)) <= 7
    assert all(t.state.name == "COMPLETE" for t in study.get_trials())
    check_folders(study, out)
    assert study.user_attrs["test"]["trial"] == study.best_trial.number


MID_TRIAL = 5
"""A trial caught mid-run has finished 1 to this many epochs: of the tests' 40 (~15 ms each,
with their saves and reports), 35 or more are still to come when the signal arrives, so the
trial cannot end first, even on a loaded machine."""
EPOCHS = 40


def wait_mid_trial(out: Path, proc: subprocess.Popen, timeout: float = PATIENCE) -> Path:
    """The folder of a trial that has finished 1 to :data:`MID_TRIAL` epochs (fails when the
    sweep ends first, or after ``timeout`` s)."""
    return wait_until(lambda: trial_mid_run(out, MID_TRIAL), "a trial was caught mid-run", proc,
                      timeout=timeout, poll=0.005)  # fmt: skip


@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C"])
def test_a_worker_stopped_mid_trial_loses_nothing_and_a_rerun_completes(tmp_path, tiny, how):
    out = tmp_path / "out"
    argv = sweep_argv(tmp_path, tiny, out, 3, EPOCHS)
    proc = start_gpumlp(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        victim = wait_mid_trial(out, proc)
        proc.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
        _, err = proc.communicate(timeout=PATIENCE)
    finally:
        reap(proc)
    stopped = int(victim.name[6:])
    study = load(out)
    before = {t.number: t.state.name for t in study.get_trials()}
    if how == "kill -9":
        assert proc.returncode == -9 and before[stopped] == "RUNNING"  # left behind as running
    else:
        assert proc.returncode == 130 and "interrupted (Ctrl-C)" in err
        assert before[stopped] == "FAIL" and "WAITING" in before.values()  # queued again
        history = json.loads((victim / "history.json").read_text())  # saved on the way out
        assert history["stop_reason"].startswith("interrupted")
    done = run_gpumlp(*argv)
    assert done.returncode == 0, done.stderr
    study = load(out)
    trials = study.get_trials()
    assert len(finished(study)) == 3  # one worker: exactly the trials asked for
    assert trials[stopped].state.name == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == stopped]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].params == trials[stopped].params and retry[0].number > stopped
    check_folders(study, out)


def test_ctrl_c_of_the_command_stops_its_workers_and_keeps_the_study(tmp_path, tiny):
    out = tmp_path / "out"
    argv = sweep_argv(tmp_path, tiny, out, 4, EPOCHS, "--workers", "2")
    proc = start_gpumlp(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_mid_trial(out, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=PATIENCE)
    finally:
        reap(proc)
    assert proc.returncode == 130 and "rerun the command to resume" in err
    study = load(out)
    states = [t.state.name for t in study.get_trials()]
    assert "RUNNING" not in states and "FAIL" in states  # the workers ended their trials
    assert not list(out.glob("trial-*/.lock"))  # and are gone
    done = run_gpumlp(*argv)
    assert done.returncode == 0, done.stderr
    assert 4 <= len(finished(load(out))) <= 5


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_workers_end_when_their_parent_is_killed(tmp_path, tiny):
    out = tmp_path / "out"
    # Trials of UNTIL_STOPPED epochs: no worker could end of itself while the test waits.
    argv = sweep_argv(tmp_path, tiny, out, 4, UNTIL_STOPPED, "--workers", "2")
    proc = start_gpumlp(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        wait_until(lambda: len(children(proc.pid)) == 2, "two workers started", proc)
        workers = children(proc.pid)
        wait_mid_trial(out, proc)
        proc.kill()  # SIGKILL: the parent can do nothing on its way out
        proc.wait()
        wait_until(lambda: not any(map(running, workers)), "the workers ended")
    finally:
        reap(proc)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    states = [t.state.name for t in load(out).get_trials()]
    # Each ended its trial on the SIGTERM: marked failed, its flags queued again.
    assert "RUNNING" not in states and "FAIL" in states and "WAITING" in states


def test_a_parent_that_fails_ends_the_workers_it_started(tmp_path, tiny, monkeypatch):
    started: list[subprocess.Popen] = []
    real = subprocess.Popen

    def popen(*args, **kwargs):
        if started:  # the second worker cannot start
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    monkeypatch.setattr(subprocess, "Popen", popen)
    out = tmp_path / "out"
    try:
        code, _, err = run(*sweep_argv(tmp_path, tiny, out, 4, UNTIL_STOPPED, "--workers", "2"))
        assert code == 2 and os.strerror(errno.EAGAIN) in err, err
        assert len(started) == 1 and started[0].poll() is not None  # ended, and waited for
    finally:
        for p in started:
            reap(p)


# -- PostgreSQL (the ``postgres`` fixture: tests/conftest.py) --------------------------------------


def test_workers_in_separate_processes_share_a_study_through_postgresql(
    tmp_path, tiny, postgres, monkeypatch
):
    # Heartbeats every 600 s: a sweep stopped until the other has taken a trial (both do some
    # of the work, however slowly one starts) has no trial go stale meanwhile.
    monkeypatch.setenv("GPUMLP_HEARTBEAT", "600")
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]  # as if on two machines
    procs = []
    try:
        # the second as a user would type it: SQLAlchemy's bare scheme, no driver named
        for out, url in zip(outs, [postgres, postgres.replace("+psycopg", "")], strict=True):
            argv = sweep_argv(tmp_path, tiny, out, 6, 20, "--storage", url)
            procs.append(
                start_gpumlp(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
        both_take_a_trial(procs, outs)
        results = finish_all(procs)
    finally:
        for p in procs:
            reap(p)
    for p, _, err in results:
        assert p.returncode == 0, err
    assert all("trial" in out for _, out, _ in results)
    study = load(outs[0], postgres)
    assert 6 <= len(finished(study)) <= 7
    check_folders(study, *outs)
    assert all(list(out.glob("trial-*")) for out in outs)  # both did some of the work
