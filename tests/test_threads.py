"""``--threads N`` of ``gpumlp train`` and ``gpumlp sweep`` (``gpumlp.threads``): the BLAS
libraries of the training process run on N threads (as the run folder's ``args.json``
records, read from inside that process while it trains), restored after the command; without
it ``train`` keeps BLAS's own count and a sweep's worker takes its share of the CPUs; a bad N
is one line naming ``--threads``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpumlp.threads import blas_threads, usable_cpus
from helpers.cli import QUICK_FLAGS, assert_refused, run

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture
def blas_at():
    """``blas_at(n)``: the BLAS threads of this process set to ``n`` for the test (skipped
    where its BLAS cannot be set so, where threadpoolctl finds no BLAS)."""
    with threadpoolctl.threadpool_limits(limits=None, user_api="blas"):  # restored after

        def at(n: int) -> None:
            threadpoolctl.threadpool_limits(limits=n, user_api="blas")
            if blas_threads() != n:
                pytest.skip(f"this process's BLAS cannot be set to {n} threads")

        yield at


def recorded(folder: Path) -> int:
    return json.loads((folder / "args.json").read_text())["threads"]


def test_train_threads_limits_blas_in_the_training_process(blas_at, tmp_path, bar_mnist):
    blas_at(2)  # BLAS's own count, as the command finds it
    argv = ["train", "--data", bar_mnist, *QUICK_FLAGS]
    code, _, err = run(*argv, "--out", tmp_path / "one", "--threads", "1")
    assert code == 0, err
    assert recorded(tmp_path / "one") == 1
    assert blas_threads() == 2  # as it was, after the command
    code, _, err = run(*argv, "--out", tmp_path / "own")
    assert code == 0, err
    assert recorded(tmp_path / "own") == 2  # no --threads: BLAS's own, unchanged


SPACE = "lr = {log = [0.5, 5]}\n"


def sweep(tmp_path: Path, data: Path, out: Path, *more) -> tuple[int, str, str]:
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    argv = ["sweep", space, "--data", data, "--out", out, "--trials", "1", "--epochs", "1"]
    return run(*argv, "--backend", "numpy", "--seed", "1", "--hidden", "8", *more)


def test_a_sweeps_trials_run_on_its_threads(blas_at, tmp_path, bar_mnist):
    blas_at(2)
    code, _, err = sweep(tmp_path, bar_mnist, tmp_path / "one", "--threads", "1")
    assert code == 0, err
    assert recorded(tmp_path / "one" / "trial-0000") == 1
    assert blas_threads() == 2


def test_a_sweeps_worker_takes_its_share_of_the_cpus_by_default(blas_at, tmp_path, bar_mnist):
    if usable_cpus() < 2:
        pytest.skip("one CPU: a worker's share is BLAS's single thread anyway")
    blas_at(1)
    code, _, err = sweep(tmp_path, bar_mnist, tmp_path / "own")
    assert code == 0, err
    assert recorded(tmp_path / "own" / "trial-0000") == usable_cpus()  # one worker: all


@pytest.mark.parametrize("command", [["train"], ["sweep", "space.toml"]])
@pytest.mark.parametrize("value, why", [("0", "must be >= 1, got 0"), ("2.5", "expected an int")])
def test_threads_not_a_positive_whole_number_is_refused_naming_the_flag(command, value, why):
    code, out, err = run(*command, "--threads", value)
    assert_refused(code, err, f"--threads: {why}")
    assert out == ""


def test_the_python_sweep_trains_on_its_threads(blas_at, tmp_path):
    gpumlp = pytest.importorskip("gpumlp")
    pytest.importorskip("optuna")
    blas_at(2)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(3, size=60)
    space = {"lr": {"log": [0.5, 5]}}
    kw = dict(n_trials=1, out=tmp_path / "s", epochs=1, hidden=[4], backend="numpy")
    gpumlp.sweep(space, X, y, threads=1, **kw)
    assert recorded(tmp_path / "s" / "trial-0000") == 1
    assert blas_threads() == 2
    for bad, error in ((0, ValueError), (1.5, TypeError)):
        with pytest.raises(error, match="threads must be"):
            gpumlp.sweep(space, X, y, threads=bad, **kw)
