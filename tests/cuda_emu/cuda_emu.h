// cuda_emu.h: run unmodified CUDA C kernels on the CPU, for tests (see emulator.py).
//
// Model. One OS thread per CUDA thread of a block, from a persistent pool; the blocks of a grid
// run strictly one after another, so `__shared__` can be `static`: one instance per kernel is a
// correct per-block shared memory as long as no two blocks run at once (a per-module mutex makes
// launches from several host threads take turns). `__syncthreads()` is a std::barrier over the
// block's threads; warps are 32 consecutive linear thread ids (x + y*bx + z*bx*by), and every
// warp collective (__syncwarp, shuffles, votes) is two phases of a std::barrier over the warp:
// publish, then check and read. A thread that returns drops out of both barriers, as CUDA counts
// exited threads as arrived. What CUDA leaves undefined (reading an exited lane, partial masks,
// lanes of one warp in different collectives) aborts the launch with a message instead.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <semaphore>
#include <string>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__ static
// __restrict__ is a g++ keyword already.

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return {x, y, z}; }
};
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;
constexpr int warpSize = 32;

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

namespace cuda_emu {

struct Abort {};  // unwinds a thread's kernel when the launch is aborted

struct Warp {
    explicit Warp(int n) : lanes(n), bar(n) {}
    int lanes;  // 32, or fewer in the last warp of a block that is not a multiple of 32
    std::barrier<> bar;
    unsigned long long slot[32] = {};  // the values a collective exchanges
    std::atomic<unsigned> seq[32] = {};  // collectives entered, per lane
    std::atomic<const char*> op[32] = {};  // the collective each lane is in
    std::atomic<bool> exited[32] = {};
};

struct Block {
    explicit Block(unsigned n) : bar(n) {
        for (unsigned w = 0; w < n; w += 32) warps.push_back(std::make_unique<Warp>(std::min(32u, n - w)));
    }
    std::barrier<> bar;
    std::vector<std::unique_ptr<Warp>> warps;
};

struct Launch {
    std::function<void()> body;
    dim3 grid, block;
    uint3 block_idx;
    Block* blk = nullptr;
    std::atomic<bool> aborted{false};
    std::mutex mu;
    std::string error;
    void fail(const std::string& msg) {
        std::lock_guard<std::mutex> lk(mu);
        if (error.empty()) error = msg;
        aborted = true;
    }
};

inline thread_local Launch* t_launch;
inline thread_local Block* t_block;
inline thread_local Warp* t_warp;
inline thread_local int t_lane;

[[noreturn]] inline void fail(const std::string& msg) {
    char where[96];
    std::snprintf(where, sizeof where, " (block (%u,%u,%u), thread (%u,%u,%u))", blockIdx.x,
                  blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    t_launch->fail(msg + where);
    throw Abort{};
}

inline void check_abort() {
    if (t_launch->aborted.load(std::memory_order_relaxed)) throw Abort{};
}

// Phase one of a warp collective: publish which collective this lane is in, wait for the warp,
// and check that every live lane is in the same one (CUDA leaves divergence undefined).
inline void warp_enter(const char* op, unsigned mask) {
    if (mask != 0xffffffffu) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s: mask 0x%08x: the emulator supports only full-warp masks (0xffffffff)", op, mask);
        fail(buf);
    }
    Warp& w = *t_warp;
    w.op[t_lane] = op;
    w.seq[t_lane].fetch_add(1);
    check_abort();
    w.bar.arrive_and_wait();
    check_abort();
    for (int l = 0; l < w.lanes; ++l) {
        if (w.exited[l]) continue;
        if (w.seq[l] != w.seq[t_lane] || w.op[l] != w.op[t_lane]) {
            const char* other = w.op[l].load();
            fail(std::string(op) + ": lanes of one warp are in different warp collectives (lane " +
                 std::to_string(l) + " is in " + (other ? other : "none") + ")");
        }
    }
}

inline void warp_leave() {
    t_warp->bar.arrive_and_wait();  // nobody overwrites a slot before every lane has read it
    check_abort();
}

template <class T> T exchange(const char* op, unsigned mask, T var, int src) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of an unsupported type");
    Warp& w = *t_warp;
    std::memcpy(&w.slot[t_lane], &var, sizeof(T));
    warp_enter(op, mask);
    T out = var;
    if (src != t_lane) {
        if (src < 0 || src >= w.lanes || w.exited[src]) {
            fail(std::string(op) + ": lane " + std::to_string(t_lane) + " reads lane " +
                 std::to_string(src) + ", which has " + (src < 0 || src >= w.lanes ? "no thread" : "exited") +
                 " (undefined in CUDA)");
        }
        std::memcpy(&out, &w.slot[src], sizeof(T));
    }
    warp_leave();
    return out;
}

