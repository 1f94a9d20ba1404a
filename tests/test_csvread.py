"""The CSV reader (:mod:`gpumlp.data.csvread`): what it reads, what it refuses, and within what.

Files are written with the real writer (``csv``) or as bytes, and read back; the arrays that
come back must equal those written. Bounds are checked by what they protect: a row far longer
than any table's is refused, naming the file, the row and the limit, with a peak of memory
(``tracemalloc``) that does not grow with the row; a file that grows while it is read is read
as it was when opened.
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import gpumlp.data.csvread as csvread
from gpumlp import memory
from gpumlp.data.csvread import CELL_CHARS, read_csv, read_csv_inputs
from helpers.data import write_csv


@pytest.fixture
def table():
    """X (12, 3) float64 with values that need every digit, and labels 0..2."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 3)) * 1e3, np.arange(12) % 3


# -- what it reads -------------------------------------------------------------------------------


def test_csv_with_header_round_trips_and_picks_the_label_column_by_name(tmp_path, table):
    X, y = table
    rows = [["a", "label", "b", "c"]]
    rows += [[r[0], int(c), r[1], r[2]] for r, c in zip(X.tolist(), y, strict=True)]
    got = read_csv(write_csv(tmp_path / "t.csv", rows), "label")
    assert np.array_equal(got.train[0], X)  # csv writes repr: float64 round-trips exactly
    assert np.array_equal(got.train[1], y) and got.train[1].dtype == np.int64
    assert got.validation is None and got.test is None and got.classes is None


@pytest.mark.parametrize("column", [None, "3", "-1", 3, -1])
def test_csv_without_header_takes_the_last_column_or_an_index(tmp_path, table, column):
    X, y = table
    rows = [[*r, int(c)] for r, c in zip(X.tolist(), y, strict=True)]
    path = write_csv(tmp_path / "t.csv", rows)
    got = read_csv(path, column)
    assert got.train[0].shape == (12, 3)  # the first row is data, not a header
    assert np.array_equal(got.train[0], X) and np.array_equal(got.train[1], y)


def test_csv_class_names_map_to_sorted_indices(tmp_path):
    rows = [["x1", "x2", "kind"], [1, 2, "pear"], [3, 4, "apple"], [5, 6, "fig"], [7, 8, "pear"]]
    got = read_csv(write_csv(tmp_path / "t.csv", rows))
    assert got.classes == ("apple", "fig", "pear")
    assert got.train[1].tolist() == [2, 0, 1, 2]


def test_csv_tabs_blank_rows_quotes_and_bom(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes('\ufeff"a"\t"b"\tlabel\n\n1.5\t 2 \t1\n\t\t\n3\t4\t0\n'.encode())
    got = read_csv(path)
    assert got.train[0].tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert got.train[1].tolist() == [1, 0]


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("a,b,label\n1,2,0\n3,x,1\n", None, r"row 3, column 'b' \(index 1\) holds 'x'"),
        ("1,2,0\n3,x,1\n", None, r"row 2, column index 1 holds 'x'"),
        ("a,b,label\n1,2,0\n\n3,,1\n", None, r"row 4, column 'b' \(index 1\) is empty"),
        ("a,b,label\n1,2,0\n3,4,\n", None, r"row 3, column 'label' \(index 2\) is empty"),
        ("a,b,label\n1,nan,0\n", None, r"row 2, column 'b' \(index 1\) holds 'nan'"),
        ("a,b,label\n1,2,0\n3,4\n", None, r"row 3 has 2 cells, but row 1 \(the header\) has 3"),
        ("a,b,label\n1,2,0\n", "y", r"no column of that name; its columns are 'a', 'b', 'label'"),
        ("a,b,label\n1,2,0\n", "3", r"--label-column 3 is out of range: .* 3 columns"),
        ("a,b,label\n1,2,0\n", "-4", r"--label-column -4 is out of range"),
        ("1,2,0\n", "label", "has no header row, so give the column's index"),
        ("a,a,label\n1,2,0\n", "a", "more than one column so named"),
        ("a,b,label\n", None, "has a header row but no data rows"),
        ("\n\n", None, "is empty"),
        ("a\n1\n", None, "has 1 column"),
        ("1,2,cat\n3,4,dog\n5,6,cat\n", None, "row 1 looks like data, not a header"),
    ],
    ids=[
        "cell",
        "cell-no-header",
        "empty",
        "empty-label",
        "nan",
        "ragged",
        "no-name",
        "index",
        "negative-index",
        "name-no-header",
        "twice",
        "header-only",
        "blank",
        "one-column",
        "names-no-header",
    ],
)
def test_csv_errors_name_the_file_row_and_column(tmp_path, text, column, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_csv(path, column)
    assert str(path) in str(info.value)


def test_csv_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"a,b\n\x00\x01")
    with pytest.raises(ValueError, match="NUL bytes"):
        read_csv(path)
    path.write_bytes(b"a,b,label\n1,\xff,0\n")
    with pytest.raises(ValueError, match="not a valid UTF-8 CSV file"):
        read_csv(path)


