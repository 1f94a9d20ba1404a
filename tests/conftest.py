"""Shared fixtures and helpers of the test suite, each defined once.

Sections, in order:

- the GPU switch and the ``backend`` fixture;
- small problems and networks: ``blobs``, the hidden activations ``HIDDEN`` (the accepted
  (output activation, cost) pairs are :data:`gpumlp.costs.VALID_PAIRS`), the small network of
  the bad-input tables, a fitted network and its model file;
- arrays: ``host``, ``params_of``, ``assert_same_params``, ``history_columns``;
- MNIST files in every format, small, and bad ones (each tried through ``load_mnist`` and
  through ``gpumlp train``);
- bad checkpoint files (each tried through ``gpumlp.load`` and through ``gpumlp predict``);
- the command line: ``run`` (``gpumlp.cli.main`` in process), ``gpumlp`` in a subprocess with a
  clean environment, ``reap``, ``run_python``, and the run folders the CLI tests share;
- faults: a disk that fills up mid-write, a training step that runs out of memory.

``GPUMLP_REQUIRE_GPU=1`` turns every skipped ``gpu`` test into a failure, so a run on a GPU
machine can never look green by skipping (``scripts/gpu_check.sh`` sets it).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import importlib.util
import io
import itertools
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from cuda_emu.fixtures import cxx20, fake_cupy  # noqa: F401  (fixtures for every test file)
from gpumlp.activations import ACTIVATIONS
from gpumlp.backend import cupy_status
from gpumlp.costs import COSTS, VALID_PAIRS
from gpumlp.data import fetch
from gpumlp.files import checkpoint
from gpumlp.files.checkpoint import CheckpointError, read_checkpoint, write_checkpoint

REQUIRE_GPU = os.environ.get("GPUMLP_REQUIRE_GPU", "").strip() == "1"

# -- the GPU switch and the backend fixture -----------------------------------------------------


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


# -- small problems and networks ----------------------------------------------------------------

HIDDEN = [name for name, act in ACTIVATIONS.items() if not act.output_only]
"""Every activation a hidden layer accepts (softmax is output-only)."""


@pytest.fixture
def blobs():
    """A tiny separable 3-class problem: (X (90, 4) float64, y (90,) int64)."""
    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = np.repeat(np.arange(3), 30)
    X = centers[y] + 0.3 * rng.standard_normal((90, 4))
    return X, y


_RNG = np.random.default_rng(0)
SMALL_X = _RNG.random((12, 4))
"""The bad-input tables' data: X (12, 4) float64 in [0, 1) ..."""
SMALL_Y = _RNG.integers(0, 3, 12)
"""... and y (12,) labels 0..2."""


def small_net(**kw) -> gpumlp.Network:
    """The bad-input tables' network: [4, 5, 3] on NumPy, seed 0, ``kw`` overriding."""
    return gpumlp.Network([4, 5, 3], **{"backend": "numpy", "seed": 0, **kw})


def small_fit(X=SMALL_X, y=SMALL_Y, *, net=None, **kw):
    """One epoch of ``net`` (default ``small_net()``) on (X, y) at batch size 4, lr 0.1, ``kw``
    overriding."""
    args = {"epochs": 1, "batch_size": 4, "lr": 0.1, **kw}
    return (small_net() if net is None else net).fit(X, y, **args)


@pytest.fixture
def fitted(blobs) -> gpumlp.Network:
    """A [4, 6, 3] cross-entropy network after 2 epochs on ``blobs`` (NumPy, float32)."""
    X, y = blobs
    net = gpumlp.Network([4, 6, 3], cost="cross_entropy", backend="numpy", seed=0)
    net.fit(X, y, epochs=2, batch_size=10, lr=0.5, seed=0)
    return net


@pytest.fixture
def saved(fitted, tmp_path) -> Path:
    """``fitted`` saved as ``tmp_path / "model.npz"``."""
    path = tmp_path / "model.npz"
    fitted.save(path)
    return path


CE_NET = {"cost": "cross_entropy", "backend": "numpy", "seed": 0}
"""``Network`` arguments of the resume tests' [4, 6, 3] networks."""


