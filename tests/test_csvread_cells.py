"""Which cell a CSV file's refusal names (:mod:`gpumlp.data.csvread`): only a column that is read
as numbers, never one left out with ``--drop`` or the label; and a row of finite numbers is read
whatever its sum."""

from __future__ import annotations

import numpy as np
import pytest

from gpumlp.data.csvread import read_csv, read_csv_inputs
from helpers.cli import run
from helpers.data import write_csv


def test_finite_numbers_whose_sum_overflows_are_read(tmp_path):
    rows = [["a", "b", "c", "label"], [1e308, 1e308, -1e308, "x"], [1, 2, 3, "y"]]
    path = write_csv(tmp_path / "big.csv", rows)
    table = read_csv(path)
    np.testing.assert_array_equal(table.train[0], [[1e308, 1e308, -1e308], [1, 2, 3]])
    X, _, _ = read_csv_inputs(write_csv(tmp_path / "new.csv", [r[:3] for r in rows]), 3)
    np.testing.assert_array_equal(X, [[1e308, 1e308, -1e308], [1, 2, 3]])


@pytest.mark.parametrize("cell", ["foo", "inf", "nan", "-inf"])
@pytest.mark.parametrize("where", ["first", "label first"])
def test_a_bad_cell_is_named_not_a_column_left_out(tmp_path, cell, where):
    """Column 0 (``id``, different text in every row) is dropped, or is the label: the refusal
    names the cell of column ``a`` that is no finite number."""
    if where == "first":
        rows = [["id", "a", "label"], ["x1", "1", "p"], ["x2", cell, "q"]]
        flags: dict = {"drop": ["id"]}
    else:
        rows = [["label", "a", "b"], ["p", "1", "2"], ["q", cell, "3"]]
        flags = {"label_column": "label"}
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(ValueError) as got:
        read_csv(path, **flags)
    assert (
        str(got.value) == f"{path}: row 3, column 'a' (index 1) holds {cell!r}, not a finite number"
    )


def test_a_text_column_is_named_for_drop_not_the_column_already_dropped(tmp_path):
    rows = [["id", "a", "b", "label"], ["x1", "t", "1", "p"], ["x2", "u", "2", "q"]]
    path = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(ValueError, match=r"column 'a' \(index 1\).*leave it out with --drop a$"):
        read_csv(path, drop=["id"])
    new = write_csv(tmp_path / "new.csv", [r[:3] for r in rows])
    with pytest.raises(ValueError, match=r"column 'a' \(index 1\).*leave it out with --drop a$"):
        read_csv_inputs(new, 1, drop=["id"])


def test_the_cli_names_the_cell_in_one_line(tmp_path):
    rows = [["id", "a", "label"], ["x1", "1", "p"], ["x2", "inf", "q"], ["x3", "2", "p"]]
    path = write_csv(tmp_path / "t.csv", rows)
    out = tmp_path / "run"
    code, stdout, stderr = run("train", "--data", path, "--drop", "id", "--out", out, "--quiet")
    assert (code, stdout) == (2, "")
    assert (
        stderr
        == f"gpumlp: error: {path}: row 3, column 'a' (index 1) holds 'inf', not a finite number\n"
    )
    assert not out.exists()
