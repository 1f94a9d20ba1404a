"""Tests for gpumlp.cli's ``main``: ``--help`` (in process and as ``python -m gpumlp``),
``--version``, ``sys.argv``, ``--debug``, and exit code 2 with one line on stderr for an unknown
or missing command; in a subprocess, an empty ``--out`` and a closed output pipe (quiet, exit
141). Each subcommand has its own test_cli_<sub>.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import gpumlp
from gpumlp.cli import EXIT_PIPE, main
from helpers.cli import (
    PATIENCE,
    assert_refused,
    gpumlp_cmd,
    gpumlp_env,
    reap,
    run,
    run_gpumlp,
    start_gpumlp,
)

pytestmark = pytest.mark.usefixtures("numpy_env")


def test_module_help_in_a_subprocess():
    proc = run_gpumlp("--help")
    assert proc.returncode == 0
    assert "train" in proc.stdout and "predict" in proc.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gpumlp {gpumlp.__version__}"


def test_train_help_exits_zero(capsys):
    assert main(["train", "--help"]) == 0
    assert "--batch-size" in capsys.readouterr().out


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        main(["--debug", "train", "--data", str(tmp_path / "nope.npz")])
    with pytest.raises(ValueError, match="--lr: must be > 0"):  # --debug after the command too
        main(["train", "--debug", "--lr", "0"])


def test_entry_point_reads_sys_argv(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpumlp", "--version"])
    assert main() == 0
    assert "gpumlp" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        pytest.param(["fit"], "invalid choice: 'fit'", id="unknown-command"),
        pytest.param([], "required: COMMAND", id="no-command"),
    ],
)
def test_bad_command_line(argv, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a run folder (runs/...) would be made
    code, _, stderr = run(*argv)
    assert_refused(code, stderr, match)
    assert list(tmp_path.iterdir()) == []  # refused: nothing written


# -- the command in a subprocess: messages that name their cause, a closed pipe -----------------


def test_an_empty_out_is_refused_naming_it(tmp_path, bar_mnist):
    argv = ["train", "--data", bar_mnist, "--epochs", "1", "--quiet", "--out", ""]
    proc = run_gpumlp(*argv, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "gpumlp: error: --out must name a folder, got an empty string\n"
    assert os.listdir(tmp_path) == []  # no default folder made instead


def test_a_closed_pipe_ends_quietly_with_141(quick_run):
    _, out = quick_run
    proc = start_gpumlp("eval", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdout.close()  # the reader is gone before the first line is written
        err = proc.stderr.read()
        assert proc.wait(timeout=PATIENCE) == EXIT_PIPE
    finally:
        reap(proc)
    assert err == b""  # no traceback, no "Exception ignored" at exit


def test_eval_into_head_prints_one_line_and_no_traceback(quick_run):
    _, out = quick_run
    proc = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" | head -1', "-", *gpumlp_cmd("eval", out)],
        env=gpumlp_env(), capture_output=True, text=True, timeout=PATIENCE,
    )  # fmt: skip
    assert proc.returncode in (0, EXIT_PIPE)  # 141 when head left before eval finished
    assert proc.stdout.startswith(f"{out}: accuracy ") and proc.stdout.count("\n") == 1
    assert proc.stderr == ""
