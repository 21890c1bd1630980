/* Model configuration: every dimension of the MLPF model is a field here.
 * Presets: "hepscore22" (the HEPiX benchmark model, shared/spec/model.md) and
 * "tiny" (same structure, small widths, for tests). */
#ifndef MLPF_CONFIG_H
#define MLPF_CONFIG_H

typedef struct {
    const char *preset;
    int n_features;        /* input columns (12) */
    int n_types;           /* one-hot width of column 0 (values 0, 1, 2) */
    int width;             /* encoder / graph layer / LayerNorm width */
    int n_graph_id;        /* graph layers in the "id" stack */
    int n_graph_reg;       /* graph layers in the "reg" stack */
    int bin_size;          /* S: elements per LSH bin */
    int max_num_bins;      /* LSH matrix has max_num_bins / 2 columns */
    int dist_dim;          /* width of the distance features */
    int dist_hidden;       /* hidden width of ffn_dist */
    float dist_mult;       /* Gaussian kernel scale */
    int head_hidden;       /* first hidden width of each head, halving per layer */
    int n_classes;         /* output classes */
    int id_hidden_layers;  /* hidden layers of FFN_id */
    int ch_hidden_layers;  /* hidden layers of FFN_ch */
    int reg_hidden_layers; /* hidden layers of FFN_eta, FFN_phi, FFN_E, FFN_pt */
    float ln_eps;          /* LayerNorm epsilon */
    /* optimizer (Keras Adam with a staircase exponential decay) */
    float lr, beta1, beta2, adam_eps, decay_rate;
    int decay_steps;
} mlpf_config;

/* Fill *cfg with a named preset; returns 0, or -1 if the name is unknown. */
int mlpf_config_preset(const char *name, mlpf_config *cfg);
/* Comma-separated preset names, for --help. */
const char *mlpf_config_preset_names(void);

/* Input width after one-hot encoding of column 0. */
static inline int mlpf_enc_in(const mlpf_config *c) { return c->n_types + c->n_features - 1; }
/* Number of LSH columns used for an event with nb bins. */
static inline int mlpf_lsh_k(const mlpf_config *c, int nb)
{
    int k = nb / 2;
    if (k < 1) k = 1;
    if (k > c->max_num_bins / 2) k = c->max_num_bins / 2;
    return k;
}

#endif
