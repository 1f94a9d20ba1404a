"""The emulator's checks, as strict as NVIDIA's compute-sanitizer: each kind of CUDA bug that a
CPU run would hide (races, out-of-bounds accesses, barrier misuse) aborts the launch in the
checked build, naming the kernel, the threads and the memory; its correct twin passes.

Every kernel here is run in the checked build (``sanitize=True``); the checks do not depend on
how the threads happened to interleave, so each verdict is the same on every run.
"""

from __future__ import annotations

import numpy as np
import pytest

from cuda_emu import emulator

i32, f32, f64 = np.int32, np.float32, np.float64

KERNELS = r"""
extern "C" __global__ void sum_plain(const double* x, double* sums, int n) {  // races
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        sums[0] += x[i];
}
extern "C" __global__ void sum_atomic(const double* x, double* sums, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        atomicAdd(sums, x[i]);
}
extern "C" __global__ void tree(const double* x, double* out, int n, int sync) {
    __shared__ double s[256];
    const int t = threadIdx.x;
    s[t] = t < n ? x[blockIdx.x * 256 + t] : 0;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (t < k) s[t] += s[t + k];
        if (sync) __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}
extern "C" __global__ void scale(const double* x, double* y, int n, int last) {
    // last = n: the classic off-by-one of a grid-stride loop (i <= n)
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < last; i += gridDim.x * blockDim.x)
        y[i] = 2 * x[i];
}
extern "C" __global__ void shift(double* y, int n, int halo) {
    __shared__ double s[64];
    const int t = threadIdx.x;
    s[t] = t;
    __syncthreads();
    if (t < n) y[t] = s[t + halo];  // halo = 1 reads s[64] in thread 63
}
extern "C" __global__ void per_block(double* y, int shared_row) {
    // Each block writes its own row; with shared_row every block writes row 0.
    const int row = shared_row ? 0 : blockIdx.x;
    y[row * blockDim.x + threadIdx.x] = blockIdx.x;
}
extern "C" __global__ void divergent(int* out, int mode) {
    const int t = threadIdx.x;
    if (mode == 0) {
        if (t < 16) __syncthreads();
        else __syncthreads();
    } else {
        __syncthreads();
    }
    out[t] = t;
}
extern "C" __global__ void row_max(double* z, double* out, int warp_sync) {
    // bias_softmax's pattern: every lane reads z[0], then lane 0 overwrites it.
    const int lane = threadIdx.x;
    const double first = z[0];
    if (warp_sync) __syncwarp();
    z[lane] = z[lane] + 1;
    out[lane] = first;
}
extern "C" __global__ void uninitialised(double* out) {
    __shared__ double s[32];
    out[threadIdx.x] = s[threadIdx.x];
}
extern "C" __global__ void dynamic_reverse(const float* x, float* y, int n) {
    extern __shared__ float buf[];
    const int t = threadIdx.x;
    if (t < n) buf[t] = x[t];
    __syncthreads();
    if (t < n) y[t] = buf[n - 1 - t];
}
"""


@pytest.fixture(scope="module")
def checked(cxx20):
    return emulator.compile_module(KERNELS, sanitize=True)


def _fails(module, name, grid, block, args, match, **kw):
    with pytest.raises(emulator.EmulationError, match=f"^{name}: .*{match}"):
        module.get_function(name)(grid, block, args, **kw)


def test_an_unordered_read_modify_write_is_a_race_and_an_atomic_one_is_not(checked):
    x = np.arange(300.0)
    _fails(checked, "sum_plain", (2,), (64,), (x, np.zeros(1), i32(300)),
           r"data race on argument 1 \(double\* sums\) \+ 0 bytes: .* by thread \(\d+,0,0\) of "
           r"block \(\d,0,0\)")  # fmt: skip
    sums = np.zeros(1)
    checked.get_function("sum_atomic")((2,), (64,), (x, sums, i32(300)))
    assert sums[0] == x.sum()


def test_a_missing_barrier_in_a_shared_memory_reduction_is_a_race(checked):
    x, out = np.arange(512.0), np.zeros(2)
    _fails(checked, "tree", (2,), (256,), (x, out, i32(256), i32(0)),
           r"data race on shared memory `s` \+ \d+ bytes: .*barrier interval 1\)")  # fmt: skip
    checked.get_function("tree")((2,), (256,), (x, out, i32(256), i32(1)))
    np.testing.assert_array_equal(out, [x[:256].sum(), x[256:].sum()])


def test_blocks_of_a_grid_are_never_ordered(checked):
    y = np.zeros(4 * 32)
    checked.get_function("per_block")((4,), (32,), (y, i32(0)))
    np.testing.assert_array_equal(y, np.repeat(np.arange(4.0), 32))
    _fails(checked, "per_block", (4,), (32,), (y, i32(1)),
           r"data race on argument 0 .*write by thread \(\d+,0,0\) of block \(\d,0,0\).* write by "
           r".*blocks of a grid are never ordered")  # fmt: skip


