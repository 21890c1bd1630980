// cuda/kernels.cuh: the backend's own kernels. Each thread's arithmetic is a
// function of include/mathfn.h (one definition with the CPU backend); what
// is written here is only the mapping of the work onto threads, warps and
// blocks, and the reductions.
#include <climits>
#include <cmath>

#include "kernels.cuh"
#include "mathfn.h"

namespace {

constexpr int EW = 256;   // threads per block of the element-wise kernels
constexpr int WARPS = 8;  // warps per block of the warp-per-row kernels

__device__ __forceinline__ int64_t gid() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }

__device__ __forceinline__ double warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// the row of a warp-per-row kernel (the same for all lanes of the warp)
__device__ __forceinline__ int64_t warp_row() { return (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; }

__global__ void k_encode(const float *X, float *e, int64_t N, int nf, int nt)
{
    int64_t i = gid();
    if (i >= N) return;
    const float *x = X + i * nf;
    float *o = e + i * (nt + nf - 1);
    int type = (int)x[0];
    for (int t = 0; t < nt; t++) o[t] = (float)(t == type);
    for (int k = 1; k < nf; k++) o[nt + k - 1] = x[k];
}

__global__ void k_bias_act(float *pre, int64_t ld, const float *bias, float *out, int64_t ldo, int64_t N, int C,
                           int act)
{
    int64_t idx = gid();
    if (idx >= N * C) return;
    int64_t i = idx / C;
    int c = (int)(idx % C);
    float v = pre[i * ld + c];
    if (bias) {
        v += bias[c];
        pre[i * ld + c] = v;
    }
    float y = act == ACT_GELU ? mlpf_gelu(v) : (act == ACT_ELU ? mlpf_elu(v) : v);
    if (out) out[i * ldo + c] = y;
}

__global__ void k_gelu_backward(const float *x, const float *dy, float *dx, int64_t n)
{
    int64_t i = gid();
    if (i < n) dx[i] = dy[i] * mlpf_gelu_grad(x[i]);
}

__global__ void k_elu_backward_from_output(const float *y, const float *dy, float *dx, int64_t n)
{
    int64_t i = gid();
    if (i < n) dx[i] = mlpf_elu_grad_from_out(y[i], dy[i]);
}

__global__ void k_elu_grad_block(float *t, int64_t ld, const float *dy, int64_t N, int C)
{
    int64_t idx = gid();
    if (idx >= N * C) return;
    int64_t i = idx / C;
    int c = (int)(idx % C);
    t[i * ld + c] = mlpf_elu_grad(t[i * ld + c], dy[idx]);
}

__global__ void k_add(float *dst, const float *src, int64_t n)
{
    int64_t i = gid();
    if (i < n) dst[i] += src[i];
}

// column sums: blocks of 32 columns x CS_ROWS rows, then the blocks in order
constexpr int CS_ROWS = 256;

__global__ void k_colsum_partial(const float *a, const float *b, int64_t ld, int64_t N, int C, double *partial)
{
    __shared__ double sh[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.y * CS_ROWS, r1 = r0 + CS_ROWS < N ? r0 + CS_ROWS : N;
    double s = 0.0;
    if (c < C)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
            double v = a[r * ld + c];
            if (b) v *= b[r * ld + c];
            s += v;
        }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        double t = 0.0;
        for (int k = 0; k < 8; k++) t += sh[k][threadIdx.x];
        partial[(int64_t)blockIdx.y * C + c] = t;
    }
}

__global__ void k_colsum_final(const double *partial, int64_t chunks, int C, float *dst)
{
    int c = (int)gid();
    if (c >= C) return;
    double t = 0.0;
    for (int64_t k = 0; k < chunks; k++) t += partial[k * C + c];
    dst[c] += (float)t;
}

