/* MLPF forward, loss and backward on the CPU (shared/spec/model.md).
 *
 * Rows of all events of a batch are processed together wherever the work is
 * row-wise (dense layers, activations, heads); the graph layers' binning and
 * per-bin kernel work is done per event, since each event has its own number
 * of bins. Activations live in one arena planned per batch shape. */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "prof.h"
#include "mathfn.h"

enum { HEAD_ID, HEAD_CH, HEAD_ETA, HEAD_PHI, HEAD_E, HEAD_PT, N_HEADS };

/* What one graph layer keeps for its backward pass. The four products of the
 * layer input x are one N x (dist_hidden + 3 width) matrix, cat = x Wcat + bcat
 * (one matrix product, see cat_weights), whose column blocks are t, H, Fhet
 * and Gp, each with row stride cat_cols(c); backward overwrites each block
 * with its gradient and multiplies them back in one product as well. */
typedef struct {
    float *cat;  /* N x cat_cols: [t | H | Fhet | Gp] */
    float *t;    /* N x dist_hidden block of cat: ffn_dist hidden pre-activation x Wa + ba */
    float *xd;   /* N x dist_dim: distance features */
    float *H;    /* N x width block of cat: x theta */
    float *Fhet; /* N x width block of cat: x wh */
    float *Fhom; /* N x width: degree-normalised message */
    float *Gp;   /* N x width block of cat: gate pre-activation x wt + bt (gate G = sigmoid(Gp)) */
    float *nrm;  /* n_bins x S: degree normalisation n_i (0 on padding) */
    int *perm;   /* n_bins x S: row of each bin slot, -1 for padding */
    int *hash;   /* N: LSH bucket of each row */
} graph_acts;

struct act_arena {
    int64_t cap_rows, cap_bins, cap_events;
    int forward_only; /* model_set_forward_only: laid out for forward passes alone */
    void *fmem;
    size_t bytes;
    /* batch layout */
    int64_t n_bins, n_rows;
    int64_t *bin_start; /* n_events + 1 */
    /* encoder */
    float *e, *a1, *h1, *a2;
    float *z_id[MLPF_MAX_GRAPH + 1], *z_reg[MLPF_MAX_GRAPH + 1];
    graph_acts gl[2 * MLPF_MAX_GRAPH];
    float *lsh_proj; /* N x max_num_bins/2 */
    /* heads */
    float *u, *xhat, *rstd; /* the heads read u' = [u | logits] and v = [u' | z_reg | logits] as blocks */
    float *sg_logits; /* N x n_classes: the logits fed, as constants, into u' and v */
    float *pre[N_HEADS][MLPF_MAX_HEAD_LAYERS], *act[N_HEADS][MLPF_MAX_HEAD_LAYERS];
    float *dout[N_HEADS]; /* loss gradient w.r.t. each head's output */
    /* backward scratch */
    float *dzi, *dzr, *s1, *ones;
    /* one region, two uses: the heads' backward (m0, m1), then the graph
     * layers' (s2 = dFhom, sd, sh; sh is also forward scratch) */
    float *m0, *m1, *s2, *sd, *sh;
    /* per-bin scratch */
    float *bV, *bY, *bA, *bdA, *bdn, *bD;
    double *bd64, *bg64, *bo64, *br64, *bq64; /* distance work in float64 */
};

/* Columns of a graph layer's fused product: [Wa | theta | Wh | Wt]. */
static inline int64_t cat_cols(const mlpf_config *c) { return c->dist_hidden + 3 * (int64_t)c->width; }

static const mlp_t *head_params(const mlpf_tensors *t, int h)
{
    const mlp_t *heads[N_HEADS] = {&t->ffn_id, &t->ffn_ch, &t->ffn_eta,
                                   &t->ffn_phi, &t->ffn_e, &t->ffn_pt};
    return heads[h];
}

/* Lay the arena out for N rows, NB bins and E events. With base == NULL only
 * the size is computed. */
