"""Tests for gpumlp.runs.plotting: learning-curve PNGs from a run folder (from a real fit, to
another folder, with series left out; a regression's MSE, MAE and R²), and bad input: a missing
folder or history, a malformed history, no matplotlib. (``gpumlp plot`` is in test_cli_tools.py.)"""

from __future__ import annotations

import builtins
import json
import re

import pytest

from gpumlp.runs.plotting import plot_run
from helpers.plots import needs_matplotlib, png_size


@needs_matplotlib
def test_plot_run_writes_both_figures(history_dir):
    written = plot_run(history_dir)
    assert written == [history_dir / "cost.png", history_dir / "accuracy.png"]
    for path in written:
        width, height = png_size(path)
        assert width > 100 and height > 100
        assert path.stat().st_size > 1000
    assert not [p for p in history_dir.iterdir() if p.name.endswith(".tmp")]


@needs_matplotlib
def test_plot_run_to_another_folder(history_dir, tmp_path):
    out = tmp_path / "figures" / "nested"
    written = plot_run(history_dir, out)
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "cost.png"]
    assert all(p.parent == out for p in written)
    assert not (history_dir / "cost.png").exists()


@needs_matplotlib
def test_unmeasured_series_are_left_out(tmp_path):
    # Only training cost measured: no accuracy figure at all.
    records = [
        {"epoch": e, "lr": 1.0, "train_cost": 1.0 / (e + 1), "train_accuracy": None,
         "val_cost": None, "val_accuracy": None, "seconds": 0.1}
        for e in range(3)
    ]  # fmt: skip
    (tmp_path / "history.json").write_text(json.dumps({"epochs": records, "stop_reason": None}))
    assert plot_run(tmp_path) == [tmp_path / "cost.png"]
    assert not (tmp_path / "accuracy.png").exists()
    for r in records:
        r["train_cost"] = None
    (tmp_path / "history.json").write_text(json.dumps({"epochs": records}))
    with pytest.raises(ValueError, match=r"history\.json.*no measured cost or score"):
        plot_run(tmp_path / ".")


@needs_matplotlib
def test_a_regression_is_drawn_by_its_scores_not_an_accuracy(tmp_path):
    records = [
        {"epoch": e, "lr": 0.003, "train_cost": 1.0 / (e + 1), "val_cost": 1.2 / (e + 1),
         "val_mse": 3000.0 / (e + 1), "val_mae": 50.0 / (e + 1), "val_r2": 0.5 - 0.1 / (e + 1),
         "seconds": 0.1}
        for e in range(3)
    ]  # fmt: skip
    history = {"epochs": records, "stop_reason": None, "task": "regression"}
    (tmp_path / "history.json").write_text(json.dumps(history))
    names = ["cost.png", "mse.png", "mae.png", "r2.png"]
    assert plot_run(tmp_path) == [tmp_path / n for n in names]
    assert not (tmp_path / "accuracy.png").exists()
    records[1]["val_r2"] = "high"
    (tmp_path / "history.json").write_text(json.dumps(history))
    with pytest.raises(ValueError, match=r"epochs\[1\]\.val_r2 is 'high', not a number"):
        plot_run(tmp_path)


def test_missing_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere"):
        plot_run(tmp_path / "nowhere")


def test_missing_history(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"history\.json"):
        plot_run(tmp_path)


@pytest.mark.parametrize(
    "text",
    ['{"epochs": [', "[1, 2]", '{"epochs": 3}', '{"epochs": [{"epoch": 0, "val_cost": "x"}]}'],
)
def test_malformed_history(tmp_path, text):
    (tmp_path / "history.json").write_text(text)
    with pytest.raises(ValueError, match=r"history\.json"):
        plot_run(tmp_path)


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (
            b'{"epochs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nests lists or objects more than 32 deep",
        ),
        (b'{"epochs": [], "stop_reason": "\xff"}', "is not UTF-8 text"),
    ],
    ids=["deep", "not-utf8"],
)
def test_an_unreadable_history_is_a_value_error_naming_it_and_the_cause(tmp_path, content, cause):
    (tmp_path / "history.json").write_bytes(content)  # deep: was a bare RecursionError
    with pytest.raises(ValueError, match=re.escape(f"'{tmp_path / 'history.json'}' {cause}")):
        plot_run(tmp_path)


def test_without_matplotlib(history_dir, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'gpumlp\[plot\]'"):
        plot_run(history_dir)