__global__ void k_ln_forward(const float *x, const float *gamma, const float *beta, float eps, float *y,
                             float *xhat, float *rstd, int64_t N, int C)
{
    const int64_t row = warp_row();
    const int lane = threadIdx.x & 31;
    if (row >= N) return; // the whole warp
    const float *xr = x + row * C;
    double s = 0.0;
    for (int c = lane; c < C; c += 32) s += xr[c];
    const double mean = warp_sum(s) / C;
    double v = 0.0;
    for (int c = lane; c < C; c += 32) v += (xr[c] - mean) * (xr[c] - mean);
    const float r = mlpf_ln_rstd(warp_sum(v) / C, eps);
    if (lane == 0) rstd[row] = r;
    for (int c = lane; c < C; c += 32) {
        float h = (float)(xr[c] - mean) * r;
        xhat[row * C + c] = h;
        y[row * C + c] = gamma[c] * h + beta[c];
    }
}

__global__ void k_ln_backward_dx(const float *dy, const float *xhat, const float *rstd, const float *gamma,
                                 float *dx, int64_t N, int C)
{
    const int64_t row = warp_row();
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *d = dy + row * C, *h = xhat + row * C;
    double m1 = 0.0, m2 = 0.0;
    for (int c = lane; c < C; c += 32) {
        float g = d[c] * gamma[c];
        m1 += g;
        m2 += g * h[c];
    }
    m1 = warp_sum(m1) / C;
    m2 = warp_sum(m2) / C;
    for (int c = lane; c < C; c += 32) dx[row * C + c] = mlpf_ln_dx(d[c] * gamma[c], h[c], m1, m2, rstd[row]);
}

// ------------------------------------------------------------ LSH binning

// the better of two candidates of [P, -P]: the larger value, the smaller
// index on a tie (the CPU's first maximum)
__device__ __forceinline__ void better(float &v, int &i, float v2, int i2)
{
    if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

__global__ void k_lsh_hash(const int *row_event, const int *event_k, int64_t N, const float *xd, int Dd,
                           const float *R, int K, int *hash)
{
    MLPF_DYN_SHARED(float, Rs); // Dd x K
    for (int i = threadIdx.x; i < Dd * K; i += blockDim.x) Rs[i] = R[i];
    __syncthreads();
    const int64_t row = warp_row();
    const int lane = threadIdx.x & 31;
    if (row >= N) return;
    const int k = event_k[row_event[row]];
    const float *x = xd + row * Dd;
    float best = -INFINITY;
    int arg = INT_MAX;
    for (int j = lane; j < k; j += 32) {
        float p = 0.0f;
        for (int d = 0; d < Dd; d++) p += x[d] * Rs[d * K + j];
        better(best, arg, p, j);
        better(best, arg, -p, k + j);
    }
    for (int o = 16; o > 0; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, best, o);
        int i2 = __shfl_xor_sync(0xffffffffu, arg, o);
        better(best, arg, v2, i2);
    }
    if (lane == 0) hash[row] = arg < 2 * k ? arg : 0; /* NaN features: bucket 0, as the CPU */
}

// One block per event: a stable counting sort of its rows by bucket, chunk by
// chunk of blockDim rows; inside a chunk a row's place among the rows of its
// bucket comes from the warps before it (counts in shared memory) and the
// lanes before it (__match_any_sync).
constexpr int SORT_THREADS = 1024, MAX_BUCKETS = 128;

