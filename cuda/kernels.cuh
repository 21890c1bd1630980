// The CUDA backend's own kernels (everything but the matrix products), each
// behind a launcher that takes row-major device arrays and a stream. The
// arithmetic of every element is a function of include/mathfn.h, shared with
// the CPU backend; tests/gpu_host/ checks every launcher against its CPU
// counterpart on the host execution path.
#pragma once

#include "common.cuh"

enum act_kind { ACT_NONE, ACT_GELU, ACT_ELU };

// The batch's layout on the device (cuda/model.cu stages it with the batch).
struct batch_layout {
    int n_events;
    int64_t n_rows, n_bins;
    const int *row_start; // n_events + 1: event e is rows [row_start[e], row_start[e+1])
    const int *bin_start; // n_events + 1: its bins [bin_start[e], bin_start[e+1])
    const int *event_k;   // n_events: LSH columns used for the event
    const int *row_event; // n_rows: the event of each row
    const int *bin_event; // n_bins: the event of each bin
};

// e (N x (ntypes + nf - 1)) = [onehot(X[:,0]), X[:, 1..]] from X (N x nf)
void launch_encode(cudaStream_t s, const float *X, float *e, int64_t N, int nf, int ntypes);
// pre (N x C, ld) += bias (if not NULL); out (N x C, ldo; may be pre) = act(pre)
void launch_bias_act(cudaStream_t s, float *pre, int64_t ld, const float *bias, float *out, int64_t ldo,
                     int64_t N, int C, act_kind act);
// dx = dy * gelu'(x), n values (dx may be dy)
void launch_gelu_backward(cudaStream_t s, const float *x, const float *dy, float *dx, int64_t n);
// dx = dy * elu'(.) from the output y of the elu, n values (in place allowed)
void launch_elu_backward_from_output(cudaStream_t s, const float *y, const float *dy, float *dx, int64_t n);
// t (N x C, ld) = dy (N x C, packed) * elu'(t), in place
void launch_elu_grad_block(cudaStream_t s, float *t, int64_t ld, const float *dy, int64_t N, int C);
// dst += src, n values
void launch_add(cudaStream_t s, float *dst, const float *src, int64_t n);
// dst[c] += sum_i a[i, c] (* b[i, c] when b is not NULL); a, b: N x C with row
// stride ld; partial: scratch of colsum_partial_doubles(N, C) doubles.
// Deterministic: fixed blocks of rows, summed in order.
int64_t colsum_partial_doubles(int64_t N, int C);
void launch_colsum_add(cudaStream_t s, float *dst, const float *a, const float *b, int64_t ld, int64_t N, int C,
                       double *partial);
// LayerNorm over rows of width C: y = gamma xhat + beta; keeps xhat, rstd
void launch_layernorm_forward(cudaStream_t s, const float *x, const float *gamma, const float *beta, float eps,
                              float *y, float *xhat, float *rstd, int64_t N, int C);
// dx (overwritten) from dy (dgamma, dbeta are added by colsum_add)
void launch_layernorm_backward_dx(cudaStream_t s, const float *dy, const float *xhat, const float *rstd,
                                  const float *gamma, float *dx, int64_t N, int C);

// LSH bucket of every row: argmax of [P, -P], P = xd R[:, :k] (k of the row's
// event; R: Dd x K row-major), the first maximum; float32 products summed in
// index order.
void launch_lsh_hash(cudaStream_t s, const batch_layout &bl, const float *xd, int Dd, const float *R, int K,
                     int *hash);
// perm (n_bins x S): the rows of each event stably sorted by bucket (ties by
// row index), bin by bin; -1 for the padding slots at the end of an event.
void launch_bin_sort(cudaStream_t s, const batch_layout &bl, const int *hash, int S, int *perm);
// Per bin: D (n_bins x S x S) and A = kernel(D) (0 where either slot is
// padding) from the distance features of the bins' rows (float64 products;
// sqn: n_bins x S doubles of scratch, the squared norms).
void launch_kernel_matrix(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *xd, int Dd,
                          float mult, float *A, float *D, double *sqn);
