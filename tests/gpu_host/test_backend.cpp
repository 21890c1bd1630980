// The CUDA backend against the CPU backend, on the host execution path
// (cuda/host/README.md; make test-gpu-host) or, built by nvcc, on a real GPU
// (build/test_backend_gpu, run by tests/gpu/run.sh): every kernel against its CPU counterpart on random and
// awkward shapes, the matrix-product wrapper against cblas, one training step
// and three Adam steps of the tiny preset and of a small hepscore22 batch per
// precision, checkpoints moved between the backends, the self-check catching
// a wrong gradient, and CUDA faults reported with the call and the device.
// On the host path nothing here is a GPU figure: the kernels run on the CPU.
//
// usage: test_backend [quick]   (quick: no hepscore22 steps)
// Prints one line per check and a closing "N passed, N failed".
#include <algorithm>
#include <climits>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "blas.cuh"
#include "kernels.cuh"
#include "model.cuh"

extern "C" {
#include <cblas.h>

#include "backend.h"
#include "checkpoint.h"
#include "generator.h"
#include "gpu.h"
#include "layers.h"
#include "mathfn.h"
#include "optim.h"
#include "selfcheck.h"
int mlpf_cuda_backend_init(backend *be, const backend_opts *o, const float *params, const float *lsh, char *err,
                           size_t n);
}

static int n_pass, n_fail;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    (ok ? n_pass : n_fail)++;
}

// ------------------------------------------------------------ helpers

template <class T> struct dbuf {
    T *p = nullptr;
    size_t n = 0;
    explicit dbuf(size_t count) : n(count) { CUDA_CHECK(cudaMalloc((void **)&p, sizeof(T) * (count ? count : 1))); }
    dbuf(const std::vector<T> &v) : dbuf(v.size()) { up(v); }
    ~dbuf() { cudaFree(p); }
    dbuf(const dbuf &) = delete;
    void up(const std::vector<T> &v) { CUDA_CHECK(cudaMemcpy(p, v.data(), sizeof(T) * v.size(), cudaMemcpyHostToDevice)); }
    std::vector<T> down() const
    {
        std::vector<T> v(n);
        CUDA_CHECK(cudaDeviceSynchronize());
        CUDA_CHECK(cudaMemcpy(v.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost));
        return v;
    }
};

static std::mt19937_64 rng(20261202);
static std::vector<float> randn(size_t n, float scale = 1.0f)
{
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto &x : v) x = d(rng);
    return v;
}

// largest |a - b| / max(|b|, floor)
template <class A, class B> static double max_rel(const A &a, const B &b, double floor = 1e-30)
{
    double w = 0;
    for (size_t i = 0; i < b.size(); i++) {
        double e = std::fabs((double)a[i] - (double)b[i]) / std::max(std::fabs((double)b[i]), floor);
        if (!(e <= w)) w = e;
    }
    return w;
}
template <class A, class B> static bool same_bits(const A &a, const B &b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(a[0]) * a.size()) == 0;
}
static mlpf_config preset(const char *name)
{
    mlpf_config c;
    if (mlpf_config_preset(name, &c) != 0) abort();
    return c;
}

// A batch of generated events of exactly these sizes.
static void make_batch(mlpf_batch &b, const std::vector<int64_t> &sizes, uint64_t seed)
{
    if (batch_alloc(&b, (int)sizes.size(), sizes.data()) != 0) abort();
    for (size_t e = 0; e < sizes.size(); e++) {
        gen_config g = gen_config_default();
        g.seed = seed;
        g.mean_elements = g.min_elements = g.max_elements = (int)sizes[e];
        gen_event(&g, e, b.X + b.offsets[e] * BATCH_X_COLS, b.y + b.offsets[e] * BATCH_Y_COLS);
    }
}

// The device layout of a batch, as dev_stage makes it.
struct layout_buf {
    std::vector<int> row_start, bin_start, event_k, row_event, bin_event;
    dbuf<int> *d[5] = {};
    batch_layout bl{};
    layout_buf(const mlpf_config &c, const std::vector<int64_t> &sizes)
    {
        const int S = c.bin_size;
        row_start = {0};
        bin_start = {0};
        for (size_t e = 0; e < sizes.size(); e++) {
            int nb = (int)((sizes[e] + S - 1) / S);
            row_start.push_back(row_start.back() + (int)sizes[e]);
            bin_start.push_back(bin_start.back() + nb);
            event_k.push_back(mlpf_lsh_k(&c, nb));
            for (int64_t r = 0; r < sizes[e]; r++) row_event.push_back((int)e);
            for (int q = 0; q < nb; q++) bin_event.push_back((int)e);
        }
        std::vector<int> *v[5] = {&row_start, &bin_start, &event_k, &row_event, &bin_event};
        for (int i = 0; i < 5; i++) d[i] = new dbuf<int>(*v[i]);
        bl = {(int)sizes.size(), (int64_t)row_event.size(), (int64_t)bin_event.size(), d[0]->p, d[1]->p, d[2]->p,
              d[3]->p, d[4]->p};
    }
    ~layout_buf()
    {
        for (auto *p : d) delete p;
    }
};

