"""The CuPy fast paths (gpumlp._cupy_fast) against the generic step.

Three kinds of test:

- everywhere: the module imports without CuPy, ``select_step`` refuses fast engines off CuPy and
  falls back under ``auto``, the qualification rules give reasons;
- everywhere: the *host side* of the engines (buffers, argument lists, the layer loop, the flat
  parameter layout) driven with NumPy arrays and NumPy stand-ins for the kernels. Each stand-in
  first checks its arguments against the kernel's signature parsed from the CUDA source (count,
  order, C types), then does what the kernel's comment says. This tests the Python half only:
  the CUDA code itself is checked here only by compiling it with nvcc;
- GPU (``gpu`` mark): each engine against ``generic_step`` on CuPy for every supported
  combination, odd shapes, and ``fit``.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from gpumlp import Network, train
from gpumlp import _cupy_fast as fast
from gpumlp.activations import Activation
from gpumlp.backend import cupy_status, to_host
from gpumlp.runstate import make_train_state

HIDDEN = ("sigmoid", "relu", "tanh", "identity")
OUTPUT_COSTS = [(o, "quadratic") for o in ("sigmoid", "softmax", "identity", "relu", "tanh")]
OUTPUT_COSTS += [
    (o, c) for o in ("sigmoid", "softmax") for c in ("cross_entropy", "log_likelihood")
]
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
# Every (hidden, output, cost) with the optimizers taken in turn, so each optimizer meets
# several output errors without the full product.
COMBOS = [
    (h, o, c, OPTIMIZERS[i % len(OPTIMIZERS)])
    for i, (h, (o, c)) in enumerate(itertools.product(HIDDEN, OUTPUT_COSTS))
]

USABLE, REASON = cupy_status()
gpu = [pytest.mark.gpu, pytest.mark.skipif(not USABLE, reason=f"CuPy unusable: {REASON}")]


def _net(backend, dtype, hidden="sigmoid", output="sigmoid", cost="quadratic", sizes=(7, 13, 5)):
    return Network(
        list(sizes),
        activation=hidden,
        output_activation=output,
        cost=cost,
        init="scaled",
        dtype=dtype,
        backend=backend,
        seed=3,
    )


def _run(net, optimizer="sgd"):
    return make_train_state(
        net,
        lr=0.3 if optimizer != "adam" else 0.01,
        epochs=1,
        optimizer=optimizer,
        momentum=0.8,
        schedule="constant",
        patience=None,
        seed=0,
        hyper={},
        checkpoint=None,
        checkpoint_every=None,
    )


def _batches(sizes, ms, seed=5, dropout=0.0):
    """Host batches (x, y one-hot, keep or None) of the given row counts."""
    rng = np.random.default_rng(seed)
    out = []
    for m in ms:
        x = rng.random((m, sizes[0]))
        y = np.eye(sizes[-1])[rng.integers(sizes[-1], size=m)]
        keep = None
        if dropout:
            keep = [
                (rng.random((m, h)) >= dropout).astype(float) / (1.0 - dropout) for h in sizes[1:-1]
            ]
        out.append((x, y, keep))
    return out


def _rel(a, b):
    a, b = np.asarray(to_host(a), float), np.asarray(to_host(b), float)
    scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-300)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


# -- everywhere: import, selection, qualification ----------------------------------------------


def test_module_imports_without_cupy():
    code = (
        "import sys, gpumlp._cupy_fast as f\n"
        "assert 'cupy' not in sys.modules, 'importing _cupy_fast imported CuPy'\n"
        "assert 'typedef double real;' in f.kernel_source('float64')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_graph_engine_off_cupy_is_refused():
    net = _net("numpy", "float64")
    with pytest.raises(ValueError, match="needs the CuPy backend"):
        train.select_step(
            net, _run(net), engine="graph", l2=0.0, l1=0.0, n=10, batch_size=5, dropout=0.0
        )


def test_fused_engine_without_a_fast_path_is_refused():
    strict = pytest.importorskip("array_api_strict")
    net = _net(strict, "float64")
    with pytest.raises(ValueError, match="needs the NumPy or CuPy backend"):
        train.select_step(
            net, _run(net), engine="fused", l2=0.0, l1=0.0, n=10, batch_size=5, dropout=0.0
        )


def test_auto_engine_without_a_fast_path_is_the_generic_step():
    strict = pytest.importorskip("array_api_strict")
    nets = [_net(strict, "float64") for _ in range(2)]
    runs = [_run(net) for net in nets]
    auto = train.select_step(
        nets[0], runs[0], engine="auto", l2=0.0, l1=0.0, n=10, batch_size=5, dropout=0.0
    )
    generic = train.generic_step(nets[1], runs[1], l2=0.0, l1=0.0, n=10)
    assert getattr(auto, "engine", "generic") == "generic"
    for x, y, _ in _batches(nets[0].sizes, [5, 5]):
        x, y = strict.asarray(x), strict.asarray(y)
        np.testing.assert_array_equal(
            to_host(auto(x, y, None, 0.3)), to_host(generic(x, y, None, 0.3))
        )
    for p, q in zip(nets[0].params.arrays(), nets[1].params.arrays(), strict=True):
        np.testing.assert_array_equal(to_host(p), to_host(q))


def test_qualification_rules_give_reasons():
    net = _net("numpy", "float64")
    run = _run(net)
    args = {"engine": "fused", "batch_size": 10}
    assert "need the CuPy backend" in fast.unsupported(net, run, **args)
    step, why = fast.make_step(net, run, l2=0.0, l1=0.0, n=10, dropout=0.0, **args)
    assert step is None and "CuPy" in why

    swish = Activation("swish", lambda z, *, xp: z, lambda z, a, *, xp: z)
    custom = _net("numpy", "float64", hidden=swish)
    assert "hidden activation 'swish'" in fast.unsupported(custom, _run(custom), **args)

    wide = _net("numpy", "float64", sizes=(fast.GRAPH_MAX_DIM + 1, 4, 3))
    why = fast.unsupported(wide, _run(wide), engine="graph", batch_size=10)
    assert "wider than" in why
    why = fast.unsupported(net, run, engine="graph", batch_size=fast.GRAPH_MAX_BATCH + 1)
    assert "batch_size" in why
    assert "not a CuPy fast path" in fast.unsupported(net, run, engine="generic", batch_size=1)


# -- everywhere: the host side, with NumPy stand-ins for the kernels ---------------------------


def _signatures(dtype):
    """{kernel name: [C type of each parameter]} parsed from the CUDA source."""
    src = fast.kernel_source(dtype)
    found = re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', src)
    return {name: [" ".join(p.split()[:-1]) for p in params.split(",")] for name, params in found}


def _check_args(name, ctypes, grid, block, args, real):
    assert isinstance(grid, tuple) and all(isinstance(g, int) and g >= 1 for g in grid), grid
    assert isinstance(block, tuple) and 1 <= int(np.prod(block)) <= 1024, block
    assert len(args) == len(ctypes), f"{name}: {len(args)} arguments for {len(ctypes)} parameters"
    scalar = {"int": np.int32, "long long": np.int64, "double": np.float64, "real": real}
    for i, (ctype, arg) in enumerate(zip(ctypes, args, strict=True)):
        if ctype.endswith("*"):
            want = np.float64 if "double" in ctype else real
            assert isinstance(arg, np.ndarray), f"{name} arg {i}: {ctype} got {type(arg)}"
            assert arg.dtype == want and arg.flags.c_contiguous, f"{name} arg {i} ({ctype})"
        else:
            assert type(arg) is scalar[ctype], f"{name} arg {i}: {ctype} got {type(arg)}"


def _flat(buf, m, n):
    return buf.reshape(-1)[: m * n].reshape(m, n)


class _NumpyKernels:
    """Stand-ins for the CUDA kernels: check the call against the signature, then do what the
    kernel's comment in the CUDA source says, with NumPy."""

    def __init__(self, dtype):
        self.sigs = _signatures(dtype)
        self.real = np.dtype(dtype).type
        self.recording = None  # a list while a stream captures: launches are recorded, not run
        self.fail_in_capture = False
        assert set(self.sigs) == set(fast.KERNEL_NAMES)

    def __getattr__(self, name):
        sig = self.__dict__["sigs"][name]
        impl = getattr(self, f"_{name}")

        def launch(grid, block, args):
            _check_args(name, sig, grid, block, args, self.real)
            if self.recording is None:
                impl(*args)
            elif self.fail_in_capture:
                raise RuntimeError("operation not permitted when stream is capturing")
            else:
                self.recording.append((impl, args))

        return launch

    @staticmethod
    def _act(code, z):
        return [0.5 * np.tanh(0.5 * z) + 0.5, np.maximum(z, 0), np.tanh(z), z][code]

    @staticmethod
    def _prime(code, z, a):
        return [a * (1 - a), (z > 0).astype(z.dtype), 1 - a * a, np.ones_like(z)][code]

    @staticmethod
    def _gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc):
        i, k, j = np.arange(M)[:, None], np.arange(K)[None, :], np.arange(N)[None, :]
        a = A.reshape(-1)[k * lda + i] if ta else A.reshape(-1)[i * lda + k]
        kk = np.arange(K)[:, None]
        b = B.reshape(-1)[j * ldb + kk] if tb else B.reshape(-1)[kk * ldb + j]
        C.reshape(-1)[i * ldc + j] = a @ b

    def _bias_act(self, z, b, a, keep, dropped, m, n, act, has_keep):
        Z = _flat(z, m, n)
        Z += b[:n]
        _flat(a, m, n)[...] = self._act(act, Z)
        if has_keep:
            _flat(dropped, m, n)[...] = _flat(a, m, n) * _flat(keep, m, n)

    @staticmethod
    def _bias_softmax(z, b, a, m, n):
        Z = _flat(z, m, n)
        Z += b[:n]
        e = np.exp(Z - Z.max(axis=1, keepdims=True))
        _flat(a, m, n)[...] = e / e.sum(axis=1, keepdims=True)

    def _output_delta(self, z, a, y, delta, m, n, kind, grad, act, scale, eps):
        Z, A, Y = _flat(z, m, n), _flat(a, m, n), _flat(y, m, n)
        if grad == 0:
            g = A - Y
        elif grad == 1:
            c = np.clip(A, eps, 1 - eps)
            g = (c - Y) / (c * (1 - c))
        else:
            g = -Y / np.clip(A, eps, 1)
        if kind == 0:
            d = A - Y
        elif kind == 1:
            d = A * Y.sum(axis=1, keepdims=True) - Y
        elif kind == 2:
            d = g * self._prime(act, Z, A)
        else:
            d = A * (g - (g * A).sum(axis=1, keepdims=True))
        _flat(delta, m, n)[...] = d * scale

    def _hidden_delta(self, g, keep, z, a, delta, m, n, act, has_keep):
        G = _flat(g, m, n) * (_flat(keep, m, n) if has_keep else 1)
        _flat(delta, m, n)[...] = G * self._prime(act, _flat(z, m, n), _flat(a, m, n))

    @staticmethod
    def _col_sum(delta, out, m, n):
        out[:n] = _flat(delta, m, n).sum(axis=0)

    @staticmethod
    def _adam_prep(hyper, beta1, beta2):
        hyper[1] += 1
        hyper[2] = hyper[0] / (1 - beta1 ** hyper[1])
        hyper[3] = np.sqrt(1 - beta2 ** hyper[1])

    @staticmethod
    def _update(p, g, s1, s2, hyper, total, n_w, l2n, l1n, opt, mu, b1, b2, c1, c2, eps):
        r = p.dtype.type
        g = g[:total].copy()
        g[:n_w] += l2n * p[:n_w] + l1n * np.sign(p[:n_w])
        lr = r(hyper[0])
        if opt == 0:
            p[:total] -= lr * g
        elif opt in (1, 2):
            s1[:total] = s1[:total] * mu - lr * g
            p[:total] += (mu * s1[:total] - lr * g) if opt == 2 else s1[:total]
        else:
            s1[:total] = s1[:total] * b1 + c1 * g
            s2[:total] = s2[:total] * b2 + c2 * g * g
            p[:total] -= r(hyper[2]) * s1[:total] / (np.sqrt(s2[:total]) / r(hyper[3]) + eps)