static size_t carve(act_arena *A, const mlpf_config *c, const mlpf_tensors *P, int64_t N,
                    int64_t NB, int64_t E, char *base)
{
    size_t off = 0;
#define TAKE(ptr, count, type)                                                                 \
    do {                                                                                       \
        if (base) (ptr) = (type *)(base + off);                                                \
        off += (((size_t)(count) * sizeof(type)) + 63) & ~(size_t)63;                          \
    } while (0)
#define F(ptr, count) TAKE(ptr, count, float)
    const int64_t W = c->width, S = c->bin_size, Dd = c->dist_dim, Dh = c->dist_hidden;
    const int64_t nc = c->n_classes, K = c->max_num_bins / 2, Hh = c->head_hidden;
    TAKE(A->bin_start, E + 1, int64_t);
    F(A->e, N * mlpf_enc_in(c));
    F(A->a1, N * W);
    F(A->h1, N * W);
    F(A->a2, N * W);
    /* forward only: each stack updates one buffer in place after its first
     * layer (z_id[0] stays: the reg stack starts from it too), and every graph
     * layer uses the same graph_acts (nothing is kept for a backward pass) */
    const int fo = A->forward_only;
    F(A->z_id[0], N * W);
    for (int l = 1; l <= c->n_graph_id; l++) {
        if (fo && l > 1) {
            if (base) A->z_id[l] = A->z_id[1];
        } else F(A->z_id[l], N * W);
    }
    if (base) A->z_reg[0] = A->z_id[0]; /* both stacks start from the encoder output */
    for (int l = 1; l <= c->n_graph_reg; l++) {
        if (fo && l > 1) {
            if (base) A->z_reg[l] = A->z_reg[1];
        } else F(A->z_reg[l], N * W);
    }
    for (int l = 0; l < c->n_graph_id + c->n_graph_reg; l++) {
        graph_acts *g = &A->gl[l];
        if (fo && l > 0) {
            if (base) *g = A->gl[0];
            continue;
        }
        F(g->cat, N * (Dh + 3 * W));
        if (base) {
            g->t = g->cat;
            g->H = g->cat + Dh;
            g->Fhet = g->cat + Dh + W;
            g->Gp = g->cat + Dh + 2 * W;
        }
        F(g->xd, N * Dd);
        F(g->Fhom, N * W);
        F(g->nrm, NB * S);
        TAKE(g->perm, NB * S, int);
        TAKE(g->hash, N, int);
    }
    F(A->lsh_proj, N * K);
    F(A->u, N * W);
    F(A->xhat, N * W);
    F(A->rstd, N);
    F(A->sg_logits, N * nc);
    for (int h = 0; h < N_HEADS; h++) {
        const mlp_t *m = head_params(P, h);
        for (int i = 0; i < m->n_layers; i++) {
            if (i + 1 < m->n_layers) F(A->act[h][i], N * m->layer[i].out);
            else F(A->pre[h][i], N * m->layer[i].out);
        }
        F(A->dout[h], N * m->layer[m->n_layers - 1].out);
    }
    F(A->ones, N);
    if (fo) { /* forward scratch only */
        F(A->sh, N * Dh);
        TAKE(A->bd64, S * Dd, double);
        TAKE(A->bg64, S * S, double);
        TAKE(A->br64, S, double);
        F(A->bV, S * W);
        F(A->bY, S * W);
        F(A->bA, S * S);
        return off;
    }
    F(A->dzi, N * W);
    F(A->dzr, N * W);
    F(A->s1, N * (W > Dh ? W : Dh)); /* also ffn_dist's gradient, N x dist_hidden */
    size_t region = off, heads_end, graph_end;
    F(A->m0, N * Hh);
    F(A->m1, N * Hh);
    heads_end = off;
    off = region;
    F(A->s2, N * W);
    F(A->sd, N * Dd);
    F(A->sh, N * Dh);
    graph_end = off;
    off = heads_end > graph_end ? heads_end : graph_end;
    TAKE(A->bd64, S * Dd, double);
    TAKE(A->bg64, S * S, double);
    TAKE(A->bo64, S * Dd, double);
    TAKE(A->br64, S, double);
    TAKE(A->bq64, S, double);
    F(A->bV, S * W);
    F(A->bY, S * W);
    F(A->bA, S * S);
    F(A->bdA, S * S);
    F(A->bdn, S);
    F(A->bD, S * S);
#undef F
#undef TAKE
    return off;
}

/* Give the arena room for at least N rows, B bins and E events (it never
 * shrinks). Every page is written once here, by the threads that will work on
 * it: a first touch in the middle of a training step costs a page fault per
 * 4 KiB (about 0.3 s per 500 MiB here), and on a multi-socket node the page
 * lands on the socket of the thread that first writes it. */
static int reserve(mlpf_model *m, int64_t N, int64_t B, int64_t E)
{
    const mlpf_config *c = &m->cfg;
    act_arena *A = m->acts;
    if (A->fmem && N <= A->cap_rows && B <= A->cap_bins && E <= A->cap_events) return 0;
    if (N < A->cap_rows) N = A->cap_rows;
    if (B < A->cap_bins) B = A->cap_bins;
    if (E < A->cap_events) E = A->cap_events;
    size_t bytes = carve(A, c, &m->P, N, B, E, NULL);
    free(A->fmem);
    A->fmem = NULL;
    if (posix_memalign(&A->fmem, 64, bytes) != 0) {
        fprintf(stderr, "mlpfbench: cannot allocate %.1f MiB of activations for a batch of "
                        "%lld elements\n",
                bytes / 1048576.0, (long long)N);
        A->cap_rows = A->cap_bins = A->cap_events = 0;
        return -1;
    }
    char *mem = A->fmem;
    const int64_t page = 4096, pages = ((int64_t)bytes + page - 1) / page;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < pages; i++) {
        int64_t len = (int64_t)bytes - i * page;
        memset(mem + i * page, 0, (size_t)(len < page ? len : page));
    }
    A->bytes = bytes;
    carve(A, c, &m->P, N, B, E, A->fmem);
    for (int64_t i = 0; i < N; i++) A->ones[i] = 1.0f;
    A->cap_rows = N;
    A->cap_bins = B;
    A->cap_events = E;
    return 0;
}

int model_reserve(mlpf_model *m, int64_t rows, int64_t bins, int64_t events)
{
    return reserve(m, rows, bins, events);
}

void model_set_forward_only(mlpf_model *m)
{
    act_arena *A = m->acts;
    if (A->forward_only) return;
    free(A->fmem); /* a layout with backward buffers, if any: planned again */
    A->fmem = NULL;
    A->bytes = 0;
    A->cap_rows = A->cap_bins = A->cap_events = 0;
    A->forward_only = 1;
}

/* Make sure the arena fits a batch (it grows only for a batch larger than any
 * before or reserved). Fills bin_start. */
static int plan(mlpf_model *m, const mlpf_batch *b)
{
    const mlpf_config *c = &m->cfg;
    const int64_t S = c->bin_size;
    int64_t NB = 0;
    for (int e = 0; e < b->n_events; e++) {
        int64_t n = b->offsets[e + 1] - b->offsets[e];
        NB += (n + S - 1) / S;
    }
    act_arena *A = m->acts;
    if (reserve(m, b->n_rows, NB, b->n_events) != 0) return -1;
    A->n_bins = NB;
    A->bin_start[0] = 0;
    for (int e = 0; e < b->n_events; e++) {
        int64_t n = b->offsets[e + 1] - b->offsets[e];
        A->bin_start[e + 1] = A->bin_start[e] + (n + S - 1) / S;
    }
    return 0;
}

