"""Tests for gpumlp.runs.runner through the real ``gpumlp train`` command: what :func:`plan_run`
refuses before any folder is made (data values that are not finite in the network's dtype, in
every file format and split; L1/L2 penalties that diverge whatever the data), a learning rate
that blows the weights past the dtype's safe range (exit 3), and a disk that fills up at the
final ``model.npz`` (the message names the file and says the checkpoint is complete)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import gpumlp
from gpumlp.files.checkpoint import read_checkpoint
from helpers.cli import PATIENCE, run, run_gpumlp
from helpers.faults import DiskFull, temp_files
from helpers.nets import HUGE, assert_same_params, params_of, with_value

QUICK = ["--epochs", "1", "--quiet", "--seed", "0", "--backend", "numpy"]


def _table(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 4)), np.arange(n) % 3


def _npz(folder, **arrays):
    X, y = _table()
    np.savez(folder / "t.npz", **({"X": X, "y": y} | arrays))
    return ["--data", folder / "t.npz"]


def _csv(folder, bad):
    X, y = _table()
    X[5, 1] = bad
    rows = ["a,b,c,d,label"]
    rows += [",".join([*(repr(float(v)) for v in x), str(c)]) for x, c in zip(X, y, strict=True)]
    (folder / "t.csv").write_text("\n".join(rows) + "\n")
    return ["--data", folder / "t.csv", "--label-column", "label"]


def _npy(folder, bad):
    X, y = _table()
    X[5, 1] = bad
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return ["--data", folder / "X.npy", "--labels", folder / "y.npy"]


X, Y = _table()
BAD_VALUES = [
    (
        "npz-X",
        lambda f: _npz(f, X=with_value(X, (5, 1))),
        "the training inputs hold 1e+300 at index (5, 1)",
    ),
    (
        "npz-X-val",
        lambda f: _npz(f, X_val=with_value(X[:10], (2, 3)), y_val=Y[:10]),
        "the validation inputs hold 1e+300 at index (2, 3)",
    ),
    (
        "npz-targets",
        lambda f: _npz(f, y=with_value(np.eye(3)[Y], (7, 2))),
        "the training targets hold 1e+300 at index (7, 2)",
    ),
    ("csv-column", lambda f: _csv(f, HUGE), "the training inputs hold 1e+300 at index (5, 1)"),
    ("npy", lambda f: _npy(f, HUGE), "the training inputs hold 1e+300 at index (5, 1)"),
]


@pytest.mark.parametrize(("make", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_VALUES])
def test_data_that_overflows_float32_is_refused_before_the_run_folder(make, match, tmp_path):
    data = make(tmp_path)
    proc = run_gpumlp(
        "train", *data, "--hidden", "5", *QUICK, "--out", tmp_path / "run", timeout=PATIENCE
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"gpumlp: error: --data {data[1]}: {match}, which overflows float32, the network's "
        "dtype: scale the data, or train with --dtype float64\n"
    )
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_same_data_trains_in_float64(tmp_path):
    data = _npz(tmp_path, X=with_value(X, (5, 1)))
    out = tmp_path / "run"
    proc = run_gpumlp("train", *data, "--hidden", "5", *QUICK, "--dtype", "float64", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.npz").is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--l2", "1e300"],
            "--l2 1e+300: the penalty's step l2/n = 2.5e+298 (n = 40 training examples) is past "
            "±1.8e+19, the safe range of float32: use a smaller --l2",
        ),
        (
            ["--l1", "1e300", "--optimizer", "adam"],
            "--l1 1e+300: the penalty's step l1/n = 2.5e+298 (n = 40 training examples) is past "
            "±1.8e+19, the safe range of float32: use a smaller --l1",
        ),
        (
            ["--l2", "30", "--lr", "3", "--optimizer", "sgd"],
            "--l2 30: the weight decay step lr·l2/n = 2.25 (lr 3, n = 40 training examples) is 2 "
            "or more, so the L2 penalty alone makes sgd diverge: use --l2 below 26.7",
        ),
    ],
    ids=["l2-overflows", "l1-overflows", "l2-decay-step"],
)
def test_a_penalty_that_diverges_whatever_the_data_is_named(flags, message, tmp_path):
    out = tmp_path / "run"
    proc = run_gpumlp("train", *_npz(tmp_path), "--hidden", "5", *QUICK, *flags, "--out", out)
    assert proc.returncode == 2
    assert proc.stderr == f"gpumlp: error: {message}\n"  # l2 or l1 named, not lr
    assert not out.exists()


def test_weights_past_the_safe_range_are_divergence(tmp_path):
    out = tmp_path / "run"
    proc = run_gpumlp(
        "train", *_npz(tmp_path), "--hidden", "5", *QUICK, "--lr", "1e30", "--out", out
    )
    assert proc.returncode == 3, proc.stderr
    assert "training diverged in epoch 0 (lr=1e+30): " in proc.stderr
    assert (
        "the weights grew past ±1.8e+19, the safe range of float32; try a smaller lr" in proc.stderr
    )
    assert "the initial weights were kept" in proc.stderr  # epoch 0: no epoch finished
    assert proc.stderr.rstrip().endswith(f"gpumlp train --resume {out} --lr ...")
    assert "Traceback" not in proc.stderr
    history = json.loads((out / "history.json").read_text())
    assert history["epochs"] == [] and "diverged" in history["stop_reason"]


def test_the_l2_decay_limit_is_the_optimizers(tmp_path):
    data = _npz(tmp_path)  # n = 40; lr·l2/n = 2.25: past SGD's limit 2, below momentum's 3.8
    base = ["--hidden", "5", *QUICK, "--l2", "30", "--lr", "3"]
    proc = run_gpumlp("train", *data, *base, "--optimizer", "momentum", "--out", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr
    base[-3:] = ["40", "--lr", "4"]  # 4.0: past momentum's limit too
    proc = run_gpumlp("train", *data, *base, "--optimizer", "momentum", "--out", tmp_path / "b")
    assert proc.returncode == 2
    assert proc.stderr == (
        "gpumlp: error: --l2 40: the weight decay step lr·l2/n = 4 (lr 4, n = 40 training "
        "examples) is 3.8 or more, so the L2 penalty alone makes momentum diverge: use --l2 "
        "below 38\n"
    )
    assert not (tmp_path / "b").exists()


def test_a_full_disk_at_the_final_model_names_it_and_the_complete_checkpoint(
    tmp_path, monkeypatch, numpy_env
):
    out = tmp_path / "run"
    data = _npz(tmp_path)
    flags = ["train", *data, "--hidden", "5", "--epochs", "2", "--quiet", "--seed", "0"]
    with monkeypatch.context() as mp:
        DiskFull(mp, ".model.npz.", after=0)
        code, _, stderr = run(*flags, "--out", out)
    assert code == 2
    checkpoint = out / "checkpoint.npz"
    assert stderr == (
        f"gpumlp: error: cannot write {str(out / 'model.npz')!r}: No space left on device; the "
        f"checkpoint {str(checkpoint)!r} is complete (2 epochs): free space, then gpumlp train "
        f"--resume {out} writes the model and history from it\n"
    )
    assert not (out / "model.npz").exists() and temp_files(out) == []
    meta, _ = read_checkpoint(checkpoint)
    assert meta["epoch"] == 2
    # What the message says works: the resumed run trains nothing and writes the model.
    code, _, stderr = run("train", "--resume", out, "--quiet")
    assert code == 0, stderr
    model = gpumlp.load(out / "model.npz", backend="numpy")
    from_checkpoint = gpumlp.load(checkpoint, backend="numpy")
    assert_same_params(params_of(model), params_of(from_checkpoint))
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == 2
    assert os.access(out / "model.npz", os.R_OK)