def fit_run(net, X, y, **kw):
    """``net.fit`` as the resume tests run it: batch 10, lr 0.5, seed 1, monitoring the training
    cost and the validation accuracy; ``kw`` overriding."""
    base = dict(batch_size=10, lr=0.5, seed=1, monitor=("train_cost", "val_accuracy"))
    return net.fit(X, y, **{**base, **kw})


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """``small_net()`` saved as a model file (shared, read only)."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    small_net().save(path)
    return path


ALL_PAIRS = list(itertools.product(ACTIVATIONS, COSTS))
"""Every (output activation, cost) pair of the two registries."""

INVALID_PAIRS = [pair for pair in ALL_PAIRS if pair not in VALID_PAIRS]
"""The pairs a network refuses (test_costs, test_cli_train)."""


def val_overflow_problem(scale: float = 3e17):
    """A regression whose validation cost overflows float32 while the training cost stays finite:
    ``((X, Y), (X_val, Y_val))``. Training pulls the weights of a linear [4, 2] network from
    about 1 towards 20 (Y = X·20 on inputs of about 1); the two validation rows are inputs of
    ``scale``, so their squared error (~(4·scale·|w|)²) passes float32's 3.4e38 as the weights
    grow: in epoch 7 of ``VAL_OVERFLOW_NET`` at lr 0.01 for the default scale, from the start
    for a scale of 1e30."""
    X = np.random.default_rng(0).standard_normal((100, 4))
    return (X, X @ np.full((4, 2), 20.0)), (np.full((2, 4), scale), np.zeros((2, 2)))


VAL_OVERFLOW_NET = {"activation": "identity", "backend": "numpy", "seed": 0}
VAL_OVERFLOW_FIT = {"batch_size": 10, "lr": 0.01}


# -- arrays -------------------------------------------------------------------------------------


def host(a) -> np.ndarray:
    """Any backend's array as a NumPy array."""
    from gpumlp.backend import to_host

    return np.asarray(to_host(a))


def params_of(net) -> list[np.ndarray]:
    """Host copies of a network's parameters: w_0, b_0, w_1, b_1, ..."""
    return [host(t).copy() for t in net.params.arrays()]


