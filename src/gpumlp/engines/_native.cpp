// The native CPU engine (gpumlp/engines/_native.py): a whole epoch in one call. Appended to the
// generated prelude (_native_src.py), whose activations, costs, dropout hash, penalties,
// output_error and better it uses; each optimizer's `gpumlp_epoch_<name>` (generated from the
// optimizer's CUDA form) calls run_epoch with its update of one parameter and its per-step
// preparation. Nothing here is the math of an activation, a cost, an optimizer or the hash.
//
// Layout: row-major, W^l (n_(l+1) × n_l), a batch's rows one after another, as NumPy's. The
// three products of a step are written for one core: register blocks of R rows × J columns
// whose accumulators are V-lane vectors over the contracted index (independent lanes, so the
// compiler vectorizes them without reassociating a sum: the order is the code's, fixed), then
// the lanes summed in a fixed tree. Nothing depends on the data's values but the values.

#include <cstring>
#include <new>
#include <vector>

constexpr int V = 32 / (int)sizeof(real);  // the lanes of one 256-bit vector
typedef real vec __attribute__((vector_size(32)));

static inline vec load(const real* p)
{
    vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

static inline void store(real* p, vec v) { std::memcpy(p, &v, sizeof v); }

// A vector the compiler must keep in a register once loaded: without this, GCC folds the load
// into every product that uses it (a load per multiply-add), and the products are load-bound.
static inline vec held(vec v)
{
#if defined(__GNUC__) && defined(__AVX512VL__)
    asm("" : "+v"(v));  // any of the 32 vector registers
#elif defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    asm("" : "+x"(v));
#endif
    return v;
}

// Σ_v acc[v] in a fixed tree.
static inline real lanes_sum(vec acc)
{
    real s[V];
    store(s, acc);
    for (int w = V / 2; w > 0; w /= 2)
        for (int v = 0; v < w; ++v) s[v] += s[v + w];
    return s[0];
}

// out[r*ldo + j] = Σ_k A[r*lda + k] B[j*ldb + k] for an R × J block (z = x Wᵀ): vectors over k,
// then the lanes, then the K % V last terms in order.
template <int R, int J>
static inline void dot_block(const real* A, long long lda, const real* B, long long ldb, int K,
                             real* out, long long ldo)
{
    vec acc[R][J];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < J; ++j) acc[r][j] = vec{};
    int k = 0;
    for (; k + V <= K; k += V) {
        vec a[R], b[J];
        for (int r = 0; r < R; ++r) a[r] = held(load(A + r * lda + k));
        for (int j = 0; j < J; ++j) b[j] = held(load(B + j * ldb + k));
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < J; ++j) acc[r][j] += a[r] * b[j];
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < J; ++j) {
            real s = lanes_sum(acc[r][j]);
            for (int t = k; t < K; ++t) s += A[r * lda + t] * B[j * ldb + t];
            out[r * ldo + j] = s;
        }
}

template <int R>
static void dot_rows(const real* A, long long lda, const real* B, int N, int K, real* out)
{
    int j = 0;
    for (; j + 4 <= N; j += 4) dot_block<R, 4>(A, lda, B + (long long)j * K, K, K, out + j, N);
    for (; j + 2 <= N; j += 2) dot_block<R, 2>(A, lda, B + (long long)j * K, K, K, out + j, N);
    for (; j < N; ++j) dot_block<R, 1>(A, lda, B + (long long)j * K, K, K, out + j, N);
}

// C (m × N) = A (m × K) Bᵀ, B (N × K): blocks of 4 rows × 4 units.
static void gemm_nt(const real* A, int m, const real* B, int N, int K, real* C)
{
    int r = 0;
    for (; r + 4 <= m; r += 4) dot_rows<4>(A + (long long)r * K, K, B, N, K, C + (long long)r * N);
    for (; r + 2 <= m; r += 2) dot_rows<2>(A + (long long)r * K, K, B, N, K, C + (long long)r * N);
    for (; r < m; ++r) dot_rows<1>(A + (long long)r * K, K, B, N, K, C + (long long)r * N);
}

// out[i][k0 + …] = Σ_s coef(i, s) · rows(s)[k0 + …] for I outputs and C vectors of columns:
// BP2 (δ W: i a batch row, s a unit) and BP4 (δᵀ x: i a unit, s a batch row), each sum in s's
// order.
template <int I, int C, class Coef, class Row>
static inline void axpy_block(int S, int k0, Coef coef, Row row, real* const* out)
{
    vec acc[I][C];
    for (int i = 0; i < I; ++i)
        for (int c = 0; c < C; ++c) acc[i][c] = vec{};
    for (int s = 0; s < S; ++s) {
        const real* x = row(s) + k0;
        vec xv[C];
        for (int c = 0; c < C; ++c) xv[c] = held(load(x + c * V));
        for (int i = 0; i < I; ++i) {
            const real d = coef(i, s);
            for (int c = 0; c < C; ++c) acc[i][c] += d * xv[c];
        }
    }
    for (int i = 0; i < I; ++i)
        for (int c = 0; c < C; ++c) store(out[i] + k0 + c * V, acc[i][c]);
}

