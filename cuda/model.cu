// cuda/model.cuh: the MLPF forward, loss, backward and Adam step on one GPU,
// in the order of src/cpu/model.c, tensor by tensor.
#include "model.cuh"
#include "comm.cuh"
#include "mathfn.h"

#include <climits>
#include <cstring>
#include <type_traits>

namespace {

enum { HEAD_ID, HEAD_CH, HEAD_ETA, HEAD_PHI, HEAD_E, HEAD_PT };
enum { PH_FWD, PH_BWD, PH_OPT };

const mlp_t *head_params(const mlpf_tensors &t, int h)
{
    const mlp_t *heads[DEV_HEADS] = {&t.ffn_id, &t.ffn_ch, &t.ffn_eta, &t.ffn_phi, &t.ffn_e, &t.ffn_pt};
    return heads[h];
}

int64_t cat_cols(const mlpf_config &c) { return c.dist_hidden + 3 * (int64_t)c.width; }

// Record where the kind of work (prof.h) or the phase changes: the time
// between two marks is charged to the first one's kind and phase.
void mark(dev_model &m, int kind, int phase)
{
    if (kind == m.cur_kind && phase == m.cur_phase) return;
    m.cur_kind = kind;
    m.cur_phase = phase;
    if (m.n_marks == m.marks.size()) return; /* pool used up: the last kind takes the rest */
    CUDA_CHECK(cudaEventRecord(m.marks[m.n_marks].ev, m.cs));
    m.marks[m.n_marks].kind = kind;
    m.marks[m.n_marks].phase = phase;
    m.n_marks++;
}

// The largest row count of a bf16 operand, for its scratch.
int64_t bf16_scratch(const mlpf_config &c, int64_t N, int64_t NB)
{
    const int64_t W = c.width, S = c.bin_size, nc = c.n_classes;
    int64_t a = N * (cat_cols(c) > 2 * (W + nc) ? cat_cols(c) : 2 * (W + nc));
    int64_t b = NB * S * (S > W ? S : W);
    int64_t d = NB * S * c.dist_dim;
    return a > b ? (a > d ? a : d) : (b > d ? b : d);
}

// Lay the arena out for N rows, NB bins and E events; base == nullptr: size only.
size_t carve(dev_model &m, int64_t N, int64_t NB, int64_t E, char *base)
{
    const mlpf_config &c = m.cfg;
    size_t off = 0;
    auto take = [&](auto *&ptr, int64_t count) {
        using T = std::remove_reference_t<decltype(*ptr)>;
        if (base) ptr = reinterpret_cast<T *>(base + off);
        off += ((size_t)count * sizeof(T) + 255) & ~(size_t)255;
    };
    const int64_t W = c.width, S = c.bin_size, Dd = c.dist_dim, Dh = c.dist_hidden, nc = c.n_classes;
    const int64_t Hh = c.head_hidden, CW = cat_cols(c);
    take(m.e, N * mlpf_enc_in(&c));
    take(m.a1, N * W);
    take(m.h1, N * W);
    take(m.a2, N * W);
    for (int l = 0; l <= c.n_graph_id; l++) take(m.z_id[l], N * W);
    if (base) m.z_reg[0] = m.z_id[0];
    for (int l = 1; l <= c.n_graph_reg; l++) take(m.z_reg[l], N * W);
    for (int l = 0; l < c.n_graph_id + c.n_graph_reg; l++) {
        dev_graph_acts &g = m.gl[l];
        take(g.cat, N * CW);
        take(g.xd, N * Dd);
        take(g.Fhom, N * W);
        take(g.nrm, NB * S);
        take(g.perm, NB * S);
        take(g.hash, N);
        take(g.A, NB * S * S);
        take(g.D, NB * S * S);
        take(g.V, NB * S * W);
    }
    take(m.u, N * W);
    take(m.xhat, N * W);
    take(m.rstd, N);
    take(m.sg_logits, N * nc);
    for (int h = 0; h < DEV_HEADS; h++) {
        const mlp_t *p = head_params(m.TP, h);
        for (int i = 0; i < p->n_layers; i++) {
            if (i + 1 < p->n_layers) take(m.act[h][i], N * p->layer[i].out);
            else take(m.pre[h][i], N * p->layer[i].out);
        }
        take(m.dout[h], N * p->layer[p->n_layers - 1].out);
    }
    take(m.dzi, N * W);
    take(m.dzr, N * W);
    take(m.s1, N * (W > Dh ? W : Dh));
    take(m.m0, N * Hh);
    take(m.m1, N * Hh);
    take(m.s2, N * W);
    take(m.sd, N * Dd);
    take(m.sh, N * Dh);
    take(m.bY, NB * S * W);
    take(m.bdA, NB * S * S);
    take(m.bdn, NB * S);
    take(m.bM, NB * S * S);
    take(m.bd64, NB * S * Dd);
    take(m.bo64, NB * S * Dd);
    take(m.brs, NB * S);
    take(m.bsqn, NB * S);
    int64_t widest = W > Dh ? W : Dh;
    if (Dd > widest) widest = Dd;
    if (Hh > widest) widest = Hh;
    take(m.colsum_part, colsum_partial_doubles(N, (int)widest));
    take(m.loss_part, loss_partial_doubles(N));
    if (m.prec == PREC_BF16) {
        int64_t n = bf16_scratch(c, N, NB);
        take(m.blas.scratch[0], n);
        take(m.blas.scratch[1], n);
        if (base) m.blas.scratch_n = n;
    }
    (void)E;
    return off;
}

// A staged batch: X, y and the layout, one block in pinned memory and one on
// the device.
size_t slot_carve(dev_slot &s, int64_t N, int64_t NB, int64_t E, char *base, bool set)
{
    size_t off = 0;
    float *X = nullptr, *y = nullptr;
    int *row_start = nullptr, *bin_start = nullptr, *event_k = nullptr, *row_event = nullptr, *bin_event = nullptr;
    auto take = [&](auto *&ptr, int64_t count) {
        using T = std::remove_reference_t<decltype(*ptr)>;
        ptr = reinterpret_cast<T *>(base + off);
        off += ((size_t)count * sizeof(T) + 255) & ~(size_t)255;
    };
    take(X, N * BATCH_X_COLS);
    take(y, N * BATCH_Y_COLS);
    take(row_start, E + 1);
    take(bin_start, E + 1);
    take(event_k, E);
    take(row_event, N);
    take(bin_event, NB);
    if (set) {
        s.X = X;
        s.y = y;
        s.bl.row_start = row_start;
        s.bl.bin_start = bin_start;
        s.bl.event_k = event_k;
        s.bl.row_event = row_event;
        s.bl.bin_event = bin_event;
    }
    return off;
}

void mlp_forward(dev_model &m, int h, const float *const *x, const int *w, const int64_t *ld, int nblocks, int64_t N)
{
    const mlp_t *p = head_params(m.TP, h);
    for (int i = 0; i < p->n_layers; i++) {
        const dense_t &d = p->layer[i];
        const bool hidden = i + 1 < p->n_layers;
        float *out = hidden ? m.act[h][i] : m.pre[h][i];
        if (i == 0) {
            int off = 0;
            for (int k = 0; k < nblocks; k++) {
                gemm(m.blas, false, false, N, d.out, w[k], 1.0f, x[k], ld[k], d.W + (int64_t)off * d.out, d.out,
                     k == 0 ? 0.0f : 1.0f, out, d.out);
                off += w[k];
            }
        } else {
            gemm(m.blas, false, false, N, d.out, d.in, 1.0f, m.act[h][i - 1], d.in, d.W, d.out, 0.0f, out, d.out);
        }
        mark(m, PROF_ELEMENTWISE, PH_FWD);
        launch_bias_act(m.cs, out, d.out, d.b, out, d.out, N, d.out, hidden ? ACT_ELU : ACT_NONE);
        mark(m, PROF_GEMM, PH_FWD);
    }
}

// Each head's input as column blocks (src/cpu/model.c head_input): u; [u |
// logits]; [u | logits | z_reg | logits]; the logits are stop-gradients.
int head_blocks(dev_model &m, int h, const float **x, int *w, int64_t *ld, float **dx)
{
    const int W = m.cfg.width, nc = m.cfg.n_classes;
    const float *zr = m.z_reg[m.cfg.n_graph_reg];
    const float *bx[4] = {m.u, m.sg_logits, zr, m.sg_logits};
    float *bdx[4] = {m.s1, nullptr, m.dzr, nullptr};
    const int bw[4] = {W, nc, W, nc};
    const int n = h == HEAD_ID || h == HEAD_CH ? 1 : (h == HEAD_ETA || h == HEAD_PHI ? 2 : 4);
    for (int k = 0; k < n; k++) x[k] = bx[k], w[k] = bw[k], ld[k] = bw[k], dx[k] = bdx[k];
    return n;
}

void graph_forward(dev_model &m, int L, const graph_layer_t &p, const float *x, float *z_next)
{
    const mlpf_config &c = m.cfg;
    dev_graph_acts &g = m.gl[L];
    const dev_slot &sl = m.slots[m.cur];
    const int64_t N = sl.rows, NB = sl.bl.n_bins, W = c.width, S = c.bin_size, Dd = c.dist_dim, Dh = c.dist_hidden;
    const int64_t CW = cat_cols(c);
    float *t = g.cat, *H = g.cat + Dh, *Fhet = g.cat + Dh + W, *Gp = g.cat + Dh + 2 * W;
    mark(m, PROF_GEMM, PH_FWD);
    /* the four products of the layer input, into the column blocks of cat */
    gemm(m.blas, false, false, N, Dh, W, 1.0f, x, W, p.dist0.W, Dh, 0.0f, t, CW);
    gemm(m.blas, false, false, N, W, W, 1.0f, x, W, p.theta, W, 0.0f, H, CW);
    gemm(m.blas, false, false, N, W, W, 1.0f, x, W, p.wh, W, 0.0f, Fhet, CW);
    gemm(m.blas, false, false, N, W, W, 1.0f, x, W, p.wt, W, 0.0f, Gp, CW);
    mark(m, PROF_ELEMENTWISE, PH_FWD);
    launch_bias_act(m.cs, t, CW, p.dist0.b, m.sh, Dh, N, (int)Dh, ACT_ELU);
    mark(m, PROF_GEMM, PH_FWD);
    gemm(m.blas, false, false, N, Dd, Dh, 1.0f, m.sh, Dh, p.dist1.W, Dd, 0.0f, g.xd, Dd);
    mark(m, PROF_ELEMENTWISE, PH_FWD);
    launch_bias_act(m.cs, g.xd, Dd, p.dist1.b, nullptr, 0, N, (int)Dd, ACT_NONE);
    mark(m, PROF_BINNING, PH_FWD);
    if (m.forced) CUDA_CHECK(cudaMemcpyAsync(g.hash, m.forced[L], sizeof(int) * N, cudaMemcpyHostToDevice, m.cs));
    else launch_lsh_hash(m.cs, sl.bl, g.xd, (int)Dd, m.lsh + (int64_t)L * Dd * (c.max_num_bins / 2), c.max_num_bins / 2, g.hash);
    launch_bin_sort(m.cs, sl.bl, g.hash, (int)S, g.perm);
    mark(m, PROF_KERNEL, PH_FWD);
    launch_kernel_matrix(m.cs, NB, (int)S, g.perm, g.xd, (int)Dd, c.dist_mult, g.A, g.D, m.bsqn);
    launch_degree_norm(m.cs, NB, (int)S, g.perm, g.A, g.nrm);
    launch_gather_scaled(m.cs, NB, (int)S, g.perm, H, CW, (int)W, g.nrm, g.V);
    mark(m, PROF_GEMM, PH_FWD);
    gemm_batched(m.blas, false, false, S, W, S, 1.0f, g.A, S, S * S, g.V, W, S * W, 0.0f, m.bY, W, S * W, NB);
    mark(m, PROF_ELEMENTWISE, PH_FWD);
    launch_graph_combine(m.cs, NB, (int)S, g.perm, g.nrm, m.bY, (int)W, Gp, Fhet, CW, p.bt, x, g.Fhom, z_next);
}

void colsum(dev_model &m, float *dst, const float *a, int64_t ld, int64_t N, int C)
{
    launch_colsum_add(m.cs, dst, a, nullptr, ld, N, C, m.colsum_part);
}

// backward of a head from dout; the input blocks' gradients are added
void mlp_backward(dev_model &m, int h, int64_t N)
{
    const mlp_t *p = head_params(m.TP, h);
    mlp_t *gm = const_cast<mlp_t *>(head_params(m.TG, h));
    const float *d = m.dout[h];
    float *buf[2] = {m.m0, m.m1};
    for (int i = p->n_layers - 1; i > 0; i--) {
        const dense_t &l = p->layer[i];
        float *dx = buf[i & 1];
        mark(m, PROF_GEMM, PH_BWD);
        gemm(m.blas, true, false, l.in, l.out, N, 1.0f, m.act[h][i - 1], l.in, d, l.out, 1.0f, gm->layer[i].W, l.out);
        gemm(m.blas, false, true, N, l.in, l.out, 1.0f, d, l.out, l.W, l.out, 0.0f, dx, l.in);
        mark(m, PROF_ELEMENTWISE, PH_BWD);
        colsum(m, gm->layer[i].b, d, l.out, N, l.out);
        launch_elu_backward_from_output(m.cs, m.act[h][i - 1], dx, dx, N * l.in);
        d = dx;
    }
    const dense_t &l0 = p->layer[0];
    mark(m, PROF_ELEMENTWISE, PH_BWD);
    colsum(m, gm->layer[0].b, d, l0.out, N, l0.out);
    const float *x[4];
    int w[4];
    int64_t ld[4];
    float *dx[4];
    const int n = head_blocks(m, h, x, w, ld, dx);
    int off = 0;
    mark(m, PROF_GEMM, PH_BWD);
    for (int k = 0; k < n; k++) {
        gemm(m.blas, true, false, w[k], l0.out, N, 1.0f, x[k], ld[k], d, l0.out, 1.0f,
             gm->layer[0].W + (int64_t)off * l0.out, l0.out);
        if (dx[k])
            gemm(m.blas, false, true, N, w[k], l0.out, 1.0f, d, l0.out, l0.W + (int64_t)off * l0.out, l0.out, 1.0f,
                 dx[k], ld[k]);
        off += w[k];
    }
}

// dz holds dL/dz_next on entry and dL/dx on return (z_next = x + CG(x)).
void graph_backward(dev_model &m, int L, const graph_layer_t &p, graph_layer_t &gp, const float *x, float *dz)
{
    const mlpf_config &c = m.cfg;
    dev_graph_acts &g = m.gl[L];
    const dev_slot &sl = m.slots[m.cur];
    const int64_t N = sl.rows, NB = sl.bl.n_bins, W = c.width, S = c.bin_size, Dd = c.dist_dim, Dh = c.dist_hidden;
    const int64_t CW = cat_cols(c);
    float *t = g.cat, *H = g.cat + Dh, *Fhet = g.cat + Dh + W, *Gp = g.cat + Dh + 2 * W, *dFhom = m.s2;
    const float mult = c.dist_mult;
    mark(m, PROF_ELEMENTWISE, PH_BWD);
    launch_graph_combine_backward(m.cs, N, (int)W, dz, Gp, Fhet, CW, g.Fhom, dFhom); /* dGp, dFhet in place */
    mark(m, PROF_KERNEL, PH_BWD);
    launch_bin_dn(m.cs, NB, (int)S, g.perm, dFhom, g.Fhom, (int)W, g.nrm, m.bdn);
    launch_gather_scaled(m.cs, NB, (int)S, g.perm, dFhom, W, (int)W, g.nrm, m.bY);
    mark(m, PROF_GEMM, PH_BWD);
    gemm_batched(m.blas, false, true, S, S, W, 1.0f, m.bY, W, S * W, g.V, W, S * W, 0.0f, m.bdA, S, S * S, NB);
    gemm_batched(m.blas, true, false, S, W, S, 1.0f, g.A, S, S * S, m.bY, W, S * W, 0.0f, g.V, W, S * W, NB);
    mark(m, PROF_KERNEL, PH_BWD);
    launch_bin_dv_scatter(m.cs, NB, (int)S, g.perm, g.V, (int)W, H, CW, g.nrm, m.bdn); /* dH over H */
    launch_bin_dsq(m.cs, NB, (int)S, g.nrm, m.bdn, g.A, g.D, mult, m.bdA);
    launch_bin_sym(m.cs, NB, (int)S, m.bdA, m.bM, m.brs);
    launch_gather_d64(m.cs, NB, (int)S, g.perm, g.xd, (int)Dd, m.bd64);
    mark(m, PROF_GEMM64, PH_BWD);
    dgemm_batched(m.blas, false, false, S, Dd, S, -2.0, m.bM, S, S * S, m.bd64, Dd, S * Dd, 0.0, m.bo64, Dd, S * Dd, NB);
    mark(m, PROF_KERNEL, PH_BWD);
    launch_bin_dxd(m.cs, NB, (int)S, g.perm, m.bo64, m.brs, m.bd64, (int)Dd, m.sd);
    /* ffn_dist: xd = elu(t) Wb + bb */
    mark(m, PROF_ELEMENTWISE, PH_BWD);
    launch_bias_act(m.cs, t, CW, nullptr, m.sh, Dh, N, (int)Dh, ACT_ELU);
    colsum(m, gp.dist1.b, m.sd, Dd, N, (int)Dd);
    mark(m, PROF_GEMM, PH_BWD);
    gemm(m.blas, true, false, Dh, Dd, N, 1.0f, m.sh, Dh, m.sd, Dd, 1.0f, gp.dist1.W, Dd);
    gemm(m.blas, false, true, N, Dh, Dd, 1.0f, m.sd, Dd, p.dist1.W, Dd, 0.0f, m.s1, Dh);
    mark(m, PROF_ELEMENTWISE, PH_BWD);
    launch_elu_grad_block(m.cs, t, CW, m.s1, N, (int)Dh); /* dt over t */
    colsum(m, gp.dist0.b, t, CW, N, (int)Dh);
    colsum(m, gp.bt, Gp, CW, N, (int)W);
    /* the fused products' backward, block by block */
    mark(m, PROF_GEMM, PH_BWD);
    gemm(m.blas, true, false, W, Dh, N, 1.0f, x, W, t, CW, 1.0f, gp.dist0.W, Dh);
    gemm(m.blas, true, false, W, W, N, 1.0f, x, W, H, CW, 1.0f, gp.theta, W);
    gemm(m.blas, true, false, W, W, N, 1.0f, x, W, Fhet, CW, 1.0f, gp.wh, W);
    gemm(m.blas, true, false, W, W, N, 1.0f, x, W, Gp, CW, 1.0f, gp.wt, W);
    gemm(m.blas, false, true, N, W, Dh, 1.0f, t, CW, p.dist0.W, Dh, 1.0f, dz, W);
    gemm(m.blas, false, true, N, W, W, 1.0f, H, CW, p.theta, W, 1.0f, dz, W);
    gemm(m.blas, false, true, N, W, W, 1.0f, Fhet, CW, p.wh, W, 1.0f, dz, W);
    gemm(m.blas, false, true, N, W, W, 1.0f, Gp, CW, p.wt, W, 1.0f, dz, W);
}

// the finished stretch [watermark, end): an event, and the callback
void ready(dev_model &m, int i, const float *tensor)
{
    CUDA_CHECK(cudaEventRecord(m.ready_ev[i], m.cs));
    if (m.comm) comm_ready(*m.comm, (size_t)(tensor - m.G), m.ready_ev[i]);
    else if (m.ready) m.ready(m.ready_ctx, (size_t)(tensor - m.G), (const void *)m.ready_ev[i]);
}

} // namespace

