/* The model's trainable tensors, all in ONE contiguous float buffer.
 *
 * A struct of pointers addresses the tensors inside a buffer; the same layout
 * binds the parameters, the gradients and the two Adam moments, so each is one
 * allocation (one memset, one all-reduce, one checkpoint write). The order of
 * the tensors is the documented order of docs/parity-fixture.md and is also
 * the order in which they are initialised. */
#ifndef MLPF_PARAMS_H
#define MLPF_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum { MLPF_MAX_GRAPH = 8, MLPF_MAX_HEAD_LAYERS = 8, MLPF_MAX_TENSORS = 256, MLPF_MAX_DIST_DIM = 512 };

typedef struct {
    float *W; /* in x out, y = x W + b */
    float *b; /* out */
    int in, out;
} dense_t;

typedef struct {
    dense_t layer[MLPF_MAX_HEAD_LAYERS]; /* elu after every layer but the last */
    int n_layers;
} mlp_t;

typedef struct {
    dense_t dist0, dist1; /* ffn_dist: width -> dist_hidden (elu) -> dist_dim */
    float *theta, *wh;    /* width x width, no bias */
    float *wt, *bt;       /* gate: width x width, width */
} graph_layer_t;

typedef struct {
    dense_t enc0, enc1;
    graph_layer_t cg_id[MLPF_MAX_GRAPH], cg_reg[MLPF_MAX_GRAPH];
    float *ln_gamma, *ln_beta;
    mlp_t ffn_id, ffn_ch, ffn_eta, ffn_phi, ffn_e, ffn_pt;
} mlpf_tensors;

typedef enum { INIT_GLOROT, INIT_ZERO, INIT_ONE, INIT_NORMAL } init_kind;

typedef struct {
    char name[64];
    int rows, cols; /* a vector has rows = 1 */
    size_t offset;  /* in floats, from the start of the buffer */
    init_kind init;
    int fan_in, fan_out;
} tensor_info;

typedef struct {
    int n;
    size_t total; /* floats */
    tensor_info t[MLPF_MAX_TENSORS];
} param_layout;

/* Build the layout of a configuration. Returns 0, or -1 if the configuration
 * does not fit the fixed table sizes. */
int param_layout_build(const mlpf_config *cfg, param_layout *layout);
/* Point every tensor of *t into buffer `base` (layout->total floats). */
void param_bind(const mlpf_config *cfg, float *base, mlpf_tensors *t);
/* Deterministic, portable initialisation of a parameter buffer. */
void param_init(const param_layout *layout, float *base, uint64_t seed);
/* The non-trainable LSH matrices, one per graph layer (id stack first), each
 * dist_dim x max_num_bins/2, drawn from normal(0, 0.05) after the parameters. */
size_t lsh_buffer_size(const mlpf_config *cfg);
void lsh_init(const mlpf_config *cfg, float *R, uint64_t seed);

#endif
