// cuda_emu_rt.cpp: the runtime of the CUDA emulation (see emulator.py), linked into every
// emulated module beside the kernels, never instrumented.
//
// Execution model. One OS thread per CUDA thread, from a persistent pool. The blocks of a grid
// run two at a time, each with its own shared memory (filled with 0xff bytes, so a read of
// shared memory nobody wrote is NaN or -1). Warps are 32 consecutive linear thread ids
// (x + y*bx + z*bx*by). `__syncthreads` and the warp collectives (__syncwarp, shuffles) wait on
// one mutex per block; a thread that returns counts as arrived, as CUDA counts exited threads.
//
// What a GPU leaves undefined aborts the launch at once, naming the kernel, the threads and the
// source lines (synccheck): threads of a block waiting at different `__syncthreads`, every live
// thread of a block waiting while no barrier can complete (a deadlock), lanes of a warp in
// different collectives, a shuffle reading an exited lane, partial masks. A block still running
// after the timeout is declared deadlocked (an endless loop) and abandoned.
//
// Checked builds (emulator.py, sanitize=True) compile the kernels with -fsanitize=thread, whose
// hooks (__tsan_read4, __tsan_write8, ...) are defined here. Each access the kernel makes is:
//   - memcheck: allowed only on the thread's own stack, the block's shared memory in use, the
//     module's static data, or inside one of the launch's pointer arguments (the exact extent
//     of the array passed, which is stricter than a GPU's rounded-up allocations);
//   - racecheck: recorded per 4-byte word of the launch (bytes for narrower accesses), with
//     the thread, its block, and its barrier interval. Two accesses to one word, one a write,
//     race unless they are the same thread's, or the same block's separated by a
//     `__syncthreads` (or the same warp's separated by a `__syncwarp`), or both atomic. Blocks
//     of a grid are never ordered with each other, whether or not they happened to overlap.
// The first bad access aborts the launch before it is made.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csetjmp>
#include <cstdio>
#include <dlfcn.h>
#include <functional>
#include <link.h>
#include <map>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <semaphore>
#include <string>
#include <unordered_map>
#include <vector>
#include <xmmintrin.h>

#include "cuda_emu.h"  // after the standard headers: its macros are not theirs

#define API extern "C" __attribute__((visibility("default")))