class _FakeCupy:
    """NumPy posing as the parts of CuPy the engines use. A stream's capture records kernel
    launches into a graph that ``launch`` replays: the same buffers and the scalar arguments as
    they were at capture, as a CUDA graph does. Anything else run during a capture fails, as
    host syncs and cuBLAS calls do on a GPU."""

    def __init__(self, kernels):
        self.kernels, self.captures = kernels, 0
        self.cuda = types.SimpleNamespace(Stream=lambda non_blocking=False: _FakeStream(self))

    def __getattr__(self, name):
        fn = getattr(np, name)

        def call(*args, **kwargs):
            assert self.kernels.recording is None, f"cupy.{name} during a capture"
            return fn(*args, **kwargs)

        return call


class _FakeStream:
    def __init__(self, cp):
        self.cp = cp

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin_capture(self):
        assert self.cp.kernels.recording is None
        self.cp.kernels.recording = []

    def end_capture(self):
        calls, self.cp.kernels.recording = self.cp.kernels.recording, None
        self.cp.captures += 1
        return types.SimpleNamespace(launch=lambda stream=None: [f(*a) for f, a in calls])


def _host_engine(net, run, dtype, engine, *, l2=0.0, l1=0.0, n=50, forced=True):
    """A fast step on NumPy: ``fused`` as is, ``graph`` with its captures faked (_FakeCupy)."""
    kernels = _NumpyKernels(dtype)
    cp = np if engine == "fused" else _FakeCupy(kernels)
    core = fast._Core(net, run, kernels, dtype=dtype, l2=l2, l1=l1, n=n, cp=cp)
    if engine == "fused":
        return fast._FusedStep(core)
    return fast._GraphStep(core, forced=forced)


