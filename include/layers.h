/* Layer primitives of the CPU backend: each a forward and a backward function
 * over row-major arrays of N rows. Matrix products go through cblas_sgemm;
 * element-wise work is OpenMP-parallel over rows. Backward functions ACCUMULATE
 * into parameter gradients (the caller zeroes them once per step). */
#ifndef MLPF_LAYERS_H
#define MLPF_LAYERS_H

#include <stdint.h>

#include "params.h"

/* C (M x N, ldc) = alpha * op(A) op(B) + beta * C, row-major. */
void gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* out (N x d->out) = in (N x d->in) W + b */
void dense_forward(const dense_t *d, const float *in, float *out, int64_t N);
/* g->W += in^T dout, g->b += colsum(dout); din (if not NULL) = dout W^T,
 * added to din when accumulate is set, else overwritten. */
void dense_backward(const dense_t *d, dense_t *g, const float *in, const float *dout, float *din,
                    int accumulate, int64_t N, const float *ones);

/* Element-wise activations over n values. */
void gelu_forward(const float *x, float *y, int64_t n);
/* dx = dy * gelu'(x) (overwrites dx; dx may alias dy) */
void gelu_backward(const float *x, const float *dy, float *dx, int64_t n);
void elu_forward(const float *x, float *y, int64_t n);

/* dx = dy * elu'(x), from y = elu(x) (in place allowed). */
void elu_backward_from_output(const float *y, const float *dy, float *dx, int64_t n);

/* LayerNorm over rows of width C: y = gamma * xhat + beta; saves xhat and rstd. */
void layernorm_forward(const float *x, const float *gamma, const float *beta, float eps, float *y,
                       float *xhat, float *rstd, int64_t N, int C);
/* dx (overwritten) from dy; accumulates dgamma, dbeta. */
void layernorm_backward(const float *dy, const float *xhat, const float *rstd,
                        const float *gamma, float *dx, float *dgamma, float *dbeta, int64_t N,
                        int C);

/* The input of a chain as column blocks: row i of the input is
 * [x[0] row i | x[1] row i | ...], each block x[k] of width w[k] (its own
 * leading dimension), never copied side by side. Backward adds the input
 * gradient of block k to dx[k] (N x w[k]) unless dx[k] is NULL (a
 * stop-gradient block). */
typedef struct {
    int n;
    const float *x[4];
    int w[4];
    float *dx[4];
} mlp_input;

/* A chain of dense layers with elu after every layer but the last.
 * act[i] (N x out_i) keeps the activation of hidden layers (the next layer's
 * input; backward takes elu' from it) and pre[last] the chain's output; the
 * other pre[i] are not used. The first layer is a sum of one product per
 * input block. */
void mlp_forward(const mlp_t *m, const mlp_input *in, float **pre, float **act, int64_t N);
/* Backward through the chain from dout (N x out_last); accumulates the
 * parameter gradients and the input blocks' gradients (see mlp_input).
 * scratch: two buffers of N x max hidden width. */
void mlp_backward(const mlp_t *m, mlp_t *g, const mlp_input *in, float *const *pre,
                  float *const *act, const float *dout, int64_t N, float *scratch0,
                  float *scratch1, const float *ones);

#endif
