"""The suite's fixtures, each defined once; the plain helpers they use live in ``tests/helpers/``
(``from helpers.cli import run``, ...: see ``helpers/__init__.py``).

- the GPU switch, the ``emulated`` marker and the ``backend`` fixture;
- small problems and networks: ``blobs``, ``fitted``, ``saved``, ``model_file``;
- MNIST files: ``mirror`` (a small pickle served as the download source), ``bar_mnist``;
- the command line: ``numpy_env``, and the run folders the CLI tests share, ``trained_run`` and
  ``quick_run``; a learning curve's ``history_dir``;
- a sweep's database: ``postgres``, a PostgreSQL server of the test's own (skipped where none
  can start);
- the CUDA emulation's ``cxx20`` and ``fake_cupy`` (from ``cuda_emu.fixtures``);
- the native engine's build cache, ``native_cache`` (a folder of the session).

``GPUMLP_REQUIRE_GPU=1`` turns every skipped ``gpu`` test into a failure, so a run on a GPU
machine can never look green by skipping (``scripts/gpu_check.sh`` sets it).
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from cuda_emu.fixtures import cxx20, fake_cupy  # noqa: F401  (fixtures for every test file)
from gpumlp.backend import cupy_status
from gpumlp.data import fetch
from helpers.bad_files import npz_maker
from helpers.cli import QUICK_FLAGS, TRAIN_FLAGS, run
from helpers.data import book_splits, write_bar_mnist, write_pkl
from helpers.machines import server, server_unavailable
from helpers.nets import small_net

REQUIRE_GPU = os.environ.get("GPUMLP_REQUIRE_GPU", "").strip() == "1"

# -- the signals a test sends the commands it starts -------------------------------------------


def _ignored(signum, frame) -> None:
    """This process goes on ignoring the signal; a command it starts gets the default."""


def pytest_configure(config):
    """A test run started as a background job inherits SIGINT ignored, one under ``nohup``
    SIGHUP ignored, and an ignored signal stays ignored across ``exec``: every command a test
    starts would ignore the Ctrl-C or hangup the test sends it (gpumlp rightly keeps an ignored
    signal ignored). A handler is reset to the default at ``exec``, so one that does nothing
    gives every command the default dispositions while this process still ignores the signals,
    and no child needs a ``preexec_fn`` (which makes ``subprocess`` fork this process)."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, _ignored)


# -- the native engine's build cache ------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def native_cache(tmp_path_factory) -> Iterator[Path]:
    """The native engine's libraries are built into a folder of this session
    (``$XDG_CACHE_HOME``, inherited by the commands tests start): once per session and dtype,
    and never into the user's cache."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


# -- the GPU switch, the emulated marker, the backend fixture -----------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_GPU and report.skipped and item.get_closest_marker("gpu") is not None:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"GPUMLP_REQUIRE_GPU=1, but this gpu test was skipped: {reason}"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark ``emulated`` each test that runs CUDA code on the emulator: it uses the ``cxx20``
    fixture, itself or through ``fake_cupy``. The planted bugs (``mutants``) keep their own run."""
    for item in items:
        uses = getattr(item, "fixturenames", ())
        if "cxx20" in uses and item.get_closest_marker("mutants") is None:
            item.add_marker(pytest.mark.emulated)


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


@pytest.fixture
def blobs():
    """A tiny separable 3-class problem: (X (90, 4) float64, y (90,) int64)."""
    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = np.repeat(np.arange(3), 30)
    X = centers[y] + 0.3 * rng.standard_normal((90, 4))
    return X, y


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


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """``small_net()`` saved as a model file (shared, read only)."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    small_net().save(path)
    return path


# -- MNIST files --------------------------------------------------------------------------------


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


@pytest.fixture(scope="session")
def bar_mnist(tmp_path_factory) -> Path:
    """An mnist.npz of 600 training and 100 test ``bar_digits`` (shared, read only)."""
    return write_bar_mnist(tmp_path_factory.mktemp("data") / "mnist.npz")


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def numpy_env(monkeypatch):
    """``GPUMLP_BACKEND=numpy`` for the test: commands without ``--backend`` run on NumPy."""
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")


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


# -- a sweep's database -------------------------------------------------------------------------


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server of the test's own (``helpers.machines.server``): its SQLAlchemy URL.
    Skipped, saying why, where no server can start."""
    why = server_unavailable()
    if why is not None:
        pytest.skip(why)
    with server(tmp_path) as url:
        yield url