static cudaStream_t S0;

// ------------------------------------------------------------ element-wise and rows

static void test_elementwise()
{
    const int64_t N = 37, C = 45, ld = 50;
    auto x = randn(N * ld, 2.0f), b = randn(C), dy = randn(N * ld);
    x[3] = 0.0f, x[4] = -30.0f, x[5] = 12.0f; /* saturated and zero inputs */
    { /* bias + gelu, strided: the CPU's order (add, then gelu_forward) */
        dbuf<float> dx(x), db(b), dout(N * C);
        launch_bias_act(S0, dx.p, ld, db.p, dout.p, C, N, (int)C, ACT_GELU);
        std::vector<float> pre(x), want(N * C), got = dout.down(), gpre = dx.down();
        for (int64_t i = 0; i < N; i++)
            for (int c = 0; c < C; c++) pre[i * ld + c] += b[c];
        std::vector<float> packed(N * C);
        for (int64_t i = 0; i < N; i++)
            for (int c = 0; c < C; c++) packed[i * C + c] = pre[i * ld + c];
        gelu_forward(packed.data(), want.data(), N * C);
        check(same_bits(got, want) && same_bits(gpre, pre), "bias_act gelu (row stride 50 > 45 columns): the CPU's bits");
    }
    { /* elu in place, no bias */
        dbuf<float> dx(x);
        launch_bias_act(S0, dx.p, ld, nullptr, dx.p, ld, N, (int)C, ACT_ELU);
        std::vector<float> want(x), got = dx.down();
        for (int64_t i = 0; i < N; i++) elu_forward(&x[i * ld], &want[i * ld], C);
        check(same_bits(got, want), "bias_act elu in place: the CPU's bits, columns beyond C untouched");
    }
    {
        dbuf<float> dx(x), ddy(dy), ddx(N * ld);
        launch_gelu_backward(S0, dx.p, ddy.p, ddx.p, N * ld);
        std::vector<float> want(N * ld);
        gelu_backward(x.data(), dy.data(), want.data(), N * ld);
        check(same_bits(ddx.down(), want), "gelu_backward: the CPU's bits");
        launch_elu_backward_from_output(S0, dx.p, ddy.p, ddx.p, N * ld);
        elu_backward_from_output(x.data(), dy.data(), want.data(), N * ld);
        check(same_bits(ddx.down(), want), "elu_backward_from_output: the CPU's bits");
    }
    { /* elu'(t) in place over a block of a wider matrix */
        dbuf<float> dt(x), ddy(dy);
        launch_elu_grad_block(S0, dt.p, ld, ddy.p, N, (int)C);
        std::vector<float> want(x);
        for (int64_t i = 0; i < N; i++)
            for (int c = 0; c < C; c++) want[i * ld + c] = mlpf_elu_grad(x[i * ld + c], dy[i * C + c]);
        check(same_bits(dt.down(), want), "elu_grad_block (strided, in place)");
    }
    for (int64_t rows : {1, 255, 256, 257, 2000}) { /* column sums around the row-block size */
        auto a = randn(rows * ld), p = randn(rows * ld);
        std::vector<float> acc = randn(C);
        dbuf<float> da(a), dp(p), dacc(acc);
        dbuf<double> part(colsum_partial_doubles(rows, (int)C));
        launch_colsum_add(S0, dacc.p, da.p, dp.p, ld, rows, (int)C, part.p);
        std::vector<double> want(C);
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int64_t i = 0; i < rows; i++) s += (double)a[i * ld + c] * p[i * ld + c];
            want[c] = acc[c] + (float)s;
        }
        check(max_rel(dacc.down(), want, 1e-3) < 1e-6, "colsum_add of products, %lld rows", (long long)rows);
    }
    { /* LayerNorm, against layers.c (float64 row statistics in another order: 1e-6) */
        const int64_t Nr = 33;
        const int Cw = 96;
        auto xin = randn(Nr * Cw, 3.0f), g = randn(Cw), be = randn(Cw), d = randn(Nr * Cw);
        for (int c = 0; c < Cw; c++) xin[c] = 5.0f; /* a constant row */
        std::vector<float> y(Nr * Cw), xh(Nr * Cw), rs(Nr), dx(Nr * Cw), dg(Cw, 0.0f), dbeta(Cw, 0.0f);
        layernorm_forward(xin.data(), g.data(), be.data(), 1e-3f, y.data(), xh.data(), rs.data(), Nr, Cw);
        layernorm_backward(d.data(), xh.data(), rs.data(), g.data(), dx.data(), dg.data(), dbeta.data(), Nr, Cw);
        dbuf<float> dxin(xin), dgam(g), dbe(be), dy2(Nr * Cw), dxh(Nr * Cw), drs(Nr), dd(d), ddx(Nr * Cw);
        launch_layernorm_forward(S0, dxin.p, dgam.p, dbe.p, 1e-3f, dy2.p, dxh.p, drs.p, Nr, Cw);
        launch_layernorm_backward_dx(S0, dd.p, dxh.p, drs.p, dgam.p, ddx.p, Nr, Cw);
        check(max_rel(dy2.down(), y, 1e-3) < 2e-6 && max_rel(drs.down(), rs) < 1e-6 && max_rel(ddx.down(), dx, 1e-3) < 2e-5,
              "layernorm forward and input gradient vs layers.c (a constant row included)");
    }
}

