"""Faults: Ctrl-C and ``kill -9`` during training, unwritable folders and full disks, memory
that must stay flat, evaluation in chunks, and out-of-memory errors that say what would fit.

Subprocess runs train a [784, 200, 10] network with batch size 1 on 400 synthetic images:
about 0.15 s an epoch, slow enough to be interrupted mid-run, fast enough for a test.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from conftest import reap, write_tiny_mnist
from gpumlp import OutOfMemory, backend, memory
from gpumlp.checkpoint import read_checkpoint
from gpumlp.cli import main

ENV = {**os.environ, "GPUMLP_BACKEND": "numpy", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
SLOW = ["--sizes", "784,200,10", "--batch-size", "1", "--limit", "400", "--seed", "0"]
SLOW += ["--checkpoint-every", "1", "--quiet"]


@pytest.fixture(autouse=True)
def _numpy_backend(monkeypatch):
    monkeypatch.setenv("GPUMLP_BACKEND", "numpy")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A tiny MNIST npz: 480 training images (400 train + 80 validation), 100 test images."""
    return write_tiny_mnist(tmp_path_factory.mktemp("data") / "mnist.npz", 480, 100)


def train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gpumlp", "train", "--data", str(data), *SLOW, "--out", str(out),
            *extra]  # fmt: skip


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.01)


def epochs_of(run: Path) -> list[int]:
    return [r["epoch"] for r in json.loads((run / "history.json").read_text())["epochs"]]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- Ctrl-C and kill -9 ------------------------------------------------------------------------


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and a child inherits that: Python then
    # installs no KeyboardInterrupt handler. Ctrl-C reaches a foreground process, so give the
    # child the default disposition whatever way this test run itself was started.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_saves_a_checkpoint_that_resumes(data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        train_cmd(data, run, "--epochs", "1000"),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        wait_for(run / "checkpoint.npz", proc)
        time.sleep(0.2)  # into a later epoch
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and f"gpumlp train --resume {run}" in stderr
    assert "Traceback" not in stderr
    finished = epochs_of(run)
    assert finished == list(range(len(finished))) and len(finished) >= 1
    meta, _ = read_checkpoint(run / "checkpoint.npz")
    assert meta["epoch"] == len(finished)
    assert meta["history"]["stop_reason"].startswith("interrupted during epoch")
    assert gpumlp.load(run / "checkpoint.npz", backend="numpy").sizes == [784, 200, 10]
    assert not (run / "model.npz").exists()

    target = len(finished) + 2
    code, stdout, stderr = cli("train", "--resume", run, "--epochs", target)
    assert code == 0, stderr
    assert f"Epoch {len(finished)}: " in stdout
    assert epochs_of(run) == list(range(target))
    assert json.loads((run / "history.json").read_text())["stop_reason"] is None