// nrm (n_bins x S) = (rowsum(A) + 1e-6)^(-1/2), 0 on padding
void launch_degree_norm(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *A, float *nrm);
// dst (n_bins x S x W) = nrm * src[perm] (src rows of width W, row stride ld); 0 on padding
void launch_gather_scaled(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *src, int64_t ld,
                          int W, const float *nrm, float *dst);
// The graph layer's output, slot by slot: Fhom[r] = nrm Y; Gp[r] += bt (kept
// for backward); z_next[r] = x[r] + elu(G Fhom + (1 - G) Fhet[r]).
// Gp and Fhet have row stride ldc (blocks of the layer's fused product).
void launch_graph_combine(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *nrm, const float *Y,
                          int W, float *Gp, float *Fhet, int64_t ldc, const float *bt, const float *x, float *Fhom,
                          float *z_next);
// Its backward over rows: dGp over Gp, dFhet over Fhet (stride ldc), dFhom (N x W)
void launch_graph_combine_backward(cudaStream_t s, int64_t N, int W, const float *dz, float *Gp, float *Fhet,
                                   int64_t ldc, const float *Fhom, float *dFhom);
// dn (n_bins x S) = sum_k dFhom[r,k] Fhom[r,k] / nrm (0 on padding)
void launch_bin_dn(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *dFhom, const float *Fhom,
                   int W, const float *nrm, float *dn);
// slot j: dn_j += sum_k dV_jk H[r,k]; then H[r,:] = nrm_j dV_j (dH over H, stride ldc)
void launch_bin_dv_scatter(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *dV, int W,
                           float *H, int64_t ldc, const float *nrm, float *dn);
// dA (n_bins x S x S) = dsq: through the degree term and the kernel function
void launch_bin_dsq(cudaStream_t s, int64_t n_bins, int S, const float *nrm, const float *dn, const float *A,
                    const float *D, float mult, float *dA);
// M = dsq + dsq^T (float64), rs = rowsum(M)
void launch_bin_sym(cudaStream_t s, int64_t n_bins, int S, const float *dsq, double *M, double *rs);
// d64 (n_bins x S x Dd) = xd[perm] in float64, 0 on padding
void launch_gather_d64(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *xd, int Dd, double *d64);
// dxd[r] = out + 2 rs d64 (real slots)
void launch_bin_dxd(cudaStream_t s, int64_t n_bins, int S, const int *perm, const double *out, const double *rs,
                    const double *d64, int Dd, float *dxd);

// The seven loss terms of every row and their gradients w.r.t. the heads'
// outputs; sums (unnormalised) in result[0..6], correct rows in result[7].
// partial: loss_partial_doubles(N) doubles of scratch.
struct head_ptrs {
    const float *logits, *charge, *eta, *phi, *energy, *pt;
    float *dlogits, *dcharge, *deta, *dphi, *denergy, *dpt;
};
int64_t loss_partial_doubles(int64_t N);
void launch_loss(cudaStream_t s, const float *X, const float *y, int64_t N, int nc, head_ptrs h, float inv,
                 double *partial, double *result);

// index of the first tensor (offsets: n_tensors + 1) with a non-finite value
// into *bad (left at INT_MAX when all are finite; set it first)
void launch_first_nonfinite(cudaStream_t s, const float *g, const int64_t *offsets, int n_tensors, int *bad);
// Adam over n values (mathfn.h); skipped when *bad != INT_MAX. With pb, also
// the bf16 copy of the parameters.
void launch_adam(cudaStream_t s, float *p, float *m, float *v, const float *g, int64_t n, float b1, float b2,
                 float lr_t, float eps, const int *bad, __nv_bfloat16 *pb);
// dst (rows x cols, packed) = bf16(src (rows x cols, row stride ld))
void launch_to_bf16(cudaStream_t s, const float *src, int64_t ld, int64_t rows, int64_t cols, __nv_bfloat16 *dst);
