"""The persistent engine (gpumlp.engines._persistent): a whole epoch in one kernel launch.

- everywhere: when it applies (the shared memory a network and batch need against the device's
  opt-in limit) and the refusals, with their reasons;
- emulated (the real kernels on the CPU, :mod:`cuda_emu`, with a block of 64 threads): every
  (hidden, output, cost) combination with the optimizers in turn, whole epochs against
  :class:`gpumlp.engines.steps.GenericStep` in float64 (≤ 1e-10 relative), single steps in
  float32 within the derived band (:mod:`helpers.stepcheck`), penalties, dropout and batch
  shapes 1, 17 and a short last batch; one launch and no host read per epoch.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import numpy as np
import pytest

from cuda_emu import emulator
from gpumlp import DivergedError, Network, engines
from gpumlp.costs import VALID_PAIRS
from gpumlp.engines import _cupy_fast, _kernels, _persistent, _persistent_src
from gpumlp.optim import OPTIMIZERS
from helpers.nets import HIDDEN, host
from helpers.stepcheck import N, compare_steps, epochs_against_generic, rel, setup

H100_OPTIN = 227 * 1024
COMBOS = [
    (h, o, c, OPTIMIZERS[i % len(OPTIMIZERS)])
    for i, (h, (o, c)) in enumerate(itertools.product(HIDDEN, VALID_PAIRS))
]


@pytest.fixture
def small_block(fake_cupy, monkeypatch):
    """The fake CuPy, the persistent kernel launched with 64 threads (one OS thread each)."""
    monkeypatch.setattr(_persistent, "THREADS", 64)
    return fake_cupy


# -- everywhere: when it applies ---------------------------------------------------------------


def test_the_books_network_fits_an_h100_block_in_float32_not_at_a_large_batch_in_float64():
    assert _persistent.too_big([784, 30, 10], 10, "float32", False, H100_OPTIN) is None
    assert _persistent.too_big([784, 30, 10], 10, "float64", False, H100_OPTIN) is None
    why = _persistent.too_big([784, 30, 10], 100, "float64", False, H100_OPTIN)
    assert why is not None and "[784, 30, 10] in float64 at batch 100 needs" in why
    assert f"more than the device's {H100_OPTIN}" in why
    assert _persistent.too_big([784, 100, 10], 10, "float32", False, H100_OPTIN) is not None


def test_shared_bytes_counts_parameters_activations_and_dropout():
    # [2, 3, 1]: 9 + 4 = 13 parameters; per row z, a, δ of 3 and 1 units (12 reals), the
    # hidden layer's dropped copy (3 more), the row's cost (1 real) and hit (4 bytes).
    assert _persistent.shared_bytes([2, 3, 1], 5, 8, dropout=False) == (13 + 5 * 12 + 5) * 8 + 20
    assert _persistent.shared_bytes([2, 3, 1], 5, 8, dropout=True) == (13 + 5 * 15 + 5) * 8 + 20


def test_persistent_off_cupy_is_refused():
    net = Network([2, 2], backend="numpy")
    X, y = np.zeros((4, 2)), np.zeros(4, dtype=int)
    with pytest.raises(ValueError, match="engine='persistent' needs the CuPy backend"):
        net.fit(X, y, epochs=1, batch_size=2, lr=0.1, engine="persistent")


def test_a_network_too_big_for_one_block_is_refused_with_the_sizes(fake_cupy):
    combo = ("sigmoid", "softmax", "log_likelihood", "sgd")
    _, state, data = setup("cupy", "float64", combo, sizes=(7, 4000, 5), batch=10)
    with pytest.raises(ValueError, match=r"engine='persistent' does not apply here: \[7, 4000, 5\] "
                       r"in float64 at batch 10 needs \d+ bytes of shared memory"):  # fmt: skip
        engines.select_step(state, data, engine="persistent")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_kernels_fit_a_block_of_the_most_threads(dtype, tmp_path):
    # an H100 SM has 65,536 registers: a kernel over 64 a thread cannot launch 1024 threads
    # ("too many resources requested"), which no emulated test would see
    src = tmp_path / "kernels.cu"
    src.write_text(_kernels.kernel_source(dtype))
    cmd = ["nvcc", "-arch=sm_90", "-cubin", "--std=c++14", "-Xptxas", "-v", "-o",
           str(tmp_path / "k.cubin"), str(src)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    used = dict(re.findall(r"entry function '(persistent_\w+)'.*?Used (\d+) registers",
                           done.stderr, flags=re.S))  # fmt: skip
    assert set(used) == {_persistent_src.persistent_name(n) for n in OPTIMIZERS}
    for name, registers in used.items():
        assert int(registers) * _persistent_src.MAX_THREADS <= 65536, (name, registers)


# -- emulated: against the generic step ---------------------------------------------------------


def _epochs(combo, dtype="float64", **kw):
    """The worst relative difference of the persistent and the generic engine after
    :func:`helpers.stepcheck.epochs_against_generic`'s epochs."""
    return epochs_against_generic("cupy", "persistent", combo, dtype, **kw)


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_an_epoch_matches_the_generic_epoch(small_block, combo):
    # 50 rows at batch 17: two full batches and a short last one (16 rows).
    assert _epochs(combo, batch=17, sizes=(7, 13, 5)) <= 1e-10


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_penalties_dropout_two_hidden_layers_and_batch_one(small_block, optimizer):
    combo = ("tanh", "softmax", "cross_entropy", optimizer)
    fit = {"l2": 0.5, "l1": 0.2, "dropout": 0.3, "sizes": (7, 13, 9, 5)}
    assert _epochs(combo, batch=17, epochs=2, **fit) <= 1e-10
    # 50 steps of one row: at rate 0.3 the steps amplify rounding differences (the L1 term's
    # sign flips near 0) past 1e-10 for every engine (fused too); at 0.05 they stay near 1e-14
    assert _epochs(combo, batch=1, lr=0.05, **fit) <= 1e-10


