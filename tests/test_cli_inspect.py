"""Tests for ``gpumlp eval`` and ``gpumlp predict`` (gpumlp.cli.inspect), through
``gpumlp.cli.main``: accuracy and the confusion matrix (a regression's MSE, MAE and R²),
pictures of any size and polarity, and bad models, data and images refused with exit code 2
and one line on stderr."""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from helpers.bad_files import BAD_CHECKPOINT_CONTAINERS, BAD_CHECKPOINT_CONTENTS
from helpers.cli import assert_refused, file_in_the_way, run, run_gpumlp
from helpers.data import bar_digits, write_regression_table
from helpers.nets import small_net

# -- eval ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("numpy_env")
def test_eval_prints_accuracy_and_confusion_matrix(trained_run, bar_mnist):
    out, _ = trained_run
    code, stdout, _ = run("eval", out / "model.npz", "--data", bar_mnist)
    assert code == 0
    accuracy = float(re.search(r"accuracy (\d\.\d+) \((\d+) / 100\)", stdout).group(1))
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("confusion")) + 2
    matrix = np.array([[int(v) for v in line.split()[1:]] for line in lines[start : start + 10]])
    assert matrix.shape == (10, 10)
    assert matrix.sum() == 100
    assert matrix.sum(axis=1).tolist() == [10] * 10  # the test labels cycle 0..9
    assert np.trace(matrix) == round(accuracy * 100)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"is a FIFO, not a regular file"),
        (b"\xfe{}", r"is not UTF-8 text \(byte 0 is 0xfe\)"),
        (b"[" * 100_000, r"nests lists or objects more than 32 deep"),
        (b"[1, 2]", r"does not hold a JSON object of flags"),
    ],
    ids=["fifo", "not-utf8", "deep", "a-list"],
)
def test_eval_refuses_an_unreadable_args_json_at_once(content, message, trained_run, tmp_path):
    # Read through a subprocess: its time limit turns a reader waiting on a FIFO into a failure.
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    (run_dir / "args.json").unlink()
    if content is None:
        os.mkfifo(run_dir / "args.json")
    else:
        (run_dir / "args.json").write_bytes(content)
    done = run_gpumlp("eval", run_dir)
    assert_refused(done.returncode, done.stderr, rf"'[^']*run/args\.json' {message}")
    assert done.stdout == ""


# Issue 29: an .npz of (n, 1) float targets trained with identity outputs was scored by an
# "accuracy" (whether the one output passed 0.5) and a 2×2 confusion matrix.
_SCORES = re.compile(r"\S+: MSE ([\d.]+), MAE ([\d.]+), R² (-?[\d.]+), cost [\d.]+ on (.*)\n")


