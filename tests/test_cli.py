"""Tests for gpumlp.cli's ``main``: ``--help`` (in process and as ``python -m gpumlp``),
``--version``, ``sys.argv``, ``--debug``, and exit code 2 with one line on stderr for an unknown
or missing command. Each subcommand has its own test_cli_<sub>.py."""

from __future__ import annotations

import re
import sys

import pytest

import gpumlp
from conftest import run, run_gpumlp
from gpumlp.cli import main

pytestmark = pytest.mark.usefixtures("numpy_env")


def test_module_help_in_a_subprocess():
    proc = run_gpumlp("--help", timeout=60)
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
def test_bad_command_line(argv, match, tmp_path):
    code, _, stderr = run(*argv)
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and stderr.count("\n") == 1
    assert re.search(match, stderr), stderr
    assert not (tmp_path / "run").exists()