# -- line ends, and a file that changes while it is read ------------------------------------------


@pytest.mark.parametrize("end", ["\r", "\r\n", "\n"], ids=["CR", "CRLF", "LF"])
def test_every_line_end_reads_the_same(tmp_path, end):
    path = tmp_path / "t.csv"
    path.write_bytes(end.join(["a,b,label", "1,2,0", "3,4,1", "5,6,1", ""]).encode())
    got = read_csv(path)
    assert got.train[0].tolist() == [[1, 2], [3, 4], [5, 6]]
    assert got.train[1].tolist() == [0, 1, 1]


def test_a_file_that_grows_while_read_is_read_as_it_was_opened(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "t.csv", [["a", "b", "label"], [1, 2, 0], [3, 4, 1]])
    real, grown = csvread.open_regular, []

    class Growing(io.BufferedReader):
        """A file another program appends a row to each time it is read (50 times)."""

        def _grow(self) -> None:
            if len(grown) < 50:
                with path.open("a") as f:
                    f.write("5,6,0\n")
                grown.append(1)

        def read(self, n=-1):
            self._grow()
            return super().read(n)

        def readinto(self, buffer):
            self._grow()
            return super().readinto(buffer)

    monkeypatch.setattr(csvread, "open_regular", lambda p, what: Growing(real(p, what).detach()))
    got = read_csv(path)
    assert grown and got.train[0].tolist() == [[1, 2], [3, 4]]
    assert got.train[1].tolist() == [0, 1]


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_a_pseudo_file_of_size_0_is_empty():
    with pytest.raises(ValueError, match="/proc/self/mem is empty"):
        read_csv(Path("/proc/self/mem"))


# -- labels ----------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("error")  # the int64 cast of 1e300 warned and wrapped
@pytest.mark.parametrize(
    ("label", "task", "message"),
    [
        ("1e300", None, r"row 3, column 'label' \(index 2\) holds '1e300', which is not a class"),
        ("inf", None, r"row 3, column 'label' \(index 2\) holds 'inf', which is not a class "),
        ("2.5", "classification", r"row 3, column 'label' \(index 2\) holds '2.5', which is not "),
        ("inf", "regression", r"row 3, column 'label' \(index 2\) holds 'inf', not a finite num"),
    ],
    ids=["1e300", "inf", "fraction", "inf-regression"],
)
def test_a_label_that_is_no_class_index_is_refused_naming_row_and_column(tmp_path, label, task,
                                                                         message):  # fmt: skip
    path = tmp_path / "t.csv"
    path.write_text(f"a,b,label\n1,2,0\n3,4,{label}\n5,6,1\n")
    with pytest.raises(ValueError, match=message) as info:
        read_csv(path, task=task)
    assert str(path) in str(info.value)


