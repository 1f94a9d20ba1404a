"""The CuPy fast paths (gpumlp.engines._cupy_fast, _cupy_core, _kernels, _launch) against the
generic step.

Two kinds of test:

- everywhere: the rules that choose and qualify the engines, and the generated kernel source
  (compiled with nvcc where it is installed);
- emulated, in every CI run: the real host code on the fake CuPy of ``tests/cuda_emu``, with the
  unmodified kernels compiled by the host's C++ compiler and run one OS thread per CUDA thread.
  Each engine is compared step by step with :class:`gpumlp.engines.steps.GenericStep` on NumPy, for
  every (hidden, output, cost) combination with every optimizer, penalties, dropout and odd
  batch shapes; host synchronisations and launches per step are counted.

The same comparisons run on a real GPU in ``test_cupy_gpu.py`` (marked ``gpu``).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cuda_emu import emulator
from gpumlp import Network, engines, get_namespace
from gpumlp.activations import ACTIVATIONS, ULP_BUDGET, Activation
from gpumlp.config import TrainConfig
from gpumlp.costs import VALID_PAIRS
from gpumlp.dropout import keep_masks
from gpumlp.engines import _cupy_fast, _kernels, _launch
from gpumlp.optim import OPTIMIZERS, PENALTY_CUDA, SGD, get_optimizer
from gpumlp.runstate import TrainState
from helpers.nets import HIDDEN, assert_same_params, host, on_namespace_of, params_of
from helpers.stepcheck import N, compare_steps, epochs_against_generic, rel, setup

# Every (hidden, output, cost), the optimizers taken in turn, so each optimizer meets several
# output errors without the full product.
COMBOS = [
    (h, o, c, OPTIMIZERS[i % len(OPTIMIZERS)])
    for i, (h, (o, c)) in enumerate(itertools.product(HIDDEN, VALID_PAIRS))
]
# -- everywhere: the rules ---------------------------------------------------------------------


def test_module_imports_without_cupy():
    code = (
        "import sys, gpumlp.engines._cupy_fast, gpumlp.engines._kernels as k\n"
        "assert 'cupy' not in sys.modules, 'importing the fast path imported CuPy'\n"
        "assert 'typedef double real;' in k.kernel_source('float64')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_auto_takes_the_graph_only_where_steps_are_launch_bound():
    assert _cupy_fast.launch_bound([784, 30, 10], 10)
    assert not _cupy_fast.launch_bound([784, 30, 10], 100)
    assert not _cupy_fast.launch_bound([784, 800, 10], 100)
    assert not _cupy_fast.launch_bound([784, 4096, 4096, 10], 1024)


def test_qualification_rules_give_reasons():
    _, state, _ = setup("numpy", "float64", ("sigmoid", "sigmoid", "quadratic", "sgd"))
    assert "need the CuPy backend" in _cupy_fast.unsupported(state, engine="fused")
    assert "not a CuPy fast path" in _cupy_fast.unsupported(state, engine="generic")
    step, why = _cupy_fast.make_step(state, None, engine="fused")
    assert step is None and "CuPy" in why


def _impostor(name: str) -> Activation:
    """An activation a user made, with a CUDA form, named ``name``: the kernels know only the
    registry's own, so the fast paths must not take it for one of them."""
    s = ACTIVATIONS["sigmoid"]
    return Activation(name, lambda z, *, xp: s.fn(2.0 * z, xp=xp),
                      lambda z, a, *, xp: 2.0 * a * (1.0 - a),
                      cuda_fn="return z;", cuda_prime="return (real)1;")  # fmt: skip


@pytest.mark.parametrize("name", ["swish", "sigmoid"])
def test_a_users_activation_is_never_run_by_the_kernels(fake_cupy, name):
    rng = np.random.default_rng(0)
    X, y = rng.random((20, 3)), np.arange(20) % 2

    def impostor_net():
        return Network([3, 4, 2], activation=_impostor(name), output_activation="sigmoid",
                       backend="cupy", seed=0)  # fmt: skip

    net = impostor_net()
    with pytest.raises(ValueError, match=f"hidden activation '{name}' has no CUDA form"):
        net.fit(X, y, epochs=1, engine="fused")
    probe = impostor_net()
    cfg = TrainConfig(epochs=1, engine="auto")
    state = TrainState.start(probe.spec, probe.params, cfg, np.random.default_rng(0))
    assert engines.select_step(state, probe.inputs.data(X, y)).engine == "generic"
    history = net.fit(X, y, epochs=1, engine="auto")  # falls back to the generic step
    assert len(history) == 1
    generic = impostor_net()
    generic.fit(X, y, epochs=1, engine="generic")
    assert_same_params(params_of(net), params_of(generic))