@pytest.mark.usefixtures("numpy_env")
def test_eval_of_a_regression_prints_mse_mae_and_r2_in_its_units(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = 20.0 + 8.0 * X[:, :1] - 3.0 * X[:, 1:2]  # (n, 1) float targets, outside [0, 1]
    np.savez(tmp_path / "t.npz", X=X[:150], y=y[:150], X_test=X[150:], y_test=y[150:])
    out = tmp_path / "r"
    code, _, err = run("train", "--data", tmp_path / "t.npz", "--output-activation", "identity",
                       "--seed", "0", "--quiet", "--out", out)  # fmt: skip
    assert code == 0, err
    code, stdout, _ = run("eval", out)
    assert code == 0
    scores = _SCORES.fullmatch(stdout)
    assert scores and scores[4] == "the test set (50 examples)", stdout
    assert "accuracy" not in stdout and "confusion" not in stdout
    error = gpumlp.load(out / "model.npz", backend="numpy").predict(X[150:]) - y[150:]
    assert float(scores[1]) == pytest.approx(np.mean(error**2), abs=1e-4)
    assert float(scores[2]) == pytest.approx(np.mean(np.abs(error)), abs=1e-4)
    assert float(scores[3]) > 0.9


@pytest.mark.usefixtures("numpy_env")
def test_eval_reads_another_file_as_the_models_task(tmp_path):
    # Integer targets of many values are refused unless the task is given: eval gives the
    # model's, so a test file of them is scored as the regression the model is.
    data, _, _ = write_regression_table(tmp_path / "train.csv", integers=True)
    test, _, _ = write_regression_table(tmp_path / "test.csv", 100, seed=1, integers=True)
    out = tmp_path / "r"
    code, _, err = run("train", "--data", data, "--task", "regression", "--epochs", "20",
                       "--seed", "0", "--quiet", "--out", out)  # fmt: skip
    assert code == 0, err
    code, stdout, err = run("eval", out, "--data", test)
    assert code == 0, err
    scores = _SCORES.fullmatch(stdout)
    assert scores and scores[4] == f"all 100 examples of {test}", stdout


# -- predict ------------------------------------------------------------------------------------


def save_png(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    from PIL import Image

    Image.fromarray(pixels.astype(np.uint8)).convert(mode).save(path)
    return path


def predicted(stdout: str) -> tuple[int, list[float]]:
    digit = int(re.search(r"^digit: (\d)$", stdout, re.M).group(1))
    scores = [float(s) for s in re.findall(r"\d:(-?\d+\.\d+)", stdout.split("scores:")[1])]
    return digit, scores


@pytest.mark.usefixtures("numpy_env")
def test_predict_reads_pngs_of_any_size_and_polarity(trained_run, tmp_path):
    pytest.importorskip("PIL")
    out, _ = trained_run
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


# -- bad models, data and images: exit 2, one line ----------------------------------------------


CLI_MATCH = {"directory": "is a folder without model.npz"}
"""Where the command's words differ from the library's: ``predict`` takes a run folder."""


@pytest.mark.parametrize(
    ("name", "make", "exc", "match"),
    [pytest.param(*c, id=c[0]) for c in BAD_CHECKPOINT_CONTAINERS + BAD_CHECKPOINT_CONTENTS],
)
def test_bad_checkpoint(name, make, exc, match, tmp_path, model_file):
    path = make(tmp_path, model_file)
    code, _, stderr = run("predict", path, tmp_path / "digit.png", "--backend", "numpy")
    assert_refused(code, stderr, CLI_MATCH.get(name, match))
    assert str(path) in stderr


def small_model(path: Path) -> Path:
    small_net().save(path / "small.npz")
    return path / "small.npz"


def damaged_png(path: Path) -> Path:
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (280, 280), dtype=np.uint8)
    Image.fromarray(noise).save(path / "big.png")
    data = (path / "big.png").read_bytes()
    (path / "big.png").write_bytes(data[: len(data) // 2])
    return path / "big.png"


def png(path: Path) -> Path:
    return save_png(path / "digit.png", np.zeros((28, 28), np.uint8))


CLI_FILE_CASES = [
    ("eval-missing-model", lambda p, d, r: ["eval", p / "m.npz", "--data", d], "does not exist"),
    (
        "eval-model-is-folder",
        lambda p, d, r: ["eval", p, "--data", d],
        "is a folder without model.npz or checkpoint.npz",
    ),
    (
        "eval-not-mnist-model",
        lambda p, d, r: ["eval", small_model(p), "--data", d],
        "takes 4 inputs, but the data has 784 features per example",
    ),
    (
        "eval-missing-data",
        lambda p, d, r: ["eval", r / "model.npz", "--data", p / "no.npz"],
        r"no\.npz",
    ),
    (
        "predict-missing-image",
        lambda p, d, r: ["predict", r / "model.npz", p / "x.png"],
        r"image .*x\.png' does not exist",
    ),
    (
        "predict-folder-without-images",
        lambda p, d, r: ["predict", r / "model.npz", p],
        "holds no image files",
    ),
    (
        "predict-text-as-image",
        lambda p, d, r: ["predict", r / "model.npz", file_in_the_way(p)],
        r"was trained on pictures of digits: it takes images \(or folders of them\), not the "
        r"table .*file$",
    ),
    (
        "predict-truncated-png",
        lambda p, d, r: ["predict", r / "model.npz", damaged_png(p)],
        "cannot be read",
    ),
    (
        "predict-with-data-file",
        lambda p, d, r: ["predict", d, png(p)],
        "not a gpumlp checkpoint",
    ),
]


@pytest.mark.parametrize(("argv", "match"), [pytest.param(*c[1:], id=c[0]) for c in CLI_FILE_CASES])
def test_bad_file_on_the_command_line(argv, match, tmp_path, quick_run):
    pytest.importorskip("PIL")
    data, run_dir = quick_run
    before = (run_dir / "checkpoint.npz").read_bytes()
    code, _, stderr = run(*argv(tmp_path, data, run_dir))
    assert_refused(code, stderr, match)
    assert (run_dir / "checkpoint.npz").read_bytes() == before


@pytest.mark.usefixtures("numpy_env")
def test_predict_of_a_one_pixel_image_is_one_clean_line(trained_run, tmp_path):
    pytest.importorskip("PIL")
    model = trained_run[0] / "model.npz"
    image = save_png(tmp_path / "dot.png", np.zeros((1, 1), np.uint8), "L")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's RuntimeWarning used to leak here
        code, stdout, err = run("predict", model, image)
    assert_refused(code, err, re.escape(f"no digit found in image '{image}': it is blank"))
    assert stdout == ""