// ------------------------------------------------------------ binning and the kernel matrix

struct bin_case {
    const char *name;
    std::vector<int64_t> sizes;
};

// The CPU's binning (src/cpu/model.c bin_event): projection, first maximum
// of [P, -P], stable sort by bucket.
static void cpu_bins(const mlpf_config &c, const layout_buf &L, const std::vector<float> &xd, const std::vector<float> &R,
                     std::vector<int> &hash, std::vector<int> &perm)
{
    const int Dd = c.dist_dim, K = c.max_num_bins / 2, S = c.bin_size;
    hash.assign(L.row_event.size(), 0);
    perm.assign(L.bin_event.size() * S, -1);
    for (size_t e = 0; e + 1 < L.row_start.size(); e++) {
        const int r0 = L.row_start[e], n = L.row_start[e + 1] - r0, k = L.event_k[e];
        for (int i = 0; i < n; i++) {
            float best = -INFINITY;
            int arg = 0;
            std::vector<float> P(k);
            for (int j = 0; j < k; j++) {
                float p = 0.0f;
                for (int d = 0; d < Dd; d++) p += xd[(size_t)(r0 + i) * Dd + d] * R[d * K + j];
                P[j] = p;
            }
            best = P[0];
            for (int j = 1; j < k; j++)
                if (P[j] > best) best = P[j], arg = j;
            for (int j = 0; j < k; j++)
                if (-P[j] > best) best = -P[j], arg = k + j;
            hash[r0 + i] = arg;
        }
        std::vector<int> rows(n);
        for (int i = 0; i < n; i++) rows[i] = r0 + i;
        std::stable_sort(rows.begin(), rows.end(), [&](int a, int b) { return hash[a] < hash[b]; });
        for (int i = 0; i < n; i++) perm[(size_t)L.bin_start[e] * S + i] = rows[i];
    }
}

static void test_binning(const mlpf_config &c, const bin_case &bc)
{
    const int Dd = c.dist_dim, K = c.max_num_bins / 2, S = c.bin_size;
    layout_buf L(c, bc.sizes);
    const int64_t N = L.bl.n_rows, NB = L.bl.n_bins;
    auto xd = randn(N * Dd), R = randn((size_t)Dd * K, 0.05f);
    if (N > 3) xd[(size_t)Dd * 2] = xd[(size_t)Dd * 2 + 1] = 0.0f; /* a tie-prone row */
    std::vector<int> hash, perm;
    cpu_bins(c, L, xd, R, hash, perm);
    dbuf<float> dxd(xd), dR(R);
    dbuf<int> dhash(N), dperm(NB * S);
    launch_lsh_hash(S0, L.bl, dxd.p, Dd, dR.p, K, dhash.p);
    launch_bin_sort(S0, L.bl, dhash.p, S, dperm.p);
    check(dhash.down() == hash && dperm.down() == perm, "LSH buckets and stable sort into bins (%s: %lld rows, %lld bins)",
          bc.name, (long long)N, (long long)NB);
    /* the kernel matrix, degrees and the gather, against plain float64 loops */
    dbuf<float> A(NB * S * S), D(NB * S * S), nrm(NB * S), V(NB * S * c.width);
    dbuf<double> sqn(NB * S);
    launch_kernel_matrix(S0, NB, S, dperm.p, dxd.p, Dd, c.dist_mult, A.p, D.p, sqn.p);
    launch_degree_norm(S0, NB, S, dperm.p, A.p, nrm.p);
    auto a = A.down(), d = D.down(), n = nrm.down();
    std::vector<float> wa(NB * S * S), wn(NB * S);
    bool sym = true, real_d = true;
    for (int64_t b = 0; b < NB; b++)
        for (int i = 0; i < S; i++) {
            const int ri = perm[b * S + i];
            double sqi = 0, deg = 0;
            for (int k = 0; k < Dd; k++) sqi += ri < 0 ? 0.0 : (double)xd[(size_t)ri * Dd + k] * xd[(size_t)ri * Dd + k];
            for (int j = 0; j < S; j++) {
                const int rj = perm[b * S + j];
                double g = 0, sqj = 0;
                for (int k = 0; k < Dd; k++) {
                    double u = ri < 0 ? 0.0 : xd[(size_t)ri * Dd + k], v = rj < 0 ? 0.0 : xd[(size_t)rj * Dd + k];
                    g = std::fma(u, v, g);
                    sqj += v * v;
                }
                float dist, av = mlpf_kernel_value(i == j ? 0.0 : sqi - 2.0 * g + sqj, c.dist_mult, &dist);
                const size_t at = ((size_t)b * S + i) * S + j;
                wa[at] = (ri | rj) < 0 ? 0.0f : av;
                deg += wa[at];
                if (ri >= 0 && rj >= 0 && d[at] != dist) real_d = false;
                if (a[at] != a[((size_t)b * S + j) * S + i]) sym = false;
            }
            wn[b * S + i] = mlpf_degree_norm(deg, ri >= 0);
        }
    check(same_bits(a, wa) && real_d && sym, "kernel matrix (%s): the float64 reference's bits, symmetric bit for bit", bc.name);
    check(max_rel(n, wn) < 1e-6, "degree normalisation (%s), 0 on padding", bc.name);
}