namespace cuda_emu {

struct Abort {};  // unwinds a thread's kernel when the launch is aborted

constexpr std::size_t STATIC_SHARED_LIMIT = 48 * 1024;  // CUDA's static __shared__ limit

struct Launch;

struct Warp {
    int lanes = 32;  // fewer in the last warp of a block that is not a multiple of 32
    unsigned arrived = 0, exited = 0, wepoch = 0;
    std::atomic<unsigned> seq{0};  // bumped when a collective completes or the launch aborts
    const char* op = nullptr;  // the collective the waiting lanes are in
    int op_line = 0, op_lane = 0;
    unsigned long long slot[32] = {}, result[32] = {};
    bool gone[32] = {};  // lanes that have exited
    bool was_gone[32] = {};  // ... when the last collective completed
};

struct Block {
    Launch* L = nullptr;
    unsigned n = 0, linear = 0;
    uint3 idx{};
    std::mutex mu;  // guards the barrier and collective bookkeeping of the block and its warps
    std::atomic<unsigned> seq{0};  // bumped when a barrier completes or the launch aborts
    unsigned arrived = 0, exited = 0, blocked = 0;
    int site_line = 0;
    unsigned site_tid = 0;
    std::vector<std::unique_ptr<Warp>> warps;
    std::unique_ptr<std::atomic<const char*>[]> wait_op;  // per thread: where it waits, or null
    std::unique_ptr<std::atomic<int>[]> wait_line;
    // Shared memory: [dynamic part | static variables as first reached], in one arena.
    std::unique_ptr<unsigned char[]> arena;
    std::size_t dyn = 0, cap = 0;
    std::atomic<std::size_t> used{0};
    std::map<int, std::size_t> offsets;
    std::vector<std::pair<std::size_t, const char*>> names;  // (offset, variable), in order
};

struct Launch {
    const char* kernel = "";
    void (*body)(void**) = nullptr;
    void** args = nullptr;
    dim3 grid, block;
    const unsigned long long* regions = nullptr;  // 2 per parameter: [lo, hi), 0 0 for scalars
    const char* const* params = nullptr;
    int nparams = 0;
    std::size_t dyn_shared = 0;
    bool ftz = false;
    Block* running[2] = {nullptr, nullptr};
    std::atomic<bool> aborted{false};
    std::mutex mu;
    std::string error;
    void fail(const std::string& msg);
};

void Launch::fail(const std::string& msg) {
    {
        std::lock_guard<std::mutex> lk(mu);
        if (error.empty()) error = msg;
        aborted = true;
    }
    for (Block* b : running) {  // wake every waiting thread: it sees the abort and unwinds
        if (!b) continue;
        b->seq++;
        b->seq.notify_all();
        for (auto& w : b->warps) {
            w->seq++;
            w->seq.notify_all();
        }
    }
}

struct Ctx {
    Launch* L = nullptr;
    Block* B = nullptr;
    Warp* W = nullptr;
    unsigned tid = 0;
    int lane = 0;
    uint3 tidx{};
    unsigned epoch = 0, wepoch = 0;
    bool in_kernel = false;
    std::uintptr_t stack_lo = 0, stack_hi = 0;
    sigjmp_buf jb;
};

thread_local Ctx* t_ctx = nullptr;
std::mutex launch_mutex;
std::atomic<long long> timeout_ms{60000};
std::atomic<int> module_ftz{0};

std::string thread_name(const Launch& L, unsigned block_linear, unsigned tid) {
    const unsigned bx = L.block.x, by = L.block.y, gx = L.grid.x, gy = L.grid.y;
    char buf[120];
    std::snprintf(buf, sizeof buf, "thread (%u,%u,%u) of block (%u,%u,%u)", tid % bx, (tid / bx) % by,
                  tid / (bx * by), block_linear % gx, (block_linear / gx) % gy, block_linear / (gx * gy));
    return buf;
}

std::string here() {
    Ctx& c = *t_ctx;
    return thread_name(*c.L, c.B->linear, c.tid);
}

// Fail the launch from the runtime's own code (a barrier, a collective): no lock may be held.
[[noreturn]] void fail(const std::string& msg) {
    t_ctx->L->fail(msg + " (" + here() + ")");
    throw Abort{};
}

void check_abort() {
    if (t_ctx->L->aborted.load(std::memory_order_relaxed)) throw Abort{};
}

// -- synccheck: barriers and warp collectives -------------------------------------------------

std::string waiting(Block& B) {  // "__syncthreads at line 12 (16 threads, first 0), ..."
    std::map<std::pair<std::string, int>, std::pair<unsigned, unsigned>> groups;
    for (unsigned t = 0; t < B.n; ++t) {
        const char* op = B.wait_op[t].load();
        if (!op) continue;
        auto& g = groups[{std::string(op), B.wait_line[t].load()}];
        if (g.first++ == 0) g.second = t;
    }
    std::string out;
    for (auto& [where, g] : groups) {
        if (!out.empty()) out += ", ";
        out += where.first + " at line " + std::to_string(where.second) + " (" + std::to_string(g.first) +
               " threads, first thread " + std::to_string(g.second) + ")";
    }
    return out;
}

// With B.mu held: every live thread of the block waits and no barrier can complete (the caller
// has checked), so nothing ever will. Fails the launch, naming where the threads wait.
void fail_deadlocked(Block& B, const std::string& when) {
    B.L->fail("deadlock: every live thread of the block waits and no barrier can complete: " + waiting(B) +
              " (block " + std::to_string(B.linear) + when + ")");
}

// Called with B.mu held by a thread about to wait: if every live thread of the block now waits
// and this wait cannot complete, nothing ever will.
void deadlock_check(Block& B) {
    if (B.blocked + B.exited < B.n) return;
    fail_deadlocked(B, "");
    throw Abort{};
}

// Wait, without the lock, until `seq` moves on from `s`: the barrier completed, or the launch
// was aborted (then unwind).
void wait_for_change(std::atomic<unsigned>& seq, unsigned s) {
    Launch& L = *t_ctx->L;
    while (seq.load() == s) {
        if (L.aborted.load()) throw Abort{};
        seq.wait(s);
    }
    if (L.aborted.load()) throw Abort{};
}

void release_block(Block& B) {
    B.blocked -= B.arrived;
    B.arrived = 0;
    B.seq++;
    B.seq.notify_all();
}

void complete_warp(Block& B, Warp& W) {
    B.blocked -= W.arrived;
    W.arrived = 0;
    std::memcpy(W.result, W.slot, sizeof W.slot);
    std::memcpy(W.was_gone, W.gone, sizeof W.gone);
    if (W.op && std::strcmp(W.op, "__syncwarp") == 0) W.wepoch++;
    W.op = nullptr;
    W.seq++;
    W.seq.notify_all();
}

void syncthreads(int line) {
    Ctx& c = *t_ctx;
    Block& B = *c.B;
    {
        std::unique_lock<std::mutex> lk(B.mu);
        check_abort();
        if (B.arrived == 0) {
            B.site_line = line;
            B.site_tid = c.tid;
        } else if (B.site_line != line) {
            const std::string other = thread_name(*c.L, B.linear, B.site_tid);
            lk.unlock();
            fail("divergent __syncthreads: " + other + " waits at line " + std::to_string(B.site_line) +
                 ", this thread at line " + std::to_string(line));
        }
        B.wait_op[c.tid] = "__syncthreads";
        B.wait_line[c.tid] = line;
        B.arrived++;
        B.blocked++;
        const unsigned s = B.seq.load();
        if (B.arrived + B.exited == B.n) release_block(B);
        else {
            deadlock_check(B);
            lk.unlock();
            wait_for_change(B.seq, s);
        }
    }
    B.wait_op[c.tid] = nullptr;
    c.epoch++;
}

unsigned long long exchange(const char* op, unsigned mask, unsigned long long bits, int src, int line) {
    Ctx& c = *t_ctx;
    if (mask != 0xffffffffu) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s: mask 0x%08x: the emulator supports only full-warp masks (0xffffffff)",
                      op, mask);
        fail(buf);
    }
    Block& B = *c.B;
    Warp& W = *c.W;
    unsigned long long out = bits;
    std::unique_lock<std::mutex> lk(B.mu);
    check_abort();
    if (W.arrived == 0) {
        W.op = op;
        W.op_line = line;
        W.op_lane = c.lane;
    } else if (std::strcmp(W.op, op) != 0 || W.op_line != line) {
        const std::string msg = std::string(op) + " at line " + std::to_string(line) +
                                ": lanes of one warp are in different warp collectives (lane " +
                                std::to_string(W.op_lane) + " is in " + W.op + " at line " +
                                std::to_string(W.op_line) + ")";
        lk.unlock();
        fail(msg);
    }
    W.slot[c.lane] = bits;
    B.wait_op[c.tid] = op;
    B.wait_line[c.tid] = line;
    W.arrived++;
    B.blocked++;
    const unsigned s = W.seq.load();
    if (W.arrived + W.exited == (unsigned)W.lanes) {
        complete_warp(B, W);
        lk.unlock();
    } else {
        deadlock_check(B);
        lk.unlock();
        wait_for_change(W.seq, s);
    }
    // Until every lane of the warp has read them, the results cannot change: the next
    // collective needs this lane too.
    B.wait_op[c.tid] = nullptr;
    c.wepoch = W.wepoch;
    if (src != c.lane) {
        if (src < 0 || src >= W.lanes || W.was_gone[src]) {
            const std::string msg = std::string(op) + ": lane " + std::to_string(c.lane) + " reads lane " +
                                    std::to_string(src) + ", which has " +
                                    (src < 0 || src >= W.lanes ? "no thread" : "exited") + " (undefined in CUDA)";
            fail(msg);
        }
        out = W.result[src];
    }
    return out;
}