def _against_generic(make_fast, *, dtype, combo, ms, l2=0.0, l1=0.0, dropout=0.0, tol):
    """Run a fast step and generic_step side by side; return the worst relative error."""
    hidden, output, cost, optimizer = combo
    nets = [_net(b, dtype, hidden, output, cost) for b in (make_fast.backend,) * 2]
    runs = [_run(net, optimizer) for net in nets]
    step = make_fast(nets[0], runs[0], l2=l2, l1=l1)
    ref = train.generic_step(nets[1], runs[1], l2=l2, l1=l1, n=50)
    xp, dt = nets[0].xp, nets[0].dtype
    worst = 0.0
    for k, (x, y, keep) in enumerate(_batches(nets[0].sizes, ms, dropout=dropout), start=1):
        x, y = xp.asarray(x, dtype=dt), xp.asarray(y, dtype=dt)
        if keep is not None:
            keep = [xp.asarray(t, dtype=dt) for t in keep]
        lr = runs[1].schedule.lr_for(0) * (1.0 if k % 2 else 0.5)  # a schedule changing lr
        a_fast, a_ref = step(x, y, keep, lr), ref(x, y, keep, lr)
        errs = [_rel(a_ref, a_fast)]
        errs += [
            _rel(q, p)
            for p, q in zip(nets[0].params.arrays(), nets[1].params.arrays(), strict=True)
        ]
        for key, value in runs[1].opt_state.items():
            if key == "t":
                assert runs[0].opt_state["t"] == value
            else:
                errs += [
                    _rel(q, p)
                    for p, q in zip(runs[0].opt_state[key].arrays(), value.arrays(), strict=True)
                ]
        assert max(errs) <= tol * k, f"step {k}: {max(errs):.3g} > {tol * k:.3g} ({combo})"
        worst = max(worst, max(errs))
    return worst