// ------------------------------------------------------------ matrix products

static void test_gemm()
{
    std::vector<char> buf(32 << 20);
    void *ws;
    CUDA_CHECK(cudaMalloc(&ws, 32 << 20));
    for (gemm_precision p : {PREC_FP32, PREC_TF32, PREC_BF16}) {
        blas_ctx b;
        blas_init(b, S0, p, ws, 32 << 20);
        const int64_t M = 37, N = 29, K = 45;
        double worst = 0;
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
                auto A = randn((ta ? K : M) * lda), B = randn((tb ? N : K) * ldb), C = randn(M * ldc);
                dbuf<float> dA(A), dB(B), dC(C);
                dbuf<__nv_bfloat16> s0(std::max(A.size(), B.size())), s1(std::max(A.size(), B.size()));
                b.scratch[0] = s0.p, b.scratch[1] = s1.p, b.scratch_n = (int64_t)s0.n;
                gemm(b, ta, tb, M, N, K, 0.5f, dA.p, lda, dB.p, ldb, 1.0f, dC.p, ldc);
                /* the reference: the inputs rounded as the precision rounds them, float64 sums */
                auto rnd = [&](float v) {
                    if (p == PREC_BF16) return __bfloat162float(__float2bfloat16(v));
                    if (p == PREC_TF32) { /* round to 10 mantissa bits, ties away */
                        uint32_t u;
                        memcpy(&u, &v, 4);
                        u = (u + 0x1000u) & 0xffffe000u;
                        memcpy(&v, &u, 4);
                    }
                    return v;
                };
                std::vector<double> want(M * ldc);
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < ldc; j++) {
                        if (j >= N) { want[i * ldc + j] = C[i * ldc + j]; continue; }
                        double s = 0;
                        for (int64_t k = 0; k < K; k++)
                            s += (double)rnd(ta ? A[k * lda + i] : A[i * lda + k]) * rnd(tb ? B[j * ldb + k] : B[k * ldb + j]);
                        want[i * ldc + j] = 0.5 * s + C[i * ldc + j];
                    }
                worst = std::max(worst, max_rel(dC.down(), want, 1.0));
            }
        check(worst < 2e-6, "gemm %s, all transposes, leading dimensions beyond the shapes: worst error %.1e",
              p == PREC_FP32 ? "fp32" : p == PREC_TF32 ? "tf32" : "bf16", worst);
        blas_destroy(b);
    }
    { /* strided batches of per-bin products, float64 too */
        blas_ctx b;
        blas_init(b, S0, PREC_FP32, ws, 32 << 20);
        const int64_t S = 24, W = 10, nb = 3;
        auto A = randn(nb * S * S), V = randn(nb * S * W);
        dbuf<float> dA(A), dV(V), dY(nb * S * W);
        gemm_batched(b, false, false, S, W, S, 1.0f, dA.p, S, S * S, dV.p, W, S * W, 0.0f, dY.p, W, S * W, nb);
        std::vector<double> A64(A.begin(), A.end()), V64(V.begin(), V.end());
        dbuf<double> eA(A64), eV(V64), eY(nb * S * W);
        dgemm_batched(b, true, false, S, W, S, 1.0, eA.p, S, S * S, eV.p, W, S * W, 0.0, eY.p, W, S * W, nb);
        std::vector<double> want(nb * S * W), want_t(nb * S * W);
        for (int64_t q = 0; q < nb; q++)
            for (int64_t i = 0; i < S; i++)
                for (int64_t j = 0; j < W; j++) {
                    double s = 0, st = 0;
                    for (int64_t k = 0; k < S; k++) {
                        s += (double)A[q * S * S + i * S + k] * V[q * S * W + k * W + j];
                        st += (double)A[q * S * S + k * S + i] * V[q * S * W + k * W + j];
                    }
                    want[q * S * W + i * W + j] = s;
                    want_t[q * S * W + i * W + j] = st;
                }
        check(max_rel(dY.down(), want, 1.0) < 2e-6 && max_rel(eY.down(), want_t, 1.0) < 1e-13,
              "strided-batched products over 3 bins (fp32, and float64 transposed)");
        blas_destroy(b);
    }
    CUDA_CHECK(cudaFree(ws));
}