@pytest.mark.parametrize("engine", ["graph", "fused"])
def test_fast_engines_off_their_backend_are_refused(engine):
    strict = pytest.importorskip("array_api_strict")
    _, state, data = setup(strict, "float64", ("relu", "softmax", "log_likelihood", "sgd"))
    with pytest.raises(ValueError, match=f"engine='{engine}' needs the"):
        engines.select_step(state, data, engine=engine)
    assert engines.select_step(state, data, engine="auto").engine == "generic"


def test_kernel_codes_come_from_the_registries():
    source, codes = _kernels.kernel_source("float32"), _kernels.codes()
    for name, code in codes.act.items():
        assert f"#define ACT_{name.upper()} {code}" in source
    for name in OPTIMIZERS:  # each optimizer its own kernels, from its entry's CUDA form
        form, (update, prepare) = get_optimizer(name).cuda(), _kernels.optimizer_kernels(name)
        assert f'extern "C" __global__ void {update}(' in source
        assert all(f"        {line}\n" in source for line in form.update.splitlines())
        assert (prepare is None) == (form.prepare is None)
        assert prepare is None or f'extern "C" __global__ void {prepare}(' in source
        assert {update, prepare} - {None} <= set(_launch.KERNEL_NAMES)
    assert source.count(PENALTY_CUDA) == 1
    for act in ACTIVATIONS.values():
        if act.cuda_fn:
            assert act.cuda_fn in source and act.cuda_prime in source
    assert "#define SIGMOID_FLOOR ((real)-87)" in source  # ceil(ln smallest_normal)
    assert "#define SIGMOID_FLOOR ((real)-708)" in _kernels.kernel_source("float64")


def test_shared_constants_and_arguments_come_from_the_source():
    source = _kernels.kernel_source("float64")
    assert f"#define TILE {_kernels.TILE}" in source
    assert f"#define BATCH_END_THREADS {_kernels.BATCH_END_THREADS}" in source
    for i, name in enumerate(_kernels.COUNTERS):
        assert f"#define C_{name.upper()} {i}" in source
    adam = get_optimizer("adam").cuda()
    for i, slot in enumerate(_kernels.hyper_slots(adam)):
        assert f"#define H_{slot.upper()} {i}" in source
    sig = _launch.signatures("float64")
    assert set(sig) == set(_launch.KERNEL_NAMES)
    assert [p.name for p in sig["update_momentum"]][-1] == "mu"
    pack = _launch.packers("float64")["col_sum"]
    d, out = np.zeros(3), np.zeros(1)
    args = pack({"n": 1, "m": 3, "out": out, "delta": d})  # by name, in the source's order
    assert args[:2] == (d, out) and type(args[2]) is np.int32 and args[2] == 3
    with pytest.raises(TypeError, match=r"kernel col_sum takes \['delta', 'out', 'm', 'n'\]"):
        pack({"delta": d, "out": out, "m": 3})


