// The MLPF model on one GPU: parameters, gradients, Adam's moments and the
// activations in device memory, the forward / loss / backward pass of a
// ragged batch and the Adam step, all enqueued on one compute stream without
// a host round trip; batches arrive from pinned buffers on a copy stream.
// The same parameter layout as the CPU backend (include/params.h), and the
// same sequence of operations, tensor by tensor (src/cpu/model.c).
#pragma once

#include <vector>

#include "blas.cuh"
#include "kernels.cuh"

extern "C" {
#include "backend.h"
#include "optim.h"
}

struct dev_graph_acts {
    float *cat;  // N x CW: [t | H | Fhet | Gp] (t: ffn_dist hidden pre-activation; Gp: gate pre-activation)
    float *xd;   // N x Dd: distance features
    float *Fhom; // N x W
    float *nrm;  // NB x S
    int *perm;   // NB x S: row of each slot, -1 padding
    int *hash;   // N
    float *A, *D; // NB x S x S: kernel matrix and distances
    float *V;    // NB x S x W: n H gathered into the bins (dV in backward)
};

enum { DEV_HEADS = 6 };

// One staged batch: pinned host memory and its device copy (X, y and the layout).
struct dev_slot {
    char *host = nullptr, *dev = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr, freed = nullptr;
    const float *src_X = nullptr; // which host batch it holds
    int64_t rows = 0;
    int events = 0;
    bool fresh = false;           // staged and not yet used by a forward pass
    float *X = nullptr, *y = nullptr;
    batch_layout bl{};
};

struct dev_model {
    mlpf_config cfg;
    param_layout layout;
    int64_t n = 0;
    gemm_precision prec = PREC_TF32;
    float *P = nullptr, *G = nullptr, *M = nullptr, *V = nullptr, *lsh = nullptr;
    __nv_bfloat16 *Pb = nullptr;
    int64_t *tensor_offsets = nullptr; // layout.n + 1, device
    mlpf_tensors TP{}, TG{};
    cudaStream_t cs = nullptr, xs = nullptr;
    blas_ctx blas;
    void *blas_ws = nullptr;
    int64_t adam_step = 0;
    // activations
    int64_t cap_rows = 0, cap_bins = 0, cap_events = 0;
    char *arena = nullptr;
    size_t arena_bytes = 0;
    float *e = nullptr, *a1 = nullptr, *h1 = nullptr, *a2 = nullptr;
    float *z_id[MLPF_MAX_GRAPH + 1] = {}, *z_reg[MLPF_MAX_GRAPH + 1] = {};
    dev_graph_acts gl[2 * MLPF_MAX_GRAPH] = {};
    float *u = nullptr, *xhat = nullptr, *rstd = nullptr, *sg_logits = nullptr;
    float *pre[DEV_HEADS][MLPF_MAX_HEAD_LAYERS] = {}, *act[DEV_HEADS][MLPF_MAX_HEAD_LAYERS] = {};
    float *dout[DEV_HEADS] = {};
    float *dzi = nullptr, *dzr = nullptr, *s1 = nullptr, *m0 = nullptr, *m1 = nullptr, *s2 = nullptr,
          *sd = nullptr, *sh = nullptr;
    float *bY = nullptr, *bdA = nullptr, *bdn = nullptr;
    double *bM = nullptr, *bd64 = nullptr, *bo64 = nullptr, *brs = nullptr, *bsqn = nullptr;
    double *colsum_part = nullptr, *loss_part = nullptr;
    // staging
    dev_slot slots[2];
    int next_slot = 0, cur = -1;
    // the step's results, device and pinned host copies
    double *loss_dev = nullptr, *loss_host = nullptr; // 7 sums and the correct count
    int *bad_dev = nullptr, *bad_host = nullptr, *int_max_dev = nullptr;
    int64_t n_global = 0;
    bool loss_pending = false, grads_pending = false, have_backward = false;
    const int *const *forced = nullptr; // host arrays of buckets, one per graph layer
    // where the time goes: events recorded as the kind of work changes
    struct mark {
        cudaEvent_t ev;
        int kind, phase;
    };
    std::vector<mark> marks;
    size_t n_marks = 0;
    int cur_kind = PROF_NONE, cur_phase = -1;
    double kind_s[PROF_N] = {}, phase_s[3] = {};
    cudaEvent_t ready_ev[2 * MLPF_MAX_GRAPH + DEV_HEADS + 4] = {};
    grad_ready_fn ready = nullptr;
    void *ready_ctx = nullptr;
    struct dev_comm *comm = nullptr; // the gradient all-reduce (cuda/comm.cuh), when several ranks train
};

// Allocate and upload (params, lsh: host, in the layout); precision fp32,
// tf32 or bf16.
void dev_create(dev_model &m, const mlpf_config &cfg, const float *params, const float *lsh, gemm_precision p);
void dev_destroy(dev_model &m);
// Device bytes for the model and a batch of that worst shape.
double dev_bytes_for(const dev_model &m, int64_t rows, int64_t bins, int64_t events);
void dev_reserve(dev_model &m, int64_t rows, int64_t bins, int64_t events);
void dev_stage(dev_model &m, const mlpf_batch &b);
void dev_forward(dev_model &m, const mlpf_batch &b, int64_t n_global);
void dev_backward(dev_model &m);
void dev_check_grads(dev_model &m);
void dev_adam(dev_model &m);
// Wait for the step; fill the report and the gradient check when pending.
void dev_finish(dev_model &m, loss_report *r, int *bad);
void dev_zero_grad(dev_model &m);