void dev_create(dev_model &m, const mlpf_config &cfg, const float *params, const float *lsh, gemm_precision p)
{
    m.cfg = cfg;
    if (param_layout_build(&cfg, &m.layout) != 0) mlpf_cuda_throw("dev_create", __FILE__, __LINE__, "bad configuration");
    m.n = (int64_t)m.layout.total;
    m.prec = p;
    const size_t bytes = sizeof(float) * m.n, lsh_n = lsh_buffer_size(&cfg);
    CUDA_CHECK(cudaStreamCreateWithFlags(&m.cs, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&m.xs, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc((void **)&m.P, bytes));
    CUDA_CHECK(cudaMalloc((void **)&m.G, bytes));
    CUDA_CHECK(cudaMalloc((void **)&m.M, bytes));
    CUDA_CHECK(cudaMalloc((void **)&m.V, bytes));
    CUDA_CHECK(cudaMalloc((void **)&m.lsh, sizeof(float) * lsh_n));
    CUDA_CHECK(cudaMalloc((void **)&m.tensor_offsets, sizeof(int64_t) * (m.layout.n + 1)));
    CUDA_CHECK(cudaMalloc((void **)&m.loss_dev, sizeof(double) * 8));
    CUDA_CHECK(cudaMalloc((void **)&m.bad_dev, sizeof(int) * 2));
    m.int_max_dev = m.bad_dev + 1;
    CUDA_CHECK(cudaMallocHost((void **)&m.loss_host, sizeof(double) * 8));
    CUDA_CHECK(cudaMallocHost((void **)&m.bad_host, sizeof(int) * 2));
    const size_t ws = 32u << 20;
    CUDA_CHECK(cudaMalloc(&m.blas_ws, ws));
    blas_init(m.blas, m.cs, p, m.blas_ws, ws);
    std::vector<int64_t> offs(m.layout.n + 1);
    for (int i = 0; i < m.layout.n; i++) offs[i] = (int64_t)m.layout.t[i].offset;
    offs[m.layout.n] = m.n;
    const int int_max = INT_MAX;
    /* everything on the compute stream: it does not synchronise with the
     * legacy default stream that cudaMemcpy / cudaMemset would use */
    CUDA_CHECK(cudaMemcpyAsync(m.tensor_offsets, offs.data(), sizeof(int64_t) * offs.size(), cudaMemcpyHostToDevice, m.cs));
    CUDA_CHECK(cudaMemcpyAsync(m.int_max_dev, &int_max, sizeof int_max, cudaMemcpyHostToDevice, m.cs));
    CUDA_CHECK(cudaMemcpyAsync(m.P, params, bytes, cudaMemcpyHostToDevice, m.cs));
    CUDA_CHECK(cudaMemcpyAsync(m.lsh, lsh, sizeof(float) * lsh_n, cudaMemcpyHostToDevice, m.cs));
    CUDA_CHECK(cudaMemsetAsync(m.G, 0, bytes, m.cs));
    CUDA_CHECK(cudaMemsetAsync(m.M, 0, bytes, m.cs));
    CUDA_CHECK(cudaMemsetAsync(m.V, 0, bytes, m.cs));
    if (p == PREC_BF16) {
        CUDA_CHECK(cudaMalloc((void **)&m.Pb, sizeof(__nv_bfloat16) * m.n));
        launch_to_bf16(m.cs, m.P, m.n, 1, m.n, m.Pb);
    }
    m.blas.params = m.P;
    m.blas.params_bf16 = m.Pb;
    m.blas.n_params = m.n;
    param_bind(&cfg, m.P, &m.TP);
    param_bind(&cfg, m.G, &m.TG);
    m.marks.resize(1024);
    for (auto &k : m.marks) CUDA_CHECK(cudaEventCreate(&k.ev));
    for (auto &e : m.ready_ev) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    for (auto &s : m.slots) {
        CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&s.freed, cudaEventDisableTiming));
    }
    CUDA_CHECK(cudaStreamSynchronize(m.cs));
}

