// The native engine's products (gpumlp/engines/_native.py), for one CPU core: z = x Wᵀ, BP4's
// δᵀ x and BP2's δ W, row-major as NumPy's (W^l is n_(l+1) × n_l, a batch's rows one after
// another). Register blocks whose accumulators are 256-bit vectors over the contracted index
// (independent lanes, so the compiler vectorizes them without reassociating a sum: the order
// is the code's, fixed), then the lanes summed in a fixed tree. _native_blas.cpp follows.

#include <cstring>

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

// out[r*ldo + j] = Σ_k A[r][k] B[j*ldb + k] + bias[j] for an R × J block (z = x Wᵀ + b, A the
// rows): vectors over k, then the lanes, then the K % V last terms in order, then the bias.
template <int R, int J>
static inline void dot_block(const real* const* A, const real* B, long long ldb, int K,
                             const real* bias, real* out, long long ldo)
{
    vec acc[R][J];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < J; ++j) acc[r][j] = vec{};
    int k = 0;
    for (; k + V <= K; k += V) {
        vec a[R], b[J];
        for (int r = 0; r < R; ++r) a[r] = held(load(A[r] + k));
        for (int j = 0; j < J; ++j) b[j] = held(load(B + j * ldb + k));
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < J; ++j) acc[r][j] += a[r] * b[j];
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < J; ++j) {
            real s = lanes_sum(acc[r][j]);
            for (int t = k; t < K; ++t) s += A[r][t] * B[j * ldb + t];
            out[r * ldo + j] = s + bias[j];
        }
}

template <int R>
static void dot_rows(const real* const* A, const real* B, int N, int K, const real* b, real* out)
{
    int j = 0;
    for (; j + 4 <= N; j += 4) dot_block<R, 4>(A, B + (long long)j * K, K, K, b + j, out + j, N);
    for (; j + 2 <= N; j += 2) dot_block<R, 2>(A, B + (long long)j * K, K, K, b + j, out + j, N);
    for (; j < N; ++j) dot_block<R, 1>(A, B + (long long)j * K, K, K, b + j, out + j, N);
}

// C (m × N) = A (m rows of K) Bᵀ + b, B (N × K), b (N): blocks of 4 rows × 4 units.
static void gemm_nt(const real* const* A, int m, const real* B, int N, int K, const real* b,
                    real* C)
{
    int r = 0;
    for (; r + 4 <= m; r += 4) dot_rows<4>(A + r, B, N, K, b, C + (long long)r * N);
    for (; r + 2 <= m; r += 2) dot_rows<2>(A + r, B, N, K, b, C + (long long)r * N);
    for (; r < m; ++r) dot_rows<1>(A + r, B, N, K, b, C + (long long)r * N);
}

// z (m × N) = tᵀ + b, t (N × m): in 16 × 16 tiles, each read and written in L1.
static void transpose_bias(const real* t, int N, int m, const real* b, real* z)
{
    constexpr int T = 16;
    for (int r0 = 0; r0 < m; r0 += T)
        for (int j0 = 0; j0 < N; j0 += T) {
            const int r1 = r0 + T < m ? r0 + T : m, j1 = j0 + T < N ? j0 + T : N;
            for (int r = r0; r < r1; ++r)
                for (int j = j0; j < j1; ++j)
                    z[(long long)r * N + j] = t[(long long)j * m + r] + b[j];
        }
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
static inline void tn_columns(const real* D, int m, const real* const* X, int N, int K, real* GW,
                              int k0)
{
    auto row = [&](int s) { return X[s]; };
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

// BP4: GW (N × K) = Dᵀ X, D (m × N), X (m rows of K) (δ carries the batch mean's 1/m): column blocks
// of 4 vectors, then single vectors, then the last K % V columns one by one.
static void gemm_tn(const real* D, int m, const real* const* X, int N, int K, real* GW)
{
    int k = 0;
    for (; k + 4 * V <= K; k += 4 * V) tn_columns<4>(D, m, X, N, K, GW, k);
    for (; k + V <= K; k += V) tn_columns<1>(D, m, X, N, K, GW, k);
    for (; k < K; ++k)
        for (int j = 0; j < N; ++j) {
            real acc = (real)0;
            for (int s = 0; s < m; ++s) acc += D[(long long)s * N + j] * X[s][k];
            GW[(long long)j * K + k] = acc;
        }
}