def test_a_users_optimizer_is_never_run_by_the_kernels():
    class Impostor(SGD):  # registered under no name of its own: the kernels know only SGD's
        pass

    _, state, _ = setup("numpy", "float64", ("sigmoid", "sigmoid", "quadratic", "sgd"))
    assert "need the CuPy backend" in _cupy_fast.unsupported(state, engine="fused")
    state.optimizer = Impostor()
    assert "optimizer 'sgd' has no CUDA form" in _cupy_fast.unsupported(state, engine="fused")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_compile_with_nvcc(dtype, tmp_path):
    src = tmp_path / f"kernels_{dtype}.cu"
    src.write_text(_kernels.kernel_source(dtype))
    out = tmp_path / "kernels.cubin"
    cmd = ["nvcc", "-arch=sm_90", "-cubin", "--std=c++14", "-Werror", "all-warnings"]
    done = subprocess.run([*cmd, "-o", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    binary = out.read_bytes()
    for name in _launch.KERNEL_NAMES:  # extern "C": the names are in the symbol table as written
        assert name.encode() + b"\0" in binary, name


# -- emulated: each engine against the generic step --------------------------------------------


@pytest.fixture(params=emulator.ROUNDING)
def rounded_cupy(request, fake_cupy):
    """The fake CuPy, its kernels built with IEEE rounding, then with the GPU's (FMA
    contraction; float32 flushed to zero)."""
    with emulator.configure(rounding=request.param):
        yield fake_cupy


@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_engine_matches_generic(rounded_cupy, combo, engine):
    compare_steps("float64", combo, engine, [10, 10, 3])
    compare_steps("float32", combo, engine, [10, 3])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_engine_penalties_dropout_and_odd_shapes(rounded_cupy, optimizer, engine, dtype):
    # batch 1, 17 and 33 (not multiples of the 16-wide GEMM tile), 17 again (a replayed graph),
    # then 2 (a short last batch); two hidden layers, so each draws its own dropout mask.
    combo = ("tanh", "softmax", "cross_entropy", optimizer)
    compare_steps(dtype, combo, engine, [1, 17, 33, 17, 2], sizes=(7, 13, 9, 5), l2=0.5,
                  l1=0.2, dropout=0.3)  # fmt: skip


# -- emulated: whole epochs, and what a step costs ---------------------------------------------


@pytest.mark.parametrize("engine", ["generic", "fused", "graph"])
def test_an_epoch_matches_the_generic_epoch(fake_cupy, engine):
    # 50 rows at batch 3: a short last batch; two epochs, each its own order and dropout draws
    combo = ("relu", "softmax", "log_likelihood", "momentum")
    assert epochs_against_generic("cupy", engine, combo, batch=3, epochs=2, dropout=0.2) < 1e-12


@pytest.mark.parametrize("engine", ["generic", "fused", "graph"])
def test_steps_and_epochs_never_synchronise(fake_cupy, engine):
    combo = ("sigmoid", "softmax", "cross_entropy", "adam")  # the clip of cross-entropy, too
    _, state, data = setup("cupy", "float32", combo, engine=engine, l1=0.1, dropout=0.1)
    step = engines.select_step(state, data, engine=engine)
    perm = on_namespace_of(np.arange(N), data)
    x, y = data[0][:10], data[1][:10]
    step(x, y, 0.1)  # warm: workspaces, graphs captured
    step.epoch(perm, 0.1, 0, monitor=("train_cost", "train_accuracy"))
    fake_cupy.stats.reset()
    step(x, y, 0.1)
    cost, _ = step.epoch(perm, 0.1, 5, monitor=("train_cost", "train_accuracy"))
    assert fake_cupy.stats["sync"] == 0, fake_cupy.stats.where("sync")
    float(cost)  # the epoch loop's one read: here is where the host waits
    assert fake_cupy.stats["sync"] == 1


def test_syncs_per_epoch_do_not_grow_with_the_batches(fake_cupy):
    rng = np.random.default_rng(0)

    def syncs(n):
        X, y = rng.random((n, 7)), rng.integers(5, size=n)
        net = Network([7, 9, 5], output_activation="softmax", cost="log_likelihood",
                      backend="cupy", seed=0)  # fmt: skip
        fake_cupy.stats.reset()
        net.fit(X, y, epochs=2, batch_size=5, lr=0.1, validation_data=(X[:20], y[:20]),
                monitor=("train_cost", "train_accuracy", "val_cost", "val_accuracy"))  # fmt: skip
        return fake_cupy.stats["sync"]

    few, many = syncs(20), syncs(200)  # 4 and 40 batches an epoch
    assert few == many
    assert few <= 2 * 6  # per epoch: train cost, hits, weight size, validation cost, hits


@pytest.mark.parametrize(("engine", "per_step"), [("fused", 8), ("graph", 0)])
def test_launches_per_step(fake_cupy, engine, per_step):
    """A step of [7, 13, 5] (two layers, SGD): ``fused`` launches gather, 2 × bias_act,
    output_delta, 2 × col_sum, hidden_delta, update and batch_end (one more for Adam), plus 5
    cuBLAS GEMMs; ``graph`` replays them: GRAPH_CHUNK steps per graph launch."""
    combo = ("sigmoid", "sigmoid", "quadratic", "sgd")
    _, state, data = setup("cupy", "float64", combo, engine=engine, batch=1)
    step = engines.select_step(state, data, engine=engine)
    perm = on_namespace_of(np.arange(N), data)
    step.epoch(perm, 0.1, 0)  # warm-up: graphs captured
    fake_cupy.stats.reset()
    step.epoch(perm, 0.1, 50)
    stats = fake_cupy.stats.snapshot()
    if engine == "fused":
        assert stats["kernel"] == (per_step + 1) * N  # + 1: the gather
        assert stats["graph"] == 0
    else:
        assert stats["kernel"] == 0
        chunks, single = divmod(N, _cupy_fast.GRAPH_CHUNK)
        assert stats["graph"] == chunks + single
        assert stats["graph_kernels"] == 14 * N  # the same 9 kernels and 5 tiled GEMMs a step


def fit_both(engine: str, *, tol: float, **fit) -> None:
    """Fit one float64 network on CuPy with ``engine`` and on NumPy's generic step, from the
    same seed (95 rows: a short last batch of 5); the parameters agree to ``tol`` (relative),
    the training accuracies exactly and the training costs to ``tol``."""
    rng = np.random.default_rng(0)
    X, y = rng.random((95, 7)), rng.integers(5, size=95)
    results = []
    for backend, eng in (("cupy", engine), ("numpy", "generic")):
        net = Network([7, 13, 5], activation="relu", output_activation="softmax",
                      cost="log_likelihood", dtype="float64", backend=backend, seed=1)  # fmt: skip
        history = net.fit(X, y, epochs=3, batch_size=10, lr=0.05, optimizer="adam", seed=1,
                          engine=eng, monitor=("train_cost", "train_accuracy"), **fit)  # fmt: skip
        results.append((history, [host(t) for t in net.params.arrays()]))
    (h_fast, p_fast), (h_ref, p_ref) = results
    for p, q in zip(p_fast, p_ref, strict=True):
        assert rel(q, p) < tol
    assert h_fast.column("train_accuracy") == h_ref.column("train_accuracy")
    assert h_fast.column("train_cost") == pytest.approx(h_ref.column("train_cost"), rel=tol)


@pytest.mark.parametrize("engine", ["fused", "graph"])
def test_fit_with_each_engine_matches_numpy(fake_cupy, engine):
    fit_both(engine, tol=1e-11, dropout=0.1, l2=0.1)


# -- emulated: the kernels' math against the registries' xp forms --------------------------------


@pytest.fixture(scope="module", params=["float32", "float64"])
def kernels(request, cxx20):
    dtype = request.param
    return dtype, emulator.compile_module(_kernels.kernel_source(dtype), ("--std=c++14",))


def _ulps(got, want, dtype, ftz=False):
    """|got − want| in units in the last place of want (NaN matching NaN is 0). Under ``ftz``
    (the GPU's -ftz=true) a subnormal ``want`` is flushed to zero first, as the GPU's is."""
    got, want = np.asarray(got, dtype), np.asarray(want, dtype)
    if ftz:
        want = np.where(np.abs(want) < np.finfo(dtype).tiny, np.zeros_like(want), want)
    spacing = np.spacing(np.maximum(np.abs(want), np.finfo(dtype).tiny))
    diff = np.abs(got.astype(float) - want.astype(float)) / spacing.astype(float)
    return np.where(np.isnan(got) & np.isnan(want), 0.0, diff)


@pytest.mark.parametrize("name", [n for n, a in ACTIVATIONS.items() if a.cuda_fn])
def test_cuda_activations_agree_with_the_xp_forms(kernels, name):
    dtype, module = kernels
    act, code = ACTIVATIONS[name], _kernels.codes().act[name]
    z = np.concatenate([np.linspace(-100, 100, 4001), [-1000, -709, -88, 0.0, 88, 709, 1000]])
    z = z.astype(dtype).reshape(1, -1)
    m, n = z.shape
    zz, b, a = z.copy(), np.zeros(n, dtype), np.empty_like(z)
    i32, ctr = np.int32, np.zeros(2, np.int64)
    drop = (np.uint32(0), np.dtype(dtype).type(1), np.uint64(0), ctr, i32(0), np.int64(0))
    module.get_function("bias_act")((8,), (256,), (zz, b, a, a, i32(m), i32(n), i32(code), i32(0),
                                                   *drop))  # fmt: skip
    xp = get_namespace("numpy")
    want = act.fn(z, xp=xp)
    assert _ulps(a, want, dtype, module.ftz).max() <= ULP_BUDGET, name
    g, delta = np.ones_like(z), np.empty_like(z)
    module.get_function("hidden_delta")((8,), (256,), (g, z, a, delta, i32(m), i32(n), i32(code),
                                                       i32(0), *drop))  # fmt: skip
    assert _ulps(delta, act.prime(z, want, xp=xp), dtype, module.ftz).max() <= ULP_BUDGET, name


def test_cuda_dropout_masks_are_the_xp_masks_bit_for_bit(kernels):
    dtype, module = kernels
    m, h, p, key = 37, 29, 0.3, 123456789
    xp = get_namespace("numpy")
    i32, real = np.int32, np.dtype(dtype).type
    for layer, draw in ((0, 0), (1, 7), (2, 2**33 + 5)):
        z = np.ones((m, h), dtype)  # a = σ(1) on every unit: dropped/a is the multiplier
        a, dropped = np.empty_like(z), np.empty_like(z)
        ctr = np.array([0, draw], np.int64)
        args = (
            z,
            np.zeros(h, dtype),
            a,
            dropped,
            i32(m),
            i32(h),
            i32(_kernels.codes().act["sigmoid"]),
        )
        for first in (0, 5):  # rows first.. of the step's masks (a rank's part under MPI)
            drop = (np.uint32(round(p * 2**24)), real(1 / (1 - p)), np.uint64(key), ctr,
                    i32(layer), np.int64(first))  # fmt: skip
            module.get_function("bias_act")((4,), (256,), (*args, i32(1), *drop))
            want = keep_masks(key, draw, m, [h] * (layer + 1), p, xp=xp, dtype=np.dtype(dtype),
                              first=first)[layer]  # fmt: skip
            np.testing.assert_array_equal(dropped, a * want)


def test_gemm_dot_against_numpy(kernels):
    dtype, module = kernels
    fn, rng, eps = module.get_function("gemm_dot"), np.random.default_rng(3), np.finfo(dtype).eps
    i32 = np.int32
    for M, N_, K in itertools.product([1, 3, 10, 30], [1, 7, 30], [64, 100, 784]):
        a = rng.standard_normal((M, K)).astype(dtype)
        b = rng.standard_normal((N_, K)).astype(dtype)
        c = np.full((M, N_ + 1), np.nan, dtype)  # one column of padding: ldc = N + 1
        blocks = (-(-(M * N_) // 8),)
        fn(blocks, (32, 8), (i32(M), i32(N_), i32(K), a, i32(K), b, i32(K), c, i32(N_ + 1)))
        want = a.astype(float) @ b.astype(float).T
        tol = (1e-13 if dtype == "float64" else 8 * eps) * (np.abs(a) @ np.abs(b).T)
        assert np.all(np.abs(c[:, :N_] - want) <= tol), (M, N_, K)
        assert np.isnan(c[:, N_]).all(), "wrote outside C"


@pytest.mark.parametrize("engine", ["fused", "graph"])
def test_a_long_first_layer_takes_the_warp_per_output_gemm(fake_cupy, engine):
    # 100 inputs at batch 10: the graph's forward product of layer 0 goes to gemm_dot.
    assert _cupy_fast.launch_bound([100, 13, 5], 10)
    assert _launch.dot_wins(10, 13, 100) and not _launch.dot_wins(10, 13, 13)
    compare_steps("float64", ("relu", "softmax", "log_likelihood", "adam"), engine,
                   [10, 10, 7], sizes=(100, 13, 5))  # fmt: skip