__global__ void k_bin_sort(const int *row_start, const int *bin_start, const int *event_k, const int *hash, int S,
                           int *perm)
{
    __shared__ int base[MAX_BUCKETS];
    __shared__ int wcnt[SORT_THREADS / 32][MAX_BUCKETS];
    const int e = blockIdx.x, tid = threadIdx.x, lane = tid & 31, w = tid >> 5, nw = blockDim.x >> 5;
    const int r0 = row_start[e], n = row_start[e + 1] - r0, nbk = 2 * event_k[e];
    const int slots = (bin_start[e + 1] - bin_start[e]) * S;
    int *out = perm + (int64_t)bin_start[e] * S;
    for (int b = tid; b < nbk; b += blockDim.x) base[b] = 0;
    __syncthreads();
    for (int i = tid; i < n; i += blockDim.x) {
        int h = hash[r0 + i];
        atomicAdd(&base[h < 0 ? 0 : (h < nbk ? h : nbk - 1)], 1);
    }
    __syncthreads();
    if (tid == 0) { /* exclusive prefix over the buckets */
        int acc = 0;
        for (int b = 0; b < nbk; b++) {
            int c = base[b];
            base[b] = acc;
            acc += c;
        }
    }
    __syncthreads();
    for (int c0 = 0; c0 < n; c0 += blockDim.x) {
        const int i = c0 + tid;
        const bool valid = i < n;
        int h = valid ? hash[r0 + i] : -1 - lane; /* a sentinel no other lane has */
        if (valid) h = h < 0 ? 0 : (h < nbk ? h : nbk - 1);
        const unsigned peers = __match_any_sync(0xffffffffu, h);
        const int rank = __popc(peers & ((1u << lane) - 1u));
        for (int q = tid; q < nw * nbk; q += blockDim.x) wcnt[q / nbk][q % nbk] = 0;
        __syncthreads();
        if (valid && rank == 0) wcnt[w][h] = __popc(peers);
        __syncthreads();
        for (int b = tid; b < nbk; b += blockDim.x) { /* prefix over the warps, and the buckets advance */
            int acc = base[b];
            for (int q = 0; q < nw; q++) {
                int c = wcnt[q][b];
                wcnt[q][b] = acc;
                acc += c;
            }
            base[b] = acc;
        }
        __syncthreads();
        if (valid) out[wcnt[w][h] + rank] = r0 + i;
        __syncthreads();
    }
    for (int i = n + tid; i < slots; i += blockDim.x) out[i] = -1;
}

// ------------------------------------------------------------ kernel matrix

__global__ void k_sqnorm(int64_t slots, const int *perm, const float *xd, int Dd, double *sqn)
{
    int64_t s = gid();
    if (s >= slots) return;
    int r = perm[s];
    double q = 0.0;
    if (r >= 0)
        for (int k = 0; k < Dd; k++) {
            double d = xd[(int64_t)r * Dd + k];
            q += d * d;
        }
    sqn[s] = q;
}

// A 32 x 32 tile of a bin's pairs per block (32 x 8 threads, 4 pairs each):
// the Gram entries in float64 over k in index order (the same fma sequence
// for G_ij and G_ji, so the matrix is symmetric bit for bit), then the
// distance and the kernel value of every pair.
__global__ void k_kernel_matrix(int S, const int *perm, const float *xd, int Dd, const double *sqn, float mult,
                                float *A, float *D)
{
    __shared__ double di[32][33], dj[32][33];
    const int64_t bin = blockIdx.z;
    const int i0 = blockIdx.y * 32, j0 = blockIdx.x * 32, tx = threadIdx.x, ty = threadIdx.y;
    const int *p = perm + bin * S;
    double g[4] = {0.0, 0.0, 0.0, 0.0};
    for (int k0 = 0; k0 < Dd; k0 += 32) {
        for (int q = ty; q < 32; q += 8) { /* row q of each tile, element tx of the chunk */
            int ri = i0 + q < S ? p[i0 + q] : -1, rj = j0 + q < S ? p[j0 + q] : -1;
            di[q][tx] = ri >= 0 && k0 + tx < Dd ? (double)xd[(int64_t)ri * Dd + k0 + tx] : 0.0;
            dj[q][tx] = rj >= 0 && k0 + tx < Dd ? (double)xd[(int64_t)rj * Dd + k0 + tx] : 0.0;
        }
        __syncthreads();
        const int kn = Dd - k0 < 32 ? Dd - k0 : 32;
        for (int kk = 0; kk < kn; kk++)
            for (int q = 0; q < 4; q++) g[q] = fma(di[ty + 8 * q][kk], dj[tx][kk], g[q]);
        __syncthreads();
    }
    const int j = j0 + tx;
    if (j >= S) return;
    const int rj = p[j];
    const double sqj = sqn[bin * S + j];
    for (int q = 0; q < 4; q++) {
        const int i = i0 + ty + 8 * q;
        if (i >= S) break;
        const int ri = p[i];
        const double sq = i == j ? 0.0 : sqn[bin * S + i] - 2.0 * g[q] + sqj; /* the diagonal is exactly 0 */
        float d, a = mlpf_kernel_value(sq, mult, &d);
        const int64_t at = (bin * S + i) * S + j;
        A[at] = (ri | rj) < 0 ? 0.0f : a;
        D[at] = d;
    }
}