void syncwarp(unsigned mask, int line) { (void)exchange("__syncwarp", mask, 0, t_ctx->lane, line); }

// A thread leaves its block: it counts as arrived at every barrier from now on.
void exit_thread(Ctx& c) {
    Block& B = *c.B;
    Warp& W = *c.W;
    std::lock_guard<std::mutex> lk(B.mu);
    W.gone[c.lane] = true;
    W.exited++;
    B.exited++;
    B.wait_op[c.tid] = nullptr;
    if (W.arrived && W.arrived + W.exited == (unsigned)W.lanes) complete_warp(B, W);
    if (B.arrived && B.arrived + B.exited == B.n) release_block(B);
    else if (B.blocked && B.blocked + B.exited == B.n && !c.L->aborted) {
        fail_deadlocked(B, ", after thread " + std::to_string(c.tid) + " exited");
    }
}

// -- shared memory ----------------------------------------------------------------------------

void* shared_static(int id, const char* name, std::size_t size, std::size_t align) {
    Block& B = *t_ctx->B;
    std::unique_lock<std::mutex> lk(B.mu);
    auto it = B.offsets.find(id);
    if (it != B.offsets.end()) return B.arena.get() + it->second;
    std::size_t off = (B.used + align - 1) / align * align;
    if (off + size - B.dyn > STATIC_SHARED_LIMIT) {
        lk.unlock();
        fail(std::string("__shared__ ") + name + ": more than 48 KB of static shared memory");
    }
    std::memset(B.arena.get() + off, 0xff, size);  // uninitialised: NaN / -1, never 0
    B.offsets[id] = off;
    B.names.emplace_back(off, name);
    B.used = off + size;
    return B.arena.get() + off;
}