@pytest.mark.parametrize("rounding", emulator.ROUNDING)
@pytest.mark.parametrize("combo", COMBOS[::3], ids=["-".join(c) for c in COMBOS[::3]])
def test_float32_steps_within_the_band(small_block, combo, rounding):
    # a step is a one-batch epoch: batches of 1, 17 and 2 rows, from the same parameters, with
    # IEEE rounding and with the GPU's (FMA contraction, float32 flushed to zero)
    with emulator.configure(rounding=rounding):
        compare_steps("float32", combo, "persistent", [1, 17, 2], sizes=(7, 13, 9, 5),
                      l2=0.5, l1=0.2, dropout=0.3)  # fmt: skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_books_network_beyond_48_kb_of_shared_memory(small_block, dtype):
    # [784, 30, 10] at batch 10: 98 KB (float32), 196 KB (float64), past the 48 KB a launch
    # gets without raising the kernel's max_dynamic_shared_size_bytes
    combo = ("sigmoid", "softmax", "log_likelihood", "adam")
    compare_steps(dtype, combo, "persistent", [10, 10, 3], sizes=(784, 30, 10), floor64=1e-10,
                  dropout=0.2, l2=0.1)  # fmt: skip


def test_the_block_size_is_a_parameter(small_block, monkeypatch):
    combo = ("relu", "sigmoid", "cross_entropy", "adam")
    for threads in (32, 96):  # fewer threads than a batch's elements, and more than a warp
        monkeypatch.setattr(_persistent, "THREADS", threads)
        assert _epochs(combo, batch=17, sizes=(7, 13, 5), dropout=0.2) <= 1e-10


def test_the_kernel_is_race_and_bounds_clean(small_block):
    with emulator.configure(sanitize=True):
        combo = ("sigmoid", "softmax", "log_likelihood", "nesterov")
        assert _epochs(combo, batch=17, sizes=(5, 6, 4, 3), dropout=0.2, l2=0.1) <= 1e-10


# -- emulated: what an epoch costs -------------------------------------------------------------


def test_one_launch_and_no_host_read_per_epoch(small_block):
    combo = ("sigmoid", "softmax", "cross_entropy", "adam")
    _, state, data = setup("cupy", "float32", combo, engine="persistent", batch=3, dropout=0.1)
    step = engines.select_step(state, data, engine="persistent")
    import cupy

    perm = cupy.asarray(np.arange(N))
    step.epoch(perm, 0.1, 0)  # warm: the kernel's shared-memory limit raised once
    small_block.stats.reset()
    cost, _ = step.epoch(perm, 0.1, 17, monitor=("train_cost", "train_accuracy"))
    stats = small_block.stats.snapshot()
    assert stats["kernel"] == 1 and stats["graph"] == 0  # 17 batches, one launch
    assert stats["sync"] == 0, small_block.stats.where("sync")
    float(cost)  # the epoch loop's one read
    assert small_block.stats["sync"] == 1


