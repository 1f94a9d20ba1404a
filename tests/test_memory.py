"""Tests for gpumlp.memory: host and device memory stay flat across epochs, an allocation
failure mid-run becomes an OutOfMemory that says what would fit (with the last finished epoch's
weights kept), other errors pass through undressed, and what counts as out of memory.
(The command line out of memory is in test_cli_train.py.)"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from conftest import fail_on_step
from gpumlp import OutOfMemory, backend, memory

# -- memory that must stay flat -----------------------------------------------------------------


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


# -- out of memory ------------------------------------------------------------------------------

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