def _numpy_maker(dtype, engine):
    def make(net, run, *, l2, l1):
        return _host_engine(net, run, dtype, engine, l2=l2, l1=l1)

    make.backend = "numpy"
    return make


@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_host_side_matches_generic(combo, engine):
    _against_generic(
        _numpy_maker("float64", engine), dtype="float64", combo=combo, ms=[10, 10, 3], tol=1e-12
    )


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("engine", ["fused", "graph"])
def test_host_side_penalties_dropout_and_shapes(optimizer, engine):
    # batch 1, 17, 33 (not multiples of the 16-wide tile), 17 again (a replayed graph), then
    # more shapes than GRAPH_MAX_SHAPES, which the graph engine runs without capturing.
    combo = ("relu", "softmax", "log_likelihood", optimizer)
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-5)):
        _against_generic(
            _numpy_maker(dtype, engine),
            dtype=dtype,
            combo=combo,
            ms=[1, 17, 33, 17, 2, 5, 6, 5],
            l2=0.5,
            l1=0.2,
            dropout=0.3,
            tol=tol,
        )


def test_graph_engine_captures_once_per_batch_shape():
    net = _net("numpy", "float64")
    step = _host_engine(net, _run(net, "adam"), "float64", "graph")
    for x, y, _ in _batches(net.sizes, [10, 10, 3, 10, 3]):
        step(x, y, None, 0.01)
    assert step.core.cp.captures == 2 and step.engine == "graph"


