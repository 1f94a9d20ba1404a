"""``gpumlp train --data`` on your own tables, then ``gpumlp eval``, through the real command.

The problem is three Gaussian blobs in 5-D (300 rows), which a small network separates in a
few epochs: a run that did not learn cannot pass. Training runs in a subprocess
(``python -m gpumlp``) on the NumPy backend; the bad inputs call ``main`` in the process (the
same code, faster), one of them also in a subprocess for the real exit status.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import gpumlp
import gpumlp.data.sources
from gpumlp.files.checkpoint import read_checkpoint
from helpers.cli import (
    UNTIL_STOPPED,
    assert_refused,
    assert_same_run,
    printed_epochs,
    run,
    run_gpumlp,
    saved_epochs,
)
from helpers.trainer import Trainer

# SGD at lr 1.0, all 6 epochs (no early stopping): the last epoch's weights are the model's.
FAST = ["--epochs", "6", "--lr", "1.0", "--optimizer", "sgd", "--patience", "none", "--quiet"]
SPECIES = np.array(["setosa", "versicolor", "virginica"])


def run_at(*argv: object, cwd: Path) -> tuple[int, str, str]:
    """``gpumlp argv`` in a subprocess in ``cwd`` -> (exit status, stdout, stderr)."""
    done = run_gpumlp(*argv, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def last_epoch(stdout: str, scored: str) -> tuple[int, int]:
    """(right, out of) of the last epoch line scoring ``scored``."""
    right, total = re.findall(rf"^Epoch \d+: (\d+) / (\d+) {scored} ", stdout, re.M)[-1]
    return int(right), int(total)


def evaluated(stdout: str) -> tuple[int, int, str]:
    right, total, scored = re.search(
        r"\((\d+) / (\d+)\), cost [\d.]+ on the (\w+) set", stdout
    ).groups()
    return int(right), int(total), scored


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """blobs.csv (header; labels are names, in column 2), val.npz (X, y, X_val, y_val),
    test.npz (X, y, X_test, y_test), plain.npz (X, y), X.npy and y.npy."""
    root = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 3.0, (3, 5))
    y = rng.integers(0, 3, 300)
    X = (centers[y] + rng.standard_normal((300, 5))).astype(np.float32)
    with (root / "blobs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["f0", "f1", "species", "f2", "f3", "f4"])
        for row, label in zip(X.tolist(), SPECIES[y], strict=True):
            w.writerow([*row[:2], label, *row[2:]])
    np.savez(root / "val.npz", X=X[:240], y=y[:240], X_val=X[240:], y_val=y[240:])
    np.savez(root / "test.npz", X=X[:240], y=y[:240], X_test=X[240:], y_test=y[240:])
    np.savez(root / "plain.npz", X=X, y=y)
    np.save(root / "X.npy", X)
    np.save(root / "y.npy", y)
    return root


def test_csv_by_column_name_with_hidden_and_standardize_then_eval(folder, tmp_path):
    run = tmp_path / "run"
    code, out, err = run_at(
        "train", "--data", "blobs.csv", "--label-column", "species", "--hidden", "16,8",
        "--standardize", "--val-split", "0.2", "--seed", "3", "--out", run, *FAST,
        cwd=folder,
    )  # fmt: skip
    assert code == 0, err
    assert "on 240 examples, validation set after each epoch" in out
    right, total = last_epoch(out, "validation")
    assert total == 60 and right >= 57, out  # chance is 20
    net = gpumlp.load(run / "model.npz", backend="numpy")
    assert net.sizes == [5, 16, 8, 3] and net.standardized
    assert net.input_mean.shape == (5,)
    code, out, err = run_at("eval", run, cwd=tmp_path)  # args.json finds the data
    assert code == 0, err
    assert evaluated(out) == (right, total, "validation")  # the same held-out rows
    assert "classes: 0 setosa, 1 versicolor, 2 virginica" in out


def test_eval_of_a_file_lacking_a_class_scores_it_through_the_models_classes(folder, tmp_path):
    # trained on all three species, scored on rows without setosa: every prediction right is
    # counted right (was "accuracy 0.0000": the file's names were encoded on their own)
    run = tmp_path / "run"
    code, _, err = run_at("train", "--data", "blobs.csv", "--label-column", "species", "--seed",
                          "3", "--out", run, *FAST, cwd=folder)  # fmt: skip
    assert code == 0, err
    net = gpumlp.load(run / "model.npz", backend="numpy")
    assert net.classes == tuple(SPECIES)
    with (folder / "blobs.csv").open() as f:
        rows = list(csv.reader(f))
    kept = [r for r in rows[1:] if r[2] != "setosa"]
    (tmp_path / "rest.csv").write_text("".join(",".join(r) + "\n" for r in [rows[0], *kept]))
    code, out, err = run_at("eval", run, "--data", "rest.csv", cwd=tmp_path)
    assert code == 0, err
    X = np.array([[float(c) for i, c in enumerate(r) if i != 2] for r in kept])
    right = int(np.sum(net.predict_classes(X) == np.array([r[2] for r in kept])))
    assert f"({right} / {len(kept)}), cost" in out and right > 0.9 * len(kept), out
    lines = out.splitlines()
    assert lines[3].split() == ["0", "0", "0", "0"]  # no setosa row, and none predicted
    (tmp_path / "rose.csv").write_text(rows[0][0] + ",f1,species,f2,f3,f4\n1,2,rose,3,4,5\n")
    code, _, err = run_at("eval", run, "--data", "rose.csv", cwd=tmp_path)
    assert_refused(code, err, r"rose\.csv holds label 'rose' \(at its index 0\), which is not "
                   r"a class of the model: its classes are 'setosa', 'versicolor', "
                   r"'virginica'$")  # fmt: skip


def test_resuming_on_data_of_other_classes_is_refused(folder, tmp_path):
    text = (folder / "blobs.csv").read_text()
    (tmp_path / "t.csv").write_text(text)
    code, _, err = run_at("train", "--data", "t.csv", "--label-column", "species", "--out", "run",
                          *FAST, cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    (tmp_path / "t.csv").write_text(text.replace("setosa", "rose"))
    code, _, err = run_at("train", "--resume", "run", "--epochs", "9", cwd=tmp_path)
    assert_refused(code, err, r"checkpoint\.npz' was trained on the classes \['setosa', "
                   r"'versicolor', 'virginica'\], but the data's classes are \['rose', "
                   r"'versicolor', 'virginica'\]$")  # fmt: skip


def test_labels_1_2_3_train_three_outputs_kept_as_the_models_classes(folder, tmp_path):
    # wine is labelled 1, 2, 3: three outputs (was four, an empty class 0 among them)
    data = np.load(folder / "plain.npz")
    np.savez(tmp_path / "wine.npz", X=data["X"], y=data["y"] + 1)
    code, out, err = run_at("train", "--data", "wine.npz", "--val-split", "0.2", "--seed", "1",
                            "--out", "run", *FAST, cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    assert re.search(r"Network\(\[5, \d+, 3\]", out), out
    assert gpumlp.load(tmp_path / "run" / "model.npz").classes == (1, 2, 3)
    code, out, err = run_at("eval", "run", cwd=tmp_path)
    assert code == 0, err
    assert out.splitlines()[2].split() == ["1", "2", "3"]  # the matrix headed by the classes


def test_pandas_index_column_is_left_out_with_a_note(folder, tmp_path):
    with (folder / "blobs.csv").open() as f:
        rows = list(csv.reader(f))
    lines = [",".join(["", *rows[0]])] + [",".join([str(i), *r]) for i, r in enumerate(rows[1:])]
    (tmp_path / "indexed.csv").write_text("\n".join(lines) + "\n")  # as DataFrame.to_csv
    code, _, err = run_at("train", "--data", "indexed.csv", "--label-column", "species",
                            "--out", "run", *FAST, cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    assert err.splitlines() == [
        "gpumlp: note: indexed.csv: left out its first column, unnamed and holding 0..n-1 "
        "(pandas' index, as DataFrame.to_csv writes it)"
    ]
    assert gpumlp.load(tmp_path / "run" / "model.npz").features == ("f0", "f1", "f2", "f3", "f4")


@pytest.mark.parametrize("split", ["val", "test"])
def test_npz_scores_its_own_split_and_names_it(folder, tmp_path, split):
    scored = {"val": "validation", "test": "test"}[split]
    run = tmp_path / "run"
    code, out, err = run_at(
        "train", "--data", f"{split}.npz", "--hidden", "12", "--seed", "1", "--out", run, *FAST,
        cwd=folder,
    )  # fmt: skip
    assert code == 0, err
    right, total = last_epoch(out, scored)
    assert total == 60 and right >= 57, out
    header = (run / "history.csv").read_text().splitlines()[0]
    prefix = "val" if scored == "validation" else "test"
    assert header == f"epoch,lr,train_cost,train_accuracy,{prefix}_cost,{prefix}_accuracy,seconds"
    assert json.loads((run / "history.json").read_text())["scored_set"] == scored
    code, out, err = run_at("eval", run / "model.npz", "--data", folder / f"{split}.npz",
                                cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    assert evaluated(out) == (right, total, scored)
    assert legend(run) == ["training", scored]


def legend(run: Path) -> list[str]:
    """The legend of the cost figure ``gpumlp plot`` draws for ``run`` (the first it draws)."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from gpumlp.runs.plotting import plot_run

    seen: list[list[str]] = []
    real = Figure.savefig

    def savefig(fig, *args, **kwargs):
        seen.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        return real(fig, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", savefig)
        plot_run(run)
    return seen[0]


def test_val_split_holds_out_the_same_rows_for_the_same_seed(folder, tmp_path):
    runs = []
    for name in ("a", "b"):
        argv = ["--val-split", "0.2", "--seed", "5", "--hidden", "8", "--out", tmp_path / name]
        code, out, err = run_at("train", "--data", "plain.npz", *argv, *FAST, cwd=folder)
        assert code == 0, err
        runs.append(json.loads((tmp_path / name / "history.json").read_text())["epochs"])
    keys = ("train_cost", "val_cost", "val_accuracy")
    assert [[r[k] for k in keys] for r in runs[0]] == [[r[k] for k in keys] for r in runs[1]]
    assert runs[0][-1]["val_accuracy"] >= 0.95
    code, out, err = run_at("eval", tmp_path / "a", cwd=tmp_path)
    assert code == 0, err
    right, total, scored = evaluated(out)
    assert (total, scored) == (60, "validation") and right / total == runs[0][-1]["val_accuracy"]


def test_npy_pair_trains_and_evaluates_from_anywhere(folder, tmp_path):
    run = tmp_path / "run"
    code, out, err = run_at(
        "train", "--data", "X.npy", "--labels", "y.npy", "--val-split", "0.25", "--seed", "2",
        "--sizes", "5,10,3", "--out", run, *FAST, cwd=folder,
    )  # fmt: skip
    assert code == 0, err
    right, total = last_epoch(out, "validation")
    assert total == 75 and right >= 71, out
    args = json.loads((run / "args.json").read_text())
    assert args["labels"] == str(folder / "y.npy")  # absolute, so eval works from anywhere
    code, out, err = run_at("eval", run, cwd=tmp_path)
    assert code == 0, err
    assert evaluated(out) == (right, total, "validation")
    # another file of examples (here the same rows, reordered) is scored whole
    X, y = np.load(folder / "X.npy"), np.load(folder / "y.npy")
    np.save(tmp_path / "X2.npy", X[::-1])
    np.save(tmp_path / "y2.npy", y[::-1])
    code, out, err = run_at("eval", run, "--data", "X2.npy", "--labels", "y2.npy", cwd=tmp_path)
    assert code == 0, err
    score = re.search(r"\((\d+) / 300\), cost [\d.]+ on all 300 examples of X2.npy$", out, re.M)
    assert score and int(score[1]) >= 285, out
    net = gpumlp.load(run / "model.npz")
    assert int(score[1]) == int(np.sum(net.predict(X) == y))


# -- bad inputs: exit status 2, one line naming the cause, nothing written ----------------------


@pytest.fixture
def bad(tmp_path) -> Path:
    """Bad files beside good ones."""
    (tmp_path / "cell.csv").write_text("a,b,label\n1,2,0\n3,x,1\n")
    (tmp_path / "ragged.csv").write_text("a,b,label\n1,2,0\n3,4\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "good.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    X = np.ones((4, 3), np.float32)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1]))
    np.save(tmp_path / "y3.npy", np.array([0, 1, 0]))
    np.save(tmp_path / "yfrac.npy", np.array([0, 0.5, 1, 0]))
    np.save(tmp_path / "Y4.npy", np.eye(4))
    np.savez(tmp_path / "val.npz", X=X, y=np.zeros(4), X_val=X, y_val=np.zeros(4))
    np.savez(tmp_path / "noX.npz", features=X)
    (tmp_path / "pickle.npy").write_bytes(pickle.dumps(X))
    (tmp_path / "huge_label.csv").write_text("a,b,label\n1,2,0\n3,4,1e300\n5,6,1\n")
    (tmp_path / "ids.csv").write_text("name,a,label\nann,1,0\nbob,2,1\ncy,3,0\n")
    np.savez(tmp_path / "test99.npz", X=X, y=[0, 1, 2, 1], X_test=X[:2], y_test=[1, 99])
    np.savez(tmp_path / "near_max.npz", X=np.array([[1, 2, 3], [3e38, 0, 0]], np.float32),
             y=[0, 1])  # fmt: skip
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "cell.csv"], r"cell.csv: row 3, column 'b' \(index 1\) holds 'x'"),
        (["--data", "good.csv", "--label-column", "kind"], "no column of that name"),
        (["--data", "good.csv", "--label-column", "5"], "--label-column 5 is out of range"),
        (["--data", "ragged.csv"], "row 3 has 2 cells, but row 1 (the header) has 3"),
        (["--data", "empty.csv"], "empty.csv is empty"),
        (["--data", "X.npy", "--labels", "y3.npy"], r"y3.npy must be labels \(4,\)"),
        (
            ["--data", "X.npy", "--labels", "yfrac.npy", "--task", "classification"],
            "yfrac.npy holds 0.5 at index 1",
        ),
        (["--data", "good.csv", "--labels", "y.npy"], "--labels is for --data X.npy"),
        (["--labels", "y.npy"], "--labels is for --data X.npy"),
        (["--data", "good.csv", "--from-disk"], "--from-disk is for --data X.npy"),
        (
            ["--from-disk"],
            "--from-disk is for --data X.npy (inputs as an .npy file, read batch "
            "by batch); MNIST is not one",
        ),
        (
            ["--data", "X.npy", "--labels", "y.npy", "--from-disk"],
            "--from-disk: training would copy X into memory anyway, to standardize it (add "
            "--no-standardize)",
        ),
        (["--data", "val.npz", "--val-split", "0.2"], "already has a validation split"),
        (["--data", "good.csv", "--val-split", "1.5"], "--val-split: must lie in"),
        (["--data", "noX.npz"], r"noX.npz holds no array 'X' \(it holds features\)"),
        (
            ["--data", "X.npy", "--labels", "Y4.npy", "--sizes", "3,5,3"],
            "--sizes 3,5,3 ends with 3 outputs, but the targets y have 4 columns",
        ),
        (
            ["--data", "good.csv", "--sizes", "3,5,2"],
            "--sizes 3,5,2 takes 3 inputs, but the data has 2 features",
        ),
        (
            ["--data", "pickle.npy", "--labels", "y.npy"],
            "pickle.npy is not an .npy file (it holds a pickle): --data X.npy takes the inputs",
        ),
        (
            ["--data", "huge_label.csv"],
            "huge_label.csv: row 3, column 'label' (index 2) holds '1e300', which is not a "
            "class label",
        ),
        (["--data", "good.csv", "--drop", "label"], "--drop 'label' is the label column of"),
        (["--data", "good.csv", "--drop", "c"], "--drop 'c': good.csv has no column of that name"),
        (["--data", "val.npz", "--drop", "0"], "--drop is for --data FILE.csv; val.npz is not"),
        (["--drop", "0"], "--drop is for --data FILE.csv; MNIST is not a CSV file"),
        (
            ["--data", "ids.csv"],
            "ids.csv: column 'name' (index 0) holds a different text in every row ('ann', ...), "
            "as an ID column does, not a feature: leave it out with --drop name",
        ),
        (
            ["--data", "good.csv", "--sizes", "2,5,3"],
            "--sizes ends with 3 outputs, but the data has 2 classes, 0, 1: give one output "
            "per class",
        ),
        (
            ["--data", "test99.npz"],
            "test99.npz: the test split holds label 99 (at its index 1), which no training row "
            "has; the classes are those of the training split: 0, 1, 2",
        ),
        (
            ["--data", "near_max.npz", "--hidden", "4"],
            "--data near_max.npz: the training inputs hold 3e+38 at index (1, 0), past "
            "±1.13e+38, where the first layer's sums over 3 inputs overflow float32, the "
            "network's dtype: scale the data, or train with --dtype float64",
        ),
    ],
    ids=[
        "cell",
        "column-name",
        "column-index",
        "ragged",
        "empty",
        "lengths",
        "fraction",
        "labels-with-csv",
        "labels-without-data",
        "from-disk-with-csv",
        "from-disk-with-mnist",
        "from-disk-standardized",
        "val-split-with-X_val",
        "val-split-1.5",
        "npz-without-X",
        "targets-width",
        "input-width",
        "pickle-as-npy",
        "label-1e300",
        "drop-label",
        "drop-unknown",
        "drop-npz",
        "drop-mnist",
        "id-column",
        "sizes-past-the-classes",
        "y_test-99",
        "float32-near-max",
    ],
)
@pytest.mark.filterwarnings("error")  # a label of 1e300 warned on its way to a wrapped int64
def test_bad_input_exits_2_with_one_line(bad, monkeypatch, argv, message):
    monkeypatch.chdir(bad)
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")
    code, _, err = run("train", *argv, "--out", "run", "--epochs", "1", "--quiet")
    assert_refused(code, err)
    assert re.search(message if "\\" in message else re.escape(message), err), err
    assert not (bad / "run").exists() and not (bad / "runs").exists()


