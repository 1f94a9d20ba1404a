"""Tests for ``gpumlp train`` (gpumlp.cli.train), in process through ``gpumlp.cli.main`` and as
a subprocess: the run folder it writes and what it prints, learning, resuming with the stored
flags, a seed drawn, printed and recorded that repeats the run bit for bit, bad flags and files
refused before anything is written (exit 2, one line on stderr; every invalid (output
activation, cost) pair among them), divergence (exit 3, of the training or the validation
cost), Ctrl-C (exit 130, resumable, counted as the epoch lines count), ``kill -9`` (the
checkpoint always whole, the resumed run bit for bit the uninterrupted one), unwritable
folders, a full disk, and running out of memory.

Subprocess runs of the fault tests train a [784, 200, 10] network with batch size 1 on 400
synthetic images: about 0.15 s an epoch, slow enough to be interrupted mid-run, fast enough for
a test.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from gpumlp.costs import VALID_PAIRS
from gpumlp.files.checkpoint import read_checkpoint, write_checkpoint
from helpers.bad_files import BAD_DATA_FILES, resigned
from helpers.cli import (
    PATIENCE,
    QUICK_FLAGS,
    TRAIN_FLAGS,
    assert_refused,
    assert_same_run,
    file_in_the_way,
    folder_state,
    printed_epochs,
    reap,
    run,
    run_gpumlp,
    saved_epochs,
    start_gpumlp,
    wait_for,
    wait_until,
)
from helpers.data import (
    write_regression_table,
    write_table,
    write_tiny_mnist,
    write_unscaled_table,
)
from helpers.faults import DiskFull, fail_on_step, temp_files
from helpers.nets import (
    INVALID_PAIRS,
    VAL_OVERFLOW_FIT,
    VAL_OVERFLOW_NET,
    assert_same_params,
    params_of,
    val_overflow_problem,
)

pytestmark = pytest.mark.usefixtures("numpy_env")

# -- a run and its folder -----------------------------------------------------------------------


def test_train_prints_epochs_and_writes_the_run_folder(trained_run):
    out, stdout = trained_run
    assert re.search(r"^Epoch 0: \d+ / 100", stdout, re.M)
    assert re.search(r"^Epoch 1: \d+ / 100", stdout, re.M)
    for name in ("history.json", "history.csv", "model.npz", "checkpoint.npz", "args.json"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [0, 1]
    assert history["stop_reason"] is None
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,") and len(rows) == 3
    model = gpumlp.load(out / "model.npz", backend="numpy")
    assert model.sizes == [784, 16, 10]
    meta, _ = read_checkpoint(out / "checkpoint.npz")
    assert meta["epoch"] == 2
    assert not list(out.glob(".*"))  # no probe or temp files left behind


def test_train_learns_the_synthetic_digits(trained_run):
    _, stdout = trained_run
    last = re.findall(r"^Epoch 1: (\d+) / 100", stdout, re.M)[0]
    assert int(last) >= 50  # chance is 10


def test_resume_continues_with_the_stored_flags(bar_mnist, tmp_path):
    out = tmp_path / "run"
    assert run("train", "--data", bar_mnist, *TRAIN_FLAGS, "--out", out)[0] == 0
    code, stdout, stderr = run("train", "--resume", out, "--epochs", "4")
    assert code == 0, stderr
    assert "[784, 16, 10]" in stdout and "on 300 images" in stdout  # from args.json
    assert re.search(r"^Epoch 2: ", stdout, re.M) and not re.search(r"^Epoch 1: ", stdout, re.M)
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [0, 1, 2, 3]
    assert history["stop_reason"] is None


def test_runs_default_folder_is_under_runs(bar_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("train", "--data", bar_mnist, *TRAIN_FLAGS, "--epochs", "1")[0] == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert (folder / "model.npz").is_file()
    assert os.access(folder / "model.npz", os.R_OK)


# -- every run can be repeated ------------------------------------------------------------------


def test_a_drawn_seed_is_printed_recorded_and_repeats_the_run(blobs, tmp_path):
    # A table with a held-out fraction: the drawn seed also picks the validation rows.
    data = tmp_path / "blobs.npz"
    np.savez(data, X=blobs[0], y=blobs[1])
    argv = ["train", "--data", data, "--val-split", "0.25", "--hidden", "8", "--epochs", "3"]
    argv += ["--lr", "0.5", "--quiet"]
    first = run_gpumlp(*argv, "--out", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    header = first.stdout.splitlines()[0]
    seed = int(
        re.fullmatch(r"gpumlp \S+: Network\(.*\) on 68 examples, .*; seed (\d+); .*", header)[1]
    )
    assert json.loads((tmp_path / "a" / "args.json").read_text())["seed"] == seed
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert history["seed"] == seed

    again = run_gpumlp(*argv, "--seed", seed, "--out", tmp_path / "b")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == header
    assert_same_run(tmp_path / "b", tmp_path / "a", [f"param/{i}" for i in range(4)])


# -- a table's defaults (gpumlp.tabledefaults) --------------------------------------------------

BOOK = ["--hidden", "30", "--activation", "sigmoid", "--output-activation", "sigmoid", "--cost",
        "quadratic", "--init", "normal", "--lr", "3", "--batch-size", "10", "--epochs", "30",
        "--optimizer", "sgd", "--l2", "0", "--monitor-set", "test"]  # fmt: skip
"""The book's defaults (MNIST's), given as flags: what a table trained with before."""


def _accuracy(out: Path) -> float:
    code, stdout, stderr = run("eval", out)
    assert code == 0, stderr
    return float(re.search(r"accuracy ([\d.]+)", stdout)[1])


def test_a_table_trains_with_only_data_and_a_split_and_says_the_defaults(tmp_path):
    data = write_unscaled_table(tmp_path / "t.csv")
    code, stdout, stderr = run("train", "--data", data, "--val-split", "0.2", "--seed", "0",
                               "--quiet", "--out", tmp_path / "r")  # fmt: skip
    assert code == 0 and stderr == "", stderr
    first = stdout.splitlines()[0]
    assert first.endswith(
        "; seed 0; defaults for tables: --hidden 32 --activation relu --output-activation "
        "softmax --cost log_likelihood --init he --lr 0.003 --batch-size 128 --epochs 200 "
        "--optimizer adam --l2 1 --patience 10 --stop-on val_cost "
        "--standardize"
    ), first
    assert "Network([4, 32, 3], activation='relu', output_activation='softmax'" in first
    assert "stopped early: no improvement in validation cost" in stdout
    assert _accuracy(tmp_path / "r") >= 0.95
    # The book's defaults, as tables had them: the columns' scales stall it near chance.
    code, _, stderr = run("train", "--data", data, "--val-split", "0.2", "--seed", "0", *BOOK,
                          "--no-standardize", "--quiet", "--out", tmp_path / "book")  # fmt: skip
    assert code == 0
    assert _accuracy(tmp_path / "book") < 0.7


def test_flags_given_replace_the_tables_defaults_and_mnist_keeps_the_books(tmp_path, bar_mnist):
    data = write_unscaled_table(tmp_path / "t.csv", 60)
    argv = ["train", "--data", data, "--sizes", "4,8,3", "--lr", "0.01", "--no-standardize"]
    code, stdout, _ = run(*argv, "--epochs", "2", "--quiet", "--out", tmp_path / "r")
    assert code == 0
    first = stdout.splitlines()[0]
    assert "Network([4, 8, 3]" in first and "--hidden" not in first and "--lr" not in first
    assert "--epochs" not in first and "--standardize" not in first
    assert "--patience" not in first  # no validation split: no early stopping
    args = json.loads((tmp_path / "r" / "args.json").read_text())
    assert (args["hidden"], args["lr"], args["standardize"]) == (None, 0.01, False)
    assert (args["optimizer"], args["stop_on"]) == ("adam", "val_cost")
    code, stdout, _ = run("train", "--data", bar_mnist, *TRAIN_FLAGS, "--out", tmp_path / "m")
    assert code == 0 and "defaults for tables" not in stdout
    args = json.loads((tmp_path / "m" / "args.json").read_text())
    assert (args["optimizer"], args["lr"], args["stop_on"]) == ("sgd", 3.0, "val_accuracy")


def test_unscaled_columns_and_a_stalled_run_are_warned_of(tmp_path):
    data = write_unscaled_table(tmp_path / "t.csv")
    code, stdout, stderr = run(
        "train",
        "--data",
        data,
        "--val-split",
        "0.2",
        "--seed",
        "0",
        *BOOK,
        "--no-standardize",
        "--quiet",
        "--out",
        tmp_path / "r",
    )
    assert code == 0 and "saved model" in stdout
    lines = stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("gpumlp: warning: ") for line in lines)
    assert re.search(
        r"columns differ in scale by a factor of \S+ \(column 0 reaches .*"
        r"column 2 only .*train with --standardize$",
        lines[0],
    ), lines[0]
    assert re.search(
        r"training has stalled: the training cost has not fallen for 5 epochs", lines[1]
    ), lines[1]
    code, _, stderr = run("train", "--data", data, "--val-split", "0.2", "--seed", "0", *BOOK,
                          "--quiet", "--out", tmp_path / "s")  # fmt: skip
    assert code == 0 and "differ in scale" not in stderr  # standardized: nothing to say


def test_stop_on_is_a_flag_and_an_older_checkpoint_resumes_on_the_accuracy(tmp_path):
    data = write_unscaled_table(tmp_path / "t.csv", 60)
    out = tmp_path / "r"
    argv = ["--data", data, "--val-split", "0.2", "--epochs", "2", "--quiet", "--out", out]
    assert run("train", *argv, "--stop-on", "val_accuracy")[0] == 0
    assert json.loads((out / "args.json").read_text())["stop_on"] == "val_accuracy"
    assert read_checkpoint(out / "checkpoint.npz")[0]["hyper"]["stop_on"] == "val_accuracy"
    # A run from before --stop-on: its args.json and checkpoint do not name it.
    args = json.loads((out / "args.json").read_text())
    (out / "args.json").write_text(json.dumps({k: v for k, v in args.items() if k != "stop_on"}))
    meta, arrays = read_checkpoint(out / "checkpoint.npz")
    meta["hyper"].pop("stop_on")
    del meta["sha256"]  # written anew
    write_checkpoint(out / "checkpoint.npz", meta, arrays)
    code, _, stderr = run("train", "--resume", out, "--epochs", "3", "--quiet")
    assert code == 0, stderr
    assert json.loads((out / "args.json").read_text())["stop_on"] == "val_accuracy"


# -- regression (issue 29: diabetes' integer targets trained a 347-class network) ---------------

_SCORED_LINE = re.compile(
    r"Epoch \d+: validation MSE [\d.]+, MAE [\d.]+, R² -?[\d.]+  \(cost [\d.]+, [\d.]+ s\)"
)


def test_a_regression_is_told_by_its_targets_said_and_scored_by_mse_mae_and_r2(tmp_path):
    data, _, _ = write_regression_table(tmp_path / "reg.csv")
    out = tmp_path / "r"
    code, stdout, stderr = run("train", "--data", data, "--val-split", "0.2", "--seed", "0",
                               "--quiet", "--out", out)  # fmt: skip
    assert code == 0 and stderr == "", stderr
    first, *lines = stdout.splitlines()
    assert ("Network([4, 32, 1], task='regression', activation='relu', output_activation="
            "'identity', cost='quadratic'") in first  # fmt: skip
    assert "validation set after each epoch; task regression; seed 0; defaults for " in first
    epochs = [line for line in lines if line.startswith("Epoch ")]
    assert epochs and all(_SCORED_LINE.fullmatch(line) for line in epochs), epochs[:3]
    assert "accuracy" not in stdout
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,train_cost,val_cost,val_mse,val_mae,val_r2,seconds"
    history = json.loads((out / "history.json").read_text())
    assert history["task"] == "regression" and "val_accuracy" not in history["epochs"][0]
    assert max(r["val_r2"] for r in history["epochs"]) > 0.9
    assert json.loads((out / "args.json").read_text())["task"] == "regression"
    net = gpumlp.load(out / "model.npz", backend="numpy")
    assert net.task == "regression" and 140 < net.target_scaling.mean[0] < 160


def test_many_valued_integer_targets_are_refused_until_the_task_is_given(tmp_path):
    data, _, y = write_regression_table(tmp_path / "int.csv", integers=True)
    distinct = len(set(y.tolist()))
    assert distinct > 30  # more than min(100, 300 / 10)
    code, stdout, stderr = run("train", "--data", data, "--quiet", "--out", tmp_path / "r")
    assert_refused(
        code, stderr, rf"int.csv: column 'target' \(index 4\) holds {distinct} distinct integer "
        r"labels \(-?\d+ to \d+\) in 300 rows, too many to take as classes unasked: give --task "
        r"regression to predict them as numbers, or --task classification if they are classes$",
    )  # fmt: skip
    assert stdout == "" and not (tmp_path / "r").exists()
    code, stdout, stderr = run("train", "--data", data, "--task", "regression", "--epochs", "2",
                               "--quiet", "--out", tmp_path / "r")  # fmt: skip
    assert code == 0, stderr
    assert "; task regression; seed" in stdout.splitlines()[0]


def test_a_regression_never_watches_an_accuracy_and_mnist_is_none(tmp_path):
    data, _, _ = write_regression_table(tmp_path / "reg.csv", 60)
    code, stdout, stderr = run("train", "--data", data, "--stop-on", "val_accuracy", "--quiet",
                               "--out", tmp_path / "r")  # fmt: skip
    assert_refused(code, stderr, r"stop_on='val_accuracy' \(--stop-on\): a regression network "
                                 r"has no accuracy; .* \(--stop-on val_cost\)$")  # fmt: skip
    assert stdout == "" and not (tmp_path / "r").exists()
    code, stdout, stderr = run("train", "--task", "regression", "--quiet", "--out", tmp_path / "m")
    assert_refused(code, stderr, "--task regression: MNIST holds images of digits, whose labels "
                                 "are classes$")  # fmt: skip
    assert not (tmp_path / "m").exists()


# -- bad flags and files: exit 2, one line, nothing written -------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sizes", "784,x"], "--sizes: expected comma-separated integers"),
        (["--lr", "-1"], "--lr: must be > 0"),
        (["--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--activation", "swish"], "--activation: invalid choice: 'swish'"),
    ],
    ids=["sizes", "lr", "batch-size", "activation"],
)
def test_bad_flag_value_exits_2_with_one_line(flags, message, bar_mnist, tmp_path):
    code, _, stderr = run("train", "--data", bar_mnist, "--out", tmp_path / "r", *flags)
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "r").exists()  # rejected before anything was written


CLI_CASES = [
    ("sizes-letter", ["--sizes", "784,x"], "--sizes: expected comma-separated"),
    ("sizes-one", ["--sizes", "784"], "--sizes: expected at least 2"),
    ("sizes-zero", ["--sizes", "784,0,10"], "--sizes: expected at least 2 positive"),
    ("lr-negative", ["--lr", "-1"], "--lr: must be > 0, got -1"),
    ("lr-zero", ["--lr", "0"], "--lr: must be > 0"),
    ("lr-nan", ["--lr", "nan"], "--lr: must be finite"),
    ("lr-word", ["--lr", "fast"], "--lr: expected a number, got 'fast'"),
    ("batch-zero", ["--batch-size", "0"], "--batch-size: must be >= 1"),
    ("batch-float", ["--batch-size", "2.5"], "--batch-size: expected an integer"),
    ("epochs-zero", ["--epochs", "0"], "--epochs: must be >= 1"),
    ("limit-zero", ["--limit", "0"], "--limit: must be >= 1"),
    ("seed-negative", ["--seed", "-3"], "--seed: must be >= 0"),
    ("dropout-one", ["--dropout", "1"], r"--dropout: must lie in \[0, 1\)"),
    ("momentum-high", ["--momentum", "1.5"], "--momentum: must lie in"),
    ("l2-negative", ["--l2", "-0.1"], "--l2: must be >= 0"),
    ("checkpoint-every-zero", ["--checkpoint-every", "0"], "--checkpoint-every"),
    ("activation", ["--activation", "swish"], "--activation: invalid choice"),
    ("cost", ["--cost", "hinge"], "--cost: invalid choice"),
    ("dtype", ["--dtype", "float16"], "--dtype: invalid choice"),
    ("backend", ["--backend", "tpu"], "backend must be one of"),
    ("unknown-flag", ["--learning-rate", "1"], "unrecognized arguments: --learning-rate"),
    (
        "cost-output-mismatch",
        ["--output-activation", "relu", "--cost", "cross_entropy"],
        "output_activation='relu'",
    ),
]


@pytest.mark.parametrize(("argv", "match"), [pytest.param(*c[1:], id=c[0]) for c in CLI_CASES])
def test_bad_command_line(argv, match, tmp_path, quick_run):
    data, _ = quick_run
    code, _, stderr = run("train", *argv, "--data", data, "--out", tmp_path / "run")
    assert_refused(code, stderr, match)
    assert not (tmp_path / "run").exists()


def _lists_the_valid_pairs(line: str) -> bool:
    pairs = [f"({o}, {c})" for o, c in VALID_PAIRS if c != "quadratic"]
    return all(p in line for p in pairs) and "quadratic with any output" in line


@pytest.mark.parametrize(("out", "cost"), INVALID_PAIRS)
def test_an_invalid_output_cost_pair_exits_2_listing_the_valid_pairs(
    out, cost, tmp_path, quick_run
):
    data, _ = quick_run
    argv = ["--output-activation", out, "--cost", cost, "--out", tmp_path / "run"]
    code, stdout, stderr = run("train", "--data", data, *QUICK_FLAGS, *argv)
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"gpumlp: error: cost={cost!r} needs output_activation in ")
    assert f"got output_activation={out!r}" in stderr and _lists_the_valid_pairs(stderr)
    assert stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_cost_log_likelihood_on_the_default_sigmoid_output_is_refused(tmp_path, quick_run):
    # The case: this used to train silently to 14% with cost 0.0000.
    data, _ = quick_run
    done = run_gpumlp("train", "--data", data, "--cost", "log_likelihood", "--out", tmp_path / "r")
    assert done.returncode == 2 and done.stdout == ""
    line = "gpumlp: error: cost='log_likelihood' needs output_activation in ['softmax'], got "
    line += "output_activation='sigmoid'; valid (output_activation, cost) pairs: "
    assert done.stderr.startswith(line) and _lists_the_valid_pairs(done.stderr)
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_missing_data_file_exits_2(tmp_path):
    code, _, stderr = run("train", "--data", tmp_path / "nope.npz", "--out", tmp_path / "r")
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and "nope.npz" in stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("make", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_DATA_FILES]
)
def test_bad_data_file(make, exc, match, tmp_path):
    path = make(tmp_path)
    code, _, stderr = run("train", "--data", path, "--out", tmp_path / "run", "--backend", "numpy")
    assert_refused(code, stderr)
    assert str(path) in stderr and re.search(match, stderr)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


CLI_FILE_CASES = [
    ("out-is-a-file", lambda p, d, r: ["--out", file_in_the_way(p)], "not a directory"),
    ("resume-missing", lambda p, d, r: ["--resume", p / "x.npz"], "no checkpoint at"),
    (
        "resume-other-shape",
        lambda p, d, r: ["--resume", r, "--sizes", "784,9,10", "--out", p / "o"],
        r"checkpoint\.npz' is for a network with sizes=\[784, 8, 10\]",
    ),
    (
        "resume-other-activation",
        lambda p, d, r: ["--resume", r, "--activation", "tanh", "--out", p / "o"],
        "activation='sigmoid'",
    ),
    (
        "resume-other-optimizer",
        lambda p, d, r: ["--resume", r, "--optimizer", "adam", "--out", p / "o"],
        "written with optimizer='sgd'",
    ),
    (
        "resume-a-model",
        lambda p, d, r: ["--resume", r / "model.npz", "--out", p / "o"],
        r"model\.npz' holds a model, not a resumable",
    ),
    ("resume-folder-empty", lambda p, d, r: ["--resume", p], "no checkpoint at"),
]


@pytest.mark.parametrize(("argv", "match"), [pytest.param(*c[1:], id=c[0]) for c in CLI_FILE_CASES])
def test_bad_file_on_the_command_line(argv, match, tmp_path, quick_run):
    data, run_dir = quick_run
    before = (run_dir / "checkpoint.npz").read_bytes()
    args = argv(tmp_path, data, run_dir)
    code, _, stderr = run("train", *args, "--data", data, "--backend", "numpy")
    assert_refused(code, stderr, match)
    assert (run_dir / "checkpoint.npz").read_bytes() == before  # a refused resume changes nothing
    assert not (tmp_path / "o").exists()  # nor makes its --out


# -- a refused resume or overwrite writes nothing and prints nothing ----------------------------


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> tuple[Path, Path]:
    """(a finished 2-epoch run on a table of 3 features and 2 classes, a table of 5 features):
    tests copy the run before they use it."""
    base = tmp_path_factory.mktemp("table")
    data, other = write_table(base / "data.npz", 3), write_table(base / "other.npz", 5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPUMLP_BACKEND", "numpy")
        argv = ["train", "--data", data, "--hidden", "3", "--epochs", "2", "--quiet"]
        book = ["--activation", "sigmoid", "--cost", "quadratic", "--optimizer", "sgd"]
        code, _, stderr = run(*argv, *book, "--seed", "0", "--out", base / "run")
    assert code == 0, stderr
    return base / "run", other


def _nan_weight(arrays: dict) -> dict:
    arrays["param/2"][0, 1] = np.nan
    return arrays


# Why a resume is refused: (id, flags, a change to the checkpoint, the message).
RESUME_REFUSALS = [
    ("other-data", ["--data", "OTHER", "--hidden", "4"], None,
     r"checkpoint\.npz' is for a network with sizes=\[3, 3, 2\], but this network has "
     r"sizes=\[5, 4, 2\]"),
    ("nan-weight", [], _nan_weight,
     r"checkpoint\.npz' holds invalid parameters: weights\[1\] .*NaN"),
    ("activation", ["--activation", "relu"], None,
     r"is for a network with activation='sigmoid', but this network has activation='relu'"),
    ("cost", ["--cost", "cross_entropy"], None,
     r"is for a network with cost='quadratic', but this network has cost='cross_entropy'"),
    ("optimizer", ["--optimizer", "adam"], None, r"was written with optimizer='sgd', not 'adam'"),
]  # fmt: skip
# How the resume is asked for: into its own folder, with --overwrite, over another run, elsewhere.
RESUME_MODES = {
    "resume": lambda run_dir, other_run, new: ["--resume", run_dir],
    "resume-overwrite": lambda run_dir, other_run, new: ["--resume", run_dir, "--overwrite"],
    "overwrite-another": lambda run_dir, other_run, new: [
        "--resume", run_dir, "--out", other_run, "--overwrite"],
    "out-new": lambda run_dir, other_run, new: ["--resume", run_dir, "--out", new],
}  # fmt: skip


@pytest.mark.parametrize("mode", RESUME_MODES)
@pytest.mark.parametrize(
    ("flags", "change", "message"), [pytest.param(*c[1:], id=c[0]) for c in RESUME_REFUSALS]
)
def test_a_refused_resume_leaves_every_folder_as_it_was(
    flags, change, message, mode, table_run, tmp_path
):
    source, other = table_run
    run_dir, other_run, new = tmp_path / "run", tmp_path / "other-run", tmp_path / "new"
    for folder in (run_dir, other_run):
        shutil.copytree(source, folder)
    if change is not None:
        resigned(source / "checkpoint.npz", run_dir / "checkpoint.npz", change_arrays=change)
    before = folder_state(tmp_path)
    argv = [other if a == "OTHER" else a for a in flags]
    code, stdout, stderr = run("train", *RESUME_MODES[mode](run_dir, other_run, new), *argv)
    assert_refused(code, stderr, message)
    assert stdout == ""  # no banner, no "resuming: ..."
    assert folder_state(tmp_path) == before  # both runs byte for byte; no new folder
    assert not new.exists()


@pytest.mark.skipif(gpumlp.backend.cupy_status()[0], reason="CuPy is usable here")
def test_cupy_backend_unavailable_exits_2(tmp_path, quick_run):
    data, _ = quick_run
    argv = ["train", "--data", data, *QUICK_FLAGS[:-2], "--backend", "cupy", "--out", tmp_path]
    code, _, stderr = run(*argv)
    assert code == 2
    assert "backend='cupy' cannot run" in stderr


# -- divergence: exit 3 -------------------------------------------------------------------------


def test_divergence_on_the_command_line_exits_3(tmp_path, quick_run):
    data, _ = quick_run
    out = tmp_path / "run"
    argv = ["train", "--data", data, *QUICK_FLAGS, "--activation", "identity", "--init", "scaled"]
    code, _, stderr = run(*argv, "--lr", "1e6", "--epochs", "3", "--out", out)
    assert code == 3
    assert "diverged in epoch 0" in stderr and "smaller lr" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr and "RuntimeWarning" not in stderr
    history = json.loads((out / "history.json").read_text())
    assert history["stop_reason"].startswith("diverged in epoch 0")
    assert history["epochs"] == []
    model = gpumlp.load(out / "model.npz", backend="numpy")
    assert all(np.isfinite(np.asarray(t)).all() for t in model.params.arrays())


def test_a_non_finite_validation_cost_exits_3_keeping_finite_weights(tmp_path):
    (X, Y), (X_val, Y_val) = val_overflow_problem()
    data, out = tmp_path / "table.npz", tmp_path / "run"
    np.savez(data, X=X, y=Y, X_val=X_val, y_val=Y_val)
    argv = ["--sizes", "4,2", "--activation", "identity", "--lr", "0.01", "--batch-size", "10"]
    argv += ["--output-activation", "identity", "--cost", "quadratic", "--init", "normal"]
    argv += ["--optimizer", "sgd", "--l2", "0", "--no-standardize", "--patience", "none"]
    done = run_gpumlp("train", "--data", data, *argv, "--epochs", "20", "--seed", "0", "--out", out)
    assert done.returncode == 3, done.stderr
    found = re.search(
        r"diverged in epoch (\d+) \(lr=0\.01\): the validation cost became NaN or inf while the "
        r"training cost stayed finite; try a smaller lr",
        done.stderr,
    )
    assert found, done.stderr
    k = int(found[1])
    assert k >= 1 and f"--resume {out}" in done.stderr
    assert "Traceback" not in done.stderr and "RuntimeWarning" not in done.stderr
    assert printed_epochs(done.stdout) == saved_epochs(out) == list(range(k))
    history = json.loads((out / "history.json").read_text())
    assert history["stop_reason"].startswith(f"diverged in epoch {k}")
    # The model and the checkpoint hold the last weights that evaluate finite: epoch k - 1's.
    model = gpumlp.load(out / "model.npz", backend="numpy")
    assert np.isfinite(model.evaluate(X_val, Y_val)["cost"])
    assert read_checkpoint(out / "checkpoint.npz")[0]["epoch"] == k
    ref = gpumlp.Network([4, 2], **VAL_OVERFLOW_NET)  # --seed 0 seeds fit's orders too
    with np.errstate(over="ignore"):
        ref.fit(X, Y, epochs=k, validation_data=(X_val, Y_val), seed=0, **VAL_OVERFLOW_FIT)
    assert_same_params(params_of(model), params_of(ref))


# -- Ctrl-C and kill -9 -------------------------------------------------------------------------

SLOW = ["--sizes", "784,200,10", "--batch-size", "1", "--limit", "400", "--seed", "0"]
SLOW += ["--checkpoint-every", "1", "--quiet"]


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory) -> Path:
    """A tiny MNIST npz: 480 training images (400 train + 80 validation), 100 test images."""
    return write_tiny_mnist(tmp_path_factory.mktemp("data") / "mnist.npz", 480, 100)


def slow_train(data: Path, out: Path, *extra) -> list:
    """``gpumlp train`` arguments of a run slow enough to interrupt (``SLOW``)."""
    return ["train", "--data", data, *SLOW, "--out", out, *extra]


@pytest.mark.signals
def test_ctrl_c_saves_a_checkpoint_that_resumes(slow_data, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_gpumlp(
        *slow_train(slow_data, run_dir, "--epochs", "1000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(run_dir / "checkpoint.npz", proc)
        time.sleep(0.2)  # into a later epoch
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=PATIENCE)
    finally:
        reap(proc)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and f"gpumlp train --resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    finished = saved_epochs(run_dir)
    assert finished == list(range(len(finished))) and len(finished) >= 1
    meta, _ = read_checkpoint(run_dir / "checkpoint.npz")
    assert meta["epoch"] == len(finished)
    assert meta["history"]["stop_reason"].startswith("interrupted during epoch")
    assert gpumlp.load(run_dir / "checkpoint.npz", backend="numpy").sizes == [784, 200, 10]
    assert not (run_dir / "model.npz").exists()
    # The message counts as the epoch lines do: the last line shown is the last epoch saved.
    last = len(finished) - 1
    assert printed_epochs(stdout) == finished
    assert f"interrupted during epoch {last + 1} (Ctrl-C)" in stderr
    assert re.search(rf"saved epochs? (0\.\.)?{last} to ", stderr), stderr

    target = len(finished) + 2
    resumed = run_gpumlp("train", "--resume", run_dir, "--epochs", target)
    assert resumed.returncode == 0, resumed.stderr
    assert printed_epochs(resumed.stdout) == [last + 1, last + 2]  # goes on at the next line
    assert (
        f"resuming: {run_dir / 'checkpoint.npz'} holds {last + 1} finished epoch"
        f"{'s' if last else ''}; going on at epoch {last + 1} up to epoch {last + 2}"
    ) in resumed.stdout
    assert saved_epochs(run_dir) == list(range(target))
    assert json.loads((run_dir / "history.json").read_text())["stop_reason"] is None
    # Resuming a run that has all its epochs writes the model from it and says so.
    again = run_gpumlp("train", "--resume", run_dir, "--epochs", target)
    assert again.returncode == 0 and printed_epochs(again.stdout) == [], again.stderr
    assert f"--epochs {target}: nothing left to train; writing the model from it" in again.stdout
    assert saved_epochs(run_dir) == list(range(target))


@pytest.mark.signals
def test_kill_9_never_leaves_a_damaged_checkpoint(slow_data, tmp_path):
    # Five kills, each once an event has come, never after a fixed pause (a loaded machine may
    # take seconds to import NumPy): twice at a random moment once args.json exists (perhaps
    # before the first checkpoint: the retry then starts the run again with --overwrite, as
    # there is nothing to resume), twice at a random moment once a checkpoint exists, and last
    # while the resumed run writes a checkpoint.
    run_dir, rng = tmp_path / "run", random.Random(0)
    ckpt = run_dir / "checkpoint.npz"
    for attempt in range(5):
        if ckpt.exists():
            again = ["--resume", str(run_dir)]
        else:
            again = ["--overwrite"] if run_dir.exists() else []
        before = set(temp_files(run_dir)) if run_dir.exists() else set()
        proc = start_gpumlp(
            *slow_train(slow_data, run_dir, "--epochs", "1000", *again),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if attempt == 4:  # aim at a checkpoint being written
                assert again[0] == "--resume"

                def writing(before: set[str] = before) -> bool:
                    names = temp_files(run_dir)
                    return any(n.startswith(".checkpoint.npz.") and n not in before for n in names)

                wait_until(writing, "a checkpoint was being written", proc, poll=0.0005)
            else:
                wait_for(run_dir / ("args.json" if attempt < 2 else "checkpoint.npz"), proc)
                time.sleep(rng.uniform(0.0, 1.0))  # a random moment after it
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=PATIENCE) == -signal.SIGKILL
        finally:
            reap(proc)
        if ckpt.exists():  # whatever the moment, the checkpoint is whole, never damaged
            meta, _ = read_checkpoint(ckpt)
            assert meta["epoch"] == len(meta["history"]["epochs"])
            gpumlp.load(ckpt, backend="numpy")
    assert ckpt.exists()
    # Leftover temp files (a write cut short) are hidden and do not get in the way of a resume.
    assert all(name.startswith(".") for name in temp_files(run_dir))
    epoch = read_checkpoint(ckpt)[0]["epoch"]
    code, _, stderr = run("train", "--resume", run_dir, "--epochs", epoch + 1)
    assert code == 0, stderr
    assert saved_epochs(run_dir) == list(range(epoch + 1))


EPOCHS = 50  # ~0.06 s each on the native engine: seconds of run left to kill, under load too


def _killable(data: Path, out: Path, *extra) -> list:
    # Batch size 1 makes an epoch take a fraction of a second: long enough to kill mid-epoch.
    return [
        "train", "--data", data, "--backend", "numpy",
        "--sizes", "784,150,10", "--init", "scaled", "--batch-size", "1",
        "--epochs", EPOCHS, "--seed", "3", "--optimizer", "adam", "--lr", "0.002",
        "--dropout", "0.2", "--schedule", "cosine", "--checkpoint-every", "1",
        "--out", out, "--quiet", *extra,
    ]  # fmt: skip


@pytest.mark.signals
def test_cli_killed_and_resumed_matches_uninterrupted(tmp_path):
    data = tmp_path / "mnist.npz"
    write_tiny_mnist(data, 1200, 100)  # 1000 train, 200 validation
    # One BLAS thread (gpumlp_env): the runs share two cores, and the numbers must not depend
    # on threading.
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = start_gpumlp(*_killable(data, ref_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    victim = start_gpumlp(
        *_killable(data, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        try:
            ckpt = run_dir / "checkpoint.npz"
            wait_for(ckpt, victim)
            meta, _ = read_checkpoint(ckpt)  # atomic: never seen half-written
            epoch_seconds = meta["history"]["epochs"][0]["seconds"]
            time.sleep(epoch_seconds / 2)  # into the middle of the next epoch
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(timeout=PATIENCE) == -signal.SIGKILL
        finally:
            reap(victim)
        out, _ = ref.communicate(timeout=PATIENCE)
    finally:
        reap(ref)
    assert ref.returncode == 0, out.decode(errors="replace")

    # What the kill left: the last complete checkpoint, no model, nothing that looks valid but
    # is not (a write cut short stays a hidden .tmp file).
    assert not (run_dir / "model.npz").exists(), "the run finished before it was killed"
    meta, _ = read_checkpoint(ckpt)
    assert 1 <= meta["epoch"] < EPOCHS
    for leftover in run_dir.iterdir():
        name = leftover.name
        if name.endswith(".tmp"):
            assert name.startswith("."), name
        else:
            assert name == "checkpoint.npz" or not name.endswith(".npz"), name

    resumed = run_gpumlp(*_killable(data, run_dir, "--resume", run_dir))
    assert resumed.returncode == 0, resumed.stderr
    h_got = assert_same_run(run_dir, ref_dir, [f"param/{i}" for i in range(4)])
    assert len(h_got["epochs"]) == EPOCHS and h_got["stop_reason"] is None


# -- unwritable folders, a full disk, memory running out ----------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_read_only_out_folder_is_refused_before_training(slow_data, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o500)
    try:
        code, stdout, stderr = run("train", "--data", slow_data, *SLOW, "--out", run_dir)
    finally:
        run_dir.chmod(0o700)
    assert code == 2
    assert stderr.startswith("gpumlp: error: --out") and "is not writable" in stderr
    assert "Epoch" not in stdout and not list(run_dir.iterdir())


@pytest.mark.parametrize("out", ["made/run", None], ids=["out", "default"])
@pytest.mark.parametrize(
    ("target", "error", "gist"),
    [
        ("mkstemp", errno.EACCES, "Permission denied"),  # a read-only folder, simulated
        ("write", errno.ENOSPC, "No space left on device"),  # a full disk
    ],
)
def test_unwritable_out_folder_is_refused_before_training(
    slow_data, tmp_path, monkeypatch, target, error, gist, out
):
    def fail(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(*((tempfile, "mkstemp") if target == "mkstemp" else (os, "write")), fail)
    code, stdout, stderr = run("train", "--data", slow_data, *SLOW, *(["--out", out] * bool(out)))
    monkeypatch.undo()
    assert code == 2
    folder = re.escape(out or "runs/") + ("" if out else r"mnist-[-\d]+")
    assert re.fullmatch(rf"gpumlp: error: --out '{folder}' is not writable: {gist}\n", stderr)
    assert stdout == "" and list(tmp_path.iterdir()) == []  # the folders it made, removed


def test_disk_full_on_the_command_line(slow_data, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    DiskFull(monkeypatch, ".checkpoint.npz.", after=2)
    code, stdout, stderr = run(
        "train", "--data", slow_data, *SLOW, "--epochs", "5", "--out", run_dir
    )
    monkeypatch.undo()
    assert code == 2
    assert stderr.startswith(f"gpumlp: error: cannot write {str(run_dir / 'checkpoint.npz')!r}: ")
    assert "No space left on device" in stderr and stderr.count("\n") == 1
    assert "Epoch 1: " in stdout
    assert read_checkpoint(run_dir / "checkpoint.npz")[0]["epoch"] == 2
    assert temp_files(run_dir) == []


def test_out_of_memory_on_the_command_line(slow_data, tmp_path, monkeypatch):
    fail_on_step(monkeypatch, 3, MemoryError("Unable to allocate"))
    import gpumlp.memory
    import gpumlp.model
    import gpumlp.runs.runner

    for module in (gpumlp.runs.runner, gpumlp.model):
        monkeypatch.setattr(module, "check_model_fits", lambda *a, **k: None)
    monkeypatch.setattr(gpumlp.runs.runner, "check_training_fits", lambda *a, **k: None)
    monkeypatch.setattr(gpumlp.memory, "free_memory", lambda xp: 100_000)
    code, _, stderr = run(
        "train", "--data", slow_data, *SLOW, "--batch-size", "50", "--out", tmp_path
    )
    assert code == 2
    assert stderr.startswith("gpumlp: error: out of host memory training sizes=[784, 200, 10]")
    assert "try batch_size=" in stderr and stderr.count("\n") == 1