int model_create(mlpf_model *m, const mlpf_config *cfg, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (cfg->n_features != BATCH_X_COLS) {
        fprintf(stderr, "mlpfbench: preset '%s' has %d input features; the data format has %d\n",
                cfg->preset, cfg->n_features, (int)BATCH_X_COLS);
        return -1;
    }
    if (param_layout_build(cfg, &m->layout) != 0) {
        fprintf(stderr, "mlpfbench: configuration '%s' exceeds the model's fixed limits\n",
                cfg->preset);
        return -1;
    }
    size_t n = m->layout.total;
    m->params = malloc(n * sizeof(float));
    m->grads = malloc(n * sizeof(float)); /* zeroed (and so touched) below */
    m->lsh = malloc(lsh_buffer_size(cfg) * sizeof(float));
    m->acts = calloc(1, sizeof(act_arena));
    const size_t n_graph = (size_t)cfg->n_graph_id + cfg->n_graph_reg, cw = (size_t)cat_cols(cfg);
    m->wcat = malloc(n_graph * cfg->width * cw * sizeof(float));
    m->wcat_bias = malloc(n_graph * cw * sizeof(float));
    m->gwcat = malloc((size_t)cfg->width * cw * sizeof(float));
    if (!m->params || !m->grads || !m->lsh || !m->acts || !m->wcat || !m->wcat_bias || !m->gwcat) {
        fprintf(stderr, "mlpfbench: cannot allocate %zu parameters\n", n);
        model_free(m);
        return -1;
    }
    /* first touch now, by the threads that use them (see reserve) */
    float *zero[3] = {m->grads, m->wcat, m->gwcat};
    size_t len[3] = {n, n_graph * cfg->width * cw, (size_t)cfg->width * cw};
    for (int k = 0; k < 3; k++) {
        float *z = zero[k];
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < (int64_t)len[k]; i++) z[i] = 0.0f;
    }
    param_bind(cfg, m->params, &m->P);
    param_bind(cfg, m->grads, &m->G);
    param_init(&m->layout, m->params, seed);
    lsh_init(cfg, m->lsh, seed);
    return 0;
}

void model_free(mlpf_model *m)
{
    if (m->acts) free(m->acts->fmem);
    free(m->acts);
    free(m->params);
    free(m->grads);
    free(m->lsh);
    free(m->wcat);
    free(m->wcat_bias);
    free(m->gwcat);
    memset(m, 0, sizeof *m);
}

void model_zero_grad(mlpf_model *m) { memset(m->grads, 0, m->layout.total * sizeof(float)); }

size_t model_activation_bytes(const mlpf_model *m) { return m->acts ? m->acts->bytes : 0; }

size_t model_activation_bytes_for(const mlpf_model *m, int64_t rows, int64_t bins, int64_t events)
{
    act_arena scratch = {.forward_only = m->acts->forward_only}; /* the model's layout */
    return carve(&scratch, &m->cfg, &m->P, rows, bins, events, NULL);
}

int model_first_nonfinite_grad(const mlpf_model *m)
{
    for (int i = 0; i < m->layout.n; i++) {
        const tensor_info *t = &m->layout.t[i];
        const float *g = m->grads + t->offset;
        size_t n = (size_t)t->rows * t->cols;
        int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
        for (size_t k = 0; k < n; k++) bad |= !isfinite(g[k]);
        if (bad) return i;
    }
    return -1;
}

const int *model_hashes(const mlpf_model *m, int layer) { return m->acts->gl[layer].hash; }

static const float *layer_lsh(const mlpf_model *m, int l)
{
    return m->lsh + (size_t)l * m->cfg.dist_dim * (m->cfg.max_num_bins / 2);
}

/* ---------------------------------------------------------------- graph layer */

/* Gather rows of src (width C) into dst (S x C) by slot; padding slots get 0. */
static void gather_rows(const int *rows, int S, const float *src, int64_t ld, int C, const float *scale,
                        float *dst)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        float *restrict d = dst + (size_t)i * C;
        if (rows[i] < 0) {
            memset(d, 0, sizeof(float) * C);
        } else {
            const float *restrict s = src + (size_t)rows[i] * ld;
            float f = scale ? scale[i] : 1.0f;
#pragma omp simd
            for (int k = 0; k < C; k++) d[k] = f * s[k];
        }
    }
}

/* The bin's distance features in double precision. The kernel needs
 * |d_i|^2 - 2 d_i.d_j + |d_j|^2 for pairs that the hashing made close, where
 * float32 would cancel most digits (and 1/(2D) amplifies what is left); the
 * distance products therefore run in float64 (dgemm), a small share of the work. */
static void gather_d64(const int *rows, int S, const float *xd, int Dd, double *bd, double *sqn)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        double *restrict d = bd + (size_t)i * Dd, q = 0.0;
        if (rows[i] < 0) {
            for (int k = 0; k < Dd; k++) d[k] = 0.0;
        } else {
            const float *restrict x = xd + (size_t)rows[i] * Dd;
            for (int k = 0; k < Dd; k++) d[k] = x[k];
        }
        for (int k = 0; k < Dd; k++) q += d[k] * d[k];
        sqn[i] = q; /* |d_i|^2 */
    }
}

static void dgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha,
                  const double *A, int lda, const double *B, int ldb, double beta, double *C, int ldc)
{
    int prev = prof_switch(PROF_GEMM64);
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    prof_switch(prev);
}

/* The bin's Gram matrix G = d d^T in float64: the lower triangle by dsyrk
 * (half the multiply-adds of a dgemm), then mirrored into the upper one in
 * 16 x 16 tiles (rows written contiguously, the tile's columns read from L1),
 * so that every G_ij == G_ji bit for bit. */
