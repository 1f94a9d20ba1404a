// gpumlp fast-path kernels. `real` (float or double) is typedef'd in front of this source.
// Layout as network.py: row-major, one example per row: x, z, a, delta are (m, n); W is
// (n_out, n_in); b is (n_out,). Codes below match the tables in _cupy_fast.py.

#define ACT_SIGMOID 0
#define ACT_RELU 1
#define ACT_TANH 2
#define ACT_IDENTITY 3

#define DELTA_A_MINUS_Y 0    // cross-entropy + sigmoid: σ' cancels ∇_a C's denominator (eq. 66)
#define DELTA_SOFTMAX_LL 1   // log-likelihood + softmax: a Σ_j y_j − y
#define DELTA_ELEMENTWISE 2  // ∇_a C ⊙ σ'(z), any elementwise output
#define DELTA_SOFTMAX 3      // softmax: Jᵀ ∇_a C = a ⊙ (g − Σ_k g_k a_k)

#define GRAD_QUADRATIC 0      // a − y
#define GRAD_CROSS_ENTROPY 1  // (a − y) / (a (1 − a)), a clipped to [eps, 1 − eps]
#define GRAD_LOG_LIKELIHOOD 2 // −y / a, a clipped to [eps, 1]

#define OPT_SGD 0
#define OPT_MOMENTUM 1
#define OPT_NESTEROV 2

#define H_LR 0    // device scalars (double hyper[4]): learning rate,
#define H_T 1     // Adam's step count t,
#define H_STEP 2  // lr / (1 − β1^t),
#define H_ROOT 3  // √(1 − β2^t)

#define TILE 16

// σ(z), as activations.py. Sigmoid as 1/(1 + e^−z): CUDA's exp overflows silently to inf,
// giving σ = 0 exactly, and the tails keep full relative precision; relu lets NaN through.
__device__ __forceinline__ real act_fn(int act, real z)
{
    switch (act) {
    case ACT_SIGMOID: return (real)1 / ((real)1 + exp(-z));
    case ACT_RELU: return z < (real)0 ? (real)0 : z;
    case ACT_TANH: return tanh(z);
    default: return z;
    }
}

// σ'(z) from z and a = σ(z), as activations.py (relu's subgradient at 0 is 0).
__device__ __forceinline__ real act_prime(int act, real z, real a)
{
    switch (act) {
    case ACT_SIGMOID: return a / ((real)1 + exp(z));  // σ(z) σ(−z): exact where 1 − a rounds to 0
    case ACT_RELU: return z > (real)0 ? (real)1 : (real)0;
    case ACT_TANH: {  // sech²(z) = 4e/(1 + e)², e = e^(−2|z|): exact where 1 − a² rounds to 0
        real e = exp((real)-2 * fabs(z));
        return (real)4 * e / (((real)1 + e) * ((real)1 + e));
    }
    default: return (real)1;
    }
}