static void free_slots(dev_model &m)
{
    for (auto &s : m.slots) {
        if (s.host) cudaFreeHost(s.host);
        if (s.dev) cudaFree(s.dev);
        s.host = s.dev = nullptr;
        s.bytes = 0;
        s.fresh = false;
    }
}

void dev_destroy(dev_model &m)
{
    if (m.cs) cudaStreamSynchronize(m.cs);
    if (m.xs) cudaStreamSynchronize(m.xs);
    blas_destroy(m.blas);
    free_slots(m);
    for (auto &s : m.slots) {
        if (s.copied) cudaEventDestroy(s.copied);
        if (s.freed) cudaEventDestroy(s.freed);
    }
    for (auto &k : m.marks) cudaEventDestroy(k.ev);
    for (auto &e : m.ready_ev)
        if (e) cudaEventDestroy(e);
    void *dev[] = {m.P, m.G, m.M, m.V, m.lsh, m.Pb, m.tensor_offsets, m.loss_dev, m.bad_dev, m.blas_ws, m.arena};
    for (void *p : dev)
        if (p) cudaFree(p);
    if (m.loss_host) cudaFreeHost(m.loss_host);
    if (m.bad_host) cudaFreeHost(m.bad_host);
    if (m.cs) cudaStreamDestroy(m.cs);
    if (m.xs) cudaStreamDestroy(m.xs);
    m = dev_model();
}

