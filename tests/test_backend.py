"""Backend resolution: names, namespaces, the environment default, CuPy never imported early."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import gpumlp
from gpumlp import backend
from helpers.cli import run_python


def test_numpy_by_name_and_by_module():
    assert backend.backend_name(backend.get_namespace("numpy")) == "numpy"
    assert backend.backend_name(backend.get_namespace(np)) == "numpy"


def test_array_api_strict_module_is_accepted():
    strict = pytest.importorskip("array_api_strict")
    xp = backend.get_namespace(strict)
    assert xp is strict or xp.__name__ == "array_api_strict"


def test_unknown_backend_name_is_a_value_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.get_namespace("tensorflow")


def test_non_namespace_module_is_a_type_error():
    import json

    with pytest.raises(TypeError, match="not an array-API namespace"):
        backend.get_namespace(json)


def test_auto_without_cuda_falls_back_to_numpy(monkeypatch):
    if backend.cupy_status()[0]:
        pytest.skip("a CUDA device is usable here")
    monkeypatch.delenv("GPUMLP_BACKEND", raising=False)
    assert backend.backend_name(backend.get_namespace("auto")) == "numpy"


def test_explicit_cupy_without_device_names_the_cause():
    if backend.cupy_status()[0]:
        pytest.skip("a CUDA device is usable here")
    with pytest.raises(backend.BackendUnavailableError, match="cannot run"):
        gpumlp.Network([2, 2], backend="cupy")


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")
    assert gpumlp.Network([2, 2]).backend == "numpy"
    monkeypatch.setenv("GPUMLP_BACKEND", "jax")
    with pytest.raises(ValueError, match="GPUMLP_BACKEND"):
        gpumlp.Network([2, 2])


def test_import_does_not_import_cupy(tmp_path):
    # A booby-trapped "cupy" first on the path: importing it leaves a marker file.
    fake = tmp_path / "cupy"
    fake.mkdir()
    marker = tmp_path / "imported"
    (fake / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise ImportError('fake')\n"
    )
    code = "import gpumlp; gpumlp.Network([2, 2], backend='numpy')"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert not marker.exists()
    # ... and the trap works: asking for auto does import it (and falls back to NumPy).
    code = "import gpumlp; print(gpumlp.Network([2, 2], backend='auto').backend)"
    env["GPUMLP_BACKEND"] = "auto"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert marker.exists() and out.stdout.strip() == "numpy"


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64", "bogus"])
def test_bad_dtype(dtype):
    with pytest.raises(ValueError, match="dtype must be one of"):
        gpumlp.Network([2, 2], dtype=dtype, backend="numpy")


JAX_DTYPE = """
import warnings, gpumlp
try:
    net = gpumlp.Network([2, 3, 2], backend="jax", dtype="float64", seed=0)
except ValueError as exc:
    print("refused:", exc)
else:
    print("made:", net.weights[0].dtype)
"""


@pytest.mark.parametrize("x64", ["0", "1"])
def test_a_dtype_the_namespace_would_truncate_is_refused(x64, monkeypatch):
    pytest.importorskip("jax")
    monkeypatch.setenv("JAX_ENABLE_X64", x64)
    out = run_python(JAX_DTYPE)
    if x64 == "1":
        assert out.strip() == "made: float64"
    else:  # JAX without 64-bit mode would quietly compute in float32
        assert "refused: dtype='float64': the jax.numpy namespace makes float32 arrays" in out
        assert "JAX_ENABLE_X64=1" in out