def test_an_off_by_one_read_past_an_argument_fails_before_it_is_made(checked):
    x, y = np.arange(100.0), np.zeros(100)
    _fails(
        checked,
        "scale",
        (2,),
        (64,),
        (x, y, i32(100), i32(101)),
        r"out-of-bounds global read of 8 bytes at 0x[0-9a-f]+: 0 bytes past the end of "
        r"argument 0 \(const double\* x, 800 bytes\) \(thread \(36,0,0\) of block \(1,0,0\)\)",
    )
    checked.get_function("scale")((2,), (64,), (x, y, i32(100), i32(100)))
    np.testing.assert_array_equal(y, 2 * x)


def test_an_argument_is_its_own_extent_even_inside_a_larger_buffer(checked):
    # The element after a view belongs to the same NumPy buffer (a GPU, whose allocations are
    # rounded up, would not notice either): the check is against the array the kernel was given.
    whole, y = np.zeros(200), np.zeros(101)
    _fails(checked, "scale", (1,), (128,), (whole[:100], y, i32(100), i32(101)),
           r"out-of-bounds global read of 8 bytes at 0x[0-9a-f]+: 0 bytes past the end of "
           r"argument 0")  # fmt: skip


def test_shared_memory_is_bounds_checked(checked):
    y = np.zeros(64)
    _fails(
        checked,
        "shift",
        (1,),
        (64,),
        (y, i32(64), i32(1)),
        r"out-of-bounds shared memory read of 8 bytes at offset 512 \(512 bytes in use\)",
    )
    checked.get_function("shift")((1,), (64,), (y, i32(64), i32(0)))
    np.testing.assert_array_equal(y, np.arange(64.0))


def test_threads_at_different_barriers_fail_at_once(checked):
    out = np.zeros(32, i32)
    _fails(checked, "divergent", (1,), (32,), (out, i32(0)),
           r"divergent __syncthreads: thread \(\d+,0,0\) of block \(0,0,0\) waits at line \d+, "
           r"this thread at line \d+")  # fmt: skip
    checked.get_function("divergent")((1,), (32,), (out, i32(1)))
    np.testing.assert_array_equal(out, np.arange(32))


def test_syncwarp_orders_the_lanes_of_a_warp(checked):
    z, out = np.arange(32.0), np.zeros(32)
    _fails(checked, "row_max", (1,), (32,), (z, out, i32(0)),
           r"data race on argument 0 \(double\* z\) \+ 0 bytes")  # fmt: skip
    z = np.arange(32.0)
    checked.get_function("row_max")((1,), (32,), (z, out, i32(1)))
    np.testing.assert_array_equal(out, 0.0)
    np.testing.assert_array_equal(z, np.arange(32.0) + 1)


def test_shared_memory_nobody_wrote_reads_as_nan(checked):
    out = np.zeros(32)
    checked.get_function("uninitialised")((1,), (32,), (out,))
    assert np.isnan(out).all()


def test_dynamic_shared_memory_and_its_opt_in_limit(checked):
    fn = checked.get_function("dynamic_reverse")
    x = np.arange(50, dtype=f32)
    y = np.zeros(50, f32)
    fn((1,), (64,), (x, y, i32(50)), shared_mem=64 * 4)
    np.testing.assert_array_equal(y, x[::-1])
    _fails(checked, "dynamic_reverse", (1,), (64,), (x, y, i32(50)),
           r"out-of-bounds shared memory write of 4 bytes at offset \d+ \(160 bytes in use\)",
           shared_mem=40 * 4)  # fmt: skip
    with pytest.raises(ValueError, match="more than max_dynamic_shared_size_bytes=49152"):
        fn((1,), (64,), (x, y, i32(50)), shared_mem=100 * 1024)
    try:
        fn.max_dynamic_shared_size_bytes = 100 * 1024
        fn((1,), (64,), (x, y, i32(50)), shared_mem=100 * 1024)
        np.testing.assert_array_equal(y, x[::-1])
        with pytest.raises(ValueError, match="cudaErrorInvalidValue"):
            fn.max_dynamic_shared_size_bytes = 228 * 1024
    finally:
        fn.max_dynamic_shared_size_bytes = 48 * 1024


def test_the_checked_build_is_its_own_cached_library(checked):
    plain = emulator.compile_module(KERNELS, sanitize=False)
    assert plain.path != checked.path and plain.build.sanitize is False
    with emulator.configure(sanitize=True):
        assert emulator.compile_module(KERNELS) is checked


@pytest.mark.parametrize(("rounding", "fused"), [("ieee", False), ("gpu", True)])
def test_gpu_rounding_contracts_to_fma_and_flushes_float32_subnormals(cxx20, rounding, fused):
    source = r"""
extern "C" __global__ void madd(const float* a, const float* b, const float* c, float* out) {
    out[threadIdx.x] = a[threadIdx.x] * b[threadIdx.x] + c[threadIdx.x];
}
"""
    module = emulator.compile_module(source, rounding=rounding)
    a = np.array([1 + 2**-13, 1e-30], f32)
    b = np.array([1 - 2**-13, 1e-10], f32)
    c = np.array([-1, 0], f32)
    out = np.zeros(2, f32)
    module.get_function("madd")((1,), (2,), (a, b, c, out))
    exact = -(2.0**-26)  # (1 + u)(1 - u) - 1 = -u², lost entirely when the product is rounded
    assert out[0] == (exact if fused else 0.0)
    # 1e-40 is subnormal in float32: kept by IEEE, flushed to zero by -ftz=true.
    assert (out[1] == 0.0) == fused and module.ftz == fused
