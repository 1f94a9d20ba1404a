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

// Σ_v acc[v] in a fixed tree (V is 4 or 8).
static inline real lanes_sum(const real* acc)
{
    real s[V];
    for (int v = 0; v < V; ++v) s[v] = acc[v];
    for (int w = V / 2; w > 0; w /= 2)
        for (int v = 0; v < w; ++v) s[v] += s[v + w];
    return s[0];
}

// out[r*ldo + j] = Σ_k A[r*lda + k] B[j*ldb + k] for an R × J block: z = x Wᵀ.
template <int R, int J>
static inline void dot_block(const real* A, long long lda, const real* B, long long ldb, int K,
                             real* out, long long ldo)
{
    real acc[R][J][V] = {};
    int k = 0;
    for (; k + V <= K; k += V)
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < J; ++j)
                for (int v = 0; v < V; ++v) acc[r][j][v] += A[r * lda + k + v] * B[j * ldb + k + v];
    for (int v = 0; k + v < K; ++v)
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < J; ++j) acc[r][j][v] += A[r * lda + k + v] * B[j * ldb + k + v];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < J; ++j) out[r * ldo + j] = lanes_sum(acc[r][j]);
}

template <int R>
static void dot_rows(const real* A, long long lda, const real* B, int N, int K, real* out)
{
    int j = 0;
    for (; j + 4 <= N; j += 4) dot_block<R, 4>(A, lda, B + (long long)j * K, K, K, out + j, N);
    for (; j < N; ++j) dot_block<R, 1>(A, lda, B + (long long)j * K, K, K, out + j, N);
}

// C (m × N) = A (m × K) Bᵀ, B (N × K).
static void gemm_nt(const real* A, int m, const real* B, int N, int K, real* C)
{
    int r = 0;
    for (; r + 2 <= m; r += 2) dot_rows<2>(A + (long long)r * K, K, B, N, K, C + (long long)r * N);
    for (; r < m; ++r) dot_rows<1>(A + (long long)r * K, K, B, N, K, C + (long long)r * N);
}

constexpr int KB = 4 * V;  // the columns of a block of BP2's and BP4's results

// BP2: G (m × K) = D (m × N) W (N × K), in blocks of 2 rows × KB columns summed over N.
static void gemm_nn(const real* D, int m, const real* W, int N, int K, real* G)
{
    for (int k0 = 0; k0 < K; k0 += KB) {
        const int kn = K - k0 < KB ? K - k0 : KB;
        for (int r = 0; r < m; r += 2) {
            const int rn = m - r < 2 ? 1 : 2;
            real acc[2][KB] = {};
            for (int j = 0; j < N; ++j) {
                const real* w = W + (long long)j * K + k0;
                for (int i = 0; i < rn; ++i) {
                    const real d = D[(long long)(r + i) * N + j];
                    if (kn == KB)
                        for (int v = 0; v < KB; ++v) acc[i][v] += d * w[v];
                    else
                        for (int v = 0; v < kn; ++v) acc[i][v] += d * w[v];
                }
            }
            for (int i = 0; i < rn; ++i)
                std::memcpy(G + (long long)(r + i) * K + k0, acc[i], sizeof(real) * kn);
        }
    }
}

// BP4 and the update: for each weight (j, k), g = Σ_r D[r, j] X[r, k] (δ carries 1/m), then
// update(index, g); columns in blocks of KB, two units at a time.
template <class Update>
static void grad_update(const real* D, int m, const real* X, int N, int K, Update update)
{
    for (int k0 = 0; k0 < K; k0 += KB) {
        const int kn = K - k0 < KB ? K - k0 : KB;
        for (int j = 0; j < N; j += 2) {
            const int jn = N - j < 2 ? 1 : 2;
            real acc[2][KB] = {};
            for (int r = 0; r < m; ++r) {
                const real* x = X + (long long)r * K + k0;
                for (int i = 0; i < jn; ++i) {
                    const real d = D[(long long)r * N + j + i];
                    if (kn == KB)
                        for (int v = 0; v < KB; ++v) acc[i][v] += d * x[v];
                    else
                        for (int v = 0; v < kn; ++v) acc[i][v] += d * x[v];
                }
            }
            for (int i = 0; i < jn; ++i) update((long long)(j + i) * K + k0, acc[i], kn);
        }
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
};

struct Layer {
    real *z, *a, *d, *dropped;
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
        gemm_nt(in, m, e.w[l], n, n_in, c.z);
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
            for (long long i = 0; i < (long long)m * n; ++i) c.a[i] = act_fn(act, c.z[i]);
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
        gemm_nn(L[l].d, m, e.w[l], e.sizes[l + 1], h, p.d);
        const unsigned stream = e.has_drop ? dropout_stream(e.key, draw, l - 1) : 0u;
        for (long long i = 0; i < (long long)m * h; ++i) {
            real g = p.d[i];
            if (e.has_drop) g = g * (dropout_keep(stream, i, e.cut) ? e.scale : (real)0);
            p.d[i] = g * act_prime(act, p.z[i], p.a[i]);
        }
    }
}

// The epoch: each batch gathered in the order perm, its deltas, then per layer the gradients
// (BP4, BP3), the penalties and update(tensor, p, i, g) of each parameter; prepare() before
// each step's updates. Returns 0, or 1 when the buffers could not be allocated.
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
        for (int l = 0; l < layers; ++l) total += B * e.sizes[l + 1] * 4;
        buf.assign(total, (real)0);
    } catch (const std::bad_alloc&) {
        return 1;
    }
    real* x = buf.data();
    real* next = x + B * n0;
    for (int l = 0; l < layers; ++l) {
        const long long w = B * e.sizes[l + 1];
        L[l] = Layer{next, next + w, next + 2 * w, next + 3 * w};
        next += 4 * w;
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
        step_deltas(e, L, x, rows.data(), m, (unsigned long long)(e.draw + bt), cost_sum, hit_sum);
        prepare();
        for (int l = 0; l < layers; ++l) {
            const int n_in = e.sizes[l], n = e.sizes[l + 1];
            const real* in = l == 0 ? x : (e.has_drop ? L[l - 1].dropped : L[l - 1].a);
            const real* d = L[l].d;
            real* w = e.w[l];
            grad_update(d, m, in, n, n_in, [&](long long at, const real* g, int count) {
                for (int v = 0; v < count; ++v) {
                    const real pv = w[at + v];
                    update(l, w, at + v, penalize(g[v], pv, e.l2n, e.l1n));
                }
            });
            real* b = e.b[l];
            for (int j = 0; j < n; ++j) {  // BP3: Σ_r δ_r,j, in row order
                real s = (real)0;
                for (int r = 0; r < m; ++r) s += d[(long long)r * n + j];
                update(layers + l, b, j, s);
            }
        }
        if (bt + 1 == batches && e.out_a != nullptr)
            std::memcpy(e.out_a, L[layers - 1].a, sizeof(real) * m * e.sizes[layers]);
    }
    e.sums[0] += cost_sum;
    e.hits[0] += hit_sum;
    return 0;
}