// ------------------------------------------------------------ the whole model

static int make_cuda(backend &be, const mlpf_config &c, uint64_t seed, const char *prec)
{
    memset(&be, 0, sizeof be);
    be.cfg = c;
    param_layout_build(&c, &be.layout);
    snprintf(be.device, sizeof be.device, "cuda");
    snprintf(be.precision, sizeof be.precision, "%s", prec);
    std::vector<float> p(be.layout.total), lsh(lsh_buffer_size(&c));
    param_init(&be.layout, p.data(), seed);
    lsh_init(&c, lsh.data(), seed);
    backend_opts o = {"cuda", prec, 0, 0};
    char err[600];
    if (mlpf_cuda_backend_init(&be, &o, p.data(), lsh.data(), err, sizeof err) != 0) {
        check(false, "CUDA backend: %s", err);
        return -1;
    }
    return 0;
}

static void make_cpu(backend &be, const mlpf_config &c, uint64_t seed)
{
    backend_opts o = {"cpu", nullptr, 0, 0};
    char err[600];
    if (backend_create(&be, &o, &c, seed, err, sizeof err) != 0) abort();
}

// one training step on a backend; hashes: the buckets to force (CPU) or to read back (GPU)
static loss_report step(backend &be, const mlpf_batch &b, bool adam)
{
    loss_report r;
    be.ops->zero_grad(&be);
    be.ops->forward(&be, &b, b.n_rows, &r);
    be.ops->backward(&be);
    int bad = be.ops->check_grads(&be);
    if (adam) be.ops->optimizer_step(&be);
    if (be.ops->finish(&be, &r, &bad) != 0) check(false, "%s: %s", be.device, be.error);
    if (bad >= 0) check(false, "%s: non-finite gradient %s", be.device, be.layout.t[bad].name);
    return r;
}

// worst error over the tensors of two buffers in the layout, as the self-check measures it
// (floor: of the RMS of b; the self-check's for gradients. Adam moves every
// weight by about lr whatever the size of its gradient, so a tensor whose
// gradient is rounding noise still moves by a noisy fraction of a step:
// weight changes get a floor of 0.1 of the typical change)
static double worst_tensor(const param_layout &L, const std::vector<float> &a, const std::vector<float> &b, std::string &name,
                           double floor = SELFCHECK_NULL_FLOOR)
{
    double w = -1, rms = floor * selfcheck_rms(b.data(), b.size());
    for (int i = 0; i < L.n; i++) {
        const tensor_info &t = L.t[i];
        double e = selfcheck_tensor_error(a.data() + t.offset, b.data() + t.offset, (size_t)t.rows * t.cols, rms);
        if (!(e <= w)) w = e, name = t.name;
    }
    return w;
}

static double worst_loss(const loss_report &a, const loss_report &b)
{
    double w = 0;
    for (int k = 1; k < LOSS_N; k++) w = std::max(w, std::fabs(a.loss[k] - b.loss[k]) / std::max(std::fabs(b.loss[k]), 1e-30));
    return w;
}

// The GPU's buckets of every layer, to give the CPU the same binning.
struct hashes {
    std::vector<std::vector<int>> h;
    std::vector<const int *> p;
    void read(backend &be, int layers, int64_t rows)
    {
        h.assign(layers, std::vector<int>(rows));
        p.clear();
        for (int l = 0; l < layers; l++) be.ops->get_hashes(&be, l, h[l].data()), p.push_back(h[l].data());
    }
};

// One step on the GPU backend, then on the CPU one with the GPU's buckets.
static void step_both(backend &gpu, backend &cpu, const mlpf_batch &b, bool adam)
{
    hashes H;
    step(gpu, b, adam);
    H.read(gpu, gpu.cfg.n_graph_id + gpu.cfg.n_graph_reg, b.n_rows);
    cpu.ops->force_hashes(&cpu, H.p.data());
    step(cpu, b, adam);
    cpu.ops->force_hashes(&cpu, nullptr);
}