def test_bad_input_in_a_subprocess(bad):
    code, out, err = run_at("train", "--data", "cell.csv", "--out", "run", cwd=bad)
    assert code == 2 and out == ""
    assert (
        err
        == "gpumlp: error: cell.csv: row 3, column 'b' (index 1) holds 'x', not a finite number\n"
    )


def test_eval_errors_say_what_is_missing(bad, monkeypatch):
    monkeypatch.chdir(bad)
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")
    assert run("train", "--data", "good.csv", "--hidden", "3", "--out", "r", "--quiet")[0] == 0
    code, _, err = run("eval", "r")
    assert code == 2 and "no test or validation split to evaluate on" in err
    code, _, err = run("eval", "r", "--data", "X.npy")
    assert code == 2 and "give its labels or targets with --labels y.npy" in err
    code, _, err = run("eval", "r", "--labels", "y.npy")
    assert code == 2 and "--labels, --label-column and --drop go with --data" in err


def _cut_after_epoch_1(x_npy, *flags):
    """Train on ``x_npy`` with ``flags``, cut the file to 100 bytes once epoch 1's line is out
    (an event, not a delay), and return the run's (exit code, stdout, stderr)."""
    trainer = Trainer("--data", x_npy, *flags)
    try:
        trainer.wait_for(r"Epoch 1: ")
        os.truncate(x_npy, 100)
        return trainer.finish()
    finally:
        trainer.kill()