double dev_bytes_for(const dev_model &m, int64_t rows, int64_t bins, int64_t events)
{
    dev_model scratch = m; /* the layout of this model, sized only */
    dev_slot s;
    double model = 4.0 * sizeof(float) * m.n + (m.prec == PREC_BF16 ? 2.0 * m.n : 0.0) +
                   sizeof(float) * (double)lsh_buffer_size(&m.cfg) + (32u << 20);
    return model + (double)carve(scratch, rows, bins, events, nullptr) + 2.0 * slot_carve(s, rows, bins, events, nullptr, false);
}

void dev_reserve(dev_model &m, int64_t N, int64_t NB, int64_t E)
{
    if (m.arena && N <= m.cap_rows && NB <= m.cap_bins && E <= m.cap_events) return;
    N = N > m.cap_rows ? N : m.cap_rows;
    NB = NB > m.cap_bins ? NB : m.cap_bins;
    E = E > m.cap_events ? E : m.cap_events;
    CUDA_CHECK(cudaStreamSynchronize(m.cs));
    CUDA_CHECK(cudaStreamSynchronize(m.xs));
    if (m.arena) CUDA_CHECK(cudaFree(m.arena));
    m.arena = nullptr;
    free_slots(m);
    m.cap_rows = m.cap_bins = m.cap_events = 0;
    const size_t bytes = carve(m, N, NB, E, nullptr);
    CUDA_CHECK(cudaMalloc((void **)&m.arena, bytes));
    carve(m, N, NB, E, m.arena);
    m.arena_bytes = bytes;
    for (auto &s : m.slots) {
        s.bytes = slot_carve(s, N, NB, E, nullptr, false);
        CUDA_CHECK(cudaMallocHost((void **)&s.host, s.bytes));
        CUDA_CHECK(cudaMalloc((void **)&s.dev, s.bytes));
        slot_carve(s, N, NB, E, s.dev, true);
    }
    m.cap_rows = N;
    m.cap_bins = NB;
    m.cap_events = E;
}