__global__ void k_degree_norm(int64_t slots, int S, const int *perm, const float *A, float *nrm)
{
    const int64_t s = warp_row();
    const int lane = threadIdx.x & 31;
    if (s >= slots) return;
    const float *a = A + s * S;
    double deg = 0.0;
    for (int j = lane; j < S; j += 32) deg += a[j];
    deg = warp_sum(deg);
    if (lane == 0) nrm[s] = mlpf_degree_norm(deg, perm[s] >= 0);
}

__global__ void k_gather_scaled(int64_t slots, const int *perm, const float *src, int64_t ld, int W,
                                const float *nrm, float *dst)
{
    int64_t idx = gid();
    if (idx >= slots * W) return;
    int64_t s = idx / W;
    int k = (int)(idx % W), r = perm[s];
    dst[idx] = r < 0 ? 0.0f : nrm[s] * src[(int64_t)r * ld + k];
}

__global__ void k_graph_combine(int64_t slots, const int *perm, const float *nrm, const float *Y, int W, float *Gp,
                                const float *Fhet, int64_t ldc, const float *bt, const float *x, float *Fhom,
                                float *z_next)
{
    int64_t idx = gid();
    if (idx >= slots * W) return;
    int64_t s = idx / W;
    int k = (int)(idx % W), r = perm[s];
    if (r < 0) return;
    float fh = nrm[s] * Y[idx];
    Fhom[(int64_t)r * W + k] = fh;
    float gp = Gp[(int64_t)r * ldc + k] + bt[k];
    Gp[(int64_t)r * ldc + k] = gp;
    z_next[(int64_t)r * W + k] = x[(int64_t)r * W + k] + mlpf_graph_out(gp, fh, Fhet[(int64_t)r * ldc + k]);
}

__global__ void k_graph_combine_backward(int64_t N, int W, const float *dz, float *Gp, float *Fhet, int64_t ldc,
                                         const float *Fhom, float *dFhom)
{
    int64_t idx = gid();
    if (idx >= N * W) return;
    int64_t r = idx / W;
    int k = (int)(idx % W);
    float dgp, dfhom, dfhet;
    mlpf_graph_out_grad(Gp[r * ldc + k], Fhom[idx], Fhet[r * ldc + k], dz[idx], &dgp, &dfhom, &dfhet);
    Gp[r * ldc + k] = dgp;
    dFhom[idx] = dfhom;
    Fhet[r * ldc + k] = dfhet;
}

__global__ void k_bin_dn(int64_t slots, const int *perm, const float *dFhom, const float *Fhom, int W,
                         const float *nrm, float *dn)
{
    const int64_t s = warp_row();
    const int lane = threadIdx.x & 31;
    if (s >= slots) return;
    const int r = perm[s];
    double v = 0.0;
    if (r >= 0)
        for (int k = lane; k < W; k += 32) v += (double)dFhom[(int64_t)r * W + k] * Fhom[(int64_t)r * W + k];
    v = warp_sum(v);
    if (lane == 0) dn[s] = r < 0 ? 0.0f : (float)(v / nrm[s]);
}

__global__ void k_bin_dv_scatter(int64_t slots, const int *perm, const float *dV, int W, float *H, int64_t ldc,
                                 const float *nrm, float *dn)
{
    const int64_t s = warp_row();
    const int lane = threadIdx.x & 31;
    if (s >= slots) return;
    const int r = perm[s];
    if (r < 0) return;
    double v = 0.0;
    const float n = nrm[s];
    for (int k = lane; k < W; k += 32) {
        const float dv = dV[s * W + k];
        float *h = H + (int64_t)r * ldc + k; /* H itself: read before it becomes dH */
        v += (double)dv * *h;
        *h = n * dv;
    }
    v = warp_sum(v);
    if (lane == 0) dn[s] += (float)v;
}