def test_labels_keep_their_rows_and_names_their_order(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,b\n2,a\n3,b\n4,c\n5,a\n")
    got = read_csv(path)
    assert got.classes == ("a", "b", "c") and got.train[1].tolist() == [1, 0, 1, 2, 0]
    path.write_text("a,label\n1,2\n2,0\n3,2.0\n4,1\n")
    assert read_csv(path).train[1].tolist() == [2, 0, 2, 1]
    path.write_text("a,label\n1,-1\n2,1\n3,-1\n")  # negative labels are classes by value too
    assert read_csv(path).train[1].tolist() == [-1, 1, -1]


# -- which columns are inputs: --drop, pandas' index, ID columns ------------------------------


def test_a_header_names_the_features_without_the_label_column(tmp_path):
    rows = [["a", "kind", "b"], [1, "x", 2], [3, "y", 4]]
    got = read_csv(write_csv(tmp_path / "t.csv", rows), "kind")
    assert got.features == ("a", "b") and got.label == "kind" and got.notes == ()
    assert read_csv(write_csv(tmp_path / "n.csv", [[1, 2, 0], [3, 4, 1]])).features is None


@pytest.mark.parametrize("drop", [["id"], ["0"], [0], ["-4"]], ids=["name", "index", "int", "neg"])
def test_drop_leaves_columns_out_by_name_or_index(tmp_path, drop):
    rows = [["id", "a", "b", "kind"], ["u1", 1, 2, "x"], ["u2", 3, 4, "y"], ["u3", 5, 6, "x"]]
    got = read_csv(write_csv(tmp_path / "t.csv", rows), drop=drop)
    assert got.train[0].tolist() == [[1, 2], [3, 4], [5, 6]] and got.features == ("a", "b")


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (["kind"], r"--drop 'kind' is the label column of .*t\.csv$"),
        (["nope"], r"--drop 'nope': .*t\.csv has no column of that name; its columns are 'a'"),
        (["7"], r"--drop 7 is out of range: .*t\.csv has 3 columns"),
    ],
    ids=["label", "unknown", "out-of-range"],
)
def test_drop_of_the_label_or_of_no_column_is_refused(tmp_path, drop, message):
    path = write_csv(tmp_path / "t.csv", [["a", "b", "kind"], [1, 2, "x"], [3, 4, "y"]])
    with pytest.raises(ValueError, match=message):
        read_csv(path, drop=drop)


