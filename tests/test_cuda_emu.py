"""The CUDA emulation (tests/cuda_emu): emulator fidelity, argument checks, gpumlp's real GEMM
kernel, and the fake CuPy's arrays, counters, stream capture and installation.

The hand-written kernels below are one module, compiled once; expected values are integers
held in floating point where sums are compared, so any summation order gives them exactly.
"""

from __future__ import annotations

import itertools
import sys

import array_api_compat
import numpy as np
import pytest

from cuda_emu import emulator, fakecupy
from gpumlp.engines import _kernels, _launch

i32, u32, i64, u64, f32, f64 = np.int32, np.uint32, np.int64, np.uint64, np.float32, np.float64

KERNELS = r"""
extern "C" __global__ void block_sum(const double* x, double* out, int n) {
    __shared__ double s[256];                    // tree reduction: __syncthreads in a loop
    const int t = threadIdx.x;
    double v = 0;
    for (int i = blockIdx.x * blockDim.x + t; i < n; i += gridDim.x * blockDim.x) v += x[i];
    s[t] = v;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (t < k) s[t] += s[t + k];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}
extern "C" __global__ void warp_reduce(const float* x, float* sums, float* maxs) {
    const int tid = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
    const int g = blockIdx.x * blockDim.x * blockDim.y * blockDim.z + tid;
    float v = x[g], m = x[g];
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    }
    sums[g] = v;
    maxs[g] = m;
}
extern "C" __global__ void shuffles(const int* x, int* down, int* up, int* bcast, int* xor8,
                                    long long* wide) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x, v = x[i];
    down[i] = __shfl_down_sync(0xffffffffu, v, 3);
    up[i] = __shfl_up_sync(0xffffffffu, v, 5, 16);
    bcast[i] = __shfl_sync(0xffffffffu, v, 7, 8);
    xor8[i] = __shfl_xor_sync(0xffffffffu, v, 8, 8);  // later groups of 8 give back v
    wide[i] = __shfl_xor_sync(0xffffffffu, (long long)v << 33, 1);
}
extern "C" __global__ void scalars(long long a, double b, unsigned c, unsigned long long d,
                                   float e, int f, double* out) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out[0] = (double)a; out[1] = b; out[2] = c; out[3] = (double)d; out[4] = e; out[5] = f;
    }
}
extern "C" __global__ void early_exit(int* out, int mode) {
    const int tid = threadIdx.x + threadIdx.y * blockDim.x, lane = tid % 32;
    if (mode == 0 && (tid / 32) % 2 == 1) return;  // whole odd warps leave
    if (mode == 1 && lane >= 16) return;           // the upper half of every warp leaves
    __syncwarp();
    const int v = __shfl_xor_sync(0xffffffffu, tid, 1);
    __syncthreads();                               // exited threads count as arrived
    out[tid] = v;
}
extern "C" __global__ void undefined(int* out, int mode) {
    const int lane = threadIdx.x % 32;
    if (mode == 0) {                               // read a lane that has exited
        if (lane >= 16) return;
        out[lane] = __shfl_xor_sync(0xffffffffu, lane, 16);
    } else if (mode == 1) {                        // a partial mask
        out[lane] = __shfl_xor_sync(0x0000ffffu, lane, 1);
    } else if (mode == 2) {                        // lanes in different collectives
        if (lane < 16) __syncwarp(); else out[lane] = __shfl_xor_sync(0xffffffffu, lane, 1);
    } else {                                       // a deadlock
        if (lane < 16) __syncthreads(); else __syncwarp();
    }
}
extern "C" __global__ void axpy(double* y, const double* x, double a, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] += a * x[i];
}
"""


@pytest.fixture(scope="module")
def emu(cxx20):
    return emulator.compile_module(KERNELS)


# -- emulator fidelity --------------------------------------------------------------------------


