// The native CPU engine (gpumlp/engines/_native.py): a whole epoch in one call. Appended to the
// generated prelude (_native_src.py), whose activations, costs, dropout hash, penalties,
// output_error and better it uses; each optimizer's `gpumlp_epoch_<name>` (generated from the
// optimizer's CUDA form) calls run_epoch with its update of one parameter and its per-step
// preparation. Nothing here is the math of an activation, a cost, an optimizer or the hash.
// The products it calls (forward, product_tn, subtract_bp4, product_nn) and EpochArgs are
// _native_blas.cpp's, placed before it (after _native_gemm.cpp's blocked products).

#include <cstring>
#include <limits>
#include <new>
#include <vector>

struct Layer {
    real *z, *a, *d, *dropped, *gw, *gb;  // per batch row; the gradients of W^l and b^l
};

// Where layer l's deltas (m × n_(l+1)) feed products of at least e.flush_from multiply-adds
// (BP4's and BP2's m · n_l · n_(l+1)), the deltas below the smallest normal are set to +0, as
// the fused step's _flush_subnormals does (engines/_numpy_fast.py: subnormal operands cost a
// BLAS ~100 cycles each): the bound its loops compare |δ| with; 0 flushes nothing.
static inline real flush_below(const EpochArgs& e, int l, int m)
{
    const long long macs = (long long)m * e.sizes[l] * e.sizes[l + 1];
    return macs >= e.flush_from ? std::numeric_limits<real>::min() : (real)0;
}

// One step's forward pass, output error, row costs and hits, and backward deltas (BP1, BP2),
// for the m rows of the batch (in[l]: layer l's input); the weights are not yet changed.
static void step_deltas(const EpochArgs& e, const std::vector<Layer>& L, const Input* in,
                        const long long* rows, int m, unsigned long long draw, double& cost_sum,
                        long long& hit_sum)
{
    const int layers = e.layers;
    for (int l = 0; l < layers; ++l) {  // forward: z = in Wᵀ + b, a = σ(z)
        const int n_in = e.sizes[l], n = e.sizes[l + 1], act = e.acts[l];
        const Layer& c = L[l];
        // zᵀ, where the BLAS makes it, in d: free from BP4 of the last step to BP2 of this one
        forward(e, in[l], m, e.w[l], e.b[l], n, n_in, c.d, c.z);
        if (act == ACT_SOFTMAX) {
            for (int r = 0; r < m; ++r)
                softmax_row(c.z + (long long)r * n, c.a + (long long)r * n, n);
        } else {
            act_rows(act, c.z, c.a, (long long)m * n);
        }
        if (e.has_drop && l < layers - 1) {
            const unsigned stream = dropout_stream(e.key, draw, l);
            for (long long i = 0; i < (long long)m * n; ++i)
                c.dropped[i] = c.a[i] * (dropout_keep(stream, i, e.cut) ? e.scale : (real)0);
        }
    }
    const int n = e.sizes[layers];
    const Layer& o = L[layers - 1];
    const real scale = (real)(1.0 / (double)m);
    const real below = flush_below(e, layers - 1, m);
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
        for (int j = 0; j < n; ++j)  // output_error; ⊙ σ'(z) below, for the whole batch
            o.d[at + j] = e.kind == DELTA_ELEMENTWISE
                              ? cost_grad(e.cost, o.a[at + j], y[j], e.eps)
                              : flushed(output_error(e.kind, e.cost, e.acts[layers - 1],
                                                     o.z[at + j], o.a[at + j], y[j], ga, ysum,
                                                     e.eps) * scale,
                                        below);
        cost_sum += (double)c;
        const long long pred = n == 1 ? (long long)(o.a[at] > (real)0.5) : (long long)arg;
        hit_sum += pred == e.labels[src];
    }
    if (e.kind == DELTA_ELEMENTWISE)  // output_error's ∇_a C ⊙ σ'(z): one vector loop
        times_prime_rows(e.acts[layers - 1], o.d, o.z, o.a, (long long)m * n, scale, below);
    // BP2: δ^(l-1) = (δ^l W^l) ⊙ keep ⊙ σ'(z^(l-1)), flushed in the loop of σ'
    for (int l = layers - 1; l > 0; --l) {
        const int h = e.sizes[l], act = e.acts[l - 1];
        const Layer& p = L[l - 1];
        product_nn(e, L[l].d, m, e.w[l], e.sizes[l + 1], h, p.d);
        const unsigned stream = e.has_drop ? dropout_stream(e.key, draw, l - 1) : 0u;
        if (e.has_drop)
            for (long long i = 0; i < (long long)m * h; ++i)
                p.d[i] = p.d[i] * (dropout_keep(stream, i, e.cut) ? e.scale : (real)0);
        times_prime_rows(act, p.d, p.z, p.a, (long long)m * h, (real)1,
                         flush_below(e, l - 1, m));
    }
}

