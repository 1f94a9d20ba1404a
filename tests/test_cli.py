"""The ``gpumlp`` command, called as ``gpumlp.cli.main([...])`` on a tiny synthetic MNIST.

The data set is 600 training and 100 test images of "digits" that a small network learns in a
few epochs: digit d is a bright bar in rows 2d+2..2d+4, plus noise. Runs use the NumPy backend.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from gpumlp.checkpoint import read_checkpoint
from gpumlp.cli import main

TRAIN = ["--epochs", "2", "--limit", "300", "--sizes", "784,16,10", "--quiet", "--seed", "0"]


def _shape(d: int) -> np.ndarray:
    """Class d as a bright shape in a 20×20 box, centred like an MNIST digit: a bar, a column,
    a plus, an X, a frame, a block, an L, a T, two bars, two columns."""
    s = np.zeros((20, 20), bool)
    eye = np.eye(20, dtype=bool)
    bars = {0: [(8, 12, 0, 20)], 1: [(0, 20, 8, 12)], 2: [(8, 12, 0, 20), (0, 20, 8, 12)],
            4: [(0, 3, 0, 20), (17, 20, 0, 20), (0, 20, 0, 3), (0, 20, 17, 20)],
            5: [(3, 17, 3, 17)], 6: [(0, 20, 0, 4), (16, 20, 0, 20)],
            7: [(0, 4, 0, 20), (0, 20, 8, 12)], 8: [(3, 7, 0, 20), (13, 17, 0, 20)],
            9: [(0, 20, 3, 7), (0, 20, 13, 17)]}  # fmt: skip
    for r0, r1, c0, c1 in bars.get(d, []):
        s[r0:r1, c0:c1] = True
    if d == 3:
        s = eye | eye[::-1] | np.roll(eye, 1, 1) | np.roll(eye[::-1], 1, 1)
    return s


def bar_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, 28, 28) uint8 of class d = ``_shape(d)`` on faint noise, labels 0..9."""
    y = (np.arange(n) % 10).astype(np.uint8)
    x = np.random.default_rng(seed).integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, d in enumerate(y):
        x[i, 4:24, 4:24][_shape(int(d))] = 255
    return x, y


def write_mnist(path: Path, n_train: int = 600, n_test: int = 100) -> Path:
    x_train, y_train = bar_digits(n_train, 1)
    x_test, y_test = bar_digits(n_test, 2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def run(*argv: str) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _numpy_backend(monkeypatch):
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("data") / "mnist.npz")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> tuple[Path, str]:
    """A run folder of ``gpumlp train`` (2 epochs) and what it printed."""
    out = tmp_path_factory.mktemp("run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPUMLP_BACKEND", "numpy")
        code, stdout, stderr = run("train", "--data", data, *TRAIN, "--out", out)
    assert code == 0, stderr
    return out, stdout


def test_train_prints_epochs_and_writes_the_run_folder(trained):
    out, stdout = trained
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


def test_train_learns_the_synthetic_digits(trained):
    _, stdout = trained
    last = re.findall(r"^Epoch 1: (\d+) / 100", stdout, re.M)[0]
    assert int(last) >= 50  # chance is 10


def test_eval_prints_accuracy_and_confusion_matrix(trained, data):
    out, _ = trained
    code, stdout, _ = run("eval", out / "model.npz", "--data", data)
    assert code == 0
    accuracy = float(re.search(r"accuracy (\d\.\d+) \((\d+) / 100\)", stdout).group(1))
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("confusion")) + 2
    matrix = np.array([[int(v) for v in line.split()[1:]] for line in lines[start : start + 10]])
    assert matrix.shape == (10, 10)
    assert matrix.sum() == 100
    assert matrix.sum(axis=1).tolist() == [10] * 10  # the test labels cycle 0..9
    assert np.trace(matrix) == round(accuracy * 100)


def save_png(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    from PIL import Image

    Image.fromarray(pixels.astype(np.uint8)).convert(mode).save(path)
    return path


def predicted(stdout: str) -> tuple[int, list[float]]:
    digit = int(re.search(r"^digit: (\d)$", stdout, re.M).group(1))
    scores = [float(s) for s in re.findall(r"\d:(-?\d+\.\d+)", stdout.split("scores:")[1])]
    return digit, scores


def test_predict_reads_pngs_of_any_size_and_polarity(trained, tmp_path):
    pytest.importorskip("PIL")
    out, _ = trained
    model = out / "model.npz"
    image = bar_digits(10, 5)[0][3]  # a "3" (an X): classes are shapes, as predict centres them
    results = {}
    for name, pixels, mode in [
        ("plain", image, "L"),
        ("rgb", image, "RGB"),
        ("dark-on-light", 255 - image, "L"),
        ("56x40", np.kron(image, np.ones((2, 2)))[:, 8:48], "L"),  # 56 tall, 40 wide
    ]:
        code, stdout, stderr = run(
            "predict", model, save_png(tmp_path / f"{name}.png", pixels, mode)
        )
        assert code == 0, stderr
        results[name] = predicted(stdout)
        assert len(results[name][1]) == 10
    assert results["plain"][0] == 3
    assert results["rgb"] == results["plain"]
    assert results["dark-on-light"][0] == 3  # inverted back to light ink on black


def test_resume_continues_with_the_stored_flags(data, tmp_path):
    out = tmp_path / "run"
    assert run("train", "--data", data, *TRAIN, "--out", out)[0] == 0
    code, stdout, stderr = run("train", "--resume", out, "--epochs", "4")
    assert code == 0, stderr
    assert "[784, 16, 10]" in stdout and "on 300 images" in stdout  # from args.json
    assert re.search(r"^Epoch 2: ", stdout, re.M) and not re.search(r"^Epoch 1: ", stdout, re.M)
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [0, 1, 2, 3]
    assert history["stop_reason"] is None


def test_data_info_prints_json(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    code, stdout, _ = run("data", "info")
    assert code == 0
    info = json.loads(stdout)
    assert info["cache_dir"] == str(tmp_path)
    assert info["exists"] is False and info["ok"] is False


def test_module_help_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "gpumlp", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert "train" in proc.stdout and "predict" in proc.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gpumlp {gpumlp.__version__}"


def test_train_help_exits_zero(capsys):
    assert main(["train", "--help"]) == 0
    assert "--batch-size" in capsys.readouterr().out


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
def test_bad_flag_value_exits_2_with_one_line(flags, message, data, tmp_path):
    code, _, stderr = run("train", "--data", data, "--out", tmp_path / "r", *flags)
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "r").exists()  # rejected before anything was written


def test_missing_data_file_exits_2(tmp_path):
    code, _, stderr = run("train", "--data", tmp_path / "nope.npz", "--out", tmp_path / "r")
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and "nope.npz" in stderr
    assert not (tmp_path / "r").exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        main(["--debug", "train", "--data", str(tmp_path / "nope.npz")])
    with pytest.raises(ValueError, match="--lr: must be > 0"):  # --debug after the command too
        main(["train", "--debug", "--lr", "0"])


def test_entry_point_reads_sys_argv(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpumlp", "--version"])
    assert main() == 0
    assert "gpumlp" in capsys.readouterr().out


def test_runs_default_folder_is_under_runs(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("train", "--data", data, *TRAIN, "--epochs", "1")[0] == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert (folder / "model.npz").is_file()
    assert os.access(folder / "model.npz", os.R_OK)