void dev_stage(dev_model &m, const mlpf_batch &b)
{
    const int64_t S = m.cfg.bin_size;
    int64_t NB = 0;
    for (int e = 0; e < b.n_events; e++) NB += (b.offsets[e + 1] - b.offsets[e] + S - 1) / S;
    if (b.n_rows > m.cap_rows || NB > m.cap_bins || b.n_events > m.cap_events) {
        dev_reserve(m, b.n_rows, NB, b.n_events); /* before training only: train reserves the worst batch */
    }
    dev_slot &s = m.slots[m.next_slot];
    m.next_slot ^= 1;
    /* the pinned buffer is free once its last copy is done; the device side
     * once the step that read it is done (the copy stream waits for that) */
    CUDA_CHECK(cudaEventSynchronize(s.copied));
    dev_slot h; /* the same layout over the pinned buffer */
    slot_carve(h, m.cap_rows, m.cap_bins, m.cap_events, s.host, true);
    memcpy(h.X, b.X, sizeof(float) * BATCH_X_COLS * b.n_rows);
    memcpy(h.y, b.y, sizeof(float) * BATCH_Y_COLS * b.n_rows);
    int *rs = const_cast<int *>(h.bl.row_start), *bs = const_cast<int *>(h.bl.bin_start);
    int *ek = const_cast<int *>(h.bl.event_k), *re = const_cast<int *>(h.bl.row_event);
    int *be = const_cast<int *>(h.bl.bin_event);
    rs[0] = bs[0] = 0;
    for (int e = 0; e < b.n_events; e++) {
        const int64_t n = b.offsets[e + 1] - b.offsets[e], nb = (n + S - 1) / S;
        rs[e + 1] = (int)b.offsets[e + 1];
        bs[e + 1] = bs[e] + (int)nb;
        ek[e] = mlpf_lsh_k(&m.cfg, (int)nb);
        for (int64_t r = b.offsets[e]; r < b.offsets[e + 1]; r++) re[r] = e;
        for (int bi = bs[e]; bi < bs[e + 1]; bi++) be[bi] = e;
    }
    CUDA_CHECK(cudaStreamWaitEvent(m.xs, s.freed, 0));
    CUDA_CHECK(cudaMemcpyAsync(s.dev, s.host, s.bytes, cudaMemcpyHostToDevice, m.xs));
    CUDA_CHECK(cudaEventRecord(s.copied, m.xs));
    s.src_X = b.X;
    s.rows = b.n_rows;
    s.events = b.n_events;
    s.bl.n_events = b.n_events;
    s.bl.n_rows = b.n_rows;
    s.bl.n_bins = NB;
    s.fresh = true;
}

