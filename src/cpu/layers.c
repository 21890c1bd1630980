#include "layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "prof.h"
#include "mathfn.h"

void gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M == 0 || N == 0) return;
    int prev = prof_switch(PROF_GEMM);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K, alpha, A,
                (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
    prof_switch(prev);
}

void dense_forward(const dense_t *d, const float *in, float *out, int64_t N)
{
    const int O = d->out;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) memcpy(out + i * O, d->b, sizeof(float) * O);
    gemm(0, 0, N, O, d->in, 1.0f, in, d->in, d->W, O, 1.0f, out, O);
}

void dense_backward(const dense_t *d, dense_t *g, const float *in, const float *dout, float *din,
                    int accumulate, int64_t N, const float *ones)
{
    const int nin = d->in, O = d->out;
    if (N == 0) return;
    gemm(1, 0, nin, O, N, 1.0f, in, nin, dout, O, 1.0f, g->W, O);
    int prev = prof_switch(PROF_GEMM);
    cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)N, O, 1.0f, dout, O, ones, 1, 1.0f, g->b, 1);
    prof_switch(prev);
    if (din) gemm(0, 1, N, nin, O, 1.0f, dout, O, d->W, O, accumulate ? 1.0f : 0.0f, din, nin);
}

/* element-wise loops: chunks over the threads, SIMD inside a chunk */
enum { CHUNK = 4096 };

void gelu_forward(const float *x, float *y, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) {
        int64_t end = c + CHUNK < n ? c + CHUNK : n;
#pragma omp simd
        for (int64_t i = c; i < end; i++) y[i] = mlpf_gelu(x[i]);
    }
}

void gelu_backward(const float *x, const float *dy, float *dx, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) {
        int64_t end = c + CHUNK < n ? c + CHUNK : n;
#pragma omp simd
        for (int64_t i = c; i < end; i++) dx[i] = dy[i] * mlpf_gelu_grad(x[i]);
    }
}

void elu_forward(const float *x, float *y, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) {
        int64_t end = c + CHUNK < n ? c + CHUNK : n;
#pragma omp simd
        for (int64_t i = c; i < end; i++) y[i] = mlpf_elu(x[i]);
    }
}

void elu_backward_from_output(const float *y, const float *dy, float *dx, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) {
        int64_t end = c + CHUNK < n ? c + CHUNK : n;
#pragma omp simd
        for (int64_t i = c; i < end; i++) dx[i] = mlpf_elu_grad_from_out(y[i], dy[i]);
    }
}

void layernorm_forward(const float *x, const float *gamma, const float *beta, float eps, float *y,
                       float *xhat, float *rstd, int64_t N, int C)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *xi = x + i * C;
        double mean = 0.0, var = 0.0;
        for (int c = 0; c < C; c++) mean += xi[c];
        mean /= C;
        for (int c = 0; c < C; c++) var += (xi[c] - mean) * (xi[c] - mean);
        var /= C;
        float r = mlpf_ln_rstd(var, eps);
        rstd[i] = r;
        for (int c = 0; c < C; c++) {
            float h = (float)(xi[c] - mean) * r;
            xhat[i * C + c] = h;
            y[i * C + c] = gamma[c] * h + beta[c];
        }
    }
}

void layernorm_backward(const float *dy, const float *xhat, const float *rstd,
                        const float *gamma, float *dx, float *dgamma, float *dbeta, int64_t N,
                        int C)
{
    /* Parameter gradients: column sums, done serially over rows per column
     * block to keep the result independent of the thread count. */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double sg = 0.0, sb = 0.0;
        for (int64_t i = 0; i < N; i++) {
            sg += (double)dy[i * C + c] * xhat[i * C + c];
            sb += dy[i * C + c];
        }
        dgamma[c] += (float)sg;
        dbeta[c] += (float)sb;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *dyi = dy + i * C, *hi = xhat + i * C;
        double m1 = 0.0, m2 = 0.0; /* means of g and g * xhat, g = dy * gamma */
        for (int c = 0; c < C; c++) {
            float g = dyi[c] * gamma[c];
            m1 += g;
            m2 += g * hi[c];
        }
        m1 /= C;
        m2 /= C;
        for (int c = 0; c < C; c++)
            dx[i * C + c] = mlpf_ln_dx(dyi[c] * gamma[c], hi[c], m1, m2, rstd[i]);
    }
}

/* out = b + sum_k x_k W[rows of block k] */
static void dense_forward_blocks(const dense_t *d, const mlp_input *in, float *out, int64_t N)
{
    const int O = d->out;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) memcpy(out + i * O, d->b, sizeof(float) * O);
    int off = 0;
    for (int k = 0; k < in->n; k++) {
        gemm(0, 0, N, O, in->w[k], 1.0f, in->x[k], in->w[k], d->W + (size_t)off * O, O, 1.0f, out, O);
        off += in->w[k];
    }
}

void mlp_forward(const mlp_t *m, const mlp_input *in, float **pre, float **act, int64_t N)
{
    for (int i = 0; i < m->n_layers; i++) {
        float *out = i + 1 < m->n_layers ? act[i] : pre[i]; /* hidden: only the activation is kept */
        if (i == 0) dense_forward_blocks(&m->layer[0], in, out, N);
        else dense_forward(&m->layer[i], act[i - 1], out, N);
        if (i + 1 < m->n_layers) elu_forward(out, out, N * m->layer[i].out);
    }
}

void mlp_backward(const mlp_t *m, mlp_t *g, const mlp_input *in, float *const *pre,
                  float *const *act, const float *dout, int64_t N, float *scratch0,
                  float *scratch1, const float *ones)
{
    (void)pre;
    /* d holds the gradient of the current layer's pre-activation output. */
    const float *d = dout;
    float *buf[2] = {scratch0, scratch1};
    for (int i = m->n_layers - 1; i > 0; i--) {
        float *dx = buf[i & 1];
        dense_backward(&m->layer[i], &g->layer[i], act[i - 1], d, dx, 0, N, ones);
        elu_backward_from_output(act[i - 1], dx, dx, N * m->layer[i - 1].out);
        d = dx;
    }
    /* the first layer, block by block */
    const dense_t *l0 = &m->layer[0];
    dense_t *g0 = &g->layer[0];
    const int O = l0->out;
    if (N == 0) return;
    int prev = prof_switch(PROF_GEMM);
    cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)N, O, 1.0f, d, O, ones, 1, 1.0f, g0->b, 1);
    prof_switch(prev);
    int off = 0;
    for (int k = 0; k < in->n; k++) {
        const int w = in->w[k];
        gemm(1, 0, w, O, N, 1.0f, in->x[k], w, d, O, 1.0f, g0->W + (size_t)off * O, O);
        if (in->dx[k]) gemm(0, 1, N, w, O, 1.0f, d, O, l0->W + (size_t)off * O, O, 1.0f, in->dx[k], w);
        off += w;
    }
}