void* shared_dynamic() { return t_ctx->B->arena.get(); }

uint3 thread_idx() { return t_ctx->tidx; }
uint3 block_idx() { return t_ctx->B->idx; }
dim3 block_dim() { return t_ctx->L->block; }
dim3 grid_dim() { return t_ctx->L->grid; }
int lane_id() { return t_ctx->lane; }
void fence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
void fail_kernel(const char* msg) { fail(msg); }

// -- checked builds: memcheck and racecheck ---------------------------------------------------

struct Acc {  // one access: who, and in which barrier interval
    unsigned block = 0, tid = 0, epoch = 0, wepoch = 0;
    unsigned char kind = 0;  // 0 none, 1 plain, 2 atomic
    bool write = false;
};
struct Cell {
    Acc w, r, r2;  // the last write; the last read and an earlier read unordered with it
};
constexpr int SHARDS = 64;
struct Shard {
    std::mutex mu;
    std::unordered_map<std::uint64_t, Cell> cells;
};
Shard shadow[SHARDS];

bool ordered(const Acc& a, const Acc& b) {  // does a happen before b (or is it b's own)?
    if (a.block == b.block && a.tid == b.tid) return true;
    if (a.kind == 2 && b.kind == 2) return true;  // atomics never race with each other
    if (a.block != b.block) return false;  // blocks of a grid are never ordered
    if (a.epoch != b.epoch) return a.epoch < b.epoch;
    return a.tid / 32 == b.tid / 32 && a.wepoch < b.wepoch;
}

struct Segment { std::uintptr_t lo, hi; };
std::vector<Segment> static_data;
std::once_flag static_once;

void find_static_data() {
    Dl_info info;
    if (!dladdr((void*)&find_static_data, &info)) return;
    dl_iterate_phdr([](dl_phdr_info* p, std::size_t, void* base) -> int {
        if (p->dlpi_addr != (ElfW(Addr))base) return 0;
        for (int i = 0; i < p->dlpi_phnum; ++i)
            if (p->dlpi_phdr[i].p_type == PT_LOAD)
                static_data.push_back({p->dlpi_addr + p->dlpi_phdr[i].p_vaddr,
                                       p->dlpi_addr + p->dlpi_phdr[i].p_vaddr + p->dlpi_phdr[i].p_memsz});
        return 1;
    }, info.dli_fbase);
}

[[noreturn]] void bad_access(Ctx& c, const std::string& msg, bool says_who = false) {
    c.L->fail(says_who ? msg : msg + " (" + here() + ")");
    c.in_kernel = false;
    siglongjmp(c.jb, 1);  // out of the kernel before the access: no lock is held here
}

std::string describe(Launch& L, Block& B, std::uint64_t key) {  // a shadow key in words
    char buf[200];
    if (key >> 63) {
        const std::size_t off = key & 0xffffffffu;
        const char* var = "dynamic shared memory";
        std::size_t base = 0;
        for (auto& [o, name] : B.names)
            if (o <= off) { var = name; base = o; }
        std::snprintf(buf, sizeof buf, "shared memory `%s` + %zu bytes", var, off - base);
        return buf;
    }
    for (int i = 0; i < L.nparams; ++i) {
        const auto lo = L.regions[2 * i], hi = L.regions[2 * i + 1];
        if (key >= lo && key < hi) {
            std::snprintf(buf, sizeof buf, "argument %d (%s) + %llu bytes", i, L.params[i],
                          (unsigned long long)(key - lo));
            return buf;
        }
    }
    return "?";
}