// Clip like xp.clip: NaN stays NaN.
__device__ __forceinline__ real clip(real v, real lo, real hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

// ∇_a C per element, as costs.py.
__device__ __forceinline__ real cost_grad(int grad, real a, real y, real eps)
{
    if (grad == GRAD_QUADRATIC) return a - y;
    if (grad == GRAD_CROSS_ENTROPY) {
        real c = clip(a, eps, (real)1 - eps);
        return (c - y) / (c * ((real)1 - c));
    }
    return -y / clip(a, eps, (real)1);
}

__device__ __forceinline__ real warp_sum(real v)
{
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ real warp_max(real v)
{
    for (int offset = 16; offset > 0; offset >>= 1) {
        real other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = other > v ? other : v;
    }
    return v;
}

// C (M×N) = op(A) (M×K) · op(B) (K×N), row-major, op = transpose when trans_* is set:
//   op(A)[i,k] = trans_a ? A[k*lda + i] : A[i*lda + k]
//   op(B)[k,j] = trans_b ? B[j*ldb + k] : B[k*ldb + j]
// The three products of a step: z = x Wᵀ (forward), ∂C/∂W = δᵀ x (BP4), δ W (BP2).
// One 16×16 tile of C per block, one element per thread; K is walked in 16-wide slabs staged in
// shared memory. Every global read is coalesced: the thread index along a row of the stored
// matrix is threadIdx.x whichever way it is transposed. Out-of-range elements load as 0, so any
// M, N, K (including 1 and non-multiples of 16) work; only in-range elements of C are written.
extern "C" __global__ void gemm(int trans_a, int trans_b, int M, int N, int K,
                                const real* A, int lda, const real* B, int ldb,
                                real* C, int ldc)
{
    __shared__ real As[TILE][TILE + 1];  // As[i][k]: op(A) slab; +1 avoids bank conflicts
    __shared__ real Bs[TILE][TILE + 1];  // Bs[k][j]: op(B) slab
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row0 = blockIdx.y * TILE, col0 = blockIdx.x * TILE;
    real acc = (real)0;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        if (!trans_a) {  // A is M×K: thread (ty, tx) loads op(A)[row0+ty, k0+tx]
            int i = row0 + ty, k = k0 + tx;
            As[ty][tx] = (i < M && k < K) ? A[(long long)i * lda + k] : (real)0;
        } else {  // A is K×M: thread (ty, tx) loads op(A)[row0+tx, k0+ty] = A[k0+ty, row0+tx]
            int i = row0 + tx, k = k0 + ty;
            As[tx][ty] = (i < M && k < K) ? A[(long long)k * lda + i] : (real)0;
        }
        if (!trans_b) {  // B is K×N: thread (ty, tx) loads op(B)[k0+ty, col0+tx]
            int k = k0 + ty, j = col0 + tx;
            Bs[ty][tx] = (k < K && j < N) ? B[(long long)k * ldb + j] : (real)0;
        } else {  // B is N×K: thread (ty, tx) loads op(B)[k0+tx, col0+ty] = B[col0+ty, k0+tx]
            int k = k0 + tx, j = col0 + ty;
            Bs[tx][ty] = (k < K && j < N) ? B[(long long)j * ldb + k] : (real)0;
        }
        __syncthreads();
        for (int kk = 0; kk < TILE; ++kk) acc += As[ty][kk] * Bs[kk][tx];
        __syncthreads();
    }
    const int i = row0 + ty, j = col0 + tx;
    if (i < M && j < N) C[(long long)i * ldc + j] = acc;
}

// Forward, one layer: the GEMM left x Wᵀ in z; add b and apply σ in the same pass, writing z and
// a = σ(z). Under dropout also write the next layer's input a ⊙ keep (network.forward).
extern "C" __global__ void bias_act(real* z, const real* b, real* a, const real* keep,
                                    real* dropped, int m, int n, int act, int has_keep)
{
    const long long total = (long long)m * n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const real zi = z[i] + b[i % n];
        const real ai = act_fn(act, zi);
        z[i] = zi;
        a[i] = ai;
        if (has_keep) dropped[i] = ai * keep[i];
    }
}

// Forward, softmax output layer: z = x Wᵀ + b, a = exp(z − max z) / Σ exp(z − max z), row by
// row (shifted so exp never overflows). One warp per row (blockDim = (32, rows per block)).
extern "C" __global__ void bias_softmax(real* z, const real* b, real* a, int m, int n)
{
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= m || n < 1) return;  // uniform across the warp: a warp is one row
    const int lane = threadIdx.x;
    real* zr = z + (long long)row * n;
    real* ar = a + (long long)row * n;
    real mx = zr[0] + b[0];  // an element of the row, so the max starts from a real value
    __syncwarp();            // ... read by every lane before lane 0 overwrites zr[0]
    for (int j = lane; j < n; j += 32) {
        const real v = zr[j] + b[j];
        zr[j] = v;
        mx = v > mx ? v : mx;
    }
    mx = warp_max(mx);
    real s = (real)0;
    for (int j = lane; j < n; j += 32) {
        const real e = exp(zr[j] - mx);
        ar[j] = e;
        s += e;
    }
    s = warp_sum(s);
    for (int j = lane; j < n; j += 32) ar[j] = ar[j] / s;
}