__global__ void k_bin_dsq(int64_t n, int S, const float *nrm, const float *dn, const float *A, const float *D,
                          float mult, float *dA)
{
    int64_t idx = gid();
    if (idx >= n) return;
    int64_t slot = idx / S; /* the pair's row i, as bin * S + i */
    const float ni = nrm[slot];
    const float ddeg = -0.5f * ni * ni * ni * dn[slot];
    dA[idx] = mlpf_kernel_dsq(dA[idx] + ddeg, A[idx], D[idx], mult);
}

__global__ void k_bin_sym(int S, const float *dsq, double *M)
{
    __shared__ float t[32][33];
    const int64_t bin = blockIdx.z;
    const int i0 = blockIdx.y * 32, j0 = blockIdx.x * 32, tx = threadIdx.x, ty = threadIdx.y;
    const float *q = dsq + bin * S * S;
    for (int r = ty; r < 32; r += 8) /* the mirrored tile: rows j0.., columns i0.. */
        t[r][tx] = j0 + r < S && i0 + tx < S ? q[(int64_t)(j0 + r) * S + i0 + tx] : 0.0f;
    __syncthreads();
    for (int r = ty; r < 32; r += 8) {
        const int i = i0 + r, j = j0 + tx;
        if (i < S && j < S) M[(bin * S + i) * S + j] = (double)q[(int64_t)i * S + j] + (double)t[tx][r];
    }
}

__global__ void k_rowsum64(int64_t rows, int S, const double *M, double *rs)
{
    const int64_t s = warp_row();
    const int lane = threadIdx.x & 31;
    if (s >= rows) return;
    double v = 0.0;
    for (int j = lane; j < S; j += 32) v += M[s * S + j];
    v = warp_sum(v);
    if (lane == 0) rs[s] = v;
}

__global__ void k_gather_d64(int64_t slots, const int *perm, const float *xd, int Dd, double *d64)
{
    int64_t idx = gid();
    if (idx >= slots * Dd) return;
    int64_t s = idx / Dd;
    int k = (int)(idx % Dd), r = perm[s];
    d64[idx] = r < 0 ? 0.0 : (double)xd[(int64_t)r * Dd + k];
}

__global__ void k_bin_dxd(int64_t slots, const int *perm, const double *out, const double *rs, const double *d64,
                          int Dd, float *dxd)
{
    int64_t idx = gid();
    if (idx >= slots * Dd) return;
    int64_t s = idx / Dd;
    int k = (int)(idx % Dd), r = perm[s];
    if (r < 0) return;
    const double f = 2.0 * rs[s];
    dxd[(int64_t)r * Dd + k] = (float)(out[idx] + f * d64[idx]);
}

// ------------------------------------------------------------ loss

constexpr int LOSS_THREADS = 256, LOSS_VALUES = MLPF_N_TERMS + 1;

__global__ void k_loss(const float *X, const float *y, int64_t N, int nc, head_ptrs h, float inv, double *partial)
{
    __shared__ double sh[LOSS_VALUES][LOSS_THREADS];
    const int64_t i = gid();
    double t[MLPF_N_TERMS] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    int ok = 0;
    if (i < N) {
        mlpf_head_out o = {h.logits + i * nc, h.charge[i], h.eta[i], h.energy[i], h.phi + i * 2, h.pt + i * 2};
        mlpf_head_grad d = {h.dlogits + i * nc, h.dcharge + i, h.deta + i, h.denergy + i, h.dphi + i * 2,
                            h.dpt + i * 2};
        ok = mlpf_loss_element(X + i * 12, y + i * 7, nc, o, inv, d, t);
    }
    for (int k = 0; k < MLPF_N_TERMS; k++) sh[k][threadIdx.x] = t[k];
    sh[MLPF_N_TERMS][threadIdx.x] = ok;
    __syncthreads();
    for (int half = LOSS_THREADS / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half)
            for (int k = 0; k < LOSS_VALUES; k++) sh[k][threadIdx.x] += sh[k][threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x < LOSS_VALUES) partial[(int64_t)blockIdx.x * LOSS_VALUES + threadIdx.x] = sh[threadIdx.x][0];
}