std::string who(Launch& L, const Acc& a) {
    return std::string(a.kind == 2 ? "an atomic " : "") + (a.write ? "write" : "read") + " by " +
           thread_name(L, a.block, a.tid) + " (barrier interval " + std::to_string(a.epoch) + ")";
}

void record(Ctx& c, std::uint64_t key, bool write, bool atomic) {
    const Acc now{c.B->linear, c.tid, c.epoch, c.wepoch, (unsigned char)(atomic ? 2 : 1), write};
    Shard& s = shadow[(key >> 2) % SHARDS];
    Acc seen;
    {
        std::lock_guard<std::mutex> lk(s.mu);
        Cell& cell = s.cells[key];
        if (cell.w.kind && !ordered(cell.w, now)) seen = cell.w;
        else if (write && cell.r.kind && !ordered(cell.r, now)) seen = cell.r;
        else if (write && cell.r2.kind && !ordered(cell.r2, now)) seen = cell.r2;
        else {
            if (write) {
                cell.w = now;
                cell.r = cell.r2 = Acc{};
            } else if (!cell.r.kind || (cell.r.block == now.block && cell.r.tid == now.tid)) {
                cell.r = now;
            } else if (ordered(cell.r, now)) {
                if (cell.r2.kind && ordered(cell.r2, now)) cell.r2 = Acc{};
                cell.r = now;
            } else {
                cell.r2 = cell.r;
                cell.r = now;
            }
            return;
        }
    }
    bad_access(c, "data race on " + describe(*c.L, *c.B, key) + ": " + who(*c.L, now) + " and " +
                      who(*c.L, seen) + ", with no barrier between them" +
                      (seen.block != now.block ? " (blocks of a grid are never ordered)" : ""),
               true);
}

std::string nearest(Launch& L, std::uintptr_t a) {
    std::string best = "outside every argument";
    unsigned long long dist = ~0ull;
    for (int i = 0; i < L.nparams; ++i) {
        const auto lo = L.regions[2 * i], hi = L.regions[2 * i + 1];
        if (!hi) continue;
        char buf[200];
        if (a >= hi && a - hi < dist) {
            dist = a - hi;
            std::snprintf(buf, sizeof buf, "%llu bytes past the end of argument %d (%s, %llu bytes)",
                          (unsigned long long)(a - hi), i, L.params[i], (unsigned long long)(hi - lo));
            best = buf;
        } else if (a < lo && lo - a < dist) {
            dist = lo - a;
            std::snprintf(buf, sizeof buf, "%llu bytes before argument %d (%s)", (unsigned long long)(lo - a), i,
                          L.params[i]);
            best = buf;
        }
    }
    return best;
}

void access(void* p, std::size_t size, bool write, bool atomic = false) {
    Ctx* cp = t_ctx;
    if (!cp || !cp->in_kernel) return;
    Ctx& c = *cp;
    const std::uintptr_t a = (std::uintptr_t)p;
    if (a >= c.stack_lo && a + size <= c.stack_hi) return;  // the thread's own locals
    Launch& L = *c.L;
    if (L.aborted.load(std::memory_order_relaxed)) {  // another thread failed: stop here too
        c.in_kernel = false;
        siglongjmp(c.jb, 1);
    }
    const char* what = write ? "write" : "read";
    Block& B = *c.B;
    const std::uintptr_t sh = (std::uintptr_t)B.arena.get();
    if (a >= sh && a < sh + B.cap) {
        const std::size_t used = B.used.load();
        if (a + size > sh + used) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "out-of-bounds shared memory %s of %zu bytes at offset %zu (%zu bytes in use)",
                          what, size, (std::size_t)(a - sh), used);
            bad_access(c, buf);
        }
        const std::uint64_t base = (1ull << 63) | ((std::uint64_t)B.linear << 32);
        const std::size_t step = size >= 4 ? 4 : 1;
        for (std::size_t o = 0; o < size; o += step) record(c, base | (a + o - sh), write, atomic);
        return;
    }
    for (int i = 0; i < L.nparams; ++i) {
        const auto lo = L.regions[2 * i], hi = L.regions[2 * i + 1];
        if (a >= lo && a < hi) {
            if (a + size > hi) {
                char buf[200];
                std::snprintf(buf, sizeof buf, "out-of-bounds global %s of %zu bytes: it ends past argument %d (%s)",
                              what, size, i, L.params[i]);
                bad_access(c, buf);
            }
            const std::size_t step = size >= 4 ? 4 : 1;
            for (std::size_t o = 0; o < size; o += step) record(c, a + o, write, atomic);
            return;
        }
    }
    std::call_once(static_once, find_static_data);
    for (auto& s : static_data)
        if (a >= s.lo && a + size <= s.hi) return;  // the module's own constants
    char buf[300];
    std::snprintf(buf, sizeof buf, "out-of-bounds global %s of %zu bytes at %p: %s", what, size, p,
                  nearest(L, a).c_str());
    bad_access(c, buf);
}