def assert_same_params(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    """Two parameter lists hold the same dtypes, shapes and bits."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), "parameters differ"


HUGE = 1e300
"""Finite in float64, inf in float32."""


def with_value(a, index, value=HUGE) -> np.ndarray:
    """A float64 copy of ``a`` with ``value`` (default :data:`HUGE`) at ``index``."""
    a = np.array(a, dtype=np.float64)
    a[index] = value
    return a


def printed_epochs(stdout: str) -> list[int]:
    """The epoch numbers of the ``Epoch k: ...`` lines ``gpumlp train`` printed."""
    return [int(k) for k in re.findall(r"^Epoch (\d+): ", stdout, re.M)]


def saved_epochs(run_dir: Path) -> list[int]:
    """The epoch numbers a run folder's history.json holds."""
    return [r["epoch"] for r in json.loads((run_dir / "history.json").read_text())["epochs"]]


def saved_params(path: Path) -> dict[str, np.ndarray]:
    """The ``param/i`` arrays of a model file, read as they are stored."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k.startswith("param/")}


def default_sigint() -> None:
    """A child's ``preexec_fn``: SIGINT back to its default. A shell starts background jobs
    with SIGINT ignored and a child inherits that (Python then installs no KeyboardInterrupt
    handler); Ctrl-C reaches a foreground process, so tests give the child the default
    disposition whatever way the test run itself was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def history_columns(records) -> list[dict]:
    """History records without their timings (which no two runs share)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def assert_same_run(got: Path, want: Path, params: list[str] | None = None) -> dict:
    """Two run folders hold the same model (parameter names and bits; the names ``params``
    when given) and the same history, timings aside. Returns ``got``'s history.json."""
    got_params, want_params = saved_params(got / "model.npz"), saved_params(want / "model.npz")
    assert sorted(got_params) == sorted(want_params)
    if params is not None:
        assert sorted(got_params) == params
    for key in want_params:
        assert np.array_equal(got_params[key], want_params[key]), key
    h_got, h_want = (json.loads((d / "history.json").read_text()) for d in (got, want))
    assert history_columns(h_got["epochs"]) == history_columns(h_want["epochs"])
    return h_got


# -- MNIST files in every format, small ---------------------------------------------------------


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
    """A compressed Keras-style npz; ``override`` replaces arrays (None leaves one out)."""
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


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Path:
    """A small MNIST pickle, ``tmp_path/mirror/mnist.pkl.gz``, served by file:// URL as the
    download source, with the expected size and checksum patched to it; the cache is
    ``tmp_path/cache``."""
    (tmp_path / "mirror").mkdir()
    source = write_pkl(tmp_path / "mirror" / "mnist.pkl.gz", book_splits())
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("GPUMLP_MNIST_URL", source.as_uri())
    monkeypatch.setattr(fetch, "MNIST_SIZE", source.stat().st_size)
    monkeypatch.setattr(fetch, "MNIST_SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    return source


def assert_split(split, n: int) -> None:
    x, y = split
    assert x.shape == (n, 784) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    for a in (x, y):
        assert a.flags.c_contiguous and a.flags.owndata and a.flags.writeable
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(y)) <= set(range(10))


def _bar_shape(d: int) -> np.ndarray:
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
    """n images (n, 28, 28) uint8 of class d = ``_bar_shape(d)`` on faint noise, labels 0..9:
    "digits" a small network learns in a few epochs."""
    y = (np.arange(n) % 10).astype(np.uint8)
    x = np.random.default_rng(seed).integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for i, d in enumerate(y):
        x[i, 4:24, 4:24][_bar_shape(int(d))] = 255
    return x, y


def write_bar_mnist(path: Path, n_train: int = 600, n_test: int = 100) -> Path:
    """An mnist.npz of ``bar_digits``; returns ``path``."""
    x_train, y_train = bar_digits(n_train, 1)
    x_test, y_test = bar_digits(n_test, 2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


# -- bad MNIST files: each tried through load_mnist (test_datasets) and gpumlp train -----------


def mnist_arrays(n_train=60, n_test=12, **override):
    """MNIST-shaped arrays (random images, labels cycling 0..9); ``override`` replaces arrays
    (None leaves one out)."""
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test) % 10,
    }
    return {k: v for k, v in (arrays | override).items() if v is not None}


def npz_maker(**override):
    """A maker ``write(folder) -> folder / "mnist.npz"`` of a plain (stored) npz of
    ``mnist_arrays(**override)``."""

    def write(path: Path) -> Path:
        path = path / "mnist.npz"
        np.savez(path, **mnist_arrays(**override))
        return path

    return write


def _raw(content: bytes, name: str = "mnist.npz"):
    def write(path: Path) -> Path:
        (path / name).write_bytes(content)
        return path / name

    return write


