/* The MLPF model on the CPU: parameters, gradients, activations and the
 * forward / loss / backward passes over a ragged batch (shared/spec/model.md). */
#ifndef MLPF_MODEL_H
#define MLPF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "batch.h"
#include "config.h"
#include "params.h"

typedef struct act_arena act_arena;

typedef struct {
    mlpf_config cfg;
    param_layout layout;
    float *params;   /* layout.total floats: all trainable parameters */
    float *grads;    /* same layout */
    mlpf_tensors P;  /* views into params */
    mlpf_tensors G;  /* views into grads */
    float *lsh;      /* non-trainable LSH matrices, one per graph layer */
    /* each graph layer's four input weights side by side, [Wa | theta | Wh |
     * Wt], and bias row, refreshed by every forward pass (one product instead
     * of four), and the gradient of one such matrix (backward scratch) */
    float *wcat, *wcat_bias, *gwcat;
    act_arena *acts; /* activations, planned per batch shape */
    /* For finite-difference tests: when set, forward reuses the LSH binning
     * and the stop-gradient logits of the previous forward pass on the same
     * batch, so that the loss is the smooth function whose gradient backward
     * computes (the spec's "no gradient through hash, perm and stopgrad"). */
    int freeze_discrete;
    /* When set, graph layer l takes its LSH buckets from forced_hash[l] (one
     * per row of the batch) instead of hashing (the self-check's common
     * binning); the sort into bins is done as usual. */
    const int *const *forced_hash;
    /* Called during backward with a watermark w: every gradient at offsets
     * >= w (in floats) is final. Lets the all-reduce start early. */
    grad_ready_fn grad_ready;
    void *grad_ready_ctx;
} mlpf_model;

/* Allocate and initialise (seeded, portable). Returns 0 or -1 (message on stderr). */
int model_create(mlpf_model *m, const mlpf_config *cfg, uint64_t seed);
void model_free(mlpf_model *m);

/* Forward pass and loss of a batch. The loss is normalised by n_global, the
 * number of real elements in the GLOBAL batch (all ranks). Keeps what the
 * backward pass needs. Returns 0, or -1 if activations could not be allocated. */
int model_forward(mlpf_model *m, const mlpf_batch *b, int64_t n_global, loss_report *rep);
/* Backward pass of the last forward; ADDS the gradient of the loss to m->grads. */
void model_backward(mlpf_model *m, const mlpf_batch *b);
void model_zero_grad(mlpf_model *m);

/* LSH bucket of each row in graph layer l (id stack first) from the last
 * forward pass: n_rows ints. */
const int *model_hashes(const mlpf_model *m, int layer);
/* Bytes of activation memory a batch of `rows` elements in `bins` LSH bins
 * and `events` events needs (what model_forward would allocate). */
size_t model_activation_bytes_for(const mlpf_model *m, int64_t rows, int64_t bins, int64_t events);
/* Allocate (and touch) the activations of a batch of up to `rows` elements in
 * `bins` LSH bins and `events` events now, so that no training step has to.
 * Returns 0 or -1 (message on stderr). */
int model_reserve(mlpf_model *m, int64_t rows, int64_t bins, int64_t events);
/* Lay the activations out for forward passes alone (inference): the graph
 * layers share one set of buffers and nothing is kept for a backward pass,
 * which is then refused. Call before the first forward pass. model_hashes
 * then gives the last graph layer's buckets for every layer. */
void model_set_forward_only(mlpf_model *m);
/* Index (in m->layout) of the first tensor whose gradient is not finite, or -1. */
int model_first_nonfinite_grad(const mlpf_model *m);
/* Bytes of activation memory currently planned. */
size_t model_activation_bytes(const mlpf_model *m);

#endif