inline int lane_in(int width) {
    if (width <= 0 || width > 32 || (width & (width - 1))) fail("shuffle width must be a power of 2 up to 32");
    return t_lane;
}

// The thread pool: worker i runs CUDA thread i of each block. Workers idle for a while exit, so
// many loaded modules do not hold thousands of idle threads.
class Pool {
    struct Worker {
        std::binary_semaphore go{0};
        bool alive = false;
        unsigned index = 0;
        Pool* pool = nullptr;
    };
    std::mutex mu_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::function<void(unsigned)> job_;
    std::atomic<int> remaining_{0};
    std::binary_semaphore done_{0};

    static void* main(void* p) {
        Worker& w = *static_cast<Worker*>(p);
        Pool& pool = *w.pool;
        for (;;) {
            if (!w.go.try_acquire_for(std::chrono::seconds(2))) {
                std::lock_guard<std::mutex> lk(pool.mu_);
                if (!w.go.try_acquire()) { w.alive = false; return nullptr; }
            }
            pool.job_(w.index);
            if (pool.remaining_.fetch_sub(1) == 1) pool.done_.release();
        }
    }

public:
    // Run job(0..n-1) on n threads; false with `why` set if a thread could not start or the
    // block did not finish within `timeout` (a deadlock: the pool is then abandoned).
    bool run(unsigned n, std::function<void(unsigned)> job, std::chrono::milliseconds timeout, std::string& why) {
        {
            std::lock_guard<std::mutex> lk(mu_);
            job_ = std::move(job);
            remaining_ = (int)n;
            while (workers_.size() < n) workers_.push_back(std::make_unique<Worker>());
            for (unsigned i = 0; i < n; ++i) {
                Worker& w = *workers_[i];
                if (!w.alive) {
                    w.index = i;
                    w.pool = this;
                    pthread_attr_t attr;
                    pthread_attr_init(&attr);
                    pthread_attr_setstacksize(&attr, 1 << 20);
                    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                    pthread_t t;
                    int rc = pthread_create(&t, &attr, &Pool::main, &w);
                    pthread_attr_destroy(&attr);
                    if (rc != 0) {
                        why = "could not start thread " + std::to_string(i) + ": " + std::strerror(rc);
                        return false;  // threads released so far finish; the pool is abandoned
                    }
                    w.alive = true;
                }
            }
            for (unsigned i = 0; i < n; ++i) workers_[i]->go.release();
        }
        if (done_.try_acquire_for(timeout)) return true;
        why = "the block did not finish within " + std::to_string(timeout.count()) +
              " ms: a deadlock (threads waiting at different barriers?)";
        return false;
    }
};

inline std::mutex launch_mutex;
inline Pool* pool = new Pool;  // leaked on purpose: detached workers may outlive static destructors
inline std::atomic<long long> timeout_ms{60000};

inline void run_thread(Launch& L, unsigned tid) {
    const unsigned bx = L.block.x, by = L.block.y;
    threadIdx = {tid % bx, (tid / bx) % by, tid / (bx * by)};
    blockIdx = L.block_idx;
    blockDim = L.block;
    gridDim = L.grid;
    t_launch = &L;
    t_block = L.blk;
    t_warp = L.blk->warps[tid / 32].get();
    t_lane = (int)(tid % 32);
    try {
        L.body();
    } catch (Abort&) {
    } catch (std::exception& e) {
        L.fail(std::string("exception in kernel: ") + e.what());
    }
    t_warp->exited[t_lane] = true;  // before dropping, so lanes released by the drop see it
    t_warp->bar.arrive_and_drop();
    t_block->bar.arrive_and_drop();
}