__global__ void k_loss_final(const double *partial, int64_t blocks, double *result)
{
    const int k = threadIdx.x;
    if (k >= LOSS_VALUES) return;
    double s = 0.0;
    for (int64_t b = 0; b < blocks; b++) s += partial[b * LOSS_VALUES + k];
    result[k] = s;
}

// ------------------------------------------------------------ optimizer

__global__ void k_first_nonfinite(const float *g, const int64_t *offsets, int *bad)
{
    const int t = blockIdx.x;
    int found = 0;
    for (int64_t i = offsets[t] + threadIdx.x; i < offsets[t + 1]; i += blockDim.x) found |= !isfinite(g[i]);
    if (__syncthreads_or(found) && threadIdx.x == 0) atomicMin(bad, t);
}

__global__ void k_adam(float *p, float *m, float *v, const float *g, int64_t n, float b1, float b2, float lr_t,
                       float eps, const int *bad, __nv_bfloat16 *pb)
{
    int64_t i = gid();
    if (i >= n || *bad != INT_MAX) return;
    mlpf_adam_element(p + i, m + i, v + i, g[i], b1, b2, lr_t, eps);
    if (pb) pb[i] = __float2bfloat16(p[i]);
}

__global__ void k_to_bf16(const float *src, int64_t ld, int64_t rows, int64_t cols, __nv_bfloat16 *dst)
{
    int64_t idx = gid();
    if (idx >= rows * cols) return;
    dst[idx] = __float2bfloat16(src[(idx / cols) * ld + idx % cols]);
}

} // namespace

// ------------------------------------------------------------ launchers

void launch_encode(cudaStream_t s, const float *X, float *e, int64_t N, int nf, int ntypes)
{
    if (N > 0) KLAUNCH(k_encode, blocks_for(N, EW), EW, 0, s, X, e, N, nf, ntypes);
}

void launch_bias_act(cudaStream_t s, float *pre, int64_t ld, const float *bias, float *out, int64_t ldo, int64_t N,
                     int C, act_kind act)
{
    if (N * C > 0) KLAUNCH(k_bias_act, blocks_for(N * C, EW), EW, 0, s, pre, ld, bias, out, ldo, N, C, (int)act);
}

void launch_gelu_backward(cudaStream_t s, const float *x, const float *dy, float *dx, int64_t n)
{
    if (n > 0) KLAUNCH(k_gelu_backward, blocks_for(n, EW), EW, 0, s, x, dy, dx, n);
}

void launch_elu_backward_from_output(cudaStream_t s, const float *y, const float *dy, float *dx, int64_t n)
{
    if (n > 0) KLAUNCH(k_elu_backward_from_output, blocks_for(n, EW), EW, 0, s, y, dy, dx, n);
}

void launch_elu_grad_block(cudaStream_t s, float *t, int64_t ld, const float *dy, int64_t N, int C)
{
    if (N * C > 0) KLAUNCH(k_elu_grad_block, blocks_for(N * C, EW), EW, 0, s, t, ld, dy, N, C);
}

void launch_add(cudaStream_t s, float *dst, const float *src, int64_t n)
{
    if (n > 0) KLAUNCH(k_add, blocks_for(n, EW), EW, 0, s, dst, src, n);
}

int64_t colsum_partial_doubles(int64_t N, int C) { return ((N + CS_ROWS - 1) / CS_ROWS) * (int64_t)C; }

void launch_colsum_add(cudaStream_t s, float *dst, const float *a, const float *b, int64_t ld, int64_t N, int C,
                       double *partial)
{
    if (N <= 0 || C <= 0) return;
    const int64_t chunks = (N + CS_ROWS - 1) / CS_ROWS;
    if (chunks > 65535) mlpf_cuda_throw("launch_colsum_add", __FILE__, __LINE__, "more than 16 M rows");
    KLAUNCH(k_colsum_partial, dim3(blocks_for(C, 32), (unsigned)chunks), dim3(32, 8), 0, s, a, b, ld, N, C, partial);
    KLAUNCH(k_colsum_final, blocks_for(C, EW), EW, 0, s, partial, chunks, C, dst);
}