def test_an_x_npy_cut_short_mid_run_stops_with_the_finished_epochs_saved(folder, tmp_path):
    # With --from-disk X.npy is read as training goes. Cut to a few bytes once epoch 1's line
    # is out, the run stops with one line naming the file and both sizes, the finished epochs
    # saved (it used to die of SIGBUS, exit -7, with every epoch lost); restored, the printed
    # command resumes it (--from-disk recorded with the run's flags).
    whole = (folder / "X.npy").read_bytes()
    (tmp_path / "X.npy").write_bytes(whole)
    run_dir = tmp_path / "run"
    flags = ["--labels", folder / "y.npy", "--hidden", "8", "--batch-size", "1", "--seed", "1"]
    flags += ["--from-disk", "--no-standardize"]  # standardized, X would be copied
    code, out, err = _cut_after_epoch_1(tmp_path / "X.npy", *flags, "--epochs", UNTIL_STOPPED,
                                        "--quiet", "--out", run_dir)  # fmt: skip
    done = printed_epochs(out)
    assert code != -7 and done[:2] == [0, 1], (code, err)
    checkpoint = run_dir / "checkpoint.npz"
    assert_refused(
        code,
        err,
        rf"X.npy shrank from {len(whole):,} to 100 bytes during training; epochs 0..{done[-1]} "
        rf"saved to {re.escape(str(checkpoint))}; restore it, then resume with: gpumlp train "
        rf"--resume {re.escape(str(run_dir))}$",
    )
    assert saved_epochs(run_dir) == done and read_checkpoint(checkpoint)[0]["epoch"] == len(done)
    assert gpumlp.load(checkpoint, backend="numpy").sizes == [5, 8, 3]
    history = json.loads((run_dir / "history.json").read_text())
    assert history["stop_reason"] == f"{tmp_path / 'X.npy'} shrank during epoch {len(done)}"
    (tmp_path / "X.npy").write_bytes(whole)
    more = str(len(done) + 1)
    resumed = run_gpumlp("train", "--resume", run_dir, "--epochs", more, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert saved_epochs(run_dir) == [*done, len(done)]


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux /proc")
def test_a_pseudo_file_is_refused_naming_it(bad):
    code, out, err = run_at("train", "--data", "/proc/self/mem", "--out", "run", cwd=bad)
    assert_refused(code, err, r"^gpumlp: error: /proc/self/mem is empty; --data takes MNIST")
    assert out == "" and not (bad / "run").exists()


def _numpy_allocation(*args, **kwargs):
    return np.empty(1 << 60, np.uint8)  # NumPy's own MemoryError, "Unable to allocate 1 EiB"


def _bare(*args, **kwargs):
    raise MemoryError()  # no message: the line was "gpumlp: error: " and nothing else


@pytest.mark.parametrize(
    ("fault", "gist"),
    [(_bare, r"an allocation failed"), (_numpy_allocation, r"Unable to allocate 1\.00 EiB .*")],
    ids=["bare", "numpy"],
)
def test_an_allocation_failure_no_estimate_foresaw_is_named(bad, monkeypatch, fault, gist):
    monkeypatch.chdir(bad)
    monkeypatch.setattr(gpumlp.data.sources, "read_csv", fault)
    code, _, err = run("train", "--data", "good.csv", "--out", "run", "--quiet")
    assert_refused(
        code,
        err,
        rf"^gpumlp: error: out of memory \({gist}\): this command needs "
        "more memory than is free; free some, or use less data or a smaller network$",
    )
    assert not (bad / "run").exists()


def test_eval_of_another_file_of_one_class_scores_it(bad, monkeypatch):
    # held to the training split's classes, labels all 2 would make 3 classes of which 1 occurs
    monkeypatch.chdir(bad)
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")
    np.save("y012.npy", np.array([0, 1, 2, 0]))
    np.save("twos.npy", np.array([2, 2, 2, 2]))
    argv = ["--data", "X.npy", "--hidden", "3", "--out", "r", "--quiet", "--epochs", "1"]
    assert run("train", *argv, "--labels", "y012.npy")[0] == 0
    code, out, err = run("eval", "r", "--data", "X.npy", "--labels", "twos.npy")
    assert code == 0, err
    assert "on all 4 examples of X.npy" in out


def test_a_small_x_npy_is_read_into_memory_so_a_cut_mid_run_changes_nothing(folder, tmp_path):
    # Without --from-disk an X.npy that fits in memory is read whole before training: cut to a
    # few bytes once epoch 1's line is out, the run goes on to its end with the weights of an
    # untouched run (read batch by batch from the file, it would stop, as above).
    (tmp_path / "X.npy").write_bytes((folder / "X.npy").read_bytes())
    flags = ["--labels", folder / "y.npy", "--hidden", "8", "--batch-size", "1", "--seed", "1"]
    flags += ["--epochs", "12", "--no-standardize", "--quiet"]  # standardized, X is copied
    code, out, err = _cut_after_epoch_1(tmp_path / "X.npy", *flags, "--out", tmp_path / "cut")
    assert code == 0 and err == "", err
    assert printed_epochs(out) == list(range(12))
    code, _, err = run_at("train", "--data", folder / "X.npy", *flags, "--out", tmp_path / "whole",
                          cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    assert_same_run(tmp_path / "cut", tmp_path / "whole")