inline int launch(const char* kernel, const unsigned* g, const unsigned* b, char* err, int errlen,
                  std::function<void()> body) {
    std::lock_guard<std::mutex> lk(launch_mutex);
    auto report = [&](const std::string& msg) {
        std::snprintf(err, (size_t)errlen, "%s: %s", kernel, msg.c_str());
        return 1;
    };
    const unsigned long long n = (unsigned long long)b[0] * b[1] * b[2];
    if (!g[0] || !g[1] || !g[2] || !n) return report("a grid or block dimension is 0");
    if (n > 1024 || b[2] > 64) return report("more than 1024 threads per block (or block.z > 64)");
    auto* L = new Launch;  // leaked if a block deadlocks (its threads still point at it) or throws
    L->body = std::move(body);
    L->grid = dim3(g[0], g[1], g[2]);
    L->block = dim3(b[0], b[1], b[2]);
    try {
        for (unsigned z = 0; z < g[2] && !L->aborted; ++z)
            for (unsigned y = 0; y < g[1] && !L->aborted; ++y)
                for (unsigned x = 0; x < g[0] && !L->aborted; ++x) {
                    auto blk = std::make_unique<Block>((unsigned)n);
                    L->blk = blk.get();
                    L->block_idx = {x, y, z};
                    std::string why;
                    if (!pool->run((unsigned)n, [L](unsigned tid) { run_thread(*L, tid); },
                                   std::chrono::milliseconds(timeout_ms.load()), why)) {
                        L->aborted = true;
                        (void)blk.release();
                        pool = new Pool;  // the old one's threads may be stuck for good
                        return report(why);
                    }
                }
    } catch (std::exception& e) {  // nothing may unwind into the ctypes caller
        L->aborted = true;
        pool = new Pool;
        return report(std::string("emulator failure: ") + e.what());
    }
    int rc = L->error.empty() ? 0 : report(L->error);
    delete L;
    return rc;
}

inline std::mutex atomic_mutex;
template <class T> inline T atomic_add(T* p, T v) {
    std::lock_guard<std::mutex> lk(atomic_mutex);
    T old = *p;
    *p = old + v;
    return old;
}

}  // namespace cuda_emu

inline void __syncthreads() {
    cuda_emu::check_abort();
    cuda_emu::t_block->bar.arrive_and_wait();
    cuda_emu::check_abort();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    cuda_emu::warp_enter("__syncwarp", mask);
    cuda_emu::warp_leave();
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <class T> inline T __shfl_sync(unsigned mask, T var, int src, int width = 32) {
    const int lane = cuda_emu::lane_in(width);
    return cuda_emu::exchange("__shfl_sync", mask, var, lane / width * width + (src & (width - 1)));
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    const int lane = cuda_emu::lane_in(width), src = lane ^ lane_mask;
    // A lane of a later group of `width` reads back its own value, as on the GPU.
    return cuda_emu::exchange("__shfl_xor_sync", mask, var, src >= (lane / width + 1) * width ? lane : src);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    const int lane = cuda_emu::lane_in(width);
    const bool own = (lane & (width - 1)) + (int)delta >= width;
    return cuda_emu::exchange("__shfl_down_sync", mask, var, own ? lane : lane + (int)delta);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    const int lane = cuda_emu::lane_in(width);
    const bool own = (lane & (width - 1)) < (int)delta;
    return cuda_emu::exchange("__shfl_up_sync", mask, var, own ? lane : lane - (int)delta);
}

inline float atomicAdd(float* p, float v) { return cuda_emu::atomic_add(p, v); }
inline double atomicAdd(double* p, double v) { return cuda_emu::atomic_add(p, v); }
inline int atomicAdd(int* p, int v) { return cuda_emu::atomic_add(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return cuda_emu::atomic_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return cuda_emu::atomic_add(p, v);
}