void dev_forward(dev_model &m, const mlpf_batch &b, int64_t n_global)
{
    const mlpf_config &c = m.cfg;
    int k = -1;
    for (int i = 0; i < 2; i++) /* the batch staged for this forward pass, if any */
        if (m.slots[i].fresh && m.slots[i].src_X == b.X && m.slots[i].rows == b.n_rows &&
            m.slots[i].events == b.n_events)
            k = i;
    if (k < 0) {
        k = m.next_slot;
        dev_stage(m, b);
    }
    m.cur = k;
    dev_slot &sl = m.slots[k];
    sl.fresh = false;
    m.n_marks = 0;
    m.cur_kind = PROF_NONE;
    m.cur_phase = -1;
    m.have_backward = false;
    m.grads_pending = false;
    CUDA_CHECK(cudaStreamWaitEvent(m.cs, sl.copied, 0));
    const int64_t N = b.n_rows, W = c.width;
    const int nc = c.n_classes;
    m.n_global = n_global;
    m.loss_pending = true;
    if (N == 0) {
        CUDA_CHECK(cudaMemsetAsync(m.loss_dev, 0, sizeof(double) * 8, m.cs));
        CUDA_CHECK(cudaMemcpyAsync(m.loss_host, m.loss_dev, sizeof(double) * 8, cudaMemcpyDeviceToHost, m.cs));
        return;
    }
    mark(m, PROF_ELEMENTWISE, PH_FWD);
    launch_encode(m.cs, sl.X, m.e, N, c.n_features, c.n_types);
    mark(m, PROF_GEMM, PH_FWD);
    gemm(m.blas, false, false, N, W, mlpf_enc_in(&c), 1.0f, m.e, mlpf_enc_in(&c), m.TP.enc0.W, W, 0.0f, m.a1, W);
    mark(m, PROF_ELEMENTWISE, PH_FWD);
    launch_bias_act(m.cs, m.a1, W, m.TP.enc0.b, m.h1, W, N, (int)W, ACT_GELU);
    mark(m, PROF_GEMM, PH_FWD);
    gemm(m.blas, false, false, N, W, W, 1.0f, m.h1, W, m.TP.enc1.W, W, 0.0f, m.a2, W);
    mark(m, PROF_ELEMENTWISE, PH_FWD);
    launch_bias_act(m.cs, m.a2, W, m.TP.enc1.b, m.z_id[0], W, N, (int)W, ACT_GELU);
    for (int l = 0; l < c.n_graph_id; l++) graph_forward(m, l, m.TP.cg_id[l], m.z_id[l], m.z_id[l + 1]);
    for (int l = 0; l < c.n_graph_reg; l++)
        graph_forward(m, c.n_graph_id + l, m.TP.cg_reg[l], m.z_reg[l], m.z_reg[l + 1]);
    mark(m, PROF_ELEMENTWISE, PH_FWD);
    launch_layernorm_forward(m.cs, m.z_id[c.n_graph_id], m.TP.ln_gamma, m.TP.ln_beta, c.ln_eps, m.u, m.xhat, m.rstd,
                             N, (int)W);
    for (int h = 0; h < DEV_HEADS; h++) { /* the id head first: the others read its logits */
        const float *x[4];
        int w[4];
        int64_t ld[4];
        float *dx[4];
        const int n = head_blocks(m, h, x, w, ld, dx);
        mlp_forward(m, h, x, w, ld, n, N);
        if (h == HEAD_ID)
            CUDA_CHECK(cudaMemcpyAsync(m.sg_logits, m.pre[HEAD_ID][m.TP.ffn_id.n_layers - 1], sizeof(float) * N * nc,
                                       cudaMemcpyDeviceToDevice, m.cs));
    }
    mark(m, PROF_LOSS, PH_FWD);
    auto last = [&](int h) { return m.pre[h][head_params(m.TP, h)->n_layers - 1]; };
    head_ptrs hp = {last(HEAD_ID), last(HEAD_CH), last(HEAD_ETA), last(HEAD_PHI), last(HEAD_E), last(HEAD_PT),
                    m.dout[HEAD_ID], m.dout[HEAD_CH], m.dout[HEAD_ETA], m.dout[HEAD_PHI], m.dout[HEAD_E],
                    m.dout[HEAD_PT]};
    launch_loss(m.cs, sl.X, sl.y, N, nc, hp, 1.0f / (float)n_global, m.loss_part, m.loss_dev);
    CUDA_CHECK(cudaMemcpyAsync(m.loss_host, m.loss_dev, sizeof(double) * 8, cudaMemcpyDeviceToHost, m.cs));
    mark(m, PROF_NONE, -1);
}