// -- atomics ----------------------------------------------------------------------------------

std::mutex atomic_mutex;
template <class T> T atomic_add_impl(T* p, T v) {
    access(p, sizeof(T), true, true);
    std::lock_guard<std::mutex> lk(atomic_mutex);
    T old = *p;
    *p = old + v;
    return old;
}
float atomic_add(float* p, float v) { return atomic_add_impl(p, v); }
double atomic_add(double* p, double v) { return atomic_add_impl(p, v); }
int atomic_add(int* p, int v) { return atomic_add_impl(p, v); }
unsigned atomic_add(unsigned* p, unsigned v) { return atomic_add_impl(p, v); }
unsigned long long atomic_add(unsigned long long* p, unsigned long long v) { return atomic_add_impl(p, v); }

// -- the thread pool and launches -------------------------------------------------------------

// Worker i runs CUDA thread i of the current pair of blocks. Workers idle for a while exit, so
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
    // job did not finish within `timeout` (a deadlock: the pool is then abandoned).
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
                        remaining_ -= (int)(n - i);
                        for (unsigned j = 0; j < i; ++j) workers_[j]->go.release();
                        return false;  // threads released so far finish; the pool is abandoned
                    }
                    w.alive = true;
                }
            }
            for (unsigned i = 0; i < n; ++i) workers_[i]->go.release();
        }
        if (done_.try_acquire_for(timeout)) return true;
        why = "the block did not finish within " + std::to_string(timeout.count()) +
              " ms: a deadlock (a thread that never reaches a barrier, or an endless loop?)";
        return false;
    }
};

Pool* pool = new Pool;  // leaked on purpose: detached workers may outlive static destructors

void stack_range(Ctx& c) {
    pthread_attr_t attr;
    void* lo = nullptr;
    std::size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &lo, &size);
        pthread_attr_destroy(&attr);
    }
    c.stack_lo = (std::uintptr_t)lo;
    c.stack_hi = (std::uintptr_t)lo + size;
}

void run_thread(Launch& L, Block& B, unsigned tid) {
    Ctx c;
    c.L = &L;
    c.B = &B;
    c.W = B.warps[tid / 32].get();
    c.tid = tid;
    c.lane = (int)(tid % 32);
    c.tidx = {tid % L.block.x, (tid / L.block.x) % L.block.y, tid / (L.block.x * L.block.y)};
    stack_range(c);
    t_ctx = &c;
    const unsigned csr = _mm_getcsr();
    if (L.ftz) _mm_setcsr(csr | 0x8040);  // flush-to-zero and denormals-are-zero, as -ftz=true
    if (sigsetjmp(c.jb, 0) == 0) {
        try {
            c.in_kernel = true;
            L.body(L.args);
        } catch (Abort&) {
        } catch (std::exception& e) {
            L.fail(std::string("exception in kernel: ") + e.what());
        }
    }
    c.in_kernel = false;
    _mm_setcsr(csr);
    exit_thread(c);
    t_ctx = nullptr;
}