def test_pandas_index_column_is_left_out_with_a_note(tmp_path):
    # what DataFrame.to_csv writes: an unnamed first column holding 0..n-1
    rows = [["", "a", "b", "kind"], [0, 1.5, 2, "x"], [1, 3, 4, "y"], [2, 5, 6, "x"]]
    got = read_csv(write_csv(tmp_path / "t.csv", rows))
    assert got.train[0].tolist() == [[1.5, 2], [3, 4], [5, 6]] and got.features == ("a", "b")
    assert len(got.notes) == 1
    assert "left out its first column, unnamed and holding 0..n-1" in got.notes[0]
    rows[3][0] = 7  # not 0..n-1: an unnamed feature, kept where it was
    got = read_csv(write_csv(tmp_path / "u.csv", rows))
    assert got.train[0].tolist() == [[0, 1.5, 2], [1, 3, 4], [7, 5, 6]] and got.notes == ()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["name", "a", "kind"], ["ann", 1, "x"], ["bob", 2, "y"], ["cy", 3, "x"]],
         r"t\.csv: column 'name' \(index 0\) holds a different text in every row \('ann', "
         r"\.\.\.\), as an ID column does, not a feature: leave it out with --drop name$"),
        ([["name", "a", "kind"], ["ann", 1, "x"], ["bob", 2, "y"], ["ann", 3, "x"]],
         r"t\.csv: row 2, column 'name' \(index 0\) holds 'ann', not a finite number$"),
    ],
    ids=["named", "repeats: no ID"],
)  # fmt: skip
def test_an_id_column_of_text_is_refused_naming_drop(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        read_csv(write_csv(tmp_path / "t.csv", rows))


def test_inputs_to_predict_leave_out_the_label_column_when_there(tmp_path):
    rows = [["", "b", "kind", "a"], [0, 2, "x", 1], [1, 4, "y", 3]]
    X, names, notes = read_csv_inputs(write_csv(tmp_path / "t.csv", rows), 2, label_column="kind")
    assert X.tolist() == [[2, 1], [4, 3]] and names == ("b", "a")
    assert any("left out column 'kind' (index 2), the label column at training" in n
               for n in notes)  # fmt: skip
    X, names, notes = read_csv_inputs(write_csv(tmp_path / "u.csv", [["b", "a"], [2, 1]]), 2,
                                      label_column="kind", drop=["id"])  # fmt: skip
    assert X.tolist() == [[2, 1]] and names == ("b", "a") and notes == ()
    headerless = write_csv(tmp_path / "v.csv", [[2, 1, 0], [4, 3, 1]])
    assert read_csv_inputs(headerless, 2)[0].tolist() == [[2, 1], [4, 3]]  # the last: a label
    assert read_csv_inputs(headerless, 3)[0].tolist() == [[2, 1, 0], [4, 3, 1]]


# -- bounds: memory that does not grow with a row -------------------------------------------------


def peak_while(fn, *args) -> tuple[BaseException | None, int]:
    """Run ``fn(*args)``: the exception it raised (or None) and the peak of the memory Python
    allocated meanwhile (``tracemalloc``), in bytes."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        try:
            fn(*args)
            raised = None
        except BaseException as exc:  # handed to the test
            raised = exc
        return raised, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_a_long_row_is_refused_from_the_header_width_without_reading_it_whole(tmp_path):
    path = tmp_path / "long.csv"
    with path.open("w") as f:  # a 20 MB cell in row 3 of a 3-column table
        f.write("a,b,label\n1,2,0\n" + "1" * (20 << 20) + ",2,1\n4,5,1\n")
    raised, peak = peak_while(read_csv, path)
    limit = 3 * CELL_CHARS
    assert isinstance(raised, ValueError) and str(raised) == (
        f"{path}: row 3 is longer than {limit:,} characters, the most a row may take "
        f"({CELL_CHARS:,} per cell of its 3 columns); is it a CSV table?"
    )
    assert peak < 6 << 20, f"peak {peak / 2**20:.1f} MiB for a 20 MiB row"  # the scan reads 1 MiB


def fake_free_memory(tmp_path: Path, monkeypatch, free: int) -> None:
    """Make the memory free ``free`` bytes: a /proc/meminfo that says so (and nothing else)."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemAvailable: {free >> 10} kB\n")
    monkeypatch.setattr(memory, "_PROC", proc)
    monkeypatch.setattr(memory, "_rlimit_headroom", lambda: [])


def test_the_first_row_is_bound_by_the_memory_free(tmp_path, monkeypatch):
    # 24 MB of one-character cells would take some 0.8 GB as the csv module's cells
    fake_free_memory(tmp_path, monkeypatch, 64 << 20)
    path = tmp_path / "wide.csv"
    with path.open("w") as f:
        f.write("1," * (12 << 20) + "0\n1,0\n")
    raised, peak = peak_while(read_csv, path)
    assert isinstance(raised, ValueError) and str(raised) == (
        f"{path}: row 1 is longer than 262,144 characters, the most a row may take (what "
        "64.0 MiB of free memory can parse); is it a CSV table?"
    )
    assert peak < 6 << 20, f"peak {peak / 2**20:.1f} MiB for a 24 MiB row"


def test_a_row_within_the_bounds_is_read(tmp_path):
    path = tmp_path / "t.csv"
    cell = "1." + "0" * (CELL_CHARS - 10)  # long, but within its share of the row
    path.write_text(f"a,b,label\n{cell},{cell},0\n1,2,1\n")
    assert read_csv(path).train[0].tolist() == [[1, 1], [1, 2]]


def test_a_row_of_many_lines_is_bound_as_a_whole(tmp_path):
    # a quoted cell of 100,000 short lines: each line is short, the row is not
    path = tmp_path / "t.csv"
    path.write_text('a,b,label\n1,2,0\n3,"' + "x\n" * 100_000 + '",1\n')
    with pytest.raises(ValueError, match=rf"t.csv: row 3 is longer than {3 * CELL_CHARS:,} "):
        read_csv(path)