def test_kill_9_never_leaves_a_damaged_checkpoint(data, tmp_path):
    run, rng = tmp_path / "run", random.Random(0)
    ckpt = run / "checkpoint.npz"
    for attempt in range(5):
        resume = ["--resume", str(run)] if ckpt.exists() else []
        before = set(temp_files(run)) if run.exists() else set()
        proc = subprocess.Popen(
            train_cmd(data, run, "--epochs", "1000", *resume),
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if attempt == 4:  # the last time, aim at a checkpoint being written
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and not any(
                    name.startswith(".checkpoint.npz.") and name not in before
                    for name in (temp_files(run) if run.exists() else [])
                ):
                    time.sleep(0.0005)
            else:
                time.sleep(rng.uniform(0.5, 1.5))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            reap(proc)
        if ckpt.exists():  # whatever the moment, the checkpoint is whole, never damaged
            meta, _ = read_checkpoint(ckpt)
            assert meta["epoch"] == len(meta["history"]["epochs"])
            gpumlp.load(ckpt, backend="numpy")
    assert ckpt.exists()
    # Leftover temp files (a write cut short) are hidden and do not get in the way of a resume.
    assert all(name.startswith(".") for name in temp_files(run))
    epoch = read_checkpoint(ckpt)[0]["epoch"]
    code, _, stderr = cli("train", "--resume", run, "--epochs", epoch + 1)
    assert code == 0, stderr
    assert epochs_of(run) == list(range(epoch + 1))


# -- unwritable folders and full disks ---------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_read_only_out_folder_is_refused_before_training(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o500)
    try:
        code, stdout, stderr = cli("train", "--data", data, *SLOW, "--out", run)
    finally:
        run.chmod(0o700)
    assert code == 2
    assert stderr.startswith("gpumlp: error: --out") and "is not writable" in stderr
    assert "Epoch" not in stdout and not list(run.iterdir())


@pytest.mark.parametrize(
    ("target", "error", "gist"),
    [
        ("mkstemp", errno.EACCES, "Permission denied"),  # a read-only folder, simulated
        ("write", errno.ENOSPC, "No space left on device"),  # a full disk
    ],
)
def test_unwritable_out_folder_is_refused_before_training(
    data, tmp_path, monkeypatch, target, error, gist
):
    def fail(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(*((tempfile, "mkstemp") if target == "mkstemp" else (os, "write")), fail)
    run = tmp_path / "run"
    code, stdout, stderr = cli("train", "--data", data, *SLOW, "--out", run)
    monkeypatch.undo()
    assert code == 2
    assert stderr == f"gpumlp: error: --out {str(run)!r} is not writable: {gist}\n"
    assert "Epoch" not in stdout and not list(run.iterdir())


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


def test_disk_full_mid_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    X = np.random.default_rng(0).random((40, 4))
    y = np.arange(40) % 3
    ckpt = tmp_path / "checkpoint.npz"
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    full = DiskFull(monkeypatch, ".checkpoint.npz.", after=1)
    with pytest.raises(OSError) as info:
        net.fit(X, y, epochs=4, batch_size=8, lr=0.5, checkpoint=ckpt, checkpoint_every=1)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and full.seen == 2
    meta, _ = read_checkpoint(ckpt)  # the one written after epoch 0, intact
    assert meta["epoch"] == 1
    assert temp_files(tmp_path) == []


def test_disk_full_on_the_command_line(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    DiskFull(monkeypatch, ".checkpoint.npz.", after=2)
    code, stdout, stderr = cli("train", "--data", data, *SLOW, "--epochs", "5", "--out", run)
    monkeypatch.undo()
    assert code == 2
    assert stderr.startswith(f"gpumlp: error: cannot write {str(run / 'checkpoint.npz')!r}: ")
    assert "No space left on device" in stderr and stderr.count("\n") == 1
    assert "Epoch 1: " in stdout
    assert read_checkpoint(run / "checkpoint.npz")[0]["epoch"] == 2
    assert temp_files(run) == []


# -- memory ------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_host_memory_stays_flat_across_epochs():
    # 1000 examples: the first epoch's buffers may stay in malloc's heap once (glibc raises
    # its mmap threshold after the first free), within the slack; anything leaked every epoch
    # (a copy of the 3 MiB data set, say) would exceed it.
    rng = np.random.default_rng(0)
    X, y = rng.random((1000, 784), dtype=np.float32), rng.integers(0, 10, 1000)
    net = gpumlp.Network([784, 64, 10], backend="numpy", seed=0)
    rss = []

    def measure(record):
        gc.collect()
        rss.append(rss_bytes())

    every = ("train_cost", "train_accuracy", "val_cost", "val_accuracy")
    net.fit(X, y, epochs=7, batch_size=20, lr=0.5, validation_data=(X[:500], y[:500]),
            monitor=every, on_epoch=measure)  # fmt: skip
    growth = max(rss[1:]) - rss[1]
    assert growth < 5 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 5 epochs: {rss}"


@pytest.mark.gpu
@pytest.mark.skipif(not backend.cupy_status()[0], reason=backend.cupy_status()[1])
def test_device_memory_stays_flat_across_epochs():
    import cupy

    rng = np.random.default_rng(0)
    X, y = rng.random((3000, 784), dtype=np.float32), rng.integers(0, 10, 3000)
    net = gpumlp.Network([784, 64, 10], backend="cupy", seed=0)
    pool = cupy.get_default_memory_pool()
    used = []
    net.fit(X, y, epochs=7, batch_size=20, lr=0.5, validation_data=(X[:500], y[:500]),
            on_epoch=lambda r: used.append(pool.used_bytes()))  # fmt: skip
    assert max(used[1:]) - used[1] < 2**20, used


# -- evaluation in chunks ----------------------------------------------------------------------


@pytest.fixture
def rows_seen(monkeypatch) -> dict[str, list[int]]:
    """Record the rows of every forward pass made by the Network facade and by evaluation."""
    import gpumlp.model
    import gpumlp.train

    seen = {"model": [], "train": []}
    for module in (gpumlp.model, gpumlp.train):
        real, key = module.feedforward, module.__name__.split(".")[-1]

        def spy(params, x, *args, _real=real, _key=key, **kwargs):
            seen[_key].append(x.shape[0])
            return _real(params, x, *args, **kwargs)

        monkeypatch.setattr(module, "feedforward", spy)
    return seen


def test_predict_and_evaluate_work_in_chunks(rows_seen):
    rng = np.random.default_rng(0)
    X, y = rng.random((25, 4)), rng.integers(0, 3, 25)
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    whole = np.asarray(net.feedforward(X, chunk=1000))
    assert rows_seen["model"] == [25]
    rows_seen["model"].clear()
    assert np.array_equal(np.asarray(net.feedforward(X, chunk=10)), whole)
    assert rows_seen["model"] == [10, 10, 5]
    rows_seen["model"].clear()
    assert np.array_equal(np.asarray(net.predict(X, chunk=7)), whole.argmax(axis=1))
    assert rows_seen["model"] == [7, 7, 7, 4]
    chunked, whole = net.evaluate(X, y, chunk=9), net.evaluate(X, y, chunk=100)
    assert chunked["accuracy"] == whole["accuracy"]
    assert chunked["cost"] == pytest.approx(whole["cost"], rel=1e-6)  # float32 sums, reordered
    assert rows_seen["train"] == [9, 9, 7, 25]


def test_validation_during_fit_works_in_chunks(rows_seen, monkeypatch):
    import gpumlp.model

    monkeypatch.setattr(gpumlp.model, "DEFAULT_CHUNK", 10)
    rng = np.random.default_rng(0)
    X, y = rng.random((30, 4)), rng.integers(0, 3, 30)
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    net.fit(X, y, epochs=2, batch_size=30, lr=0.1, validation_data=(X[:25], y[:25]))
    assert rows_seen["train"] == [10, 10, 5] * 2


# -- out of memory -----------------------------------------------------------------------------


def fail_on_step(monkeypatch, call: int, exc: BaseException) -> None:
    """Make the ``call``-th training step raise ``exc`` (as an allocation failure would), with
    the memory check before training passed (the memory runs out later, mid-run)."""
    import gpumlp._numpy_fast
    import gpumlp.memory
    import gpumlp.model

    real, calls = gpumlp._numpy_fast.NumpyStep.__call__, [0]

    def failing(self, *a, **k):
        calls[0] += 1
        if calls[0] == call:
            raise exc
        return real(self, *a, **k)

    monkeypatch.setattr(gpumlp._numpy_fast.NumpyStep, "__call__", failing)
    monkeypatch.setattr(gpumlp.model, "check_training_fits", lambda *a, **k: None)


OOM_X = np.random.default_rng(0).random((200, 784))
OOM_Y = np.arange(200) % 10


@pytest.mark.parametrize(
    ("free", "largest", "gist"),
    [
        (100_000, 22, "the largest batch that fits is about 22; try batch_size=22 or less"),
        (2**30, 246271, "enough for it: the data set"),
        (100, 0, "not even one example fits"),
        (None, None, "try a smaller batch_size"),
    ],
    ids=["some-free", "plenty-free", "none-free", "unknown"],
)
def test_out_of_memory_says_what_fits(monkeypatch, free, largest, gist):
    # One example of [784, 16, 10] float32 keeps z, a and delta of 26 units and its input and
    # target rows (784 + 10): 872 values, 3488 bytes; 80% of 100,000 bytes free holds 22.
    fail_on_step(monkeypatch, 6, MemoryError("Unable to allocate 1.00 GiB"))
    import gpumlp.memory

    net = gpumlp.Network([784, 16, 10], backend="numpy", seed=0)
    ref = gpumlp.Network([784, 16, 10], backend="numpy", seed=0)
    monkeypatch.setattr(gpumlp.memory, "free_memory", lambda xp: free)
    with pytest.raises(OutOfMemory) as info:
        net.fit(OOM_X, OOM_Y, epochs=3, batch_size=50, lr=0.5)
    message = str(info.value)
    assert isinstance(info.value, MemoryError)
    assert message.startswith("out of host memory training sizes=[784, 16, 10] (float32)")
    assert "batch_size=50" in message and "3488 bytes per example" in message
    assert gist in message and message.endswith("(MemoryError)")
    assert (info.value.batch_size, info.value.largest_batch) == (50, largest)
    # The failure came in epoch 1 (step 6 of 4 per epoch): epoch 0's weights are kept.
    monkeypatch.undo()
    ref.fit(OOM_X, OOM_Y, epochs=1, batch_size=50, lr=0.5)
    for a, b in zip(net.params.arrays(), ref.params.arrays(), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_other_errors_in_a_step_are_not_dressed_up(monkeypatch):
    fail_on_step(monkeypatch, 2, ZeroDivisionError("a bug"))
    net = gpumlp.Network([784, 16, 10], backend="numpy", seed=0)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        net.fit(OOM_X, OOM_Y, epochs=1, batch_size=50, lr=0.5)


def test_out_of_memory_on_the_command_line(data, tmp_path, monkeypatch):
    fail_on_step(monkeypatch, 3, MemoryError("Unable to allocate"))
    import gpumlp.memory
    import gpumlp.runner

    for module in (gpumlp.runner, gpumlp.model):
        monkeypatch.setattr(module, "check_model_fits", lambda *a, **k: None)
    monkeypatch.setattr(gpumlp.runner, "check_training_fits", lambda *a, **k: None)
    monkeypatch.setattr(gpumlp.memory, "free_memory", lambda xp: 100_000)
    code, _, stderr = cli("train", "--data", data, *SLOW, "--batch-size", "50", "--out", tmp_path)
    assert code == 2
    assert stderr.startswith("gpumlp: error: out of host memory training sizes=[784, 200, 10]")
    assert "try batch_size=" in stderr and stderr.count("\n") == 1


def fake_cupy_error(name: str, message: str) -> Exception:
    cls = type(name, (RuntimeError,), {"__module__": "cupy_backends.cuda.api.runtime"})
    return cls(message)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (MemoryError("Unable to allocate"), True),
        (fake_cupy_error("OutOfMemoryError", "x"), False),  # CuPy's real one is a MemoryError
        (fake_cupy_error("CUDARuntimeError", "cudaErrorMemoryAllocation: out of memory"), True),
        (fake_cupy_error("CUBLASError", "CUBLAS_STATUS_ALLOC_FAILED"), True),
        (fake_cupy_error("CUDARuntimeError", "cudaErrorInvalidValue: invalid argument"), False),
        (RuntimeError("cudaErrorMemoryAllocation"), False),  # not from CuPy
        (ValueError("out of memory"), False),
    ],
)
def test_is_out_of_memory(exc, expected):
    assert memory.is_out_of_memory(exc) is expected


def test_free_memory_on_the_host_is_known_on_linux():
    free = memory.free_memory(backend.get_namespace("numpy"))
    if Path("/proc/meminfo").exists():
        assert isinstance(free, int) and free > 0