static void gram64(int S, int Dd, const double *bd, double *G)
{
    int prev = prof_switch(PROF_GEMM64);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, S, Dd, 1.0, bd, Dd, 0.0, G, S);
    enum { T = 16 };
    const int nt = (S + T - 1) / T;
#pragma omp parallel for schedule(dynamic, 1)
    for (int bi = 0; bi < nt; bi++) /* tile row bi of the upper triangle */
        for (int bj = bi; bj < nt; bj++) {
            const int i1 = bi * T + T < S ? bi * T + T : S, j1 = bj * T + T < S ? bj * T + T : S;
            for (int i = bi * T; i < i1; i++)
                for (int j = bj * T > i + 1 ? bj * T : i + 1; j < j1; j++) G[(size_t)i * S + j] = G[(size_t)j * S + i];
        }
    prof_switch(prev);
}

/* LSH: bucket of each row of one event, then a stable counting sort into bins. */
static void bin_event(const mlpf_model *m, int L, const float *xd, int64_t r0, int64_t n,
                      int *perm, int *hash, int64_t nb)
{
    const mlpf_config *c = &m->cfg;
    act_arena *A = m->acts;
    const int Dd = c->dist_dim, K = c->max_num_bins / 2, S = c->bin_size;
    const int k = mlpf_lsh_k(c, (int)nb);
    float *P = A->lsh_proj;
    int prev = prof_switch(PROF_BINNING);
    const int *forced = m->forced_hash ? m->forced_hash[L] : NULL;
    if (!forced) gemm(0, 0, n, k, Dd, 1.0f, xd + r0 * Dd, Dd, layer_lsh(m, L), K, 0.0f, P, k);
    int counts[2 * 64 + 1];
    int n_buckets = 2 * k;
    int *cnt = counts, *heap = NULL;
    if (n_buckets + 1 > (int)(sizeof counts / sizeof counts[0])) cnt = heap = calloc(n_buckets + 1, sizeof(int));
    memset(cnt, 0, sizeof(int) * (n_buckets + 1));
    for (int64_t i = 0; i < n; i++) {
        if (forced) {
            int h = forced[r0 + i];
            hash[r0 + i] = h >= 0 && h < n_buckets ? h : 0; /* a bucket of this event's range */
            cnt[hash[r0 + i] + 1]++;
            continue;
        }
        const float *p = P + i * k;
        float best = p[0];
        int arg = 0;
        for (int j = 1; j < k; j++)
            if (p[j] > best) best = p[j], arg = j;
        for (int j = 0; j < k; j++)
            if (-p[j] > best) best = -p[j], arg = k + j;
        hash[r0 + i] = arg;
        cnt[arg + 1]++;
    }
    for (int j = 0; j < n_buckets; j++) cnt[j + 1] += cnt[j];
    for (int64_t i = 0; i < n; i++) perm[cnt[hash[r0 + i]]++] = (int)(r0 + i);
    for (int64_t i = n; i < nb * S; i++) perm[i] = -1;
    free(heap);
    prof_switch(prev);
}

/* Kernel matrix and message passing inside one bin (forward). */
/* Real rows of a bin: its padding rows (perm -1) are all at the end of the
 * event's last bin. They have A = 0 with every row and n = 0, so the per-bin
 * work runs on the real rows only (an S' x S' problem, S' <= S). */
static int bin_real_rows(const int *rows, int S)
{
    int n = S;
    while (n > 0 && rows[n - 1] < 0) n--;
    return n;
}

static void bin_forward(const mlpf_model *m, graph_acts *g, int64_t B)
{
    const mlpf_config *c = &m->cfg;
    act_arena *A = m->acts;
    const int Sb = c->bin_size, Dd = c->dist_dim, W = c->width;
    const float mult = c->dist_mult;
    const int *rows = g->perm + B * Sb;
    float *nrm = g->nrm + B * Sb;
    const int S = bin_real_rows(rows, Sb); /* the bin's matrices are S x S, packed */
    for (int i = S; i < Sb; i++) nrm[i] = 0.0f;
    double *bd = A->bd64, *gram = A->bg64, *sqn = A->br64;
    int prev = prof_switch(PROF_KERNEL);
    gather_d64(rows, S, g->xd, Dd, bd, sqn);
    gram64(S, Dd, bd, gram);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        double deg = 0.0;
        float *restrict arow = A->bA + (size_t)i * S;
        const double *restrict grow = gram + (size_t)i * S;
        const double sqi = sqn[i];
        const int ri = rows[i];
#pragma omp simd reduction(+ : deg)
        for (int j = 0; j < S; j++) {
            /* the diagonal is exactly 0 (self-loop) */
            double sq = i == j ? 0.0 : sqi - 2.0 * grow[j] + sqn[j];
            float d, a = mlpf_kernel_value(sq, mult, &d);
            a = (ri | rows[j]) < 0 ? 0.0f : a; /* 0: padding */
            arow[j] = a;
            deg += a;
        }
        nrm[i] = mlpf_degree_norm(deg, rows[i] >= 0);
    }
    gather_rows(rows, S, g->H, cat_cols(c), W, nrm, A->bV);
    gemm(0, 0, S, W, S, 1.0f, A->bA, S, A->bV, W, 0.0f, A->bY, W);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        if (rows[i] < 0) continue;
        float *restrict dst = g->Fhom + (size_t)rows[i] * W;
        const float *restrict y = A->bY + (size_t)i * W;
#pragma omp simd
        for (int k = 0; k < W; k++) dst[k] = nrm[i] * y[k];
    }
    prof_switch(prev);
}

/* Wcat = [Wa | theta | Wh | Wt] (width x cat_cols, row-major) and its bias
 * row [ba | 0 | 0 | bt], copied from the layer's parameters (1.7 M floats a
 * layer, a small fraction of the product's 8.6 GFLOP for 5,000 rows). */