// The columns 0 … K of I outputs: blocks of 4 vectors, then single vectors, then the last
// K % V columns one by one.
template <int I, class Coef, class Row>
static inline void axpy_rows(int S, int K, Coef coef, Row row, real* const* out)
{
    int k = 0;
    for (; k + 4 * V <= K; k += 4 * V) axpy_block<I, 4>(S, k, coef, row, out);
    for (; k + V <= K; k += V) axpy_block<I, 1>(S, k, coef, row, out);
    for (; k < K; ++k)
        for (int i = 0; i < I; ++i) {
            real acc = (real)0;
            for (int s = 0; s < S; ++s) acc += coef(i, s) * row(s)[k];
            out[i][k] = acc;
        }
}

// BP2: G (m × K) = D (m × N) W (N × K).
static void gemm_nn(const real* D, int m, const real* W, int N, int K, real* G)
{
    auto row = [&](int s) { return W + (long long)s * K; };
    int r = 0;
    for (; r + 2 <= m; r += 2) {
        real* out[2] = {G + (long long)r * K, G + (long long)(r + 1) * K};
        axpy_rows<2>(N, K, [&](int i, int s) { return D[(long long)(r + i) * N + s]; }, row, out);
    }
    for (; r < m; ++r) {
        real* out[1] = {G + (long long)r * K};
        axpy_rows<1>(N, K, [&](int, int s) { return D[(long long)r * N + s]; }, row, out);
    }
}

// BP4 for the columns k0 … k0 + C·V of every unit: GW[j][k] = Σ_r D[r][j] X[r][k], units in
// blocks of 4, 2, 1 (the batch's slab of X stays in L1 across the units).
template <int C>
static inline void tn_columns(const real* D, int m, const real* X, int N, int K, real* GW, int k0)
{
    auto row = [&](int s) { return X + (long long)s * K; };
    int j = 0;
    for (; j + 4 <= N; j += 4) {
        real* out[4] = {GW + (long long)j * K, GW + (long long)(j + 1) * K,
                        GW + (long long)(j + 2) * K, GW + (long long)(j + 3) * K};
        axpy_block<4, C>(m, k0, [&](int i, int s) { return D[(long long)s * N + j + i]; }, row,
                         out);
    }
    for (; j + 2 <= N; j += 2) {
        real* out[2] = {GW + (long long)j * K, GW + (long long)(j + 1) * K};
        axpy_block<2, C>(m, k0, [&](int i, int s) { return D[(long long)s * N + j + i]; }, row,
                         out);
    }
    for (; j < N; ++j) {
        real* out[1] = {GW + (long long)j * K};
        axpy_block<1, C>(m, k0, [&](int, int s) { return D[(long long)s * N + j]; }, row, out);
    }
}

// BP4: GW (N × K) = Dᵀ X, D (m × N), X (m × K) (δ carries the batch mean's 1/m): column blocks
// of 4 vectors, then single vectors, then the last K % V columns one by one.
static void gemm_tn(const real* D, int m, const real* X, int N, int K, real* GW)
{
    int k = 0;
    for (; k + 4 * V <= K; k += 4 * V) tn_columns<4>(D, m, X, N, K, GW, k);
    for (; k + V <= K; k += V) tn_columns<1>(D, m, X, N, K, GW, k);
    for (; k < K; ++k)
        for (int j = 0; j < N; ++j) {
            real acc = (real)0;
            for (int s = 0; s < m; ++s) acc += D[(long long)s * N + j] * X[(long long)s * K + k];
            GW[(long long)j * K + k] = acc;
        }
}

struct EpochArgs {  // mirrored by _native.py's ctypes Structure, field for field
    const real* X;
    const real* Y;
    const long long* labels;
    const long long* perm;  // the epoch's order, or null: in order
    long long n_rows;
    long long batch;
    const int* sizes;
    const int* acts;
    int layers;
    int kind;
    int cost;
    int has_drop;
    unsigned cut;
    real eps;
    real scale;
    real l2n;
    real l1n;
    unsigned long long key;
    long long draw;
    real* const* w;  // per layer
    real* const* b;
    double* sums;    // += the epoch's cost sum
    long long* hits; // += the epoch's hits
    real* out_a;     // the last batch's outputs (m × n_L), or null
    void* blas;      // NumPy's BLAS cblas_?gemm (ILP64), or null: the products below only
    long long blas_from;  // the multiply-adds from which a product goes to the BLAS
};