def test_graph_capture_failure_falls_back_or_raises():
    net = _net("numpy", "float64")
    ((x, y, _),) = _batches(net.sizes, [4])
    forced = _host_engine(net, _run(net), "float64", "graph", forced=True)
    forced.core.k.fail_in_capture = True
    with pytest.raises(RuntimeError, match="CUDA graph capture failed"):
        forced(x, y, None, 0.1)

    nets = [_net("numpy", "float64") for _ in range(2)]
    runs = [_run(net) for net in nets]
    auto = _host_engine(nets[0], runs[0], "float64", "graph", forced=False)
    auto.core.k.fail_in_capture = True
    ref = train.generic_step(nets[1], runs[1], l2=0.0, l1=0.0, n=50)
    for x, y, _ in _batches(nets[0].sizes, [4, 4]):
        np.testing.assert_allclose(auto(x, y, None, 0.1), ref(x, y, None, 0.1), rtol=1e-12)
    assert auto.engine == "fused"
    for p, q in zip(nets[0].params.arrays(), nets[1].params.arrays(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12)


def test_host_side_keeps_network_params_as_views_and_follows_replacements():
    net = _net("numpy", "float64")
    run = _run(net, "momentum")
    step = _host_engine(net, run, "float64", "fused")
    flat = step.core.p
    assert all(np.shares_memory(t, flat) for t in net.params.arrays())
    # A tensor replaced by a new array (not written in place) is taken back at the next step.
    net.params.weights[0] = np.zeros_like(net.params.weights[0])
    ((x, y, _),) = _batches(net.sizes, [4])
    step(x, y, None, 0.1)
    assert np.shares_memory(net.params.weights[0], flat)
    assert abs(float(np.max(net.params.weights[0]))) < 1.0  # started from zeros: one small step


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_warm_up_launches_match_the_kernel_signatures(dtype):
    net = _net("numpy", dtype)
    kernels = _NumpyKernels(dtype)
    core = fast._Core(net, _run(net, "adam"), kernels, dtype=dtype, l2=0, l1=0, n=1, cp=np)
    core.warm()  # every kernel once; the stand-ins check each argument list


# -- nvcc: the CUDA source compiles ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_compile_with_nvcc(dtype, tmp_path):
    src = tmp_path / f"kernels_{dtype}.cu"
    src.write_text(fast.kernel_source(dtype))
    out = tmp_path / "kernels.cubin"
    cmd = ["nvcc", "-arch=sm_90", "-cubin", "--std=c++14", "-Werror", "all-warnings"]
    done = subprocess.run([*cmd, "-o", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    binary = out.read_bytes()
    for name in fast.KERNEL_NAMES:  # extern "C": the names are in the symbol table as written
        assert name.encode() + b"\0" in binary, name


# -- GPU: each engine against generic_step on CuPy ---------------------------------------------


def _cupy_maker(engine):
    def make(net, run, *, l2, l1):
        step, why = fast.make_step(
            net, run, engine=engine, l2=l2, l1=l1, n=50, batch_size=10, dropout=0.3
        )
        assert step is not None, why
        assert step.engine == engine
        return step

    make.backend = "cupy"
    return make


TOLS = {"float64": 1e-10, "float32": 1e-5}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
@pytest.mark.gpu
@pytest.mark.skipif(not USABLE, reason=f"CuPy unusable: {REASON}")
def test_engine_matches_generic_on_gpu(combo, engine, dtype):
    _against_generic(
        _cupy_maker(engine), dtype=dtype, combo=combo, ms=[10, 10, 10, 3], tol=TOLS[dtype]
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.gpu
@pytest.mark.skipif(not USABLE, reason=f"CuPy unusable: {REASON}")
def test_engine_odd_shapes_penalties_dropout_on_gpu(optimizer, engine, dtype):
    # batch 1, 17 and 33 (not multiples of the 16-wide GEMM tile), back to 17 (a replayed
    # graph), and 2 (a short last batch); more shapes than GRAPH_MAX_SHAPES run eagerly.
    _against_generic(
        _cupy_maker(engine),
        dtype=dtype,
        combo=("tanh", "softmax", "cross_entropy", optimizer),
        ms=[1, 17, 33, 17, 2, 5, 6],
        l2=0.5,
        l1=0.2,
        dropout=0.3,
        tol=TOLS[dtype],
    )


@pytest.mark.parametrize("engine", ["fused", "graph"])
@pytest.mark.gpu
@pytest.mark.skipif(not USABLE, reason=f"CuPy unusable: {REASON}")
def test_fit_with_engine_matches_generic_on_gpu(engine):
    rng = np.random.default_rng(0)
    X, y = rng.random((95, 7)), rng.integers(5, size=95)  # 95: a short last batch of 5
    results = []
    for eng in (engine, "generic"):
        net = _net("cupy", "float64", "relu", "softmax", "log_likelihood")
        history = net.fit(
            X, y, epochs=3, batch_size=10, lr=0.05, optimizer="adam", seed=1, engine=eng,
            monitor=("train_cost", "train_accuracy"),
        )  # fmt: skip
        results.append((history, [to_host(t) for t in net.params.arrays()]))
    (h_fast, p_fast), (h_ref, p_ref) = results
    for p, q in zip(p_fast, p_ref, strict=True):
        assert _rel(q, p) < 1e-9
    assert h_fast.column("train_accuracy") == h_ref.column("train_accuracy")