static void cat_weights(const mlpf_config *c, const graph_layer_t *p, float *wc, float *bc)
{
    const int64_t W = c->width, Dh = c->dist_hidden, CW = cat_cols(c);
    int prev = prof_switch(PROF_ELEMENTWISE);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < W; k++) {
        float *row = wc + k * CW;
        memcpy(row, p->dist0.W + k * Dh, sizeof(float) * Dh);
        memcpy(row + Dh, p->theta + k * W, sizeof(float) * W);
        memcpy(row + Dh + W, p->wh + k * W, sizeof(float) * W);
        memcpy(row + Dh + 2 * W, p->wt + k * W, sizeof(float) * W);
    }
    memcpy(bc, p->dist0.b, sizeof(float) * Dh);
    memset(bc + Dh, 0, sizeof(float) * 2 * W);
    memcpy(bc + Dh + 2 * W, p->bt, sizeof(float) * W);
    prof_switch(prev);
}

/* The gradient of Wcat, added into the layer's four weight gradients. */
static void cat_grads_add(const mlpf_config *c, const float *gwc, graph_layer_t *gp)
{
    const int64_t W = c->width, Dh = c->dist_hidden, CW = cat_cols(c);
    int prev = prof_switch(PROF_ELEMENTWISE);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < W; k++) {
        const float *restrict row = gwc + k * CW;
        float *restrict a = gp->dist0.W + k * Dh, *restrict th = gp->theta + k * W,
                        *restrict wh = gp->wh + k * W, *restrict wt = gp->wt + k * W;
#pragma omp simd
        for (int64_t j = 0; j < Dh; j++) a[j] += row[j];
#pragma omp simd
        for (int64_t j = 0; j < W; j++) {
            th[j] += row[Dh + j];
            wh[j] += row[Dh + W + j];
            wt[j] += row[Dh + 2 * W + j];
        }
    }
    prof_switch(prev);
}

/* y = elu(t) for the N x C block t with row stride ld; y is N x C, packed. */
static void elu_block(const float *t, int64_t ld, int64_t C, int64_t N, float *y)
{
    int prev = prof_switch(PROF_ELEMENTWISE);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const float *restrict tr = t + r * ld;
        float *restrict yr = y + r * C;
#pragma omp simd
        for (int64_t k = 0; k < C; k++) yr[k] = mlpf_elu(tr[k]);
    }
    prof_switch(prev);
}

/* t <- dy * elu'(t) in place (the block t as in elu_block; dy N x C, packed). */
static void elu_grad_block(float *t, int64_t ld, int64_t C, int64_t N, const float *dy)
{
    int prev = prof_switch(PROF_ELEMENTWISE);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        float *restrict tr = t + r * ld;
        const float *restrict dr = dy + r * C;
#pragma omp simd
        for (int64_t k = 0; k < C; k++) tr[k] = mlpf_elu_grad(tr[k], dr[k]);
    }
    prof_switch(prev);
}

/* z_next = x + elu(G * Fhom + (1 - G) * Fhet), per row. */
static void graph_forward(mlpf_model *m, const mlpf_batch *b, int L, const graph_layer_t *p,
                          const float *x, float *z_next)
{
    const mlpf_config *c = &m->cfg;
    act_arena *A = m->acts;
    graph_acts *g = &A->gl[L];
    const int64_t N = b->n_rows, W = c->width, S = c->bin_size, CW = cat_cols(c), Dh = c->dist_hidden;
    /* [t | H | Fhet | Gp] = x [Wa | theta | Wh | Wt] + [ba | 0 | 0 | bt] */
    float *wc = m->wcat + (size_t)L * W * CW, *bc = m->wcat_bias + (size_t)L * CW;
    cat_weights(c, p, wc, bc);
    int prev = prof_switch(PROF_ELEMENTWISE);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) memcpy(g->cat + r * CW, bc, sizeof(float) * CW);
    prof_switch(prev);
    gemm(0, 0, N, CW, W, 1.0f, x, W, wc, CW, 1.0f, g->cat, CW);
    elu_block(g->t, CW, Dh, N, A->sh);
    dense_forward(&p->dist1, A->sh, g->xd, N);
    for (int e = 0; e < b->n_events; e++) {
        int64_t r0 = b->offsets[e], n = b->offsets[e + 1] - r0;
        int64_t B0 = A->bin_start[e], nb = A->bin_start[e + 1] - B0;
        if (n == 0) continue;
        if (!m->freeze_discrete) bin_event(m, L, g->xd, r0, n, g->perm + B0 * S, g->hash, nb);
        for (int64_t bi = 0; bi < nb; bi++) bin_forward(m, g, B0 + bi);
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) { /* rows in parallel, each row's values in SIMD lanes */
        const float *restrict gp = g->Gp + r * CW, *restrict fh = g->Fhom + r * W,
                              *restrict ft = g->Fhet + r * CW;
        const float *xr = x + r * W; /* x == z_next in forward-only mode (same index: safe) */
        float *zn = z_next + r * W;
#pragma omp simd
        for (int64_t k = 0; k < W; k++) zn[k] = xr[k] + mlpf_graph_out(gp[k], fh[k], ft[k]);
    }
}