static void test_model(const char *pname, const char *prec, const std::vector<int64_t> &sizes, int adam_steps)
{
    const mlpf_config c = preset(pname);
    double gtol, alltol, ltol;
    selfcheck_tolerances(prec, &gtol, &alltol, &ltol);
    backend gpu, cpu;
    if (make_cuda(gpu, c, 7, prec) != 0) return;
    make_cpu(cpu, c, 7);
    mlpf_batch b;
    make_batch(b, sizes, 99);
    const int layers = c.n_graph_id + c.n_graph_reg;
    const size_t n = gpu.layout.total;
    std::vector<float> gg(n), gc(n), p0(n), pg(n), pc(n);
    cpu.ops->get_params(&cpu, p0.data());
    double worst_g = 0, worst_l = 0, worst_p = 0, agree = 0, all_g = 0, all_p = 0;
    std::string wname, pname_worst;
    for (int s = 0; s <= adam_steps; s++) {
        const bool last = s == adam_steps;
        loss_report rg = step(gpu, b, !last);
        hashes H;
        H.read(gpu, layers, b.n_rows);
        if (s == 0) { /* the CPU binning alone, for the record */
            loss_report rc;
            cpu.ops->forward(&cpu, &b, b.n_rows, &rc);
            std::vector<int> own(b.n_rows);
            int64_t same = 0;
            for (int l = 0; l < layers; l++) {
                cpu.ops->get_hashes(&cpu, l, own.data());
                for (int64_t i = 0; i < b.n_rows; i++) same += own[i] == H.h[l][i];
            }
            agree = (double)same / (b.n_rows * layers);
        }
        cpu.ops->force_hashes(&cpu, H.p.data());
        loss_report rc = step(cpu, b, !last);
        cpu.ops->force_hashes(&cpu, nullptr);
        worst_l = std::max(worst_l, worst_loss(rg, rc));
        if (s == 0) {
            gpu.ops->get_grads(&gpu, gg.data());
            cpu.ops->get_grads(&cpu, gc.data());
            worst_g = worst_tensor(gpu.layout, gg, gc, wname);
            all_g = selfcheck_tensor_error(gg.data(), gc.data(), n, 0.0);
        }
    }
    if (adam_steps > 0) { /* the weights' changes after the Adam steps */
        gpu.ops->get_params(&gpu, pg.data());
        cpu.ops->get_params(&cpu, pc.data());
        for (size_t i = 0; i < n; i++) pg[i] -= p0[i], pc[i] -= p0[i];
        worst_p = worst_tensor(gpu.layout, pg, pc, pname_worst, 0.1);
        all_p = selfcheck_tensor_error(pg.data(), pc.data(), n, 0.0);
    }
    char shape[128] = "";
    for (size_t e = 0; e < sizes.size() && e < 6; e++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", e ? "+" : "", (long long)sizes[e]);
    if (sizes.size() > 6) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "+... (%zu events)", sizes.size());
    check(worst_g <= gtol && all_g <= alltol && worst_l <= ltol,
          "%s %s, %s elements: one step vs the CPU backend: worst gradient %s %.1e (tol %.0e), all %.1e (tol %.0e), "
          "worst loss %.1e (tol %.0e), LSH buckets agreeing alone %.4f", pname, prec, shape, wname.c_str(), worst_g, gtol,
          all_g, alltol, worst_l, ltol, agree);
    /* Adam's m / sqrt(v) turns the relative error of each gradient element
     * into that of its update, small elements included (in the gradient's
     * norm they weigh nothing): twice the gradient buffer's tolerance */
    if (adam_steps > 0)
        check(worst_p <= gtol && all_p <= 2 * alltol && worst_l <= ltol,
              "%s %s: %d Adam steps: worst weight change %s %.1e, all %.1e, worst loss %.1e", pname, prec, adam_steps,
              pname_worst.c_str(), worst_p, all_p, worst_l);
    /* fp32: a different summation order only; the binning agrees all but never */
    if (!strcmp(prec, "fp32")) check(agree > 0.99, "%s fp32: LSH buckets agree without forcing: %.4f", pname, agree);
    batch_free(&b);
    backend_destroy(&gpu);
    backend_destroy(&cpu);
}