// cblas_sgemm / cblas_dgemm with 64-bit integers (the ILP64 OpenBLAS NumPy ships).
typedef void (*blas_gemm)(int order, int trans_a, int trans_b, long long M, long long N,
                          long long K, real alpha, const real* A, long long lda, const real* B,
                          long long ldb, real beta, real* C, long long ldc);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static inline bool use_blas(const EpochArgs& e, long long M, long long N, long long K)
{
    return e.blas != nullptr && M * N * K >= e.blas_from;
}

// z = x Wᵀ (m × N), BP4's δᵀ x (N × K) and BP2's δ W (m × K), by the BLAS where it is given
// and the product is large, else by the blocked products above.
static void product_nt(const EpochArgs& e, const real* A, int m, const real* B, int N, int K,
                       real* C)
{
    if (use_blas(e, m, N, K))
        ((blas_gemm)e.blas)(ROW_MAJOR, NO_TRANS, TRANS, m, N, K, (real)1, A, K, B, K, (real)0, C,
                            N);
    else
        gemm_nt(A, m, B, N, K, C);
}

static void product_tn(const EpochArgs& e, const real* D, int m, const real* X, int N, int K,
                       real* GW)
{
    if (use_blas(e, N, K, m))
        ((blas_gemm)e.blas)(ROW_MAJOR, TRANS, NO_TRANS, N, K, m, (real)1, D, N, X, K, (real)0, GW,
                            K);
    else
        gemm_tn(D, m, X, N, K, GW);
}

static void product_nn(const EpochArgs& e, const real* D, int m, const real* W, int N, int K,
                       real* G)
{
    if (use_blas(e, m, K, N))
        ((blas_gemm)e.blas)(ROW_MAJOR, NO_TRANS, NO_TRANS, m, K, N, (real)1, D, N, W, K, (real)0,
                            G, K);
    else
        gemm_nn(D, m, W, N, K, G);
}

struct Layer {
    real *z, *a, *d, *dropped, *gw, *gb;  // per batch row; the gradients of W^l and b^l
};

// One step's forward pass, output error, row costs and hits, and backward deltas (BP1, BP2),
// for the m rows gathered in x; the weights are not yet changed.
static void step_deltas(const EpochArgs& e, const std::vector<Layer>& L, const real* x,
                        const long long* rows, int m, unsigned long long draw, double& cost_sum,
                        long long& hit_sum)
{
    const int layers = e.layers;
    const real* in = x;
    for (int l = 0; l < layers; ++l) {  // forward: z = in Wᵀ + b, a = σ(z)
        const int n_in = e.sizes[l], n = e.sizes[l + 1], act = e.acts[l];
        const Layer& c = L[l];
        product_nt(e, in, m, e.w[l], n, n_in, c.z);
        const real* b = e.b[l];
        for (int r = 0; r < m; ++r)
            for (int j = 0; j < n; ++j) c.z[r * n + j] += b[j];
        if (act == ACT_SOFTMAX) {
            for (int r = 0; r < m; ++r) {  // shifted by the row max, so exp never overflows
                const real* zr = c.z + (long long)r * n;
                real* ar = c.a + (long long)r * n;
                real mx = zr[0];
                for (int j = 0; j < n; ++j) mx = zr[j] > mx ? zr[j] : mx;
                real s = (real)0;
                for (int j = 0; j < n; ++j) {
                    ar[j] = exp(zr[j] - mx);
                    s += ar[j];
                }
                for (int j = 0; j < n; ++j) ar[j] = ar[j] / s;
            }
        } else {
            act_rows(act, c.z, c.a, (long long)m * n);
        }
        in = c.a;
        if (e.has_drop && l < layers - 1) {
            const unsigned stream = dropout_stream(e.key, draw, l);
            for (long long i = 0; i < (long long)m * n; ++i)
                c.dropped[i] = c.a[i] * (dropout_keep(stream, i, e.cut) ? e.scale : (real)0);
            in = c.dropped;
        }
    }
    const int n = e.sizes[layers];
    const Layer& o = L[layers - 1];
    const real scale = (real)(1.0 / (double)m);
    for (int r = 0; r < m; ++r) {  // BP1, the row's cost and hit (as the output_delta kernel)
        const long long at = (long long)r * n, src = rows[r];
        const real* y = e.Y + src * n;
        real ysum = (real)0, ga = (real)0, c = (real)0, best = o.a[at];
        int arg = 0;
        for (int j = 0; j < n; ++j) {
            const real aj = o.a[at + j], yj = y[j];
            ysum += yj;
            if (e.kind == DELTA_SOFTMAX) ga += cost_grad(e.cost, aj, yj, e.eps) * aj;
            c += cost_term(e.cost, aj, yj, e.eps);
            if (better(aj, j, best, arg)) {
                best = aj;
                arg = j;
            }
        }
        for (int j = 0; j < n; ++j)
            o.d[at + j] = output_error(e.kind, e.cost, e.acts[layers - 1], o.z[at + j],
                                       o.a[at + j], y[j], ga, ysum, e.eps) * scale;
        cost_sum += (double)c;
        const long long pred = n == 1 ? (long long)(o.a[at] > (real)0.5) : (long long)arg;
        hit_sum += pred == e.labels[src];
    }
    for (int l = layers - 1; l > 0; --l) {  // BP2: δ^(l-1) = (δ^l W^l) ⊙ keep ⊙ σ'(z^(l-1))
        const int h = e.sizes[l], act = e.acts[l - 1];
        const Layer& p = L[l - 1];
        product_nn(e, L[l].d, m, e.w[l], e.sizes[l + 1], h, p.d);
        const unsigned stream = e.has_drop ? dropout_stream(e.key, draw, l - 1) : 0u;
        if (e.has_drop)
            for (long long i = 0; i < (long long)m * h; ++i)
                p.d[i] = p.d[i] * (dropout_keep(stream, i, e.cut) ? e.scale : (real)0);
        times_prime_rows(act, p.d, p.z, p.a, (long long)m * h);
    }
}