/* Backward of one bin: from dFhom (rows) to dH and dxd (rows). */
static void bin_backward(const mlpf_model *m, graph_acts *g, int64_t B, const float *dFhom,
                         float *dH, float *dxd)
{
    const mlpf_config *c = &m->cfg;
    act_arena *A = m->acts;
    const int Sb = c->bin_size, Dd = c->dist_dim, W = c->width;
    const float mult = c->dist_mult;
    const int *rows = g->perm + B * Sb;
    const float *nrm = g->nrm + B * Sb;
    const int S = bin_real_rows(rows, Sb); /* as in bin_forward */
    float *bA = A->bA, *bdA = A->bdA, *D = A->bD;
    double *bd = A->bd64, *dsq = A->bg64, *out = A->bo64, *rs = A->br64, *sqn = A->bq64;
    int prev = prof_switch(PROF_KERNEL);
    /* V = n H (bV), dY = n dFhom (bY); dn_i = sum_c dFhom_ic Fhom_ic / n_i */
    const int64_t CW = cat_cols(c); /* row stride of H and dH */
    gather_rows(rows, S, g->H, CW, W, nrm, A->bV);
    gather_rows(rows, S, dFhom, W, W, nrm, A->bY);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        double s = 0.0;
        if (rows[i] >= 0) {
            const float *restrict df = dFhom + (size_t)rows[i] * W, *restrict f = g->Fhom + (size_t)rows[i] * W;
#pragma omp simd reduction(+ : s)
            for (int k = 0; k < W; k++) s += (double)df[k] * f[k];
            s /= nrm[i];
        }
        A->bdn[i] = (float)s;
    }
    /* the kernel distances and A again, as bin_forward made them (the same
     * float64 products, so the same bits): recomputing them is cheaper in
     * memory than keeping n_bins x S x S per layer */
    gather_d64(rows, S, g->xd, Dd, bd, sqn);
    gram64(S, Dd, bd, dsq);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        float *restrict drow = D + (size_t)i * S, *restrict arow = bA + (size_t)i * S;
        const double *restrict grow = dsq + (size_t)i * S;
        const double sqi = sqn[i];
        const int ri = rows[i];
#pragma omp simd
        for (int j = 0; j < S; j++) {
            double sq = i == j ? 0.0 : sqi - 2.0 * grow[j] + sqn[j];
            float d, a = mlpf_kernel_value(sq, mult, &d);
            drow[j] = d;
            arow[j] = (ri | rows[j]) < 0 ? 0.0f : a;
        }
    }
    gemm(0, 1, S, S, W, 1.0f, A->bY, W, A->bV, W, 0.0f, bdA, S);  /* dA = dY V^T */
    gemm(1, 0, S, W, S, 1.0f, bA, S, A->bY, W, 0.0f, A->bV, W);   /* dV = A^T dY */
#pragma omp parallel for schedule(static)
    for (int j = 0; j < S; j++) {
        if (rows[j] < 0) continue;
        const float *dv = A->bV + (size_t)j * W, *h = g->H + (size_t)rows[j] * CW;
        float *dh = dH + (size_t)rows[j] * CW; /* H itself: read h[k] first */
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int k = 0; k < W; k++) {
            s += (double)dv[k] * h[k];
            dh[k] = nrm[j] * dv[k];
        }
        A->bdn[j] += (float)s;
    }
    /* through n_i = (deg_i + 1e-6)^(-1/2): ddeg_i = -n_i^3 / 2 dn_i; deg_i = sum_j A_ij;
     * then A = exp(-mult D), D = sqrt(max(sq, 1e-6)): dsq = dA * (-mult) A / (2 D). */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        float ddeg = -0.5f * nrm[i] * nrm[i] * nrm[i] * A->bdn[i];
        const float *restrict drow = D + (size_t)i * S, *restrict arow = bA + (size_t)i * S;
        float *restrict darow = bdA + (size_t)i * S;
#pragma omp simd
        for (int j = 0; j < S; j++) {
            darow[j] = mlpf_kernel_dsq(darow[j] + ddeg, arow[j], drow[j], mult);
        }
    }
    /* sq_ij = |d_i|^2 - 2 d_i.d_j + |d_j|^2, in float64 (see gather_d64):
     * dd_i = 2 d_i (sum_j dsq_ij + sum_j dsq_ji) - 2 (dsq d)_i - 2 (dsq^T d)_i
     *      = 2 d_i rowsum(M)_i - 2 (M d)_i with M = dsq + dsq^T: one product */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        double r = 0.0;
        for (int j = 0; j < S; j++) {
            double v = (double)bdA[i * S + j] + (double)bdA[j * S + i];
            dsq[i * S + j] = v;
            r += v;
        }
        rs[i] = r;
    }
    dgemm(CblasNoTrans, CblasNoTrans, S, Dd, S, -2.0, dsq, S, bd, Dd, 0.0, out, Dd);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < S; i++) {
        if (rows[i] < 0) continue;
        double f = 2.0 * rs[i];
        float *dst = dxd + (size_t)rows[i] * Dd;
        for (int k = 0; k < Dd; k++) dst[k] = (float)(out[i * Dd + k] + f * bd[i * Dd + k]);
    }
    prof_switch(prev);
}

