"""Tests for ``gpumlp data``, ``gpumlp plot`` and ``gpumlp kernels`` (gpumlp.cli.tools),
through ``gpumlp.cli.main``: ``data info`` as JSON, an unknown ``data`` action, the
learning-curve PNGs of a run folder, a missing run folder (exit 2), and the kernel source."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpumlp.cli import main
from helpers.cli import assert_refused, run, run_gpumlp
from helpers.plots import needs_matplotlib, png_size

# -- gpumlp data --------------------------------------------------------------------------------


@pytest.mark.usefixtures("numpy_env")
def test_data_info_prints_json_and_exits_2_naming_a_problem(tmp_path, monkeypatch):
    # a cache that is not as it should be was reported with exit status 0
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    code, stdout, stderr = run("data", "info")
    info = json.loads(stdout)
    assert info["cache_dir"] == str(tmp_path)
    assert info["exists"] is False and info["ok"] is False
    assert_refused(code, stderr, r"^gpumlp: error: MNIST .*mnist\.pkl\.gz is not in the cache: "
                   r"fetch it with: gpumlp data fetch$")  # fmt: skip
    (tmp_path / "mnist.pkl.gz").write_bytes(b"short")
    code, stdout, stderr = run("data", "info")
    assert json.loads(stdout)["size"] == 5
    assert_refused(code, stderr, r"mnist\.pkl\.gz holds 5 bytes, not the [\d,]+ expected: fetch "
                   r"it again with: gpumlp data fetch --force$")  # fmt: skip


def test_data_info_of_a_sound_cache_exits_0_and_names_a_wrong_digest(mirror):
    assert run("data", "fetch")[0] == 0
    code, stdout, stderr = run("data", "info")
    assert code == 0 and stderr == "" and json.loads(stdout)["ok"] is True
    cached = Path(json.loads(stdout)["path"])
    cached.write_bytes(bytes(len(mirror.read_bytes())))  # the right size, other bytes
    code, _, stderr = run("data", "info")
    assert_refused(code, stderr, r"mnist\.pkl\.gz has SHA-256 [0-9a-f]{64}, not the expected "
                   r"[0-9a-f]{64}: fetch it again with: gpumlp data fetch --force$")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "match"),
    [pytest.param(["data", "delete"], "invalid choice: 'delete'", id="data-action")],
)
def test_bad_command_line(argv, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a run folder (runs/...) would be made
    code, _, stderr = run(*argv)
    assert_refused(code, stderr, match)
    assert list(tmp_path.iterdir()) == []  # refused: nothing written


# -- gpumlp kernels -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_prints_the_generated_source(dtype):
    from gpumlp.engines._kernels import kernel_source

    code, stdout, _ = run("kernels", "--dtype", dtype)
    assert code == 0 and stdout == kernel_source(dtype)
    assert run("kernels")[1] == kernel_source("float32")
    code, _, stderr = run("kernels", "--dtype", "float16")
    assert_refused(code, stderr, "invalid choice: 'float16'")


# -- gpumlp plot --------------------------------------------------------------------------------


@needs_matplotlib
def test_cli_plot(history_dir, capsys):
    assert main(["plot", str(history_dir)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(history_dir / "cost.png"), str(history_dir / "accuracy.png")]
    assert png_size(history_dir / "accuracy.png")[0] > 100


def test_missing_run_folder(tmp_path):
    code, _, stderr = run("plot", tmp_path / "nowhere")
    assert_refused(code, stderr, r"run folder '.*nowhere' does not exist or is not a folder")


def test_plot_refuses_a_fifo_history_at_once(tmp_path):
    # In a subprocess: its time limit turns a reader waiting on the FIFO into a failure.
    os.mkfifo(tmp_path / "history.json")
    done = run_gpumlp("plot", tmp_path)
    assert_refused(done.returncode, done.stderr, r"history '.*history\.json' is a FIFO, not a")
    assert list(tmp_path.iterdir()) == [tmp_path / "history.json"]
