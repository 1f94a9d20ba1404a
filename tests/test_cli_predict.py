"""``gpumlp predict`` on a table (gpumlp.cli.predict), through ``gpumlp.cli.main``: one row
of predictions per input row, written as CSV (to ``--output``, atomically, or stdout) with
the class names (a regression's values); columns matched by name; the run's dropped columns
and label column left out; and pictures for a table's model (or a table for a model of
digits, or ``--proba`` and pictures for a regression) refused.

The table is three Gaussian blobs in 3-D, named species, with an ID column the run drops
(``--drop id``): a network that did not learn them cannot pass.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from helpers.cli import assert_refused, run
from helpers.data import write_csv, write_regression_table

SPECIES = np.array(["iris", "lily", "rose"])
FAST = ["--epochs", "40", "--lr", "0.05", "--hidden", "8", "--patience", "none", "--quiet",
        "--seed", "0"]  # fmt: skip


def table(X: np.ndarray, y: np.ndarray, columns: list[str]) -> list[list[object]]:
    """Rows of ``columns`` from id (u0, u1, ...), x0..x2 (``X``) and species (``y``)."""
    cells = {"id": [f"u{i}" for i in range(len(X))], "species": list(SPECIES[y])}
    cells |= {f"x{j}": X[:, j].tolist() for j in range(3)}
    return [list(row) for row in zip(*(cells[c] for c in columns), strict=True)]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """(folder holding the run folder ``run``, X (90, 3) and y (90,) of the test rows)."""
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 390)
    X = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])[y] + rng.standard_normal((390, 3))
    columns = ["id", "x0", "species", "x1", "x2"]
    write_csv(root / "train.csv", [columns, *table(X[:300], y[:300], columns)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPUMLP_BACKEND", "numpy")
        code, _, err = run("train", "--data", root / "train.csv", "--label-column", "species",
                           "--drop", "id", *FAST, "--out", root / "run")  # fmt: skip
    assert code == 0, err
    return root, X[300:], y[300:]


@pytest.fixture(autouse=True)
def _numpy(monkeypatch):
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")


def read_rows(text: str) -> list[list[str]]:
    return list(csv.reader(text.splitlines()))


def test_the_model_keeps_the_classes_inputs_and_label_and_args_the_drop(fitted):
    root, _, _ = fitted
    net = gpumlp.load(root / "run" / "model.npz")
    assert net.classes == tuple(SPECIES) and net.features == ("x0", "x1", "x2")
    assert net.data_kind == "table" and net.inputs.info.label == "species"
    assert json.loads((root / "run" / "args.json").read_text())["drop"] == ["id"]


def test_predict_writes_a_row_per_input_row_with_the_class_names(fitted, tmp_path):
    root, X, y = fitted
    columns = ["x2", "x0", "x1"]  # another order, no label, no id: matched by name
    new = write_csv(tmp_path / "new.csv", [columns, *table(X, y, columns)])
    code, out, err = run("predict", root / "run", new, "--output", tmp_path / "preds.csv")
    assert code == 0 and out == "" and err == "", err
    rows = read_rows((tmp_path / "preds.csv").read_text())
    assert rows[0] == ["species"] and len(rows) == 1 + len(X)
    assert np.mean(np.array([r[0] for r in rows[1:]]) == SPECIES[y]) > 0.9


def test_predict_proba_heads_a_column_per_class_and_goes_to_stdout(fitted, tmp_path):
    root, X, y = fitted
    columns = ["id", "x0", "species", "x1", "x2"]  # as at training: id and species left out
    new = write_csv(tmp_path / "new.csv", [columns, *table(X, y, columns)])
    code, out, err = run("predict", root / "run", new, "--proba")
    assert code == 0, err
    assert err == f"gpumlp: note: {new}: left out column 'species' (index 2), the label column " \
                  "at training\n"  # fmt: skip
    rows = read_rows(out)
    assert rows[0] == ["species", "iris", "lily", "rose"] and len(rows) == 1 + len(X)
    proba = np.array([[float(p) for p in r[1:]] for r in rows[1:]])
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    assert [r[0] for r in rows[1:]] == SPECIES[np.argmax(proba, axis=1)].tolist()


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["x0", "x2"], r"new\.csv has no column 'x1': the model's inputs are 'x0', 'x1', 'x2'$"),
        (["x0", "x1", "x2", "x9"], r"new\.csv has a column 'x9' the model does not take: the "),
    ],
    ids=["missing", "extra"],
)
def test_a_missing_or_extra_column_is_refused_and_nothing_written(fitted, tmp_path, columns,
                                                                   message):  # fmt: skip
    root, X, _ = fitted
    rows = [[float(v) for v in row] for row in X[:, : len(columns)].tolist()]
    rows = [r + [0.0] * (len(columns) - len(r)) for r in rows]
    new = write_csv(tmp_path / "new.csv", [columns, *rows])
    (tmp_path / "preds.csv").write_text("old\n")
    code, out, err = run("predict", root / "run", new, "--output", tmp_path / "preds.csv")
    assert_refused(code, err, message)
    assert out == "" and (tmp_path / "preds.csv").read_text() == "old\n"


def test_pictures_for_a_table_model_and_a_table_for_a_digit_model_are_refused(
    fitted, tmp_path, trained_run
):
    pil = pytest.importorskip("PIL.Image")
    root, X, y = fitted
    png = tmp_path / "digit.png"
    pil.fromarray(np.zeros((28, 28), np.uint8)).save(png)
    code, _, err = run("predict", root / "run", png)
    assert_refused(code, err, r"model\.npz' was trained on a table: it takes rows of 3 inputs, "
                   r"as one FILE\.csv or X\.npy, not .*digit\.png$")  # fmt: skip
    digits = gpumlp.load(trained_run[0] / "model.npz")
    assert digits.classes is None and digits.data_kind == "images"  # MNIST: indices 0..9
    columns = ["x0", "x1", "x2"]
    new = write_csv(tmp_path / "new.csv", [columns, *table(X, y, columns)])
    code, _, err = run("predict", trained_run[0], new)
    assert_refused(code, err, r"model\.npz' was trained on pictures of digits: it takes images "
                   r"\(or folders of them\), not the table .*new\.csv$")  # fmt: skip


def test_eval_and_resume_drop_the_columns_the_run_dropped(fitted, tmp_path):
    root, X, y = fitted
    columns = ["id", "x0", "species", "x1", "x2"]
    test = write_csv(tmp_path / "test.csv", [columns, *table(X, y, columns)])
    code, out, err = run("eval", root / "run", "--data", test)
    assert code == 0, err
    assert float(out.split("accuracy ")[1].split()[0]) > 0.9
    resumed = tmp_path / "run"
    code, _, err = run("train", "--resume", root / "run", "--out", resumed, "--epochs", "41",
                       "--quiet")  # fmt: skip
    assert code == 0, err
    assert json.loads((resumed / "args.json").read_text())["drop"] == ["id"]


# -- a regression: its values, no class scores, no digits ---------------------------------------


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """(the run folder of a regression trained on a table's ``target``, X (40, 4) of new rows)."""
    root = tmp_path_factory.mktemp("regression")
    data, _, _ = write_regression_table(root / "train.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPUMLP_BACKEND", "numpy")
        code, _, err = run("train", "--data", data, "--epochs", "20", "--seed", "0", "--quiet",
                           "--out", root / "run")  # fmt: skip
    assert code == 0, err
    _, X, _ = write_regression_table(root / "new.csv", 40, seed=1)
    return root / "run", X


def test_a_regression_model_writes_each_rows_value_headed_by_its_label(regression_run, tmp_path):
    # Issue 29: predict gave 0/1 for a regression; it writes the value, in the targets' units
    run_dir, X = regression_run
    new = write_csv(tmp_path / "new.csv", [["d", "c", "b", "a"], *X[:, ::-1].tolist()])
    code, out, err = run("predict", run_dir, new)
    assert code == 0 and err == "", err
    rows = read_rows(out)
    assert rows[0] == ["target"] and len(rows) == 41
    values = gpumlp.load(run_dir / "model.npz", backend="numpy").predict_values(X)[:, 0]
    np.testing.assert_allclose([float(r[0]) for r in rows[1:]], values, rtol=1e-6)
    assert 100 < np.mean(values) < 200  # near the targets' 150, not 0/1


def test_a_regression_model_refuses_proba_and_pictures(regression_run, tmp_path):
    pil = pytest.importorskip("PIL.Image")
    run_dir, X = regression_run
    new = write_csv(tmp_path / "new.csv", [["a", "b", "c", "d"], *X.tolist()])
    code, out, err = run("predict", run_dir, new, "--proba")
    assert_refused(code, err, r"model\.npz' is a regression model: it predicts values for the "
                   r"rows of a table \(no class scores: leave --proba out\)$")  # fmt: skip
    assert out == ""
    net = gpumlp.Network([4, 3, 1], task="regression", backend="numpy", seed=0)
    net.save(tmp_path / "api.npz")  # saved by the API: the kind of its data unknown
    png = tmp_path / "digit.png"
    pil.fromarray(np.zeros((2, 2), np.uint8)).save(png)
    code, out, err = run("predict", tmp_path / "api.npz", png)
    assert_refused(code, err, r"api\.npz' is a regression model: .* \(no digit of pictures\)$")
    assert "digit:" not in out


@pytest.mark.parametrize(
    ("given", "output", "message"),
    [
        ("missing.csv", None, r"input '.*missing\.csv' does not exist$"),
        ("fifo.csv", None, r"input '.*fifo\.csv' is a FIFO, not a regular file$"),
        ("folder", None, r"input '.*folder' is a directory, not a regular file$"),
        ("new.csv", "nowhere/p.csv", r"--output '.*nowhere/p\.csv': folder '.*nowhere' does not "),
        ("new.csv", ".", r"--output '.*' must name a file to write the predictions to$"),
    ],
    ids=["missing", "fifo", "folder", "output-in-no-folder", "output-a-folder"],
)
def test_an_input_or_output_that_cannot_be_is_named_at_once(fitted, tmp_path, given, output,
                                                             message):  # fmt: skip
    # was: "... takes rows of 3 inputs, as one FILE.csv or X.npy, not missing.csv" for the inputs,
    # and a raw errno naming a temp file after predicting, for --output
    root, X, _ = fitted
    write_csv(tmp_path / "new.csv", [["x0", "x1", "x2"], *X.tolist()])
    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "folder").mkdir()
    flags = [] if output is None else ["--output", tmp_path / output]
    code, out, err = run("predict", root / "run", tmp_path / given, *flags)
    assert_refused(code, err, message)
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == [
        "fifo.csv", "folder", "new.csv"]  # fmt: skip