// BP1: the output error δ^L = ∇_a C ⊙ σ'(z^L) in the form `kind` (DELTA_*), times scale = 1/m:
// the batch mean is taken here, as in network.backprop, so BP3/BP4 below give mean gradients.
// One warp per row, for the row sums of the softmax forms.
extern "C" __global__ void output_delta(const real* z, const real* a, const real* y, real* delta,
                                        int m, int n, int kind, int grad, int act,
                                        real scale, real eps)
{
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= m) return;  // uniform across the warp
    const int lane = threadIdx.x;
    const long long o = (long long)row * n;
    real s = (real)0;
    if (kind == DELTA_SOFTMAX_LL) {
        for (int j = lane; j < n; j += 32) s += y[o + j];
        s = warp_sum(s);  // Σ_j y_j (1 for one-hot rows)
    } else if (kind == DELTA_SOFTMAX) {
        for (int j = lane; j < n; j += 32) s += cost_grad(grad, a[o + j], y[o + j], eps) * a[o + j];
        s = warp_sum(s);  // Σ_k g_k a_k
    }
    for (int j = lane; j < n; j += 32) {
        const real aj = a[o + j], yj = y[o + j];
        real d;
        switch (kind) {
        case DELTA_A_MINUS_Y: d = aj - yj; break;
        case DELTA_SOFTMAX_LL: d = aj * s - yj; break;
        case DELTA_ELEMENTWISE:
            d = cost_grad(grad, aj, yj, eps) * act_prime(act, z[o + j], aj);
            break;
        default: d = aj * (cost_grad(grad, aj, yj, eps) - s); break;
        }
        delta[o + j] = d * scale;
    }
}

// BP2, elementwise part: δ^(l-1) = (δ^l W^l) ⊙ σ'(z^(l-1)), the GEMM having left δ^l W^l in g.
// Under dropout the mask scaled a^(l-1) on the way forward, so it scales the gradient back.
extern "C" __global__ void hidden_delta(const real* g, const real* keep, const real* z,
                                        const real* a, real* delta, int m, int n, int act,
                                        int has_keep)
{
    const long long total = (long long)m * n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        real gi = g[i];
        if (has_keep) gi = gi * keep[i];
        delta[i] = gi * act_prime(act, z[i], a[i]);
    }
}

// BP3: ∂C/∂b = Σ over rows of δ (already scaled by 1/m). One thread per column, rows in order
// (the order NumPy sums axis 0 of a C-ordered array); reads are coalesced across the threads.
extern "C" __global__ void col_sum(const real* delta, real* out, int m, int n)
{
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x) {
        real s = (real)0;
        for (int i = 0; i < m; ++i) s += delta[(long long)i * n + j];
        out[j] = s;
    }
}

// Adam's bias corrections (optim.Adam): t ← t + 1, step = lr / (1 − β1^t), root = √(1 − β2^t),
// on the device so a replayed graph advances t itself. One thread.
extern "C" __global__ void adam_prep(double* hyper, double beta1, double beta2)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const double t = hyper[H_T] + 1.0;
    hyper[H_T] = t;
    hyper[H_STEP] = hyper[H_LR] / (1.0 - pow(beta1, t));
    hyper[H_ROOT] = sqrt(1.0 - pow(beta2, t));
}

// Penalties and one optimizer step over all parameters at once. p, g, s1, s2 are flat buffers
// laid out [w_0 … w_(L-1) | b_0 … b_(L-1)], so the weights are the first n_w entries and only
// they get the penalties (optim.regularize: + (λ/n) w for L2, + (λ/n) sgn(w) for L1).
// s1 is the velocity (momentum) or the first moment (Adam), s2 Adam's second moment.
extern "C" __global__ void update(real* p, const real* g, real* s1, real* s2,
                                  const double* hyper, long long total, long long n_w,
                                  real l2n, real l1n, int opt, real mu,
                                  real beta1, real beta2, real one_minus_beta1,
                                  real one_minus_beta2, real eps)
{
    const real lr = (real)hyper[H_LR];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const real pi = p[i];
        real gi = g[i];
        if (i < n_w) {
            if (l2n != (real)0) gi = gi + l2n * pi;
            if (l1n != (real)0) {  // sgn(w), NaN staying NaN as xp.sign
                gi = gi + l1n * (pi > (real)0 ? (real)1 : (pi < (real)0 ? (real)-1 : pi));
            }
        }
        if (opt == OPT_SGD) {
            p[i] = pi - lr * gi;  // w ← w − lr ∂C/∂w
        } else if (opt == OPT_MOMENTUM || opt == OPT_NESTEROV) {
            const real step = lr * gi;
            const real v = s1[i] * mu - step;  // v ← μ v − lr ∂C/∂w
            s1[i] = v;
            p[i] = opt == OPT_NESTEROV ? pi + (mu * v - step) : pi + v;
        } else {  // Adam in PyTorch's arithmetic
            const real mi = s1[i] * beta1 + one_minus_beta1 * gi;
            const real vi = s2[i] * beta2 + one_minus_beta2 * (gi * gi);
            s1[i] = mi;
            s2[i] = vi;
            p[i] = pi - (real)hyper[H_STEP] * mi / (sqrt(vi) / (real)hyper[H_ROOT] + eps);
        }
    }
}