def test_shared_memory_tree_reduction_over_a_grid_stride_loop(emu):
    x = np.arange(5000, dtype=f64) % 97
    out = np.full(4, np.nan)
    emu.get_function("block_sum")((4,), (256,), (x, out, i32(x.size)))
    expect = [x[(np.arange(x.size) % 1024) // 256 == b].sum() for b in range(4)]
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("block", [(32, 8), (16, 16), (64,), (8, 4, 4)])
def test_warp_shuffles_group_32_consecutive_linear_threads(emu, block):
    n = 2 * int(np.prod(block))
    x = np.random.default_rng(1).permutation(n).astype(f32)
    sums, maxs = np.full(n, np.nan, f32), np.full(n, np.nan, f32)
    emu.get_function("warp_reduce")((2,), block, (x, sums, maxs))
    warps = x.reshape(-1, 32)
    np.testing.assert_array_equal(sums, np.repeat(warps.sum(axis=1), 32))
    np.testing.assert_array_equal(maxs, np.repeat(warps.max(axis=1), 32))


def test_shuffle_variants_follow_cuda_lane_rules(emu):
    x = np.arange(100, 164, dtype=i32)
    outs = [np.zeros(64, i32) for _ in range(4)] + [np.zeros(64, i64)]
    emu.get_function("shuffles")((1,), (64,), (x, *outs))
    lane, base = np.arange(64) % 32, np.arange(64) // 32 * 32
    np.testing.assert_array_equal(outs[0], x[base + np.where(lane + 3 < 32, lane + 3, lane)])
    np.testing.assert_array_equal(outs[1], x[base + np.where(lane % 16 < 5, lane, lane - 5)])
    np.testing.assert_array_equal(outs[2], x[base + lane // 8 * 8 + 7])
    np.testing.assert_array_equal(outs[3], x[base + np.where(lane & 8, lane - 8, lane)])
    np.testing.assert_array_equal(outs[4], x[base + (lane ^ 1)].astype(i64) << 33)


def test_wide_and_unsigned_scalar_parameters(emu):
    out = np.zeros(6)
    args = (i64(2**40 + 3), f64(0.1), u32(2**32 - 1), u64(2**53), f32(1.5), i32(-7), out)
    emu.get_function("scalars")((1,), (1,), args)
    np.testing.assert_array_equal(out, [2**40 + 3, 0.1, 2**32 - 1, 2**53, 1.5, -7])


def test_exited_threads_count_as_arrived_at_barriers(emu):
    fn, tid = emu.get_function("early_exit"), np.arange(128)
    out = np.full(128, -1, i32)
    fn((1,), (32, 4), (out, i32(0)))
    np.testing.assert_array_equal(out, np.where((tid // 32) % 2 == 0, tid ^ 1, -1))
    out[:] = -1
    fn((1,), (32, 4), (out, i32(1)))
    np.testing.assert_array_equal(out, np.where(tid % 32 < 16, tid ^ 1, -1))


@pytest.mark.parametrize(("mode", "message"), [
    (0, r"__shfl_xor_sync: lane \d+ reads lane \d+, which has exited"),
    (1, r"mask 0x0000ffff: the emulator supports only full-warp masks"),
    (2, r"lanes of one warp are in different warp collectives"),
    (3, r"deadlock: every live thread of the block waits and no barrier can complete: "
        r"__syncthreads at line \d+ \(16 threads, first thread 0\), __syncwarp at line \d+ "
        r"\(16 threads, first thread 16\)"),
])  # fmt: skip
def test_undefined_behaviour_aborts_the_launch(emu, mode, message):
    with pytest.raises(emulator.EmulationError, match=r"^undefined: .*" + message):
        emu.get_function("undefined")((1,), (32,), (np.zeros(32, i32), i32(mode)))


def test_a_block_that_never_finishes_is_declared_deadlocked(cxx20):
    spin = emulator.compile_module(
        'extern "C" __global__ void spin(int* flag) { while (((volatile int*)flag)[0] == 0) {} }'
    )
    flag = np.zeros(1, i32)
    emulator.set_timeout(0.3)
    try:
        with pytest.raises(emulator.EmulationError, match=r"did not finish within 300 ms"):
            spin.get_function("spin")((1,), (1,), (flag,))
    finally:
        flag[0] = 1  # let the abandoned thread go
        emulator.set_timeout(60)


def test_arguments_are_checked_against_the_c_signature(emu):
    x, out = np.zeros(32, f32), np.zeros(32, f32)
    wr, sc = emu.get_function("warp_reduce"), emu.get_function("scalars")
    good = (i64(1), f64(1), u32(1), u64(1), f32(1), i32(1), np.zeros(6))
    cases = [
        (sc, (*good[:1], 1.0, *good[2:]), TypeError, r"scalars: argument 1 \(double b\).*float"),
        (sc, (*good[:4], f64(1), *good[5:]), TypeError, r"argument 4 \(float e\).*float32"),
        (wr, (x.astype(f64), out, out), TypeError, r"warp_reduce: argument 0 \(const float\* x\)"),
        (wr, (np.zeros(64, f32)[::2], out, out), TypeError, r"argument 0 .*C-contiguous"),
        (wr, (x, out), TypeError, r"warp_reduce: 2 arguments for 3 parameters"),
        (wr, (x, out, out, out), TypeError, r"warp_reduce: 4 arguments for 3 parameters"),
    ]
    for fn, args, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn((1,), (32,), args)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(TypeError, match=r"argument 1 \(float\* sums\).*read-only"):
        wr((1,), (32,), (x, ro, out))
    for grid, block, match in [
        ((1,), (2048,), "2048 threads"),
        ((1,), (32, 33), "1056 threads"),
        ((0,), (32,), "grid must be"),
        ((1,), (32, 0), "block must be"),
    ]:
        with pytest.raises(ValueError, match=f"warp_reduce: .*{match}"):
            wr(grid, block, (x, out, out))
    with pytest.raises(KeyError, match=r"no kernel 'nope'.*'warp_reduce'"):
        emu.get_function("nope")


def test_unsupported_types_and_compile_errors_are_reported(cxx20):
    with pytest.raises(ValueError, match=r"kernel k: parameter 0 \('short s'\)"):
        emulator.parse_kernels('extern "C" __global__ void k(short s) {}')
    with pytest.raises(emulator.CompileError, match="no_such_function"):
        emulator.compile_module('extern "C" __global__ void k(int* p) { no_such_function(p); }')


def test_a_rebuild_of_the_same_source_comes_from_the_disk_cache(emu):
    path, mtime = emu.path, emu.path.stat().st_mtime_ns
    again = emulator.EmulatedModule(KERNELS)  # not the in-process cache
    assert again.path == path and path.stat().st_mtime_ns == mtime
    assert emulator.compile_module(KERNELS) is emu


# -- gpumlp's real kernels ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["float32", "float64"])
def real(request, cxx20):
    return request.param, emulator.compile_module(_kernels.kernel_source(request.param),
                                                  ("--std=c++14",))  # fmt: skip


def test_the_real_kernels_compile(real):
    _, module = real
    assert set(_launch.KERNEL_NAMES) <= set(module.kernels)
    assert module.get_function("gemm").param_types[5] == "const real*"


def test_real_gemm_against_numpy_in_every_transpose_case(real):
    dtype, module = real
    gemm, rng, eps = module.get_function("gemm"), np.random.default_rng(7), np.finfo(dtype).eps
    tol = 1e-13 if dtype == "float64" else 4 * eps  # relative to Σ_k |a_ik b_kj|
    for (M, N, K), ta, tb in itertools.product(
        itertools.product([1, 7, 16, 17, 33], repeat=3), (0, 1), (0, 1)
    ):
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
        lda, ldb, ldc = a.shape[1] + 3, b.shape[1] + 1, N + 2  # padded rows test the strides
        A = np.zeros((a.shape[0], lda), dtype)
        A[:, : a.shape[1]] = a
        B = np.zeros((b.shape[0], ldb), dtype)
        B[:, : b.shape[1]] = b
        C = np.full(M * ldc + 5, np.nan, dtype)  # poison, and 5 elements past the end
        args = (i32(ta), i32(tb), i32(M), i32(N), i32(K), A.ravel(), i32(lda), B.ravel(), i32(ldb))
        gemm((-(-N // 16), -(-M // 16)), (16, 16), (*args, C, i32(ldc)))
        opa, opb = (a.T if ta else a).astype(f64), (b.T if tb else b).astype(f64)
        got = C[: M * ldc].reshape(M, ldc)
        err = np.abs(got[:, :N] - opa @ opb)
        assert np.all(err <= tol * (np.abs(opa) @ np.abs(opb))), (M, N, K, ta, tb)
        assert np.isnan(got[:, N:]).all() and np.isnan(C[M * ldc :]).all(), "wrote outside C"


# -- the fake CuPy ------------------------------------------------------------------------------


def test_array_api_compat_takes_fake_arrays_for_cupy(fake_cupy):
    x = fake_cupy.zeros(3)
    xp = array_api_compat.array_namespace(x)
    assert xp is sys.modules["array_api_compat.cupy"] and xp.__name__ == "array_api_compat.cupy"
    assert array_api_compat.is_cupy_array(x) and not array_api_compat.is_numpy_array(x)
    assert type(x).__module__ == "cupy" and not isinstance(x, np.ndarray)
    assert fake_cupy.cuda.runtime.getDeviceProperties(0)["name"] == b"CPU emulation"
    from gpumlp import backend

    assert backend.cupy_status() == (True, "CUDA device CPU emulation")
    np.testing.assert_array_equal(backend.to_host(xp.ones(2)), [1.0, 1.0])


def test_fake_arrays_compute_like_numpy_and_views_share_memory(fake_cupy):
    cp, h = fake_cupy, np.arange(12.0).reshape(3, 4)
    x = cp.asarray(h)
    np.testing.assert_array_equal((2 - x * x / 4 + (x @ x.T)[:, :1]).get(), 2 - h * h / 4 +
                                  (h @ h.T)[:, :1])  # fmt: skip
    np.testing.assert_array_equal((x > 5).get(), h > 5)
    np.testing.assert_array_equal(cp.exp(x[1]).get(), np.exp(h[1]))
    s = x.sum(axis=None)
    assert isinstance(s, cp.ndarray) and s.ndim == 0 and float(s) == h.sum()
    v, e = x[1:, ::2], x[2, 3]
    v[0, 0] = -1.0  # x[1, 0]
    e[...] = -2.0  # a 0-d view of x[2, 3]
    y = x
    y += 1  # in place: the same object and buffer
    assert y is x and x.get()[1, 0] == 0.0 and x.get()[2, 3] == -1.0 and x.get()[0, 0] == 1.0
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        x + h
    with pytest.raises(TypeError, match="Unsupported type"):
        h + x


COUNTED = [  # (what, operation on x (device, 2x3 float64) and h (host), expected counts)
    ("shape metadata", lambda cp, x, h: (x.shape, x.dtype, len(x), x.ndim, x.size), {}),
    ("views", lambda cp, x, h: (x[1:], x.T, x.reshape(3, 2), x[0, 1]), {}),
    ("device sum", lambda cp, x, h: cp.sum(x), {"op": 1}),
    ("float of a sum", lambda cp, x, h: float(cp.sum(x)), {"op": 1, "sync": 1}),
    ("boolean mask", lambda cp, x, h: x[x > 0], {"op": 2, "sync": 1}),
    ("masked write", lambda cp, x, h: x.__setitem__(x > 2, 0.0), {"op": 2, "sync": 1}),
    ("asarray of host", lambda cp, x, h: cp.asarray(h), {"h2d": 1}),
    ("asarray of device", lambda cp, x, h: cp.asarray(x), {}),
    ("set", lambda cp, x, h: x.set(h), {"h2d": 1}),
    ("get", lambda cp, x, h: x.get(), {"sync": 1}),
    ("asnumpy", lambda cp, x, h: cp.asnumpy(x), {"sync": 1}),
    ("item", lambda cp, x, h: x[0, 0].item(), {"sync": 1}),
    ("bool", lambda cp, x, h: bool(cp.all(x > -1)), {"op": 2, "sync": 1}),
    ("nonzero", lambda cp, x, h: cp.nonzero(x), {"op": 1, "sync": 1}),
    ("unique", lambda cp, x, h: cp.unique(x), {"op": 1, "sync": 1}),
    ("in-place add", lambda cp, x, h: x.__iadd__(1), {"op": 1}),
    ("copyto", lambda cp, x, h: cp.copyto(x, cp.zeros_like(x)), {"op": 2}),
    ("empty", lambda cp, x, h: cp.empty(3), {}),
    ("stream sync", lambda cp, x, h: cp.cuda.get_current_stream().synchronize(), {"sync": 1}),
]


@pytest.mark.parametrize(("what", "fn", "expect"), COUNTED, ids=[c[0] for c in COUNTED])
def test_each_counter_counts_what_it_should_and_nothing_else(fake_cupy, what, fn, expect):
    h = np.arange(6.0).reshape(2, 3)
    x = fake_cupy.asarray(h)
    fake_cupy.stats.reset()
    fn(fake_cupy, x, h)
    got = {k: v for k, v in fake_cupy.stats.snapshot().items() if v}
    assert got == expect, fake_cupy.stats.events
    if "sync" in expect:  # the event says where it came from
        assert all(__file__ in w for w in fake_cupy.stats.where("sync"))


def test_raw_kernels_run_through_the_emulator_and_are_counted(fake_cupy):
    y, x = fake_cupy.ones(5), fake_cupy.arange(5.0)
    axpy = fake_cupy.RawModule(code=KERNELS).get_function("axpy")
    fake_cupy.stats.reset()
    axpy((1,), (32,), (y, x, f64(2.0), i32(5)))
    np.testing.assert_array_equal(y.get(), 1 + 2 * np.arange(5.0))
    assert fake_cupy.stats["kernel"] == 1 and fake_cupy.stats["op"] == 0
    with pytest.raises(TypeError, match="axpy: argument 1: Unsupported type"):
        axpy((1,), (32,), (y, np.zeros(5), f64(2.0), i32(5)))
    with pytest.raises(TypeError, match=r"axpy: argument 2 \(double a\)"):
        axpy((1,), (32,), (y, x, 2.0, i32(5)))


def test_capture_records_raw_kernels_and_replays_current_contents(fake_cupy):
    cp = fake_cupy
    y, x = cp.zeros(4), cp.ones(4)
    axpy = cp.RawModule(code=KERNELS).get_function("axpy")
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        assert stream.is_capturing()
        axpy((1,), (32,), (y, x, f64(3.0), i32(4)))
        axpy((1,), (32,), (y, x[...], f64(1.0), i32(4)))  # a view: metadata only
        graph = stream.end_capture()
    assert not stream.is_capturing() and cp.stats["kernel"] == 0
    np.testing.assert_array_equal(y.get(), 0.0)  # recorded, not run
    graph.launch()
    np.testing.assert_array_equal(y.get(), 4.0)
    x[...] = cp.arange(4.0)  # the graph reads the buffer's contents at replay time
    graph.launch()
    np.testing.assert_array_equal(y.get(), 4.0 + 4 * np.arange(4.0))
    assert (cp.stats["graph"], cp.stats["graph_kernels"]) == (2, 4)


@pytest.mark.parametrize("op", [
    lambda cp, x: cp.sum(x), lambda cp, x: cp.zeros(3), lambda cp, x: float(x[0]),
    lambda cp, x: cp.asarray(np.ones(2)), lambda cp, x: x.fill(1.0), lambda cp, x: x + 1,
    lambda cp, x: cp.cuda.get_current_stream().synchronize(),
], ids=["sum", "allocation", "host-read", "h2d", "fill", "operator", "synchronize"])  # fmt: skip
def test_capture_refuses_anything_but_raw_kernels(fake_cupy, op):
    cp, x = fake_cupy, fake_cupy.ones(3)
    stream = cp.cuda.Stream()
    with stream:
        stream.begin_capture()
        with pytest.raises(RuntimeError, match="operation not permitted when stream is capturing"):
            op(cp, x)
        with pytest.raises(fakecupy.CaptureError) as info:
            op(cp, x)
        assert __file__ in str(info.value)
        with pytest.raises(RuntimeError, match="cudaErrorStreamCaptureInvalidated"):
            stream.end_capture()
    assert not stream.is_capturing()
    op(cp, x)  # fine again once the capture is over


def _cupy_entries():
    return {k: v for k, v in sys.modules.items() if k == "cupy" or k.startswith(
        ("cupy.", "array_api_compat.cupy"))}  # fmt: skip


def test_install_and_uninstall_restore_what_was_there():
    stand_in = type(sys)("cupy")  # a "real" CuPy that must come back untouched
    stand_in.ndarray = type("ndarray", (), {})
    before = _cupy_entries()
    sys.modules["cupy"] = stand_in
    try:
        with fakecupy.installed() as cp, fakecupy.installed():
            import cupy

            assert cupy is cp is fakecupy.module() and fakecupy.is_installed()
            assert sys.modules["cupy.cuda.runtime"] is cp.cuda.runtime
            x = cp.ones(2)
            assert array_api_compat.array_namespace(x).__name__ == "array_api_compat.cupy"
        assert fakecupy.is_installed() is False and sys.modules["cupy"] is stand_in
        assert _cupy_entries() == {**before, "cupy": stand_in}
        assert not hasattr(array_api_compat, "cupy") or "array_api_compat.cupy" in before
        with pytest.raises(TypeError):  # array-api-compat's class cache was cleared
            array_api_compat.array_namespace(x)
    finally:
        sys.modules.pop("cupy", None)
        sys.modules.update(before)
    with pytest.raises(RuntimeError, match="not installed"):
        fakecupy.uninstall()


def test_memory_pool_random_and_runtime(fake_cupy):
    cp, pool = fake_cupy, fake_cupy.get_default_memory_pool()
    used = pool.used_bytes()
    x = cp.zeros(1000)
    assert pool.used_bytes() == used + 8000
    del x
    assert pool.used_bytes() == used and pool.free_bytes() >= 8000
    pool.set_limit(size=pool.used_bytes() + 100)
    try:
        with pytest.raises(MemoryError, match="Out of memory"):
            cp.zeros(1000)
    finally:
        pool.set_limit(size=0)
    draws = [cp.random.default_rng(3).random((2, 3), dtype=np.float32) for _ in range(2)]
    assert draws[0].dtype == np.float32 and (draws[0] == draws[1]).all()
    assert cp.cuda.runtime.getDeviceCount() == 1 and cp.cuda.Device().compute_capability == "90"
    assert cp.cuda.runtime.runtimeGetVersion() == 13000
    with pytest.raises(RuntimeError, match="invalid device"):
        cp.cuda.Device(1).use()
