"""Shared fixtures and helpers: the backend fixture, small data sets in every MNIST format,
subprocess helpers, and the GPU switch.

``GPUMLP_REQUIRE_GPU=1`` turns every skipped ``gpu`` test into a failure, so a run on a GPU
machine can never look green by skipping (``scripts/gpu_check.sh`` sets it).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cuda_emu.fixtures import cxx20, fake_cupy  # noqa: F401  (fixtures for every test file)
from gpumlp.backend import cupy_status

REQUIRE_GPU = os.environ.get("GPUMLP_REQUIRE_GPU", "").strip() == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_GPU and report.skipped and item.get_closest_marker("gpu") is not None:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"GPUMLP_REQUIRE_GPU=1, but this gpu test was skipped: {reason}"


def _cupy_param():
    usable, reason = cupy_status()
    return pytest.param(
        "cupy",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not usable, reason=f"CuPy unusable: {reason}")],
    )


@pytest.fixture(params=["numpy", "array_api_strict", _cupy_param()])
def backend(request):
    """A backend spec for ``Network(backend=...)``: "numpy", the strict namespace, or "cupy"."""
    if request.param == "array_api_strict":
        return pytest.importorskip("array_api_strict")
    return request.param


@pytest.fixture
def blobs():
    """A tiny separable 3-class problem: (X (90, 4) float64, y (90,) int64)."""
    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = np.repeat(np.arange(3), 30)
    X = centers[y] + 0.3 * rng.standard_normal((90, 4))
    return X, y


def write_tiny_mnist(path, n_train: int, n_test: int, *, seed: int = 0):
    """Write a Keras-style mnist.npz of random 28x28 images and labels; returns ``path``.

    ``load_mnist`` holds out the last ``n_train // 6`` training images as validation.
    """
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test),
    )
    return path


def reap(proc) -> None:
    """Kill a test's subprocess if it still runs, and wait: no trainer outlives a failed test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_python(code: str) -> str:
    """Run ``code`` in a fresh Python with the tests importable; its stdout (fails on exit != 0)."""
    import subprocess
    import sys

    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def host(a) -> np.ndarray:
    """Any backend's array as a NumPy array."""
    from gpumlp.backend import to_host

    return np.asarray(to_host(a))


# -- MNIST files in every format, small ---------------------------------------------------------

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def make_bytes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 images (n, 28, 28) including 0 and 255, and labels cycling 0..9."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, :2] = (0, 255)
    return images, (np.arange(n) % 10).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None) -> Path:
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_idx_dir(folder: Path, n_train: int = 60, n_test: int = 12, *, gz: bool = True) -> dict:
    folder.mkdir(exist_ok=True)
    x_train, y_train = make_bytes(n_train, 1)
    x_test, y_test = make_bytes(n_test, 2)
    arrays = {"train_images": x_train, "train_labels": y_train}
    arrays |= {"test_images": x_test, "test_labels": y_test}
    for key, array in arrays.items():
        write_idx(folder / (IDX_NAMES[key] + (".gz" if gz else "")), array)
    return arrays


def write_npz(path: Path, n_train: int = 60, n_test: int = 12, **override) -> dict:
    x_train, y_train = make_bytes(n_train, 3)
    x_test, y_test = make_bytes(n_test, 4)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays = {k: v for k, v in (arrays | override).items() if v is not None}
    np.savez_compressed(path, **arrays)
    return arrays


def book_splits(sizes=(20, 5, 7)) -> tuple:
    """Splits shaped like the book's pickle: float32 byte/256, int64 labels."""
    return tuple(
        ((make_bytes(n, s)[0].reshape(n, 784) / 256).astype(np.float32), np.arange(n) % 10)
        for n, s in zip(sizes, (5, 6, 7), strict=True)
    )


class Py2Pickler(pickle.Pickler):
    """Pickle arrays the way Python 2 did: array data as a str, not bytes (no _codecs global)."""

    def reducer_override(self, obj):
        if type(obj) is not np.ndarray:
            return NotImplemented
        rebuild, (cls, shape, _), state = obj.__reduce__()
        return rebuild, (cls, shape, "b"), (*state[:4], state[4].decode("latin1"))


def write_pkl(path: Path, splits, *, protocol: int | str = "py2") -> Path:
    """Write splits as a gzip'd pickle; "py2" mimics the book's file, globals and all."""
    buffer = io.BytesIO()
    if protocol == "py2":
        Py2Pickler(buffer, protocol=2).dump(splits)
        raw = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    else:
        raw = pickle.dumps(splits, protocol=protocol)
    path.write_bytes(gzip.compress(raw))
    return path


def assert_split(split, n: int) -> None:
    x, y = split
    assert x.shape == (n, 784) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    for a in (x, y):
        assert a.flags.c_contiguous and a.flags.owndata and a.flags.writeable
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(y)) <= set(range(10))
