#include "params.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rng.h"

/* One walk over the model's tensors in the documented order. It either records
 * the layout (layout != NULL) or binds pointers into base (t != NULL). */
typedef struct {
    param_layout *layout;
    float *base;
    size_t offset;
    int overflow;
} walker;

static float *add(walker *w, const char *name, int rows, int cols, init_kind init, int fan_in,
                  int fan_out)
{
    float *p = w->base ? w->base + w->offset : NULL;
    if (w->layout) {
        param_layout *l = w->layout;
        if (l->n >= MLPF_MAX_TENSORS) {
            w->overflow = 1;
        } else {
            tensor_info *ti = &l->t[l->n++];
            snprintf(ti->name, sizeof ti->name, "%.60s", name);
            ti->rows = rows;
            ti->cols = cols;
            ti->offset = w->offset;
            ti->init = init;
            ti->fan_in = fan_in;
            ti->fan_out = fan_out;
        }
    }
    w->offset += (size_t)rows * cols;
    return p;
}

static void add_dense(walker *w, const char *prefix, int in, int out, dense_t *d)
{
    char name[96];
    snprintf(name, sizeof name, "%.40s.W", prefix);
    d->W = add(w, name, in, out, INIT_GLOROT, in, out);
    snprintf(name, sizeof name, "%.40s.b", prefix);
    d->b = add(w, name, 1, out, INIT_ZERO, in, out);
    d->in = in;
    d->out = out;
}

static void add_mlp(walker *w, const char *prefix, int in, int hidden, int n_hidden, int out,
                    mlp_t *m)
{
    char name[96];
    m->n_layers = n_hidden + 1;
    for (int i = 0; i <= n_hidden; i++) {
        int o = i < n_hidden ? hidden >> i : out;
        snprintf(name, sizeof name, "%.40s.%d", prefix, i);
        add_dense(w, name, in, o, &m->layer[i]);
        in = o;
    }
}

static void add_graph(walker *w, const mlpf_config *c, const char *prefix, graph_layer_t *g)
{
    char name[96];
    int W = c->width;
    snprintf(name, sizeof name, "%.40s.dist.0", prefix);
    add_dense(w, name, W, c->dist_hidden, &g->dist0);
    snprintf(name, sizeof name, "%.40s.dist.1", prefix);
    add_dense(w, name, c->dist_hidden, c->dist_dim, &g->dist1);
    snprintf(name, sizeof name, "%.40s.theta", prefix);
    g->theta = add(w, name, W, W, INIT_NORMAL, W, W);
    snprintf(name, sizeof name, "%.40s.wh", prefix);
    g->wh = add(w, name, W, W, INIT_NORMAL, W, W);
    snprintf(name, sizeof name, "%.40s.wt", prefix);
    g->wt = add(w, name, W, W, INIT_NORMAL, W, W);
    snprintf(name, sizeof name, "%.40s.bt", prefix);
    g->bt = add(w, name, 1, W, INIT_NORMAL, W, W);
}

static void walk(walker *w, const mlpf_config *c, mlpf_tensors *t)
{
    char name[96];
    int W = c->width, nc = c->n_classes, H = c->head_hidden;
    add_dense(w, "enc.0", mlpf_enc_in(c), W, &t->enc0);
    add_dense(w, "enc.1", W, W, &t->enc1);
    for (int l = 0; l < c->n_graph_id; l++) {
        snprintf(name, sizeof name, "cg_id%d", l);
        add_graph(w, c, name, &t->cg_id[l]);
    }
    for (int l = 0; l < c->n_graph_reg; l++) {
        snprintf(name, sizeof name, "cg_reg%d", l);
        add_graph(w, c, name, &t->cg_reg[l]);
    }
    t->ln_gamma = add(w, "ln.gamma", 1, W, INIT_ONE, W, W);
    t->ln_beta = add(w, "ln.beta", 1, W, INIT_ZERO, W, W);
    add_mlp(w, "ffn_id", W, H, c->id_hidden_layers, nc, &t->ffn_id);
    add_mlp(w, "ffn_ch", W, H, c->ch_hidden_layers, 1, &t->ffn_ch);
    add_mlp(w, "ffn_eta", W + nc, H, c->reg_hidden_layers, 1, &t->ffn_eta);
    add_mlp(w, "ffn_phi", W + nc, H, c->reg_hidden_layers, 2, &t->ffn_phi);
    add_mlp(w, "ffn_e", 2 * (W + nc), H, c->reg_hidden_layers, 1, &t->ffn_e);
    add_mlp(w, "ffn_pt", 2 * (W + nc), H, c->reg_hidden_layers, 2, &t->ffn_pt);
}

int param_layout_build(const mlpf_config *cfg, param_layout *layout)
{
    if (cfg->n_graph_id > MLPF_MAX_GRAPH || cfg->n_graph_reg > MLPF_MAX_GRAPH ||
        cfg->id_hidden_layers >= MLPF_MAX_HEAD_LAYERS ||
        cfg->ch_hidden_layers >= MLPF_MAX_HEAD_LAYERS ||
        cfg->reg_hidden_layers >= MLPF_MAX_HEAD_LAYERS || cfg->dist_dim > MLPF_MAX_DIST_DIM ||
        cfg->max_num_bins / 2 > 64 || cfg->max_num_bins < 2)
        return -1;
    mlpf_tensors scratch;
    walker w = {.layout = layout};
    layout->n = 0;
    walk(&w, cfg, &scratch);
    layout->total = w.offset;
    return w.overflow ? -1 : 0;
}

void param_bind(const mlpf_config *cfg, float *base, mlpf_tensors *t)
{
    walker w = {.base = base};
    walk(&w, cfg, t);
}

static void fill(float *p, size_t n, init_kind kind, int fan_in, int fan_out, rng_stream *s)
{
    double limit = sqrt(6.0 / (double)(fan_in + fan_out));
    for (size_t i = 0; i < n; i++) {
        switch (kind) {
        case INIT_GLOROT: p[i] = (float)(limit * (2.0 * rng_uniform(s) - 1.0)); break;
        case INIT_ZERO: p[i] = 0.0f; break;
        case INIT_ONE: p[i] = 1.0f; break;
        case INIT_NORMAL: p[i] = (float)(0.05 * rng_normal(s)); break;
        }
    }
}

void param_init(const param_layout *layout, float *base, uint64_t seed)
{
    /* One stream per tensor, keyed by its index in the documented order. */
    for (int i = 0; i < layout->n; i++) {
        const tensor_info *ti = &layout->t[i];
        rng_stream s = rng_stream_make(seed, (uint64_t)i);
        fill(base + ti->offset, (size_t)ti->rows * ti->cols, ti->init, ti->fan_in, ti->fan_out,
             &s);
    }
}

size_t lsh_buffer_size(const mlpf_config *cfg)
{
    return (size_t)(cfg->n_graph_id + cfg->n_graph_reg) * cfg->dist_dim * (cfg->max_num_bins / 2);
}

void lsh_init(const mlpf_config *cfg, float *R, uint64_t seed)
{
    size_t per = (size_t)cfg->dist_dim * (cfg->max_num_bins / 2);
    for (int l = 0; l < cfg->n_graph_id + cfg->n_graph_reg; l++) {
        rng_stream s = rng_stream_make(seed, 0x10000u + (uint64_t)l);
        fill(R + l * per, per, INIT_NORMAL, 0, 0, &s);
    }
}
