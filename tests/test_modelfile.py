"""Tests for gpumlp.files.modelfile: a valid, signed checkpoint whose model metadata or parameters
are wrong (missing, invalid, of the wrong shape, NaN) is refused with a CheckpointError naming
the file and what is wrong; so is one whose training metadata breaks the schema (a real
checkpoint's metadata rewritten), through ``gpumlp.load``, a resumed ``fit``, and the
``gpumlp train --resume`` and ``gpumlp eval`` commands (exit 2, one line), as is a run folder's
``args.json`` with a bad ``limit``, and a model whose input (or a regression's target)
standardization makes NaN or inf in its dtype. A regression's task and target standardization
come back as they were saved; files written before the task was kept load as classification."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from gpumlp.files.checkpoint import CheckpointError, read_checkpoint
from helpers.bad_files import BAD_CHECKPOINT_CONTENTS, raises_exactly, resigned
from helpers.cli import assert_refused, run, run_gpumlp
from helpers.nets import SMALL_X, SMALL_Y, assert_same_params, params_of, small_net


@pytest.mark.parametrize(
    ("make", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CHECKPOINT_CONTENTS]
)
def test_bad_checkpoint(make, exc, match, tmp_path, model_file):
    path = make(tmp_path, model_file)
    with raises_exactly(exc, match, naming=path):
        gpumlp.load(path, backend="numpy")


# -- the training part's schema: a real checkpoint, its metadata rewritten ---------------------


def _delete(*keys):
    def change(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]

    return change


def _set(*keys, value):
    def change(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return change


BAD_TRAINING_META = [
    ("no-history", _delete("history"), "lacks 'history'"),
    ("no-rng", _delete("rng"), "lacks 'rng'"),
    ("no-schedule", _delete("schedule"), "lacks 'schedule'"),
    ("no-optimizer-scalars", _delete("optimizer", "scalars"), "'optimizer' must be"),
    ("scalars-list", _set("optimizer", "scalars", value=[]), "'optimizer' must be"),
    ("scalar-t-text", _set("optimizer", "scalars", "t", value="8"), "'optimizer' must be"),
    ("scalar-t-negative", _set("optimizer", "scalars", "t", value=-1), "'optimizer' must be"),
    ("scalar-unknown", _set("optimizer", "scalars", "u", value=1), "'optimizer' must be"),
    ("optimizer-name-list", _set("optimizer", "name", value=["adam"]), "'optimizer' must be"),
    ("epoch-negative", _set("epoch", value=-1), "'epoch' must be an integer >= 0, got -1"),
    ("epoch-nan", _set("epoch", value=float("nan")), "'epoch' must be an integer >= 0, got nan"),
    ("epoch-float", _set("epoch", value=1.5), "'epoch' must be an integer >= 0, got 1.5"),
    ("epoch-whole-float", _set("epoch", value=2.0), "'epoch' must be an integer >= 0, got 2.0"),
    ("epoch-bool", _set("epoch", value=True), "'epoch' must be an integer >= 0, got True"),
    ("epoch-text", _set("epoch", value="2"), "'epoch' must be an integer >= 0, got '2'"),
    ("epoch-past-history", _set("epoch", value=10**30), "'history' holds 2 epoch records"),
    ("history-list", _set("history", value=[]), "'history' must be"),
    ("history-record-text", _set("history", "epochs", value=["epoch 0"]), "'history' must be"),
    ("history-epoch-text", _set("history", "epochs", 0, "epoch", value="0"), "'history' must"),
    ("history-cost-text", _set("history", "epochs", 0, "train_cost", value="x"), "'history'"),
    ("history-seed", _set("history", "seed", value=-3), "'history' must be"),
    ("rng-text", _set("rng", value="x"), "'rng' must be a NumPy PCG64 bit generator state"),
    ("rng-empty-state", _set("rng", "state", value={}), "'rng' must be"),
    ("rng-other-generator", _set("rng", "bit_generator", value="MT19937"), "'rng' must be"),
    ("rng-state-text", _set("rng", "state", "state", value="x"), "'rng' must be"),
    ("schedule-list", _set("schedule", value=[3.0]), "'schedule' must be"),
    ("schedule-lr-text", _set("schedule", "lr", value="x"), "'schedule' must be"),
    ("schedule-lr-zero", _set("schedule", "lr", value=0), "'schedule' must be"),
    ("schedule-since-negative", _set("schedule", "since_best", value=-1), "'schedule' must be"),
    ("early-number", _set("early", value=5), "'early' must be"),
    ("early-best-nan", _set("early", "best", value=float("nan")), "'early' must be"),
    ("hyper-list", _set("hyper", value=[]), "'hyper' must be a dict"),
    ("dropout-key-negative", _set("dropout_key", value=-1), "'dropout_key' must be"),
    ("dtype-float16", _set("dtype", value="float16"), "'dtype' must be one of"),
    ("standardized-text", _set("standardized", value="yes"), "'standardized' must be true or"),
    ("task-unknown", _set("task", value="ranking"), "'task' must be one of"),
    (
        "targets-standardized-text",
        _set("targets_standardized", value="yes"),
        "'targets_standardized' must be true or false",
    ),
    (
        "targets-standardized-classification",
        _set("targets_standardized", value=True),
        "'targets_standardized' is true, but its task is classification",
    ),
    ("history-task", _set("history", "task", value="ranking"), "'history' must be"),
]
"""(id, change(meta) in place, message pattern): metadata of a real checkpoint (2 epochs of
Adam with early stopping) that is missing, of the wrong type or out of range."""

_TRAIN = dict(epochs=2, batch_size=4, lr=0.01, optimizer="adam", patience=3)


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    """A checkpoint of ``small_net()`` after 2 epochs of Adam with early stopping."""
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.npz"
    small_net().fit(SMALL_X, SMALL_Y, validation_data=(SMALL_X, SMALL_Y), checkpoint=path,
                    **_TRAIN)  # fmt: skip
    meta, _ = read_checkpoint(path)
    assert meta["optimizer"]["scalars"] == {"t": 6} and isinstance(meta["early"], dict)
    return path


def rewrite(source: Path, target: Path, change) -> Path:
    """``source`` re-signed as ``target`` after ``change(meta)``: a valid container whose
    metadata is what ``change`` made it."""

    def changed(meta: dict) -> dict:
        meta = copy.deepcopy(meta)
        change(meta)
        return meta

    return resigned(source, target, changed)


@pytest.mark.parametrize(
    ("change", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_TRAINING_META]
)
def test_bad_training_metadata_is_refused_naming_file_and_key(
    change, match, tmp_path, checkpoint_file
):
    path = rewrite(checkpoint_file, tmp_path / "bad.npz", change)
    with raises_exactly(CheckpointError, re.escape(match), naming=path):
        gpumlp.load(path, backend="numpy")
    net = small_net()
    before = params_of(net)
    with pytest.raises(CheckpointError, match=re.escape(match)):  # resumed: the same check
        net.fit(SMALL_X, SMALL_Y, validation_data=(SMALL_X, SMALL_Y), resume=path,
                **(_TRAIN | {"epochs": 3}))  # fmt: skip
    assert_same_params(params_of(net), before)


def test_the_unchanged_checkpoint_resumes(tmp_path, checkpoint_file):
    path = rewrite(checkpoint_file, tmp_path / "good.npz", lambda meta: None)
    history = small_net().fit(SMALL_X, SMALL_Y, validation_data=(SMALL_X, SMALL_Y), resume=path,
                              **(_TRAIN | {"epochs": 3}))  # fmt: skip
    assert [r["epoch"] for r in history] == [0, 1, 2]


# -- the same through the command line: exit 2, one line; exit 1 is parity's ------------------

CLI_CASES = """no-history no-rng no-schedule no-optimizer-scalars scalar-t-text epoch-negative
epoch-nan epoch-float epoch-past-history history-list rng-empty-state schedule-lr-text
early-number standardized-text task-unknown targets-standardized-text
targets-standardized-classification history-task""".split()


@pytest.fixture(scope="module")
def adam_run(tmp_path_factory, bar_mnist):
    """A finished 2-epoch ``gpumlp train`` run folder (Adam, NumPy), as the command wrote it."""
    out = tmp_path_factory.mktemp("adam") / "run"
    flags = ["--epochs", "2", "--limit", "100", "--sizes", "784,8,10", "--optimizer", "adam"]
    flags += ["--lr", "0.01", "--seed", "0", "--quiet", "--backend", "numpy"]
    code, _, err = run("train", "--data", bar_mnist, *flags, "--out", out)
    assert code == 0, err
    return out


def _bad_run(adam_run: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(adam_run, folder)
    rewrite(adam_run / "checkpoint.npz", folder / "checkpoint.npz", change)
    return folder


def _one_error_line(proc, *parts: str) -> None:
    assert_refused(proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    for part in parts:
        assert part in proc.stderr, (part, proc.stderr)


@pytest.mark.parametrize("case", CLI_CASES)
def test_gpumlp_train_resume_and_eval_refuse_bad_metadata(case, adam_run, tmp_path):
    change, match = {c[0]: c[1:] for c in BAD_TRAINING_META}[case]
    folder = _bad_run(adam_run, tmp_path, change)
    checkpoint = folder / "checkpoint.npz"
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "args.json"}
    proc = run_gpumlp("train", "--resume", folder, "--quiet")
    _one_error_line(proc, repr(str(checkpoint)), match)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "args.json"} == files
    proc = run_gpumlp("eval", checkpoint)
    _one_error_line(proc, repr(str(checkpoint)), match)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("limit", "what"),
    [
        ("100", "'limit' must be an integer >= 1, got '100'"),
        (-5, "got -5"),
        (0, "got 0"),
        (2.5, "got 2.5"),
        (True, "got True"),
    ],
)
def test_gpumlp_train_resume_refuses_a_bad_limit_in_args_json(limit, what, adam_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(adam_run, folder)
    args = json.loads((folder / "args.json").read_text())
    (folder / "args.json").write_text(json.dumps(args | {"limit": limit}))
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    proc = run_gpumlp("train", "--resume", folder, "--epochs", "3", "--quiet")
    _one_error_line(proc, repr(str(folder / "args.json")), what)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # nothing written


# -- the input standardization's values ---------------------------------------------------------


@pytest.fixture(scope="module")
def standardized_model(tmp_path_factory) -> Path:
    """A [4, 5, 3] float32 model trained on standardized inputs, saved."""
    net = small_net()
    net.fit(SMALL_X, SMALL_Y, epochs=1, standardize=True)
    path = tmp_path_factory.mktemp("std") / "m.npz"
    net.save(path)
    return path


@pytest.mark.parametrize(
    ("member", "value", "shown"),
    [
        ("input/std", 0.0, "0.0"),
        ("input/std", float("nan"), "nan"),
        ("input/std", -1.0, "-1.0"),
        ("input/std", 1e-45, "1e-45"),  # float32's 1/std overflows
        ("input/std", float("inf"), "inf"),
        ("input/mean", float("nan"), "nan"),
        ("input/mean", float("-inf"), "-inf"),
        ("input/mean", 1e300, "1e+300"),  # inf as float32
    ],
)
def test_a_standardization_that_makes_nan_is_refused_naming_member_and_value(
    standardized_model, tmp_path, member, value, shown
):
    def change(arrays):
        bad = arrays[member].copy()
        bad[2] = value
        return arrays | {member: bad}

    path = resigned(standardized_model, tmp_path / "bad.npz", change_arrays=change)
    message = f"{str(path)!r} holds an invalid input standardization: {member}[2] is {shown}: "
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}it must be"):
        gpumlp.load(path, backend="numpy")
    code, _, err = run("predict", path, "x.png", "--backend", "numpy")
    assert_refused(code, err, re.escape(f"{member}[2] is {shown}"))


def test_a_tiny_std_is_refused_only_where_the_dtype_cannot_divide_by_it(
    standardized_model, tmp_path
):
    def change(arrays):
        return arrays | {"input/std": arrays["input/std"] * 0 + 1e-45}

    path = resigned(standardized_model, tmp_path / "tiny.npz", change_arrays=change)
    with pytest.raises(CheckpointError, match=r"input/std\[0\] is 1e-45: .* 1.18e-38"):
        gpumlp.load(path, backend="numpy")
    net = gpumlp.load(path, backend="numpy", dtype="float64")  # 1/1e-45 is finite there
    assert net.standardized


# -- a regression's task and target standardization ---------------------------------------------


@pytest.fixture(scope="module")
def regression_model(tmp_path_factory) -> Path:
    """A [4, 5, 1] float32 regression model trained on standardized inputs and targets in the
    hundreds, saved."""
    net = gpumlp.Network([4, 5, 1], task="regression", activation="relu",
                         output_activation="identity", init="he", seed=0)  # fmt: skip
    net.fit(SMALL_X, 300.0 + 40.0 * SMALL_X[:, :1], epochs=100, batch_size=4, lr=0.01,
            optimizer="adam", standardize=True)  # fmt: skip
    path = tmp_path_factory.mktemp("reg") / "m.npz"
    net.save(path)
    return path


def test_a_regression_comes_back_with_its_task_and_target_standardization(regression_model):
    meta, arrays = read_checkpoint(regression_model)
    assert (meta["task"], meta["targets_standardized"]) == ("regression", True)
    net = gpumlp.load(regression_model, backend="numpy")
    scaling = net.target_scaling
    assert net.task == "regression" and scaling is not None
    assert scaling.mean == pytest.approx(arrays["target/mean"]) and scaling.mean[0] > 250
    assert scaling.std == pytest.approx(arrays["target/std"])
    values = net.predict(SMALL_X)  # in the targets' units, scaled back from what it learnt
    assert values.shape == (len(SMALL_X), 1) and values.dtype == np.float64
    assert np.abs(values - (300.0 + 40.0 * SMALL_X[:, :1])).max() < 10.0


def test_a_model_written_before_the_task_was_kept_loads_as_classification(model_file, tmp_path):
    def older(meta):
        return {k: v for k, v in meta.items() if k not in ("task", "targets_standardized")}

    path = resigned(model_file, tmp_path / "old.npz", older)
    net = gpumlp.load(path, backend="numpy")
    assert net.task == "classification" and net.target_scaling is None


@pytest.mark.parametrize(
    ("member", "value", "shown"),
    [
        ("target/std", 0.0, "0.0"),
        ("target/std", float("inf"), "inf"),
        ("target/mean", float("nan"), "nan"),
    ],
)
def test_a_target_standardization_that_makes_nan_is_refused(
    regression_model, tmp_path, member, value, shown
):
    def change(arrays):
        return arrays | {member: arrays[member] * 0 + value}

    path = resigned(regression_model, tmp_path / "bad.npz", change_arrays=change)
    message = f"{str(path)!r} holds an invalid target standardization: {member}[0] is {shown}: "
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}it must be"):
        gpumlp.load(path, backend="numpy")
    code, _, err = run("eval", path, "--backend", "numpy")
    assert_refused(code, err, re.escape(f"{member}[0] is {shown}"))


def test_a_regression_without_its_target_arrays_is_refused(regression_model, tmp_path):
    def drop(arrays):
        return {k: v for k, v in arrays.items() if not k.startswith("target/")}

    path = resigned(regression_model, tmp_path / "bad.npz", change_arrays=drop)
    with pytest.raises(CheckpointError, match="lacks parameter 'target/mean'"):
        gpumlp.load(path, backend="numpy")
