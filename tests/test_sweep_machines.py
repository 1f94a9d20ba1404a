"""Two machines with the same host name (cloned machines, containers) sharing one sweep through
a real PostgreSQL server: each ``gpumlp sweep`` runs in UTS and PID namespaces of its own
(``helpers.machines``). Neither repeats a parameter set nor fails the other's live trials,
and when one is killed (``kill -9`` of the whole machine) the other ends the study with exactly
the trials asked for. Skipped, saying why, where the kernel refuses the namespaces or no
PostgreSQL server can start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers.cli import (
    PATIENCE,
    both_take_a_trial,
    finish_all,
    gpumlp_cmd,
    gpumlp_env,
    reap,
    trial_mid_run,
    wait_until,
)
from helpers.data import write_tiny_mnist
from helpers.machines import as_machine, machines_unavailable

optuna = pytest.importorskip("optuna")

pytestmark = pytest.mark.workers

SPACE = "lr = {log = [0.5, 5]}\nhidden = {int = [8, 16]}\n"
TRIALS = 6
EPOCHS = 40  # ~15 ms each: a trial lasts long enough for the other machine to look at it
MID_TRIAL = EPOCHS // 2 - 1  # a trial caught mid-run has finished 1 to this many epochs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """MNIST-format random images: 1000 training (an epoch of a few ms), 200 validation."""
    return write_tiny_mnist(tmp_path_factory.mktemp("data") / "mnist.npz", 1200, 50)


@pytest.fixture(scope="module")
def machines_here() -> None:
    why = machines_unavailable()
    if why is not None:
        pytest.skip(why)


def start_machines(tmp_path: Path, data: Path, url: str, **env: str) -> list:
    """Machines A and B, each running ``gpumlp sweep`` of :data:`SPACE` on ``data`` into its
    own folder (``tmp_path/a``, ``tmp_path/b``) with the study in ``url``."""
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    procs = []
    for name, last_pid in (("a", 1000), ("b", 2000)):
        argv = gpumlp_cmd("sweep", space, "--data", data, "--out", tmp_path / name, "--storage",
                          url, "--trials", TRIALS, "--epochs", EPOCHS, "--backend", "numpy",
                          "--seed", "1", "--pruner", "none")  # fmt: skip
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        procs.append(subprocess.Popen(as_machine(argv, last_pid), env=gpumlp_env() | env, **pipes))
    return procs


def study_of(url: str):
    return optuna.load_study(study_name="space", storage=url)


def finished(study) -> list:
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


def assert_no_parameter_set_repeats(trials) -> None:
    drawn = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(drawn)) == len(drawn), drawn


def test_two_machines_of_one_host_name_neither_repeat_nor_fail_each_others_trials(
    tmp_path, tiny, postgres, machines_here
):
    # Heartbeats every 600 s: the machine stopped until the other has taken a trial (both do
    # some of the work, however slowly one starts) has no trial go stale meanwhile.
    procs = start_machines(tmp_path, tiny, postgres, GPUMLP_HEARTBEAT="600")
    try:
        both_take_a_trial(procs, [tmp_path / "a", tmp_path / "b"])
        results = finish_all(procs)
    finally:
        for p in procs:
            reap(p)
    for p, _, err in results:
        assert p.returncode == 0, err
        assert "warning" not in err, err  # no trial of its was failed by the other
    study = study_of(postgres)
    trials = study.get_trials()
    assert [t.number for t in trials if t.state.name != "COMPLETE"] == []  # none failed
    assert TRIALS <= len(finished(study)) <= TRIALS + 1  # both may start the last at once
    assert_no_parameter_set_repeats(trials)
    records = [t.user_attrs["worker"] for t in trials]
    assert {r["host"] for r in records} == {"same"}  # one host name, two machines
    assert len({(r["id"], r["pid_ns"]) for r in records}) == 2  # both did some of the work


def test_a_machine_killed_mid_trial_leaves_the_other_to_end_with_exactly_n_trials(
    tmp_path, tiny, postgres, machines_here
):
    # Heartbeats every second: the killed machine's trial is failed after 6 s, not 60. The
    # machine killed is the first caught mid-trial (the other may not have started yet).
    procs = start_machines(tmp_path, tiny, postgres, GPUMLP_HEARTBEAT="1")
    outs = [tmp_path / "a", tmp_path / "b"]

    def caught() -> tuple[int, Path] | None:
        found = [(i, f) for i, out in enumerate(outs) if (f := trial_mid_run(out, MID_TRIAL))]
        return found[0] if found else None

    try:
        victim, folder = wait_until(caught, "a machine was mid-trial", procs)
        killed_machine, survivor = procs[victim], procs[1 - victim]
        killed_machine.kill()  # unshare --kill-child: every process of the machine dies at once
        killed_machine.wait(timeout=PATIENCE)
        _, err = survivor.communicate(timeout=PATIENCE)
    finally:
        for p in procs:
            reap(p)
    assert survivor.returncode == 0, err
    study = study_of(postgres)
    done = finished(study)
    assert len(done) == TRIALS
    assert_no_parameter_set_repeats(done)
    killed = int(folder.name.removeprefix("trial-"))
    assert study.trials[killed].state.name == "FAIL"
    retried = [t for t in done if t.params == study.trials[killed].params]
    assert (
        len(retried) == 1
        and retried[0].user_attrs["worker"]["pid_ns"]
        != (study.trials[killed].user_attrs["worker"]["pid_ns"])
    )  # the other machine ran its flags again
