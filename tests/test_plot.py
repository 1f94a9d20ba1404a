"""Learning-curve PNGs from a run folder: from a real fit, through the CLI, and bad input."""

from __future__ import annotations

import builtins
import importlib.util
import json
import struct
from pathlib import Path

import pytest

import gpumlp
from gpumlp.cli import main
from gpumlp.plotting import plot_run

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed"
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


@pytest.fixture
def run_dir(blobs, tmp_path) -> Path:
    """A run folder with the history.json of a real 6-epoch fit, as ``gpumlp train`` writes it."""
    X, y = blobs
    net = gpumlp.Network([4, 6, 3], cost="cross_entropy", backend="numpy", seed=0)
    history = net.fit(
        X, y, epochs=6, batch_size=10, lr=0.5, validation_data=(X[::3], y[::3]), seed=0
    )
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "history.json").write_text(history.to_json())
    return folder


@needs_matplotlib
def test_plot_run_writes_both_figures(run_dir):
    written = plot_run(run_dir)
    assert written == [run_dir / "cost.png", run_dir / "accuracy.png"]
    for path in written:
        width, height = _png_size(path)
        assert width > 100 and height > 100
        assert path.stat().st_size > 1000
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


@needs_matplotlib
def test_plot_run_to_another_folder(run_dir, tmp_path):
    out = tmp_path / "figures" / "nested"
    written = plot_run(run_dir, out)
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "cost.png"]
    assert all(p.parent == out for p in written)
    assert not (run_dir / "cost.png").exists()


@needs_matplotlib
def test_cli_plot(run_dir, capsys):
    assert main(["plot", str(run_dir)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(run_dir / "cost.png"), str(run_dir / "accuracy.png")]
    assert _png_size(run_dir / "accuracy.png")[0] > 100


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
    with pytest.raises(ValueError, match=r"history\.json.*no measured cost or accuracy"):
        plot_run(tmp_path / ".")


def test_missing_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere"):
        plot_run(tmp_path / "nowhere")
    assert main(["plot", str(tmp_path / "nowhere")]) == 2


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


def test_without_matplotlib(run_dir, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'gpumlp\[plot\]'"):
        plot_run(run_dir)