// A checkpoint of one backend resumed by the other: the state arrives bit for
// bit, and the next step matches the writer's own next step.
static void test_checkpoint(bool gpu_writes)
{
    const mlpf_config c = preset("tiny");
    backend gpu, cpu;
    if (make_cuda(gpu, c, 3, "fp32") != 0) return;
    make_cpu(cpu, c, 3);
    backend &w = gpu_writes ? gpu : cpu, &r = gpu_writes ? cpu : gpu;
    mlpf_batch b;
    make_batch(b, {40, 17, 33}, 5);
    for (int s = 0; s < 2; s++) step_both(gpu, cpu, b, true);
    const size_t n = w.layout.total;
    adam_state st, back;
    adam_init(&st, n);
    adam_init(&back, n);
    std::vector<float> params(n), again(n);
    w.ops->get_params(&w, params.data());
    w.ops->get_adam(&w, st.m, st.v, &st.step);
    checkpoint_header h = {};
    h.n_params = (int64_t)n, h.steps_done = 2, h.adam_step = st.step, h.world_size = 1, h.batch_per_rank = 3;
    snprintf(h.preset, sizeof h.preset, "tiny");
    char path[] = "/tmp/mlpf_ckpt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    bool ok = checkpoint_write(path, &h, params.data(), &st) == 0;
    checkpoint_header h2;
    std::vector<float> rp(n);
    ok = ok && checkpoint_read(path, "tiny", (int64_t)n, &h2, rp.data(), &back) == 0;
    r.ops->set_params(&r, rp.data());
    r.ops->set_adam(&r, back.m, back.v, h2.adam_step);
    r.ops->get_params(&r, again.data());
    std::vector<float> m2(n), v2(n);
    int64_t step2 = 0;
    r.ops->get_adam(&r, m2.data(), v2.data(), &step2);
    ok = ok && same_bits(again, params) && !memcmp(m2.data(), st.m, n * 4) && !memcmp(v2.data(), st.v, n * 4) &&
         step2 == st.step;
    step_both(gpu, cpu, b, true); /* the third step on both: the resumed one and the writer's own */
    std::vector<float> pw(n), pr(n);
    w.ops->get_params(&w, pw.data());
    r.ops->get_params(&r, pr.data());
    for (size_t i = 0; i < n; i++) pw[i] -= params[i], pr[i] -= params[i];
    std::string name;
    double e = worst_tensor(w.layout, pr, pw, name, 0.1);
    check(ok && e < 2e-3, "checkpoint written by the %s backend, resumed by the %s one: state bit for bit, next step's "
          "weight change within %.1e (worst %s)", w.device, r.device, e, name.c_str());
    remove(path);
    adam_free(&st);
    adam_free(&back);
    batch_free(&b);
    backend_destroy(&gpu);
    backend_destroy(&cpu);
}

// The self-check passes on the backend as it is, and fails, naming the
// tensor, when one gradient tensor is off by 1% (a wrong kernel).
static void (*real_get_grads)(backend *, float *);
static int skew_tensor = -1;
static void skewed_get_grads(backend *be, float *out)
{
    real_get_grads(be, out);
    const tensor_info &t = be->layout.t[skew_tensor];
    for (int64_t i = 0; i < (int64_t)t.rows * t.cols; i++) out[t.offset + i] *= 1.01f;
}

static void test_selfcheck()
{
    const mlpf_config c = preset("tiny");
    backend gpu;
    if (make_cuda(gpu, c, 11, "tf32") != 0) return;
    selfcheck_result r;
    int rc = selfcheck_run(&gpu, 11, &r);
    check(rc == 0 && r.ran && r.passed && r.n_passes == 2 && !strcmp(r.pass[0].precision, "fp32") &&
              !strcmp(r.pass[1].precision, "tf32"),
          "self-check of a tf32 run: the kernels in fp32, then tf32: %s", r.message);
    backend_ops ops = *gpu.ops;
    real_get_grads = ops.get_grads;
    ops.get_grads = skewed_get_grads;
    gpu.ops = &ops;
    for (const char *name : {"cg_id1.wh", "ffn_pt.0.W", "enc.0.b"}) {
        for (int i = 0; i < gpu.layout.n; i++)
            if (!strcmp(gpu.layout.t[i].name, name)) skew_tensor = i;
        rc = selfcheck_run(&gpu, 11, &r);
        check(rc == 0 && r.ran && !r.passed && !r.pass[0].passed && !strcmp(r.pass[0].worst_tensor, name) &&
                  strstr(r.message, "FAILED"),
              "self-check fails on a 1%% error in %s and names it: %s", name, r.message);
    }
    backend_destroy(&gpu);
}

// The self-check's errors over presets, precisions and seeds (what its
// tolerances were chosen from: docs/design.md "Self-check").
static void measure_selfcheck()
{
    for (const char *pn : {"tiny", "hepscore22"})
        for (const char *prec : {"tf32", "bf16"})
            for (uint64_t seed = 1; seed <= 3; seed++) {
                backend gpu;
                if (make_cuda(gpu, preset(pn), seed, prec) != 0) return;
                selfcheck_result r;
                selfcheck_run(&gpu, seed, &r);
                printf("measure %s %s seed %llu: %s\n", pn, prec, (unsigned long long)seed, r.message);
                fflush(stdout);
                backend_destroy(&gpu);
            }
}

// A launch the device refuses, and the sticky error of the backend.
__global__ void k_oversized(float *x) { x[threadIdx.x] = 1.0f; }