/* dz holds dL/dz_next on entry and dL/dx on return (z_next = x + CG(x)). */
static void graph_backward(mlpf_model *m, const mlpf_batch *b, int L, const graph_layer_t *p,
                           graph_layer_t *gp, const float *x, float *dz)
{
    const mlpf_config *c = &m->cfg;
    act_arena *A = m->acts;
    graph_acts *g = &A->gl[L];
    const int64_t N = b->n_rows, W = c->width, CW = cat_cols(c), Dh = c->dist_hidden;
    /* in place where the forward value is not needed again: dGp over Gp,
     * dFhet over Fhet, dH over H (bin_backward), dt over t: then cat holds
     * d[t | H | Fhet | Gp] for the two fused products at the end */
    float *dFhom = A->s2, *dH = g->H;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        float *gpre = g->Gp + r * CW, *fhet = g->Fhet + r * CW; /* overwritten by dGp, dFhet */
        const float *restrict fhom = g->Fhom + r * W, *restrict dzr = dz + r * W;
        float *restrict dfh = dFhom + r * W;
#pragma omp simd
        for (int64_t k = 0; k < W; k++) {
            float dgp, dfhom, dfhet;
            mlpf_graph_out_grad(gpre[k], fhom[k], fhet[k], dzr[k], &dgp, &dfhom, &dfhet);
            gpre[k] = dgp;
            dfh[k] = dfhom;
            fhet[k] = dfhet;
        }
    }
    for (int e = 0; e < b->n_events; e++)
        for (int64_t B = A->bin_start[e]; B < A->bin_start[e + 1]; B++)
            bin_backward(m, g, B, dFhom, dH, A->sd);
    /* ffn_dist: xd = elu(t) Wb + bb, t = x Wa + ba */
    elu_block(g->t, CW, Dh, N, A->sh);
    float *ds = A->s1;
    dense_backward(&p->dist1, &gp->dist1, A->sh, A->sd, ds, 0, N, A->ones);
    elu_grad_block(g->t, CW, Dh, N, ds); /* dt over t */
    /* the fused products' backward: d[Wa | theta | Wh | Wt] = x^T dcat, the
     * biases' = column sums of dt and dGp, dx += dcat [Wa | theta | Wh | Wt]^T */
    const float *wc = m->wcat + (size_t)L * W * CW;
    gemm(1, 0, W, CW, N, 1.0f, x, W, g->cat, CW, 0.0f, m->gwcat, CW);
    int prev = prof_switch(PROF_GEMM);
    cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)N, (blasint)Dh, 1.0f, g->t, (blasint)CW, A->ones, 1, 1.0f,
                gp->dist0.b, 1);
    cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)N, (blasint)W, 1.0f, g->Gp, (blasint)CW, A->ones, 1, 1.0f,
                gp->bt, 1);
    prof_switch(prev);
    cat_grads_add(c, m->gwcat, gp);
    gemm(0, 1, N, W, CW, 1.0f, g->cat, CW, wc, CW, 1.0f, dz, W);
}

/* ---------------------------------------------------------------- loss */

/* Loss terms of every row and their gradients w.r.t. the head outputs. */
static void loss_forward(mlpf_model *m, const mlpf_batch *b, int64_t n_global, loss_report *rep)
{
    act_arena *A = m->acts;
    const int nc = m->cfg.n_classes;
    const int64_t N = b->n_rows;
    const float inv = 1.0f / (float)n_global;
    const float *logits = A->pre[HEAD_ID][m->P.ffn_id.n_layers - 1];
    const float *charge = A->pre[HEAD_CH][m->P.ffn_ch.n_layers - 1];
    const float *eta = A->pre[HEAD_ETA][m->P.ffn_eta.n_layers - 1];
    const float *phi = A->pre[HEAD_PHI][m->P.ffn_phi.n_layers - 1];
    const float *en = A->pre[HEAD_E][m->P.ffn_e.n_layers - 1];
    const float *pt = A->pre[HEAD_PT][m->P.ffn_pt.n_layers - 1];
    /* per-thread partial sums, added in thread order: the same bits every run */
    const int max_t = omp_get_max_threads();
    double part[max_t][MLPF_N_TERMS], terms[MLPF_N_TERMS] = {0};
    int64_t okp[max_t], correct = 0;
    memset(part, 0, sizeof part);
    memset(okp, 0, sizeof okp);
    int prev = prof_switch(PROF_LOSS), nt = 1;
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
#pragma omp single
        nt = omp_get_num_threads();
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; i++) {
            mlpf_head_out o = {.logits = logits + i * nc, .charge = charge[i], .eta = eta[i],
                               .energy = en[i], .phi = phi + i * 2, .pt = pt + i * 2};
            mlpf_head_grad d = {.logits = A->dout[HEAD_ID] + i * nc, .charge = A->dout[HEAD_CH] + i,
                                .eta = A->dout[HEAD_ETA] + i, .energy = A->dout[HEAD_E] + i,
                                .phi = A->dout[HEAD_PHI] + i * 2, .pt = A->dout[HEAD_PT] + i * 2};
            okp[t] += mlpf_loss_element(b->X + i * BATCH_X_COLS, b->y + i * BATCH_Y_COLS, nc, o, inv, d, part[t]);
        }
    }
    for (int t = 0; t < nt; t++) {
        for (int k = 0; k < MLPF_N_TERMS; k++) terms[k] += part[t][k];
        correct += okp[t];
    }
    rep->loss[0] = 0.0;
    for (int k = 1; k < LOSS_N; k++) {
        rep->loss[k] = terms[k - 1] / (double)n_global;
        rep->loss[0] += rep->loss[k];
    }
    rep->n_rows = N;
    rep->n_correct = correct;
    prof_switch(prev);
}

/* ---------------------------------------------------------------- model */

/* Each head's input as column blocks: ffn_id and ffn_ch read u, ffn_eta and
 * ffn_phi u' = [u | logits], ffn_e and ffn_pt v = [u' | z_reg | logits]. The
 * logits are stop-gradients; backward adds the other blocks' gradients to du
 * and dzr (forward passes NULL for both). */
static mlp_input head_input(const mlpf_model *m, int h, float *du, float *dzr)
{
    const act_arena *A = m->acts;
    const int W = m->cfg.width, nc = m->cfg.n_classes;
    const float *logits = A->sg_logits, *zr = A->z_reg[m->cfg.n_graph_reg];
    if (h == HEAD_ID || h == HEAD_CH) return (mlp_input){.n = 1, .x = {A->u}, .w = {W}, .dx = {du}};
    if (h == HEAD_ETA || h == HEAD_PHI)
        return (mlp_input){.n = 2, .x = {A->u, logits}, .w = {W, nc}, .dx = {du, NULL}};
    return (mlp_input){.n = 4, .x = {A->u, logits, zr, logits}, .w = {W, nc, W, nc}, .dx = {du, NULL, dzr, NULL}};
}

