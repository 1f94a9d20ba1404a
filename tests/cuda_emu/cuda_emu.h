// cuda_emu.h: what an emulated CUDA kernel sees (see emulator.py and cuda_emu_rt.cpp).
//
// A kernel source is compiled by the host C++ compiler as its own translation unit, with this
// header in front. Everything CUDA gives a thread (its indices, barriers, warp collectives,
// shared memory, atomics) is a call into the runtime (cuda_emu_rt.cpp), compiled separately and
// never instrumented, so that in a checked build (-fsanitize=thread's hooks, implemented by the
// runtime) every memory access the kernel itself makes is seen and nothing else is.
//
// emulator.py rewrites each `__shared__` declaration into a reference to the current block's
// shared memory (and `extern __shared__` into a pointer to its dynamic part) before compiling:
// a `__shared__` left over means a declaration form the rewrite does not know.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __constant__ static
#define __align__(n) alignas(n)
#define __shared__ __shared__declaration_the_emulator_could_not_rewrite
// __restrict__ is a g++ keyword already.

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return {x, y, z}; }
};
constexpr int warpSize = 32;

namespace cuda_emu {
uint3 thread_idx();
uint3 block_idx();
dim3 block_dim();
dim3 grid_dim();
int lane_id();
void syncthreads(int line);
void syncwarp(unsigned mask, int line);
unsigned long long exchange(const char* op, unsigned mask, unsigned long long bits, int src, int line);
void* shared_static(int id, const char* name, std::size_t size, std::size_t align);
void* shared_dynamic();
void fence();
[[noreturn]] void fail_kernel(const char* msg);
float atomic_add(float* p, float v);
double atomic_add(double* p, double v);
int atomic_add(int* p, int v);
unsigned atomic_add(unsigned* p, unsigned v);
unsigned long long atomic_add(unsigned long long* p, unsigned long long v);
}  // namespace cuda_emu

#define threadIdx (::cuda_emu::thread_idx())
#define blockIdx (::cuda_emu::block_idx())
#define blockDim (::cuda_emu::block_dim())
#define gridDim (::cuda_emu::grid_dim())

// Math: the float and double overloads, resolved by argument type as in CUDA (C's expf, sqrtf,
// ... are global already).
using std::abs; using std::acos; using std::acosh; using std::asin; using std::asinh;
using std::atan; using std::atan2; using std::atanh; using std::cbrt; using std::ceil;
using std::copysign; using std::cos; using std::cosh; using std::erf; using std::erfc;
using std::exp; using std::exp2; using std::expm1; using std::fabs; using std::floor;
using std::fma; using std::fmax; using std::fmin; using std::fmod; using std::hypot;
using std::isfinite; using std::isinf; using std::isnan; using std::ldexp; using std::lgamma;
using std::log; using std::log10; using std::log1p; using std::log2; using std::pow;
using std::round; using std::signbit; using std::sin; using std::sinh; using std::sqrt;
using std::tan; using std::tanh; using std::tgamma; using std::trunc;
template <class T, class U> inline auto min(T a, U b) {
    using R = std::common_type_t<T, U>;
    if constexpr (std::is_floating_point_v<R>) return std::fmin((R)a, (R)b);  // as fminf
    else return (R)b < (R)a ? (R)b : (R)a;
}
template <class T, class U> inline auto max(T a, U b) {
    using R = std::common_type_t<T, U>;
    if constexpr (std::is_floating_point_v<R>) return std::fmax((R)a, (R)b);
    else return (R)a < (R)b ? (R)b : (R)a;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
template <class T> inline T __ldg(const T* p) { return *p; }

#define __syncthreads() ::cuda_emu::syncthreads(__LINE__)
inline void __syncwarp_at(int line, unsigned mask = 0xffffffffu) { cuda_emu::syncwarp(mask, line); }
#define __syncwarp(...) __syncwarp_at(__LINE__ __VA_OPT__(,) __VA_ARGS__)
inline void __threadfence() { cuda_emu::fence(); }
inline void __threadfence_block() { cuda_emu::fence(); }

namespace cuda_emu {
template <class T> inline T exchange_as(const char* op, unsigned mask, T var, int src, int line) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of an unsupported type");
    unsigned long long bits = 0;
    std::memcpy(&bits, &var, sizeof(T));
    bits = exchange(op, mask, bits, src, line);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}
inline int lane_in(int width) {
    if (width <= 0 || width > 32 || (width & (width - 1))) fail_kernel("shuffle width must be a power of 2 up to 32");
    return lane_id();
}
template <class T> inline T shfl(unsigned mask, T var, int src, int width, int line) {
    const int lane = lane_in(width);
    return exchange_as("__shfl_sync", mask, var, lane / width * width + (src & (width - 1)), line);
}
template <class T> inline T shfl_xor(unsigned mask, T var, int lane_mask, int width, int line) {
    const int lane = lane_in(width), src = lane ^ lane_mask;
    // A lane of a later group of `width` reads back its own value, as on the GPU.
    return exchange_as("__shfl_xor_sync", mask, var, src >= (lane / width + 1) * width ? lane : src, line);
}
template <class T> inline T shfl_down(unsigned mask, T var, unsigned delta, int width, int line) {
    const int lane = lane_in(width);
    const bool own = (lane & (width - 1)) + (int)delta >= width;
    return exchange_as("__shfl_down_sync", mask, var, own ? lane : lane + (int)delta, line);
}
template <class T> inline T shfl_up(unsigned mask, T var, unsigned delta, int width, int line) {
    const int lane = lane_in(width);
    const bool own = (lane & (width - 1)) < (int)delta;
    return exchange_as("__shfl_up_sync", mask, var, own ? lane : lane - (int)delta, line);
}
}  // namespace cuda_emu

// The optional width: `(32, w)` is w where given, 32 where not.
#define __shfl_sync(mask, var, src, ...) \
    ::cuda_emu::shfl((unsigned)(mask), (var), (int)(src), (32 __VA_OPT__(, __VA_ARGS__)), __LINE__)
#define __shfl_xor_sync(mask, var, lm, ...) \
    ::cuda_emu::shfl_xor((unsigned)(mask), (var), (int)(lm), (32 __VA_OPT__(, __VA_ARGS__)), __LINE__)
#define __shfl_down_sync(mask, var, d, ...) \
    ::cuda_emu::shfl_down((unsigned)(mask), (var), (unsigned)(d), (32 __VA_OPT__(, __VA_ARGS__)), __LINE__)
#define __shfl_up_sync(mask, var, d, ...) \
    ::cuda_emu::shfl_up((unsigned)(mask), (var), (unsigned)(d), (32 __VA_OPT__(, __VA_ARGS__)), __LINE__)

inline float atomicAdd(float* p, float v) { return cuda_emu::atomic_add(p, v); }
inline double atomicAdd(double* p, double v) { return cuda_emu::atomic_add(p, v); }
inline int atomicAdd(int* p, int v) { return cuda_emu::atomic_add(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return cuda_emu::atomic_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return cuda_emu::atomic_add(p, v);
}