void launch_layernorm_forward(cudaStream_t s, const float *x, const float *gamma, const float *beta, float eps,
                              float *y, float *xhat, float *rstd, int64_t N, int C)
{
    if (N > 0) KLAUNCH(k_ln_forward, blocks_for(N, WARPS), 32 * WARPS, 0, s, x, gamma, beta, eps, y, xhat, rstd, N, C);
}

void launch_layernorm_backward_dx(cudaStream_t s, const float *dy, const float *xhat, const float *rstd,
                                  const float *gamma, float *dx, int64_t N, int C)
{
    if (N > 0) KLAUNCH(k_ln_backward_dx, blocks_for(N, WARPS), 32 * WARPS, 0, s, dy, xhat, rstd, gamma, dx, N, C);
}

void launch_lsh_hash(cudaStream_t s, const batch_layout &bl, const float *xd, int Dd, const float *R, int K, int *hash)
{
    if (bl.n_rows <= 0) return;
    const size_t smem = sizeof(float) * Dd * K;
    KLAUNCH(k_lsh_hash, blocks_for(bl.n_rows, WARPS), 32 * WARPS, smem, s, bl.row_event, bl.event_k, bl.n_rows, xd,
            Dd, R, K, hash);
}

void launch_bin_sort(cudaStream_t s, const batch_layout &bl, const int *hash, int S, int *perm)
{
    if (bl.n_events > 0)
        KLAUNCH(k_bin_sort, bl.n_events, SORT_THREADS, 0, s, bl.row_start, bl.bin_start, bl.event_k, hash, S, perm);
}

void launch_kernel_matrix(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *xd, int Dd, float mult,
                          float *A, float *D, double *sqn)
{
    if (n_bins <= 0) return;
    if (n_bins > 65535) mlpf_cuda_throw("launch_kernel_matrix", __FILE__, __LINE__, "more than 65535 bins in a batch");
    KLAUNCH(k_sqnorm, blocks_for(n_bins * S, EW), EW, 0, s, n_bins * S, perm, xd, Dd, sqn);
    KLAUNCH(k_kernel_matrix, dim3(blocks_for(S, 32), blocks_for(S, 32), (unsigned)n_bins), dim3(32, 8), 0, s, S, perm,
            xd, Dd, sqn, mult, A, D);
}

void launch_degree_norm(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *A, float *nrm)
{
    if (n_bins > 0) KLAUNCH(k_degree_norm, blocks_for(n_bins * S, WARPS), 32 * WARPS, 0, s, n_bins * S, S, perm, A, nrm);
}

void launch_gather_scaled(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *src, int64_t ld, int W,
                          const float *nrm, float *dst)
{
    if (n_bins > 0)
        KLAUNCH(k_gather_scaled, blocks_for(n_bins * S * W, EW), EW, 0, s, n_bins * S, perm, src, ld, W, nrm, dst);
}

void launch_graph_combine(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *nrm, const float *Y,
                          int W, float *Gp, float *Fhet, int64_t ldc, const float *bt, const float *x, float *Fhom,
                          float *z_next)
{
    if (n_bins > 0)
        KLAUNCH(k_graph_combine, blocks_for(n_bins * S * W, EW), EW, 0, s, n_bins * S, perm, nrm, Y, W, Gp, Fhet, ldc, bt,
                x, Fhom, z_next);
}

void launch_graph_combine_backward(cudaStream_t s, int64_t N, int W, const float *dz, float *Gp, float *Fhet,
                                   int64_t ldc, const float *Fhom, float *dFhom)
{
    if (N > 0) KLAUNCH(k_graph_combine_backward, blocks_for(N * W, EW), EW, 0, s, N, W, dz, Gp, Fhet, ldc, Fhom, dFhom);
}