// The epoch: each batch's rows in the order perm, its deltas, then per layer the gradients
// (BP4, BP3), then update(t, p, g, count, l2n, l1n) of each tensor t (the penalties on the
// weights only; a W that subtract_bp4 updated is not updated again); prepare() before each
// step's updates. Returns 0, or 1 when the buffers could not be allocated.
template <class Update, class Prepare>
static int run_epoch(const EpochArgs& e, Update update, Prepare prepare)
{
    const int layers = e.layers, n0 = e.sizes[0];
    const long long B = e.batch;
    std::vector<real> buf;
    std::vector<Layer> L(layers);
    std::vector<long long> rows(B > 0 ? B : 1);
    std::vector<const real*> ptrs;
    std::vector<Input> in(layers);
    try {
        ptrs.assign(B * layers, nullptr);
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
        if (l + 1 < layers) {  // the next layer's input: a, or a ⊙ keep under dropout
            const real* a = e.has_drop ? L[l].dropped : L[l].a;
            for (long long r = 0; r < B; ++r) ptrs[(l + 1) * B + r] = a + r * e.sizes[l + 1];
            in[l + 1] = Input{a, ptrs.data() + (l + 1) * B};
        }
    }
    const long long batches = B > 0 ? (e.n_rows + B - 1) / B : 0;
    double cost_sum = 0.0;
    long long hit_sum = 0;
    for (long long bt = 0; bt < batches; ++bt) {
        const long long base = bt * B;
        const int m = (int)(e.n_rows - base < B ? e.n_rows - base : B);
        // The batch's rows of X: copied into one block for the BLAS (as forward and
        // product_tn decide for layer 0) and when they pass L1's 32 KB (the copy is then
        // read twice from cache, not the rows from memory: at batch 100, 8% an epoch), else
        // read in place (at batch 10, 5% faster than copied).
        const bool gather = use_blas(e, m, e.sizes[1], n0) ||
                            use_blas_back(e, e.sizes[1], n0, m, m) ||
                            B * n0 * (long long)sizeof(real) > 32768;
        for (int r = 0; r < m; ++r) {
            rows[r] = e.perm ? e.perm[base + r] : base + r;
            ptrs[r] = e.X + rows[r] * n0;
            if (gather) {
                std::memcpy(x + (long long)r * n0, ptrs[r], sizeof(real) * n0);
                ptrs[r] = x + (long long)r * n0;
            }
        }
        in[0] = Input{gather ? x : nullptr, ptrs.data()};
        // The next batch's rows (of X, Y and the labels) are fetched from memory while this
        // one computes: they are scattered, and waiting for X's took a fifth of an epoch at
        // batch 100, for Y's and the labels' a tenth at [784, 30, 10].
        const long long n_out = e.sizes[e.layers];
        for (long long r = base + B; r < base + 2 * B && r < e.n_rows; ++r) {
            const long long src = e.perm ? e.perm[r] : r;
            const char* row = (const char*)(e.X + src * n0);
            for (long long at = 0; at < (long long)sizeof(real) * n0; at += 64)
                __builtin_prefetch(row + at, 0, 2);
            const char* y = (const char*)(e.Y + src * n_out);
            for (long long at = 0; at < (long long)sizeof(real) * n_out; at += 64)
                __builtin_prefetch(y + at, 0, 2);
            __builtin_prefetch(e.labels + src, 0, 2);
        }
        step_deltas(e, L, in.data(), rows.data(), m, (unsigned long long)(e.draw + bt), cost_sum, hit_sum);
        prepare();
        for (int l = 0; l < layers; ++l) {
            const int n_in = e.sizes[l], n = e.sizes[l + 1];
            const real* d = L[l].d;
            const bool done = subtract_bp4(e, d, m, in[l], n, n_in, e.w[l]);  // BP4 and update
            if (!done) product_tn(e, d, m, in[l], n, n_in, L[l].gw);  // BP4
            real* __restrict gb = L[l].gb;  // BP3: Σ_r δ_r,j, in row order, a row at a time
            for (int j = 0; j < n; ++j) gb[j] = (real)0;
            for (int r = 0; r < m; ++r)
                for (int j = 0; j < n; ++j) gb[j] += d[(long long)r * n + j];
            if (!done) update(l, e.w[l], L[l].gw, (long long)n * n_in, e.l2n, e.l1n);
            update(layers + l, e.b[l], L[l].gb, (long long)n, (real)0, (real)0);
        }
        if (bt + 1 == batches && e.out_a != nullptr)
            std::memcpy(e.out_a, L[layers - 1].a, sizeof(real) * m * e.sizes[layers]);
    }
    e.sums[0] += cost_sum;
    e.hits[0] += hit_sum;
    return 0;
}