def test_fit_with_the_persistent_engine_matches_numpy(small_block):
    rng = np.random.default_rng(0)
    X, y = rng.random((95, 7)), rng.integers(5, size=95)
    results = []
    for backend, engine in (("cupy", "persistent"), ("numpy", "generic")):
        net = Network([7, 13, 5], activation="relu", output_activation="softmax",
                      cost="log_likelihood", dtype="float64", backend=backend, seed=1)  # fmt: skip
        history = net.fit(X, y, epochs=3, batch_size=10, lr=0.05, optimizer="adam", seed=1,
                          engine=engine, dropout=0.1, l2=0.1,
                          monitor=("train_cost", "train_accuracy"))  # fmt: skip
        results.append((history, [host(t) for t in net.params.arrays()]))
    (h_fast, p_fast), (h_ref, p_ref) = results
    for p, q in zip(p_fast, p_ref, strict=True):
        assert rel(q, p) < 1e-10
    assert h_fast.column("train_accuracy") == h_ref.column("train_accuracy")
    assert h_fast.column("train_cost") == pytest.approx(h_ref.column("train_cost"), rel=1e-10)


def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(small_block, tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.random((45, 7)), rng.integers(5, size=45)

    def fit(epochs, **kw):
        net = Network([7, 13, 5], activation="relu", output_activation="softmax",
                      cost="log_likelihood", dtype="float32", backend="cupy", seed=1)  # fmt: skip
        net.fit(X, y, epochs=epochs, batch_size=10, lr=0.05, optimizer="adam", seed=1,
                engine="persistent", dropout=0.2, l2=0.1, **kw)  # fmt: skip
        return [host(t) for t in net.params.arrays()]

    ckpt = tmp_path / "checkpoint.npz"
    fit(2, checkpoint=ckpt)
    resumed, whole = fit(4, resume=ckpt), fit(4)
    for got, want in zip(resumed, whole, strict=True):
        np.testing.assert_array_equal(got, want)


def test_auto_takes_persistent_for_small_steps_of_a_network_that_fits(small_block):
    assert _cupy_fast.persistent_wins([784, 30, 10], 10)
    assert not _cupy_fast.persistent_wins([784, 30, 10], 100)
    combo = ("relu", "softmax", "log_likelihood", "momentum")
    _, state, data = setup("cupy", "float32", combo, engine="auto", batch=10)
    assert engines.select_step(state, data).engine == "persistent"
    # launch-bound, but beyond one block's shared memory: the graph engine
    _, state, data = setup("cupy", "float32", combo, engine="auto", sizes=(7, 8000, 5), batch=1)
    assert _cupy_fast.persistent_wins([7, 8000, 5], 1)
    assert engines.select_step(state, data).engine == "graph"


def test_the_block_is_whole_warps_enough_for_the_widest_phase():
    assert _persistent.threads_for([784, 30, 10], 10, 1024) == 1024  # 23,860 parameters
    assert _persistent.threads_for([7, 9, 5], 5, 1024) == 128  # 122 parameters
    assert _persistent.threads_for([2, 40, 1], 10, 64) == 64  # 400 units a batch, capped
    assert _persistent.threads_for([1, 1], 1, 1024) == 32


def test_divergence_is_caught_after_the_epoch_as_with_the_other_engines(small_block):
    # lr·l2/n = 3.0 * 120 / 90 = 4.0, past momentum 0.9's limit 3.8: the weights blow up
    rng = np.random.default_rng(0)
    X, y = rng.random((90, 4)), rng.integers(3, size=90)
    net = Network([4, 5, 3], backend="cupy", dtype="float32", seed=0)
    before = [host(t).copy() for t in net.params.arrays()]
    with pytest.raises(DivergedError, match="use a smaller l2") as info:
        with np.errstate(all="ignore"):
            net.fit(X, y, epochs=30, lr=3.0, l2=120.0, optimizer="momentum", seed=0,
                    engine="persistent")  # fmt: skip
    assert info.value.epoch >= 1
    kept = [host(t) for t in net.params.arrays()]  # the last finite epoch's weights
    assert all(np.isfinite(k).all() for k in kept)
    assert any(not np.array_equal(b, k) for b, k in zip(before, kept, strict=True))