def _truncated_npz(path: Path) -> Path:
    full = npz_maker()(path).read_bytes()
    (path / "mnist.npz").write_bytes(full[: len(full) // 2])
    return path / "mnist.npz"


def _empty_folder(path: Path) -> Path:
    (path / "idx").mkdir()
    return path / "idx"


BAD_DATA_FILES = [
    ("missing", lambda p: p / "nope.npz", FileNotFoundError, "does not exist"),
    ("empty", _raw(b""), ValueError, "is empty"),
    ("text", _raw(b"hello, world\n" * 10), ValueError, "no known format"),
    ("truncated-npz", _truncated_npz, ValueError, "not a valid MNIST npz"),
    ("truncated-gzip", _raw(b"\x1f\x8b\x08\x00\x00", "m.pkl.gz"), ValueError, "not a valid"),
    ("folder-without-idx", _empty_folder, ValueError, "has no train-images-idx3-ubyte"),
    ("npz-missing-key", npz_maker(y_test=None), ValueError, "missing array.*y_test"),
    ("npz-label-10", npz_maker(y_train=np.arange(60) % 11), ValueError, r"labels must be 0\.\.9"),
    (
        "npz-label-negative",
        npz_maker(y_test=np.arange(12) - 1),
        ValueError,
        r"labels must be 0\.\.9",
    ),
    ("npz-float-images", npz_maker(x_test=np.zeros((12, 28, 28))), ValueError, "must be uint8"),
    ("npz-27-pixels", npz_maker(x_train=np.zeros((60, 28, 27), np.uint8)), ValueError, "28, 28"),
    ("npz-count", npz_maker(y_train=np.arange(59) % 10), ValueError, "60 train images but 59"),
    ("npz-too-few", npz_maker(n_train=5, y_train=np.arange(5)), ValueError, "too few"),
    ("single-idx-file", _raw(b"\x00\x00\x08\x03" + b"\0" * 12, "x.idx"), ValueError, "single IDX"),
]
"""(id, make(folder) -> path, exception type, message pattern): data files ``load_mnist``
refuses, naming the file."""


# -- bad checkpoint files: tried through gpumlp.load and gpumlp predict -------------------------


def resigned(source: Path, target: Path, change_meta=None, change_arrays=None) -> Path:
    """``source``'s checkpoint written again as ``target``, signed by ``write_checkpoint``, its
    metadata (without the signature) and arrays replaced by what ``change_meta(meta)`` and
    ``change_arrays(arrays)`` return: a valid container holding what a test makes of it."""
    meta, arrays = read_checkpoint(source)
    meta = {k: v for k, v in meta.items() if k not in ("format", "sha256")}
    if change_meta:
        meta = change_meta(meta)
    if change_arrays:
        arrays = change_arrays(arrays)
    write_checkpoint(target, meta, arrays)
    return target


def _rewritten(change_meta=None, change_arrays=None):
    """A checkpoint re-signed by ``write_checkpoint`` after changing its metadata or arrays."""

    def write(path: Path, model: Path) -> Path:
        return resigned(model, path / "ckpt.npz", change_meta, change_arrays)

    return write


def _damaged(edit):
    def write(path: Path, model: Path) -> Path:
        (path / "ckpt.npz").write_bytes(edit(model.read_bytes()))
        return path / "ckpt.npz"

    return write


def _future_format(path: Path, model: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION + 1)
        gpumlp.load(model, backend="numpy").save(path / "ckpt.npz")
    return path / "ckpt.npz"


def _plain_npz(path: Path, model: Path) -> Path:
    np.savez(path / "ckpt.npz", w=np.ones(3))
    return path / "ckpt.npz"


def _npy_file(path: Path, model: Path) -> Path:
    with open(path / "ckpt.npz", "wb") as f:
        np.save(f, np.ones(3))
    return path / "ckpt.npz"


def _flip_middle(data: bytes) -> bytes:
    i = len(data) // 2  # inside param/... data: the zip CRC or the sha256 catches it
    return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]


def _without(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


BAD_CHECKPOINT_CONTAINERS = [
    ("missing", lambda p, m: p / "nope.npz", FileNotFoundError, "does not exist"),
    ("directory", lambda p, m: p, CheckpointError, "is a directory"),
    ("empty", _damaged(lambda b: b""), CheckpointError, "damaged or not a gpumlp checkpoint"),
    ("truncated", _damaged(lambda b: b[: len(b) // 2]), CheckpointError, "damaged"),
    ("text", _damaged(lambda b: b"not a zip\n" * 50), CheckpointError, "damaged"),
    ("flipped-byte", _damaged(_flip_middle), CheckpointError, "damaged|corrupted"),
    ("plain-npz", _plain_npz, CheckpointError, "not a gpumlp checkpoint"),
    ("npy", _npy_file, CheckpointError, "not a gpumlp checkpoint"),
    ("future-format", _future_format, CheckpointError, r"format 2; .*upgrade gpumlp"),
]
"""(id, make(folder, model_file) -> path, exception type, message pattern): files that are no
readable checkpoint container (:mod:`gpumlp.files.checkpoint`)."""

BAD_CHECKPOINT_CONTENTS = [
    ("no-sizes", _rewritten(_without("sizes")), CheckpointError, "lacks model metadata 'sizes'"),
    (
        "bad-sizes",
        _rewritten(lambda m: m | {"sizes": [4, 0, 3]}),
        CheckpointError,
        r"invalid model configuration: sizes\[1\]",
    ),
    (
        "unknown-cost",
        _rewritten(lambda m: m | {"cost": "hinge"}),
        CheckpointError,
        "invalid model configuration: cost='hinge'",
    ),
    ("no-param", _rewritten(None, _without("param/3")), CheckpointError, "lacks parameter"),
    (
        "param-shape",
        _rewritten(None, lambda a: a | {"param/0": np.ones((4, 5))}),
        CheckpointError,
        r"invalid parameters: array 'param/0' has shape \(4, 5\), expected \(5, 4\)",
    ),
    (
        "param-nan",
        _rewritten(None, lambda a: a | {"param/1": np.full(5, np.nan)}),
        CheckpointError,
        r"invalid parameters: biases\[0\] contains NaN",
    ),
]
"""The same for valid, signed containers whose model is wrong (:mod:`gpumlp.files.modelfile`)."""


@contextlib.contextmanager
def raises_exactly(exc: type[BaseException], match: str | None, *, naming: object = None):
    """Expect ``exc`` itself (not a subclass) whose message matches ``match`` (None: any) and,
    when ``naming`` is given, names it (a path, usually)."""
    with pytest.raises(exc, match=match) as info:
        yield info
    assert type(info.value) is exc, type(info.value)
    if naming is not None:
        assert str(naming) in str(info.value)


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width × height black pixels: a few hundred KB that would decode to
    width * height bytes as grey."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    z = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the row's bits
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


PEAK_RSS = """
def peak_rss():
    # This process's own peak resident bytes (VmHWM). Not ru_maxrss: a child started by a big
    # process (pytest with torch imported) inherits its parent's peak there across exec.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
"""
"""Python source of ``peak_rss()``, for the snippets the memory tests run in a fresh process."""


# -- the command line ---------------------------------------------------------------------------


def run(*argv) -> tuple[int, str, str]:
    """``gpumlp.cli.main(argv)`` in this process -> (exit code, stdout, stderr)."""
    from gpumlp.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, stderr: str, match: str | None = None) -> None:
    """A refused command: exit code 2 and one line on stderr, ``gpumlp: error: ...``, in which
    the regular expression ``match`` (when given) is found."""
    assert code == 2, (code, stderr)
    assert stderr.startswith("gpumlp: error: ") and stderr.count("\n") == 1, stderr
    if match is not None:
        assert re.search(match, stderr), stderr


def gpumlp_env() -> dict[str, str]:
    """The environment of a ``gpumlp`` subprocess: this one's, with the NumPy backend by default
    and one BLAS thread (runs share the cores, and numbers must not depend on threading)."""
    one = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return {**os.environ, "GPUMLP_BACKEND": "numpy", **one}


def gpumlp_cmd(*argv) -> list[str]:
    """The command line ``python -m gpumlp ARGV...``."""
    return [sys.executable, "-m", "gpumlp", *(str(a) for a in argv)]


def start_gpumlp(*argv, **popen) -> subprocess.Popen:
    """Start ``gpumlp ARGV...`` in a subprocess (``gpumlp_env()``); ``reap`` it in a finally."""
    return subprocess.Popen(gpumlp_cmd(*argv), env=gpumlp_env(), **popen)


def run_gpumlp(*argv, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``gpumlp ARGV...`` in a subprocess (``gpumlp_env()``, in ``cwd``) to its end; text
    output."""
    return subprocess.run(
        gpumlp_cmd(*argv), env=gpumlp_env(), cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until the running ``proc`` has written ``path``; fail if it ends or time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before writing {path.name}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.01)


def reap(proc) -> None:
    """Kill a test's subprocess if it still runs, and wait: no trainer outlives a failed test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_python(code: str) -> str:
    """Run ``code`` in a fresh Python with the tests importable; its stdout (fails on exit != 0)."""
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def numpy_env(monkeypatch):
    """``GPUMLP_BACKEND=numpy`` for the test: commands without ``--backend`` run on NumPy."""
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")


def file_in_the_way(path: Path) -> Path:
    """A plain file ``path / "file"`` where a folder or an image is expected."""
    (path / "file").write_text("x")
    return path / "file"


TRAIN_FLAGS = ["--epochs", "2", "--limit", "300", "--sizes", "784,16,10", "--quiet", "--seed", "0"]
"""``gpumlp train`` flags of ``trained_run``: 2 epochs on 300 images of ``bar_mnist``."""

QUICK_FLAGS = ["--epochs", "1", "--limit", "40", "--sizes", "784,8,10", "--quiet"]
QUICK_FLAGS += ["--backend", "numpy"]
"""``gpumlp train`` flags of ``quick_run``: 1 epoch on 40 images, NumPy."""


@pytest.fixture(scope="session")
def bar_mnist(tmp_path_factory) -> Path:
    """An mnist.npz of 600 training and 100 test ``bar_digits`` (shared, read only)."""
    return write_bar_mnist(tmp_path_factory.mktemp("data") / "mnist.npz")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, bar_mnist) -> tuple[Path, str]:
    """A run folder of ``gpumlp train`` (2 epochs on ``bar_mnist``) and what it printed."""
    out = tmp_path_factory.mktemp("run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPUMLP_BACKEND", "numpy")
        code, stdout, stderr = run("train", "--data", bar_mnist, *TRAIN_FLAGS, "--out", out)
    assert code == 0, stderr
    return out, stdout


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data file, run folder of a finished 1-epoch ``gpumlp train`` on it): the files the
    bad-command-line tests name (shared; a test may only read them)."""
    base = tmp_path_factory.mktemp("cli")
    data = npz_maker()(base)
    out = base / "run"
    assert run("train", "--data", data, *QUICK_FLAGS, "--out", out)[0] == 0
    return data, out


# -- learning curves ----------------------------------------------------------------------------

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed"
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file; fails if ``path`` is no PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


@pytest.fixture
def history_dir(blobs, tmp_path) -> Path:
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


# -- faults: a full disk, a step out of memory --------------------------------------------------


def temp_files(folder: Path) -> list[str]:
    """The names of the temp files (``*.tmp``) in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class DiskFull:
    """Make writes of temp files named ``prefix...`` fail half-way with ENOSPC, from the
    ``after + 1``-th such file on (patches what checkpoint.atomic_write_bytes calls)."""

    def __init__(self, monkeypatch, prefix: str, after: int) -> None:
        real_mkstemp, real_fdopen = tempfile.mkstemp, os.fdopen
        self.seen, doomed = 0, set()

        def mkstemp(*args, **kwargs):
            fd, name = real_mkstemp(*args, **kwargs)
            if Path(name).name.startswith(prefix):
                self.seen += 1
                if self.seen > after:
                    doomed.add(fd)
            return fd, name

        def fdopen(fd, *args, **kwargs):
            f = real_fdopen(fd, *args, **kwargs)
            if fd in doomed:
                doomed.discard(fd)
                return _HalfWrite(f)
            return f

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(os, "fdopen", fdopen)


class _HalfWrite:
    def __init__(self, f) -> None:
        self.f = f

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def fail_on_step(monkeypatch, call: int, exc: BaseException) -> None:
    """Make the ``call``-th training step raise ``exc`` (as an allocation failure would), with
    the memory check before training passed (the memory runs out later, mid-run)."""
    import gpumlp.engines._numpy_fast
    import gpumlp.memory
    import gpumlp.model

    real, calls = gpumlp.engines._numpy_fast.NumpyStep.__call__, [0]

    def failing(self, *a, **k):
        calls[0] += 1
        if calls[0] == call:
            raise exc
        return real(self, *a, **k)

    monkeypatch.setattr(gpumlp.engines._numpy_fast.NumpyStep, "__call__", failing)
    monkeypatch.setattr(gpumlp.model, "check_training_fits", lambda *a, **k: None)