int model_forward(mlpf_model *m, const mlpf_batch *b, int64_t n_global, loss_report *rep)
{
    void *before = m->acts->fmem;
    int64_t rows_before = m->acts->n_rows;
    if (plan(m, b) != 0) return -1;
    if (m->freeze_discrete && (m->acts->fmem != before || rows_before != b->n_rows)) {
        fprintf(stderr, "mlpfbench: freeze_discrete needs a previous forward pass on the same batch\n");
        return -1;
    }
    m->acts->n_rows = b->n_rows;
    int prev = prof_switch(PROF_ELEMENTWISE);
    const mlpf_config *c = &m->cfg;
    act_arena *A = m->acts;
    const int64_t N = b->n_rows, W = c->width;
    const int nc = c->n_classes, ein = mlpf_enc_in(c), nf = c->n_features;
    /* encoder input: one-hot element type + the other columns */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        float *e = A->e + i * ein;
        const float *X = b->X + i * nf;
        int type = (int)X[0];
        for (int t = 0; t < c->n_types; t++) e[t] = (float)(t == type);
        for (int k = 1; k < nf; k++) e[c->n_types + k - 1] = X[k];
    }
    dense_forward(&m->P.enc0, A->e, A->a1, N);
    gelu_forward(A->a1, A->h1, N * W);
    dense_forward(&m->P.enc1, A->h1, A->a2, N);
    gelu_forward(A->a2, A->z_id[0], N * W);
    for (int l = 0; l < c->n_graph_id; l++)
        graph_forward(m, b, l, &m->P.cg_id[l], A->z_id[l], A->z_id[l + 1]);
    for (int l = 0; l < c->n_graph_reg; l++)
        graph_forward(m, b, c->n_graph_id + l, &m->P.cg_reg[l], A->z_reg[l], A->z_reg[l + 1]);
    /* output decoding */
    layernorm_forward(A->z_id[c->n_graph_id], m->P.ln_gamma, m->P.ln_beta, c->ln_eps, A->u,
                      A->xhat, A->rstd, N, (int)W);
    for (int h = 0; h < N_HEADS; h++) { /* the id head first: the others read its logits */
        const mlp_input in = head_input(m, h, NULL, NULL);
        mlp_forward(head_params(&m->P, h), &in, A->pre[h], A->act[h], N);
        if (h == HEAD_ID && !m->freeze_discrete)
            memcpy(A->sg_logits, A->pre[HEAD_ID][m->P.ffn_id.n_layers - 1], sizeof(float) * N * nc);
    }
    loss_forward(m, b, n_global, rep);
    prof_switch(prev);
    return 0;
}

static void head_backward(mlpf_model *m, int h, float *du, float *dzr, int64_t N)
{
    act_arena *A = m->acts;
    mlp_t *gm = (mlp_t *)head_params(&m->G, h);
    const mlp_input in = head_input(m, h, du, dzr);
    mlp_backward(head_params(&m->P, h), gm, &in, A->pre[h], A->act[h], A->dout[h], N, A->m0, A->m1,
                 A->ones);
}

void model_backward(mlpf_model *m, const mlpf_batch *b)
{
    const mlpf_config *c = &m->cfg;
    act_arena *A = m->acts;
    if (A->forward_only) {
        fprintf(stderr, "mlpfbench: internal error: backward pass on a forward-only model\n");
        abort();
    }
    const int64_t N = b->n_rows, W = c->width;
    int prev = prof_switch(PROF_ELEMENTWISE);
    /* Gradients are finished from the end of the buffer to its start (heads
     * in reverse order, LayerNorm, the reg stack, the id stack, the encoder),
     * and each finished stretch is reported so its all-reduce can start. */
#define READY(tensor) \
    do { if (m->grad_ready) m->grad_ready(m->grad_ready_ctx, (size_t)((tensor) - m->grads), NULL); } while (0)
    /* heads, adding their input gradients straight into du and dz_reg; the
     * logits inside u' and v are stop-gradients */
    float *du = A->s1;
    memset(du, 0, sizeof(float) * N * W);
    memset(A->dzr, 0, sizeof(float) * N * W);
    for (int h = N_HEADS - 1; h >= 0; h--) { /* pt, e, phi, eta, ch, id: buffer order reversed */
        head_backward(m, h, du, A->dzr, N);
        READY(head_params(&m->G, h)->layer[0].W);
    }
    layernorm_backward(du, A->xhat, A->rstd, m->P.ln_gamma, A->dzi, m->G.ln_gamma, m->G.ln_beta,
                       N, (int)W);
    READY(m->G.ln_gamma);
    /* the two graph stacks, reg first (it lies after id in the buffer) */
    for (int l = c->n_graph_reg - 1; l >= 0; l--) {
        graph_backward(m, b, c->n_graph_id + l, &m->P.cg_reg[l], &m->G.cg_reg[l], A->z_reg[l],
                       A->dzr);
        READY(m->G.cg_reg[l].dist0.W);
    }
    for (int l = c->n_graph_id - 1; l >= 0; l--) {
        graph_backward(m, b, l, &m->P.cg_id[l], &m->G.cg_id[l], A->z_id[l], A->dzi);
        READY(m->G.cg_id[l].dist0.W);
    }
    /* encoder */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N * W; i++) A->dzi[i] += A->dzr[i];
    gelu_backward(A->a2, A->dzi, A->dzi, N * W);
    dense_backward(&m->P.enc1, &m->G.enc1, A->h1, A->dzi, A->s1, 0, N, A->ones);
    gelu_backward(A->a1, A->s1, A->s1, N * W);
    dense_backward(&m->P.enc0, &m->G.enc0, A->e, A->s1, NULL, 0, N, A->ones);
    READY(m->grads);
#undef READY
    prof_switch(prev);
}
