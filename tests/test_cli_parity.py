"""Tests for ``gpumlp parity`` (gpumlp.cli.parity over gpumlp.runs.parity), through
``gpumlp.cli.main``: two backends or dtypes agree (exit 0, a JSON report of every phase and
tensor), a planted mismatch is reported at its step (exit 1), unavailable backends and bad
arguments exit 2, MNIST-format data, and NumPy against CuPy on every engine (GPU). Then the
command in a subprocess: ``--backends`` takes known names only and imports nothing from the
current directory, ``--json`` is checked before running, the default without CuPy, ``--help``.
"""

from __future__ import annotations

import json
import re

import pytest

from gpumlp import activations, cli
from gpumlp.backend import backend_name, cupy_status
from gpumlp.engines import steps
from gpumlp.runs import parity
from helpers.cli import PATIENCE, assert_refused, run_gpumlp
from helpers.data import write_tiny_mnist

SMALL = ["--sizes", "20,12,4", "--n", "205", "--batch-size", "10", "--steps", "6", "--epochs", "2"]
QUICK = ["--sizes", "5,3", "--n", "30", "--steps", "2"]
USABLE, REASON = cupy_status()


def _report(tmp_path, argv):
    path = tmp_path / "parity.json"
    code = cli.main(["parity", *argv, "--json", str(path)])
    return code, json.loads(path.read_text()) if path.exists() else None


def test_numpy_and_array_api_strict_agree_in_float64(tmp_path):
    pytest.importorskip("array_api_strict")
    code, report = _report(tmp_path, ["--backends", "numpy", "array_api_strict", *SMALL])
    assert code == 0
    assert report["verdict"] == "agree" and report["first_exceeded"] is None
    assert report["dtypes"] == ["float64", "float64"]
    assert report["tolerances"]["rel_per_step"] == parity.TOLERANCES["float64"] == 1e-12
    phases = {row["phase"] for row in report["tensors"]}
    assert phases == {"start", "steps", "epochs", "final"}
    steps = [r for r in report["tensors"] if r["phase"] == "steps"]
    assert {r["tensor"] for r in steps} == {"w[0]", "b[0]", "w[1]", "b[1]", "out"}
    assert all(r["checks"] == 6 for r in steps)


def test_float64_against_float32_uses_the_float32_tolerance(tmp_path, capsys):
    argv = ["--backends", "numpy", "numpy", "--dtypes", "float32", "float64", *SMALL]
    code, report = _report(tmp_path, argv)
    assert code == 0, capsys.readouterr().out
    assert report["reference"] == "numpy float64"  # the float64 side, though named second
    assert report["tolerances"]["rel_per_step"] == 1e-5
    steps = [r for r in report["tensors"] if r["phase"] == "steps"]
    # float32 rounding is visible (so the comparison is real) and well inside the tolerance.
    assert all(0 < r["max_rel"] < 1e-5 for r in steps)
    assert "verdict: agree" in capsys.readouterr().out


def _perturbing_generic_step(at_call):
    """GenericStep.__call__ whose non-NumPy steps nudge w[0] by 1e-6 after their call
    ``at_call``."""
    real = steps.GenericStep.__call__
    calls = [0]

    def nudged(self, x, y, lr, draw=0):
        a = real(self, x, y, lr, draw)
        if backend_name(self.xp) == "numpy":
            return a
        calls[0] += 1
        if calls[0] == at_call:
            params = self.state.params
            params.set(0, params.weights[0] * (1 + 1e-6))
        return a

    return nudged


def test_a_weight_nudged_after_step_3_is_reported_at_step_3(tmp_path, capsys, monkeypatch):
    pytest.importorskip("array_api_strict")
    monkeypatch.setattr(steps.GenericStep, "__call__", _perturbing_generic_step(at_call=3))
    code, report = _report(tmp_path, ["--backends", "numpy", "array_api_strict", *SMALL])
    assert code == 1
    assert report["verdict"] == "mismatch"
    assert report["first_exceeded"] == {"phase": "steps", "step": 3, "tensor": "w[0]"}
    rows = {(r["phase"], r["tensor"]): r for r in report["tensors"]}
    assert rows[("steps", "w[1]")]["first_exceeded"] == 4  # the error flows on a step later
    assert rows[("start", "a[0]")]["first_exceeded"] is None
    assert "MISMATCH, first exceeded at step 3 (steps, w[0])" in capsys.readouterr().out


def test_a_broken_activation_on_one_backend_fails_at_the_start(tmp_path, monkeypatch):
    pytest.importorskip("array_api_strict")
    good = activations.ACTIVATIONS["sigmoid"]

    def fn(z, *, xp):
        a = good.fn(z, xp=xp)
        return a if backend_name(xp) == "numpy" else a * (1 + 1e-9)

    broken = activations.Activation("sigmoid", fn, good.prime)
    monkeypatch.setitem(activations.ACTIVATIONS, "sigmoid", broken)
    code, report = _report(tmp_path, ["--backends", "numpy", "array_api_strict", *SMALL])
    assert code == 1
    assert report["first_exceeded"] == {"phase": "start", "step": 0, "tensor": "a[0]"}


@pytest.mark.skipif(USABLE, reason="CuPy is usable here, so it is not unavailable")
def test_unavailable_cupy_exits_2_with_one_line(capsys):
    code = cli.main(["parity", "--backends", "numpy", "cupy", *SMALL])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "cupy" in err[0].lower()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--sizes", "20,x"], "--sizes: expected comma-separated integers"),
        (["--dtype", "float32", "--dtypes", "float64", "float32"], "give --dtype or --dtypes"),
        (["--steps", "-1"], "--steps: must be >= 0"),
        (["--backends", "numpy", "no_such_array_module"], "invalid choice: 'no_such_array"),
        (["--backends", "numpy", "numpy", "--engine", "graph"], "'graph' needs the CuPy"),
        (["--backends", "numpy", "numpy", "--activation", "nope"], "invalid choice: 'nope'"),
        (["--dtype", "float16"], "--dtype: invalid choice: 'float16'"),
    ],
)
def test_bad_arguments_exit_2(argv, match, capsys):
    code = cli.main(["parity", *QUICK, *argv])  # a later flag overrides QUICK's
    assert_refused(code, capsys.readouterr().err, match)