void launch_bin_dn(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *dFhom, const float *Fhom, int W,
                   const float *nrm, float *dn)
{
    if (n_bins > 0)
        KLAUNCH(k_bin_dn, blocks_for(n_bins * S, WARPS), 32 * WARPS, 0, s, n_bins * S, perm, dFhom, Fhom, W, nrm, dn);
}

void launch_bin_dv_scatter(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *dV, int W, float *H,
                           int64_t ldc, const float *nrm, float *dn)
{
    if (n_bins > 0)
        KLAUNCH(k_bin_dv_scatter, blocks_for(n_bins * S, WARPS), 32 * WARPS, 0, s, n_bins * S, perm, dV, W, H, ldc, nrm,
                dn);
}

void launch_bin_dsq(cudaStream_t s, int64_t n_bins, int S, const float *nrm, const float *dn, const float *A,
                    const float *D, float mult, float *dA)
{
    const int64_t n = n_bins * S * S;
    if (n > 0) KLAUNCH(k_bin_dsq, blocks_for(n, EW), EW, 0, s, n, S, nrm, dn, A, D, mult, dA);
}

void launch_bin_sym(cudaStream_t s, int64_t n_bins, int S, const float *dsq, double *M, double *rs)
{
    if (n_bins <= 0) return;
    KLAUNCH(k_bin_sym, dim3(blocks_for(S, 32), blocks_for(S, 32), (unsigned)n_bins), dim3(32, 8), 0, s, S, dsq, M);
    KLAUNCH(k_rowsum64, blocks_for(n_bins * S, WARPS), 32 * WARPS, 0, s, n_bins * S, S, M, rs);
}

void launch_gather_d64(cudaStream_t s, int64_t n_bins, int S, const int *perm, const float *xd, int Dd, double *d64)
{
    if (n_bins > 0) KLAUNCH(k_gather_d64, blocks_for(n_bins * S * Dd, EW), EW, 0, s, n_bins * S, perm, xd, Dd, d64);
}

void launch_bin_dxd(cudaStream_t s, int64_t n_bins, int S, const int *perm, const double *out, const double *rs,
                    const double *d64, int Dd, float *dxd)
{
    if (n_bins > 0)
        KLAUNCH(k_bin_dxd, blocks_for(n_bins * S * Dd, EW), EW, 0, s, n_bins * S, perm, out, rs, d64, Dd, dxd);
}

int64_t loss_partial_doubles(int64_t N) { return (int64_t)blocks_for(N > 0 ? N : 1, LOSS_THREADS) * LOSS_VALUES; }

void launch_loss(cudaStream_t s, const float *X, const float *y, int64_t N, int nc, head_ptrs h, float inv,
                 double *partial, double *result)
{
    const unsigned blocks = blocks_for(N > 0 ? N : 1, LOSS_THREADS);
    KLAUNCH(k_loss, blocks, LOSS_THREADS, 0, s, X, y, N, nc, h, inv, partial);
    KLAUNCH(k_loss_final, 1, 32, 0, s, partial, (int64_t)blocks, result);
}

void launch_first_nonfinite(cudaStream_t s, const float *g, const int64_t *offsets, int n_tensors, int *bad)
{
    if (n_tensors > 0) KLAUNCH(k_first_nonfinite, n_tensors, EW, 0, s, g, offsets, bad);
}

void launch_adam(cudaStream_t s, float *p, float *m, float *v, const float *g, int64_t n, float b1, float b2,
                 float lr_t, float eps, const int *bad, __nv_bfloat16 *pb)
{
    if (n > 0) KLAUNCH(k_adam, blocks_for(n, EW), EW, 0, s, p, m, v, g, n, b1, b2, lr_t, eps, bad, pb);
}

void launch_to_bf16(cudaStream_t s, const float *src, int64_t ld, int64_t rows, int64_t cols, __nv_bfloat16 *dst)
{
    if (rows * cols > 0) KLAUNCH(k_to_bf16, blocks_for(rows * cols, EW), EW, 0, s, src, ld, rows, cols, dst);
}
