"""A sweep's study shared by workers and machines (``gpumlp.sweeps.studystore``, ``sampling``,
``liveness``): each trial draws its parameters from its own seeded sequence (a fresh study run
twice draws the same trials, a resumed study and a second worker repeat none); a dead
worker's trial is failed at once only where its process id means the same process as here
(host, boot and PID namespace); a worker whose trial another marked failed says so and goes
on with the next trial.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers.cli import assert_refused, dead_pid, run, run_python

optuna = pytest.importorskip("optuna")
# The tests ask and tell trials by hand, as workers would: Optuna's heartbeat warns of that.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")

from gpumlp.sweeps import liveness, trials  # noqa: E402
from gpumlp.sweeps.studies import LOST  # noqa: E402
from gpumlp.sweeps.studystore import fail_dead_trials, open_study, retry_callback  # noqa: E402

SPACE = "lr = {log = [0.5, 5]}\nhidden = {int = [8, 24], log = true}\n"


def sweep(tmp_path: Path, data: Path, out: Path, n_trials: int, epochs: int = 1):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    argv = ["sweep", space, "--data", data, "--out", out, "--trials", n_trials]
    return run(*argv, "--epochs", epochs, "--backend", "numpy", "--seed", "1", "--pruner", "none")


def load(out: Path):
    return optuna.load_study(study_name="space", storage=f"sqlite:///{out / 'study.db'}")


def drawn(out: Path) -> list[dict]:
    """The parameters of the study's finished trials, in trial order."""
    return [t.params for t in load(out).get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


# -- the sampler: a sequence of its own for each trial -------------------------------------------


def test_a_fresh_study_draws_the_same_trials_and_a_resumed_one_repeats_none(tmp_path, bar_mnist):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        code, _, err = sweep(tmp_path, bar_mnist, out, 8)
        assert code == 0, err
    first = drawn(a)
    assert len(first) == 8 and drawn(b) == first  # the same command: the same trials
    code, _, err = sweep(tmp_path, bar_mnist, a, 10)  # resumed, two more
    assert code == 0, err
    resumed = drawn(a)
    assert resumed[:8] == first and len(resumed) == 10
    assert not [p for p in resumed[8:] if p in first]


def test_two_workers_of_one_study_draw_no_repeated_parameter_set(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    workers = [open_study(url, "s", seed=1), open_study(url, "s", seed=1)]  # the same command
    seen = []
    for round_ in range(6):
        running = [study.ask() for study in workers]  # both run a trial at once
        for study, trial in zip(workers, running, strict=True):
            seen.append((trial.suggest_float("lr", 0.5, 5, log=True),
                         trial.suggest_int("hidden", 8, 24)))  # fmt: skip
            study.tell(trial, seen[-1][0] + round_)
    assert len(set(seen)) == len(seen) == 12


# -- liveness: failed at once only where the pid is this host's, this boot's, this namespace's --


@pytest.mark.parametrize(
    "differs, reaped",
    [(None, True), ("boot_id", False), ("pid_ns", False), ("host", False)],
    ids=["same host, boot and namespace", "another boot", "another pid namespace", "another host"],
)
def test_a_dead_workers_trial_is_failed_at_once_only_where_its_pid_is_ours(
    tmp_path, differs, reaped
):
    if liveness.BOOT_ID is None or liveness.PID_NS is None:
        pytest.skip("no boot id or PID namespace to compare here (not Linux, or no /proc)")
    study = open_study(f"sqlite:///{tmp_path / 'study.db'}", "s", seed=1)
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.5, 5)})
    record = liveness.worker_record(trial.number) | {"id": "another worker", "pid": dead_pid()}
    if differs is not None:
        record[differs] = "elsewhere"  # a cloned machine, a container: the same host name
    trial.set_user_attr("worker", record)
    fail_dead_trials(study)
    states = [(t.number, t.state.name) for t in study.get_trials()]
    # Reaped: failed, and its flags queued again; else left to its heartbeat.
    assert states == ([(0, "FAIL"), (1, "WAITING")] if reaped else [(0, "RUNNING")])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_worker_draws_its_own_worker_id():
    # The fork happens in a fresh Python: this test process may have threads (JAX's), and a
    # fork of a threaded process may deadlock.
    child, parent = json.loads(run_python(FORKED_ID))
    assert child and parent and child != parent


FORKED_ID = """
import json, os
from gpumlp.sweeps import liveness
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the child: its id, then out at once
    os.write(write, liveness.worker_record(0)["id"].encode())
    os._exit(0)
os.close(write)
os.waitpid(pid, 0)
with os.fdopen(read, "rb") as f:
    print(json.dumps([f.read().decode(), liveness.WORKER_ID]))
"""


def test_a_live_workers_trial_is_not_failed_on_the_same_host(tmp_path):
    study = open_study(f"sqlite:///{tmp_path / 'study.db'}", "s", seed=1)
    trial = study.ask()
    trial.set_user_attr("worker", liveness.worker_record(trial.number) | {"id": "another"})
    fail_dead_trials(study)  # its pid is this process's: alive
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]


@pytest.mark.parametrize("value", ["0", "ten", "-1", "2.5"])
def test_a_heartbeat_interval_that_is_none_is_refused_naming_it(
    tmp_path, bar_mnist, monkeypatch, value
):
    monkeypatch.setenv("GPUMLP_HEARTBEAT", value)
    code, _, err = sweep(tmp_path, bar_mnist, tmp_path / "out", 1)
    assert_refused(code, err, f"GPUMLP_HEARTBEAT='{value}': expected whole seconds, 1 or more")
    assert not (tmp_path / "out").exists()


# -- a worker whose trial another marked failed ---------------------------------------------------


@pytest.mark.parametrize("when", ["mid-trial", "at its end"])
def test_a_worker_whose_trial_another_failed_says_so_and_goes_on(
    tmp_path, bar_mnist, monkeypatch, when
):
    out = tmp_path / "out"
    real, lost = trials.train_trial, []

    def another_worker_fails(number: int) -> None:  # as a reaper that saw no heartbeat would
        study = load(out)
        retry_callback(optuna)(study, study.tell(number, state=optuna.trial.TrialState.FAIL))

    def train_trial(flags, data, folder, report):
        number = int(folder.name.removeprefix("trial-"))
        if lost:
            return real(flags, data, folder, report)
        lost.append(number)
        if when == "mid-trial":  # after its first epoch: its next report is refused

            def reported(epoch, accuracy):
                report(epoch, accuracy)
                another_worker_fails(number)

            return real(flags, data, folder, reported)
        result = real(flags, data, folder, report)
        another_worker_fails(number)  # its end is refused
        return result

    monkeypatch.setattr(trials, "train_trial", train_trial)
    code, printed, err = sweep(tmp_path, bar_mnist, out, 3, epochs=2)
    assert code == 0, err
    assert err == f"gpumlp: warning: {LOST % lost[0]}\n"
    study = load(out)
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert study.trials[1].params == study.trials[0].params  # its flags, tried again
    assert "trial 3: validation accuracy" in printed
