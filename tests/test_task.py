"""gpumlp.data.task: what a table's labels are, classes or values, told by ``--task`` or by the
labels themselves, through every table reader (CSV, ``.npz``, ``.npy`` pairs) and ``load_data``.

Issue 29: diabetes' integer targets trained a 347-class network, and fractional targets were
refused as "not a class label"; now fractions are a regression, many-valued integers are
refused until ``--task`` says which, and a given task is taken as it is."""

from __future__ import annotations

import numpy as np
import pytest

from gpumlp.data.csvread import read_csv
from gpumlp.data.sources import load_data
from gpumlp.data.tabular import read_npy_pair, read_table_npz
from gpumlp.data.task import many_values


def _csv(path, X, y):
    rows = [
        "a,b,target",
        *(f"{float(x[0])!r},{float(x[1])!r},{t}" for x, t in zip(X, y, strict=True)),
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    return rng.standard_normal((60, 2))


def _read(fmt, tmp_path, X, y, task=None):
    """The Table a reader of ``fmt`` makes of X and y written in that format."""
    if fmt == "csv":
        return read_csv(_csv(tmp_path / "t.csv", X, y), task=task)
    if fmt == "npz":
        np.savez(tmp_path / "t.npz", X=X, y=np.asarray(y))
        return read_table_npz(tmp_path / "t.npz", task)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.asarray(y))
    return read_npy_pair(tmp_path / "X.npy", tmp_path / "y.npy", task)


@pytest.mark.parametrize("fmt", ["csv", "npz", "npy"])
def test_fractional_labels_are_a_regression_and_its_targets(tmp_path, rows, fmt):
    y = np.round(rows[:, 0] * 10 + 100.5, 3)  # values such as 103.247: not classes
    table = _read(fmt, tmp_path, rows, y)
    assert table.task == "regression" and table.classes is None
    assert table.train[1].shape == (60, 1) and table.train[1].dtype == np.float64
    assert np.allclose(table.train[1][:, 0], y)
    with pytest.raises(ValueError, match=r"holds '?1\d\d\.\d+'?.*which is not a class label"):
        _read(fmt, tmp_path, rows, y, task="classification")  # classes asked: refused, named


@pytest.mark.parametrize("fmt", ["csv", "npz", "npy"])
def test_many_valued_integers_are_refused_naming_both_tasks(tmp_path, fmt):
    """442 rows of 214 distinct integers, as diabetes' targets (25 to 346)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((442, 2))
    y = np.concatenate([np.arange(25, 239), rng.integers(25, 239, 442 - 214)])
    with pytest.raises(ValueError, match=r"214 distinct integer labels \(25 to 238\) in 442 ro"):
        _read(fmt, tmp_path, X, y)
    with pytest.raises(ValueError) as info:
        _read(fmt, tmp_path, X, y)
    message = str(info.value)
    assert "--task regression" in message and "--task classification" in message
    assert str(tmp_path) in message
    regression = _read(fmt, tmp_path, X, y, task="regression")
    assert regression.task == "regression" and regression.train[1].shape == (442, 1)
    classes = _read(fmt, tmp_path, X, y, task="classification")
    assert classes.task == "classification" and classes.train[1].tolist() == y.tolist()


@pytest.mark.parametrize("fmt", ["csv", "npz", "npy"])
def test_few_integer_labels_are_classes_however_few_the_rows(tmp_path, rows, fmt):
    table = _read(fmt, tmp_path, rows[:12], np.arange(12) % 3)  # 3 classes in 12 rows
    assert table.task == "classification" and table.train[1].dtype == np.int64
    assert table.train[1].tolist() == (np.arange(12) % 3).tolist()


def test_the_count_of_values_that_are_too_many():
    # more than min(100, n/10), and more than 10
    assert not many_values(10, 20) and many_values(11, 20)  # a small file: 10 classes stay
    assert not many_values(44, 442) and many_values(45, 442)  # n/10
    assert not many_values(100, 100_000) and many_values(101, 100_000)  # at most 100


def test_regression_of_class_names_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,cat\n2,dog\n")
    assert read_csv(path).task == "classification"
    with pytest.raises(ValueError, match=r"row 2, column 'label' \(index 1\) holds 'cat', not a "
                                         r"number: --task regression"):  # fmt: skip
        read_csv(path, task="regression")


def test_targets_are_a_regression_outside_zero_to_one(tmp_path, rows):
    inside = np.eye(3)[np.arange(60) % 3]
    np.savez(tmp_path / "in.npz", X=rows, y=inside)
    np.savez(tmp_path / "out.npz", X=rows, y=rows * 100.0)
    assert load_data(str(tmp_path / "in.npz")).task == "classification"
    assert load_data(str(tmp_path / "out.npz")).task == "regression"
    assert load_data(str(tmp_path / "in.npz"), task="regression").task == "regression"


def test_load_data_keeps_the_task_for_every_split(tmp_path, rows):
    y = rows[:, 0] * 3.5
    np.savez(tmp_path / "t.npz", X=rows[:40], y=y[:40], X_test=rows[40:], y_test=np.round(y[40:]))
    data = load_data(str(tmp_path / "t.npz"), val_split=0.25, seed=0)
    assert data.task == "regression" and data.n_outputs == 1
    for X, Y in (data.train, data.validation, data.test):
        assert Y.shape == (len(X), 1) and Y.dtype == np.float64  # integral test targets too


def test_mnist_is_no_regression():
    with pytest.raises(ValueError, match="--task regression: MNIST holds images of digits"):
        load_data(None, task="regression")