int launch(const char* kernel, void (*body)(void**), void** args, const unsigned* g, const unsigned* b,
           const unsigned long long* regions, const char* const* params, int nparams,
           unsigned long long dyn_shared, char* err, int errlen) {
    std::lock_guard<std::mutex> lk(launch_mutex);
    auto report = [&](const std::string& msg) {
        std::snprintf(err, (std::size_t)errlen, "%s: %s", kernel, msg.c_str());
        return 1;
    };
    const unsigned long long n = (unsigned long long)b[0] * b[1] * b[2];
    if (!g[0] || !g[1] || !g[2] || !n) return report("a grid or block dimension is 0");
    if (n > 1024 || b[2] > 64) return report("more than 1024 threads per block (or block.z > 64)");
    for (auto& s : shadow) s.cells.clear();
    auto* L = new Launch;  // leaked if a block deadlocks (its threads still point at it) or throws
    L->kernel = kernel;
    L->body = body;
    L->args = args;
    L->grid = dim3(g[0], g[1], g[2]);
    L->block = dim3(b[0], b[1], b[2]);
    L->regions = regions;
    L->params = params;
    L->nparams = nparams;
    L->dyn_shared = dyn_shared;
    L->ftz = module_ftz.load() != 0;
    const unsigned long long blocks = (unsigned long long)g[0] * g[1] * g[2];
    constexpr unsigned CONCURRENT = 2;
    try {
        for (unsigned long long first = 0; first < blocks && !L->aborted; first += CONCURRENT) {
            const unsigned k = (unsigned)std::min<unsigned long long>(CONCURRENT, blocks - first);
            std::vector<std::unique_ptr<Block>> running;
            for (unsigned j = 0; j < k; ++j) {
                auto blk = std::make_unique<Block>();
                const unsigned long long lin = first + j;
                blk->L = L;
                blk->n = (unsigned)n;
                blk->linear = (unsigned)lin;
                blk->idx = {(unsigned)(lin % g[0]), (unsigned)((lin / g[0]) % g[1]), (unsigned)(lin / ((unsigned long long)g[0] * g[1]))};
                for (unsigned w = 0; w < n; w += 32) {
                    blk->warps.push_back(std::make_unique<Warp>());
                    blk->warps.back()->lanes = (int)std::min<unsigned long long>(32, n - w);
                }
                blk->wait_op.reset(new std::atomic<const char*>[n]());
                blk->wait_line.reset(new std::atomic<int>[n]());
                blk->dyn = dyn_shared;
                blk->used = dyn_shared;
                blk->cap = dyn_shared + STATIC_SHARED_LIMIT;
                blk->arena.reset(new unsigned char[blk->cap]);
                std::memset(blk->arena.get(), 0xff, dyn_shared);
                running.push_back(std::move(blk));
            }
            std::string why;
            Block* bs[CONCURRENT] = {running[0].get(), k > 1 ? running[1].get() : nullptr};
            L->running[0] = bs[0];
            L->running[1] = bs[1];
            if (!pool->run((unsigned)n * k, [L, bs, n](unsigned t) { run_thread(*L, *bs[t / n], t % (unsigned)n); },
                           std::chrono::milliseconds(timeout_ms.load()), why)) {
                L->aborted = true;
                for (auto& blk : running) (void)blk.release();
                pool = new Pool;  // the old one's threads may be stuck for good
                return report(why);
            }
            L->running[0] = L->running[1] = nullptr;
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

}  // namespace cuda_emu

extern "C" int emu_launch(const char* kernel, void (*body)(void**), void** args, const unsigned* grid,
                   const unsigned* block, const unsigned long long* regions, const char* const* params,
                   int nparams, unsigned long long dyn_shared, char* err, int errlen) {
    return cuda_emu::launch(kernel, body, args, grid, block, regions, params, nparams, dyn_shared, err, errlen);
}
API void emu_set_timeout_ms(long long ms) { cuda_emu::timeout_ms = ms; }
API void emu_set_ftz(int on) { cuda_emu::module_ftz = on; }

// ThreadSanitizer's instrumentation calls, for checked builds: every load and store the kernel
// makes, by size. (Entry/exit hooks are turned off by the compiler flags; atomics are the
// runtime's own.)
#define HOOKS(n)                                                                                    \
    extern "C" void __tsan_read##n(void* p) { cuda_emu::access(p, n, false); }                      \
    extern "C" void __tsan_write##n(void* p) { cuda_emu::access(p, n, true); }                      \
    extern "C" void __tsan_unaligned_read##n(void* p) { cuda_emu::access(p, n, false); }            \
    extern "C" void __tsan_unaligned_write##n(void* p) { cuda_emu::access(p, n, true); }            \
    extern "C" void __tsan_volatile_read##n(void* p) { cuda_emu::access(p, n, false); }             \
    extern "C" void __tsan_volatile_write##n(void* p) { cuda_emu::access(p, n, true); }
HOOKS(1)
HOOKS(2)
HOOKS(4)
HOOKS(8)
HOOKS(16)
extern "C" void __tsan_read_range(void* p, unsigned long size) { cuda_emu::access(p, size, false); }
extern "C" void __tsan_write_range(void* p, unsigned long size) { cuda_emu::access(p, size, true); }
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}
