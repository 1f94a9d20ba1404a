// The native engine's arguments and its products (gpumlp/engines/_native.py): each by the
// BLAS NumPy links where one is given and the product is large, else by _native_gemm.cpp's
// blocked products, placed before it. _native.cpp follows.

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
    long long flush_from; // the multiply-adds from which a layer's subnormal deltas are flushed
    real rate;  // nonzero: the update is W − rate · ∇W (plain SGD, no penalty), see subtract_bp4
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

// BP4 and BP2 go to the BLAS from an eighth of e.blas_from at batches of 64 rows and more: the
// blocked products' δᵀ x and δ W ran at 28 and 47 GFLOP/s where 10 units meet 800 (the BLAS's
// at ~70), while at batch 10 the BLAS's were half as fast as theirs.
static inline bool use_blas_back(const EpochArgs& e, long long M, long long N, long long K,
                                 int m)
{
    return use_blas(e, M, N, K) || (e.blas && m >= 64 && M * N * K * 8 >= e.blas_from);
}

// A layer's input for the batch: its rows (row[r]), and the same rows as one m × K block when
// they are one (contig; null for X's rows read in place).
struct Input {
    const real* contig;
    const real* const* row;
};

// z = x Wᵀ + b (m × N), BP4's δᵀ x (N × K) and BP2's δ W (m × K), by the BLAS where it is
// given, the product is large and its input one block, else by the blocked products above.
// The BLAS makes zᵀ = W xᵀ (N × m) in t, transposed into z with the bias added in one pass:
// OpenBLAS ran W xᵀ at 96 GFLOP/s and x Wᵀ at 83 for [784, 800, 10] at batch 100.
static void forward(const EpochArgs& e, Input A, int m, const real* W, const real* b, int N,
                    int K, real* t, real* z)
{
    if (A.contig && use_blas(e, m, N, K)) {
        ((blas_gemm)e.blas)(ROW_MAJOR, NO_TRANS, TRANS, N, m, K, (real)1, W, K, A.contig, K,
                            (real)0, t, m);
        transpose_bias(t, N, m, b, z);
    } else {
        gemm_nt(A.row, m, W, N, K, b, z);
    }
}

static void product_tn(const EpochArgs& e, const real* D, int m, Input X, int N, int K, real* GW)
{
    if (X.contig && use_blas_back(e, N, K, m, m))
        ((blas_gemm)e.blas)(ROW_MAJOR, TRANS, NO_TRANS, N, K, m, (real)1, D, N, X.contig, K,
                            (real)0, GW, K);
    else
        gemm_tn(D, m, X.row, N, K, GW);
}

// Where the update of W is W − rate · ∇W (e.rate) and BP4 goes to the BLAS: W += −rate · δᵀ x
// in the BLAS call itself (beta 1), so no ∇W is written and read back (an epoch of
// [784, 800, 10] at batch 100 streamed W's 2.5 MB twice more a step). Returns whether it did.
static bool subtract_bp4(const EpochArgs& e, const real* D, int m, Input X, int N, int K, real* W)
{
    if (e.rate == (real)0 || !X.contig || !use_blas_back(e, N, K, m, m)) return false;
    ((blas_gemm)e.blas)(ROW_MAJOR, TRANS, NO_TRANS, N, K, m, -e.rate, D, N, X.contig, K,
                        (real)1, W, K);
    return true;
}

static void product_nn(const EpochArgs& e, const real* D, int m, const real* W, int N, int K,
                       real* G)
{
    if (use_blas_back(e, m, K, N, m))
        ((blas_gemm)e.blas)(ROW_MAJOR, NO_TRANS, NO_TRANS, m, K, N, (real)1, D, N, W, K, (real)0,
                            G, K);
    else
        gemm_nn(D, m, W, N, K, G);
}