void dev_backward(dev_model &m)
{
    const mlpf_config &c = m.cfg;
    const dev_slot &sl = m.slots[m.cur];
    const int64_t N = sl.rows, W = c.width;
    m.have_backward = true;
    if (N == 0) return;
    int ev = 0;
    mark(m, PROF_ELEMENTWISE, PH_BWD);
    CUDA_CHECK(cudaMemsetAsync(m.s1, 0, sizeof(float) * N * W, m.cs)); /* du */
    CUDA_CHECK(cudaMemsetAsync(m.dzr, 0, sizeof(float) * N * W, m.cs));
    for (int h = DEV_HEADS - 1; h >= 0; h--) { /* pt, e, phi, eta, ch, id: buffer order reversed */
        mlp_backward(m, h, N);
        ready(m, ev++, head_params(m.TG, h)->layer[0].W);
    }
    mark(m, PROF_ELEMENTWISE, PH_BWD);
    launch_colsum_add(m.cs, m.TG.ln_gamma, m.s1, m.xhat, W, N, (int)W, m.colsum_part);
    launch_colsum_add(m.cs, m.TG.ln_beta, m.s1, nullptr, W, N, (int)W, m.colsum_part);
    launch_layernorm_backward_dx(m.cs, m.s1, m.xhat, m.rstd, m.TP.ln_gamma, m.dzi, N, (int)W);
    ready(m, ev++, m.TG.ln_gamma);
    for (int l = c.n_graph_reg - 1; l >= 0; l--) {
        graph_backward(m, c.n_graph_id + l, m.TP.cg_reg[l], m.TG.cg_reg[l], m.z_reg[l], m.dzr);
        ready(m, ev++, m.TG.cg_reg[l].dist0.W);
    }
    for (int l = c.n_graph_id - 1; l >= 0; l--) {
        graph_backward(m, l, m.TP.cg_id[l], m.TG.cg_id[l], m.z_id[l], m.dzi);
        ready(m, ev++, m.TG.cg_id[l].dist0.W);
    }
    mark(m, PROF_ELEMENTWISE, PH_BWD);
    launch_add(m.cs, m.dzi, m.dzr, N * W);
    launch_gelu_backward(m.cs, m.a2, m.dzi, m.dzi, N * W);
    colsum(m, m.TG.enc1.b, m.dzi, W, N, (int)W);
    mark(m, PROF_GEMM, PH_BWD);
    gemm(m.blas, true, false, W, W, N, 1.0f, m.h1, W, m.dzi, W, 1.0f, m.TG.enc1.W, W);
    gemm(m.blas, false, true, N, W, W, 1.0f, m.dzi, W, m.TP.enc1.W, W, 0.0f, m.s1, W);
    mark(m, PROF_ELEMENTWISE, PH_BWD);
    launch_gelu_backward(m.cs, m.a1, m.s1, m.s1, N * W);
    colsum(m, m.TG.enc0.b, m.s1, W, N, (int)W);
    mark(m, PROF_GEMM, PH_BWD);
    const int ein = mlpf_enc_in(&c);
    gemm(m.blas, true, false, ein, W, N, 1.0f, m.e, ein, m.s1, W, 1.0f, m.TG.enc0.W, W);
    ready(m, ev++, m.G);
    mark(m, PROF_NONE, -1);
}