static void test_faults()
{
    dbuf<float> x(2048);
    std::string msg;
    try {
        KLAUNCH(k_oversized, 1, 2048, 0, S0, x.p);
    } catch (const cuda_error &e) {
        msg = e.what();
    }
    cudaGetLastError();
    check(msg.find("k_oversized") != std::string::npos && msg.find("test_backend.cpp:") != std::string::npos &&
              msg.find("GPU 0") != std::string::npos,
          "a refused launch names the kernel, file:line and the GPU: %s", msg.c_str());
    /* device memory that cannot be had: named, and sticky as a CUDA fault is */
    const mlpf_config c = preset("tiny");
    backend gpu;
    if (make_cuda(gpu, c, 1, "fp32") != 0) return;
    int rc = gpu.ops->reserve(&gpu, (int64_t)1 << 34, (int64_t)1 << 28, 4);
    check(rc == -1 && strstr(gpu.error, "cudaMalloc") && strstr(gpu.error, "on GPU 0"),
          "an allocation the device refuses names the call and the GPU: %s", gpu.error);
    mlpf_batch b;
    make_batch(b, {20}, 1);
    loss_report r;
    int bad;
    rc = gpu.ops->forward(&gpu, &b, b.n_rows, &r) == 0 ? gpu.ops->finish(&gpu, &r, &bad) : -1;
    check(rc == -1 && strstr(gpu.error, "cudaMalloc"), "the error is sticky: later work is refused with it");
    batch_free(&b);
    backend_destroy(&gpu);
}

// The discovery and gemm-bench entry points of libmlpf_cuda.so.
extern "C" {
int mlpf_cuda_device_count(char *err, size_t n);
int mlpf_cuda_describe(int dev, gpu_info *out, char *err, size_t n);
double mlpf_cuda_gemm_rate(int dev, const char *precision, int M, int N, int K, double seconds, char *err, size_t n);
}
static void test_discovery()
{
    char err[512] = "";
    gpu_info g;
    bool ok = mlpf_cuda_device_count(err, sizeof err) >= 1 && mlpf_cuda_describe(0, &g, err, sizeof err) == 0 &&
              g.cc_major >= 8;
#ifdef MLPF_CUDA_HOST
    ok = ok && strstr(g.name, "not a GPU");
#endif
    for (const char *p : {"fp32", "tf32", "bf16"}) ok = ok && mlpf_cuda_gemm_rate(0, p, 96, 64, 48, 0.02, err, sizeof err) > 0;
    check(ok, "device discovery and the gemm-bench rate entry points run (fp32, tf32, bf16) %s", err);
    // the identity the GPU placement compares across ranks and looks up in hwloc
    unsigned dom = 0, bus = 0, dev = 0, fn = 0;
    char tail = 0;
    bool id_ok = strlen(g.uuid) == 40 && !strncmp(g.uuid, "GPU-", 4) && g.uuid[12] == '-' && g.uuid[17] == '-' &&
                 g.uuid[22] == '-' && g.uuid[27] == '-' &&
                 sscanf(g.pci_bus_id, "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &tail) == 4;
    check(id_ok, "describe gives the UUID (%s) and PCI bus id (%s)", g.uuid, g.pci_bus_id);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "all"; /* all, quick (no hepscore22 steps), kernels, measure */
    try {
        CUDA_CHECK(cudaStreamCreate(&S0));
    } catch (const std::exception &e) {
        printf("gpu: no usable device: %s\n0 passed, 1 failed\n", e.what());
        return 1;
    }
    if (!strcmp(mode, "measure")) {
        measure_selfcheck();
        return 0;
    }
#ifdef MLPF_CUDA_HOST
    printf("gpu-host: the CUDA kernels on the host execution path (CPU; not a GPU), thread order %s\n",
           getenv("MLPF_HOST_ORDER") ? getenv("MLPF_HOST_ORDER") : "forward");
#else
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("gpu: the CUDA kernels on %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
#endif
    try {
        test_elementwise();
        const mlpf_config tiny = preset("tiny"), hep = preset("hepscore22");
        const int St = tiny.bin_size, Sh = hep.bin_size;
        test_binning(tiny, {"one-element events", {1, 1, 1}});
        test_binning(tiny, {"a bin with one real row", {St + 1}});
        test_binning(tiny, {"events of exactly k bins", {St, 2 * St, 4 * St}});
        std::vector<int64_t> many;
        for (int e = 0; e < 40; e++) many.push_back(1 + (e * 37) % (3 * St));
        test_binning(tiny, {"40 events", many});
        test_binning(tiny, {"one event of 100 bins (more rows than a sort block)", {100 * St - 3}});
        test_binning(hep, {"hepscore22 widths, 2 events", {Sh + 1, Sh / 3}});
        test_gemm();
        if (strcmp(mode, "kernels")) {
            test_discovery();
            for (const char *p : {"fp32", "tf32", "bf16"}) {
                test_model("tiny", p, {1, St + 1, 3 * St, 2 * St - 5}, 3);
                test_model("tiny", p, many, 0);
                if (strcmp(mode, "quick")) test_model("hepscore22", p, {Sh + 1, Sh / 8}, 3); /* a bin with one real row */
            }
            test_checkpoint(true);
            test_checkpoint(false);
            test_selfcheck();
            test_faults();
        }
    } catch (const std::exception &e) {
        check(false, "unexpected: %s", e.what());
    }
    printf("gpu-host: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