def test_gpumlp_parity_command_dispatches(capsys):
    assert cli.main(["parity", "--backends", "numpy", "numpy", *SMALL]) == 0
    assert "verdict: agree" in capsys.readouterr().out


def test_mnist_format_data_path(tmp_path, capsys):
    path = write_tiny_mnist(tmp_path / "mnist.npz", 120, 40)
    argv = ["--backends", "numpy", "numpy", "--data", str(path), "--sizes", "784,8,10"]
    code, report = _report(tmp_path, [*argv, "--steps", "3"])
    assert code == 0, capsys.readouterr()
    assert report["config"]["n"] == 100 and report["config"]["n_test"] == 40  # 1/6 held out


@pytest.mark.gpu
@pytest.mark.skipif(not USABLE, reason=f"CuPy unusable: {REASON}")
@pytest.mark.parametrize("engine", ["generic", "fused", "graph", "auto"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_and_cupy_agree(engine, dtype, tmp_path, capsys):
    argv = ["--backends", "numpy", "cupy", "--dtype", dtype, "--engine", engine, *SMALL]
    code, report = _report(tmp_path, argv)
    assert code == 0, capsys.readouterr().out
    expected = {"generic": "generic", "fused": "fused", "graph": "graph", "auto": "persistent"}
    assert report["engines"] == ["generic", expected[engine]]
    assert report["versions"]["CUPY_TF32"] == "0"


# -- the command in a subprocess: what --backends may name, --json, the default, --help --------

EVIL = 'open({marker!r}, "w").write("imported")\nprint("Beautiful is better than ugly.")\n'


def _parity(cwd, *argv, timeout=PATIENCE):
    return run_gpumlp("parity", *argv, timeout=timeout, cwd=cwd)


@pytest.mark.parametrize("name", ["this", "evilmod", "os", "antigravity", "./evilmod.py"])
def test_backends_takes_known_names_only_and_imports_nothing_else(name, tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(EVIL.format(marker=str(marker)))
    proc = _parity(tmp_path, "--backends", "numpy", name, *QUICK)
    refused = r"^gpumlp: error: argument --backends: invalid choice: "
    assert_refused(proc.returncode, proc.stderr, refused)
    assert proc.stdout == "" and "Beautiful is better" not in proc.stderr  # no Zen of Python
    assert "array_api_strict" in proc.stderr
    assert not marker.exists()


def test_a_known_namespace_is_never_imported_from_the_current_directory(tmp_path):
    pytest.importorskip("array_api_strict")
    marker = tmp_path / "imported"
    (tmp_path / "array_api_strict.py").write_text(EVIL.format(marker=str(marker)))
    proc = _parity(tmp_path, "--backends", "numpy", "array_api_strict", *QUICK)
    assert proc.returncode == 0, proc.stderr
    assert "verdict: agree" in proc.stdout and not marker.exists()


def test_a_namespace_module_name_stands_for_its_backend(capsys):
    code = cli.main(["parity", "--backends", "array_api_compat.numpy", "numpy", *QUICK])
    assert code == 0
    assert "parity: numpy float64 vs numpy float64" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("where", "match"),
    [
        (lambda p: p / "missing" / "r.json", r"folder '.*missing' does not exist"),
        (lambda p: p, r"must name a file"),
        (lambda p: "", r"must name a file"),
    ],
    ids=["missing-folder", "a-folder", "empty"],
)
def test_json_that_cannot_be_written_is_refused_before_running(where, match, tmp_path):
    proc = _parity(tmp_path, *QUICK, "--json", where(tmp_path), timeout=PATIENCE)
    assert proc.returncode == 2
    assert proc.stdout == ""  # refused before the comparison ran
    assert re.fullmatch(rf"gpumlp: error: --json .*{match}.*\n", proc.stderr), proc.stderr


@pytest.mark.skipif(USABLE, reason="CuPy is usable here: the default compares NumPy with it")
def test_without_cupy_the_default_is_numpy_float64_against_float32(tmp_path):
    proc = _parity(tmp_path, *QUICK, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert "comparing NumPy float64 with NumPy float32 instead" in proc.stderr
    assert "CuPy cannot run here" in proc.stderr
    assert proc.stdout.startswith("parity: numpy float64 vs numpy float32")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["dtypes"] == ["float64", "float32"] and report["verdict"] == "agree"


def test_help_names_the_command_and_shows_defaults(tmp_path):
    proc = _parity(tmp_path, "--help", timeout=PATIENCE)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: gpumlp parity ")
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    for flag, default in [("--sizes SIZES", "784,30,10"), ("--batch-size BATCH_SIZE", "10"),
                          ("--steps STEPS", "10"), ("--epochs EPOCHS", "1"), ("--seed SEED", "0"),
                          ("--engine", "auto"), ("--activation", "sigmoid"),
                          ("--cost", "quadratic"), ("--init", "normal"), ("--optimizer", "sgd"),
                          ("--momentum MOMENTUM", "0.9"), ("--lr LR", "3.0"), ("--l2 L2", "0.0"),
                          ("--dtype", "float64")]:  # fmt: skip
        assert re.search(rf"{flag}[^(]*\(default: {re.escape(default)}\)", text), flag