void dev_check_grads(dev_model &m)
{
    CUDA_CHECK(cudaMemcpyAsync(m.bad_dev, m.int_max_dev, sizeof(int), cudaMemcpyDeviceToDevice, m.cs));
    launch_first_nonfinite(m.cs, m.G, m.tensor_offsets, m.layout.n, m.bad_dev);
    CUDA_CHECK(cudaMemcpyAsync(m.bad_host, m.bad_dev, sizeof(int), cudaMemcpyDeviceToHost, m.cs));
    m.grads_pending = true;
}

void dev_adam(dev_model &m)
{
    if (!m.grads_pending) dev_check_grads(m); /* the update never applies a non-finite gradient */
    const mlpf_config &c = m.cfg;
    const float lr_t = adam_lr_t(&c, ++m.adam_step);
    mark(m, PROF_NONE, PH_OPT);
    launch_adam(m.cs, m.P, m.M, m.V, m.G, m.n, c.beta1, c.beta2, lr_t, c.adam_eps, m.bad_dev, m.Pb);
    mark(m, PROF_NONE, -1);
}

void dev_finish(dev_model &m, loss_report *r, int *bad)
{
    if (m.cur >= 0) CUDA_CHECK(cudaEventRecord(m.slots[m.cur].freed, m.cs));
    CUDA_CHECK(cudaStreamSynchronize(m.cs));
    for (size_t i = 0; i + 1 < m.n_marks; i++) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, m.marks[i].ev, m.marks[i + 1].ev));
        if (m.marks[i].kind > PROF_NONE) m.kind_s[m.marks[i].kind] += ms * 1e-3;
        if (m.marks[i].phase >= 0) m.phase_s[m.marks[i].phase] += ms * 1e-3;
    }
    m.n_marks = 0;
    m.cur_kind = PROF_NONE;
    m.cur_phase = -1;
    if (m.loss_pending && r) {
        const double *t = m.loss_host;
        r->loss[0] = 0.0;
        for (int k = 1; k < LOSS_N; k++) {
            r->loss[k] = t[k - 1] / (double)m.n_global;
            r->loss[0] += r->loss[k];
        }
        r->n_rows = m.cur >= 0 ? m.slots[m.cur].rows : 0;
        r->n_correct = (int64_t)t[MLPF_N_TERMS];
        r->pending = 0;
    }
    m.loss_pending = false;
    if (bad) *bad = m.grads_pending && *m.bad_host != INT_MAX ? *m.bad_host : -1;
    m.grads_pending = false;
}

void dev_zero_grad(dev_model &m) { CUDA_CHECK(cudaMemsetAsync(m.G, 0, sizeof(float) * m.n, m.cs)); }