// The epoch: each batch gathered in the order perm, its deltas, then per layer the gradients
// (BP4, BP3), then update(t, p, g, count, l2n, l1n) of each tensor t (the penalties on the
// weights only); prepare() before each step's updates. Returns 0, or 1 when the buffers could not be allocated.
template <class Update, class Prepare>
static int run_epoch(const EpochArgs& e, Update update, Prepare prepare)
{
    const int layers = e.layers, n0 = e.sizes[0];
    const long long B = e.batch;
    std::vector<real> buf;
    std::vector<Layer> L(layers);
    std::vector<long long> rows(B > 0 ? B : 1);
    try {
        long long total = B * n0;
        for (int l = 0; l < layers; ++l)
            total += (B * 4 + e.sizes[l] + 1) * (long long)e.sizes[l + 1];
        buf.assign(total, (real)0);
    } catch (const std::bad_alloc&) {
        return 1;
    }
    real* x = buf.data();
    real* next = x + B * n0;
    for (int l = 0; l < layers; ++l) {
        const long long w = B * e.sizes[l + 1];
        L[l] = Layer{next, next + w, next + 2 * w, next + 3 * w, next + 4 * w, nullptr};
        next += 4 * w + (long long)e.sizes[l] * e.sizes[l + 1];
        L[l].gb = next;
        next += e.sizes[l + 1];
    }
    const long long batches = B > 0 ? (e.n_rows + B - 1) / B : 0;
    double cost_sum = 0.0;
    long long hit_sum = 0;
    for (long long bt = 0; bt < batches; ++bt) {
        const long long base = bt * B;
        const int m = (int)(e.n_rows - base < B ? e.n_rows - base : B);
        for (int r = 0; r < m; ++r) {  // the gather
            rows[r] = e.perm ? e.perm[base + r] : base + r;
            std::memcpy(x + (long long)r * n0, e.X + rows[r] * n0, sizeof(real) * n0);
        }
        // The next batch's rows are fetched from memory while this one computes: the rows are
        // scattered over X, and waiting for them took a fifth of an epoch at batch 100.
        for (long long r = base + B; r < base + 2 * B && r < e.n_rows; ++r) {
            const char* row = (const char*)(e.X + (e.perm ? e.perm[r] : r) * n0);
            for (long long at = 0; at < (long long)sizeof(real) * n0; at += 64)
                __builtin_prefetch(row + at, 0, 2);
        }
        step_deltas(e, L, x, rows.data(), m, (unsigned long long)(e.draw + bt), cost_sum, hit_sum);
        prepare();
        for (int l = 0; l < layers; ++l) {
            const int n_in = e.sizes[l], n = e.sizes[l + 1];
            const real* in = l == 0 ? x : (e.has_drop ? L[l - 1].dropped : L[l - 1].a);
            const real* d = L[l].d;
            product_tn(e, d, m, in, n, n_in, L[l].gw);  // BP4
            for (int j = 0; j < n; ++j) {  // BP3: Σ_r δ_r,j, in row order
                real s = (real)0;
                for (int r = 0; r < m; ++r) s += d[(long long)r * n + j];
                L[l].gb[j] = s;
            }
            update(l, e.w[l], L[l].gw, (long long)n * n_in, e.l2n, e.l1n);
            update(layers + l, e.b[l], L[l].gb, (long long)n, (real)0, (real)0);
        }
        if (bt + 1 == batches && e.out_a != nullptr)
            std::memcpy(e.out_a, L[layers - 1].a, sizeof(real) * m * e.sizes[layers]);
    }
    e.sums[0] += cost_sum;
    e.hits[0] += hit_sum;
    return 0;
}
