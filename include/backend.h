/* The backend contract: everything train, infer, the checkpoints, the run
 * guard and the report do with a model goes through it, whatever computes it.
 * Two implementations sit side by side: the CPU backend (src/cpu/) and the
 * CUDA backend (cuda/, in libmlpf_cuda.so, loaded on first use).
 *
 * Both keep the model in the same parameter layout (include/params.h): one
 * buffer of layout.total floats for the parameters, one for the gradients,
 * one each for Adam's two moments. So a checkpoint written by one backend is
 * resumed by the other, and the gradient all-reduce sees one buffer.
 *
 * A training step, in this order:
 *   zero_grad; forward (loss of a batch); backward (gradients, reporting
 *   finished stretches); [all-reduce]; check_grads; optimizer_step; finish.
 * A backend may run asynchronously (the GPU): forward's loss report and
 * check_grads' result are then PENDING until finish() waits for the step. */
#ifndef MLPF_BACKEND_H
#define MLPF_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* the CUDA backend (C++) implements it */
#endif

#include "batch.h"
#include "buckets.h"
#include "config.h"
#include "params.h"
#include "prof.h"

enum { LOSS_TOTAL, LOSS_CLS, LOSS_CHARGE, LOSS_PT, LOSS_ETA, LOSS_SIN_PHI, LOSS_COS_PHI,
       LOSS_ENERGY, LOSS_N };
extern const char *const LOSS_NAMES[LOSS_N];

typedef struct {
    double loss[LOSS_N]; /* component sums over this batch / n_global; [0] = their sum */
    int64_t n_rows;      /* real elements in this batch */
    int64_t n_correct;   /* elements whose argmax(logits) equals the target class */
    int pending;         /* set by an asynchronous forward: filled in by finish() */
} loss_report;

/* check_grads' answer when it comes with finish() */
enum { BACKEND_PENDING = -2 };

/* Called during backward with a watermark w: every gradient at offsets >= w
 * (in floats) is final. device_event: NULL on the CPU; on the GPU the CUDA
 * event (cudaEvent_t) recorded on the compute stream after that stretch. */
typedef void (*grad_ready_fn)(void *ctx, size_t watermark, const void *device_event);

typedef struct backend backend;

/* The gradient all-reduce of a device backend (cuda/comm.cu): the buckets of
 * include/buckets.h, each launched on a communication stream as soon as
 * backward has finished its stretch. */
typedef struct {
    const char *transport;  /* "nccl" (ncclAllReduce) or "mpi" (pinned host staging + MPI_Iallreduce) */
    int rank, size;
    const void *mpi_comm;   /* &MPI_Comm of the ranks */
    const void *nccl_id;    /* nccl: the unique id rank 0 made (comm_id), broadcast to every rank */
    size_t bucket_bytes;
    double init_timeout_s;  /* the communicator's set-up, at most (0: no limit) */
} comm_opts;

typedef struct {
    void (*destroy)(backend *);
    /* Device memory (bytes) the model and the activations of a batch of up
     * to `rows` elements, `bins` bins and `events` events need, and what the
     * device has free for this rank. */
    double (*bytes_for)(const backend *, int64_t rows, int64_t bins, int64_t events);
    double (*bytes_free)(const backend *);
    /* Allocate the activations for that worst batch now: no step allocates.
     * 0, or -1 with the reason in be->error. */
    int (*reserve)(backend *, int64_t rows, int64_t bins, int64_t events);
    /* Forward pass and loss of a batch, normalised by n_global, the real
     * elements of the GLOBAL batch. 0, or -1 with the reason in be->error. */
    int (*forward)(backend *, const mlpf_batch *, int64_t n_global, loss_report *);
    /* The gradient of the last forward's loss, ADDED to the gradient buffer;
     * calls be->grad_ready as stretches finish. */
    void (*backward)(backend *);
    void (*zero_grad)(backend *);
    /* Index (in be->layout) of the first tensor whose gradient is not
     * finite, -1, or BACKEND_PENDING (the answer comes with finish). */
    int (*check_grads)(backend *);
    /* One Adam step (Keras form, staircase decay: include/optim.h). A backend
     * whose check_grads was pending skips it if a gradient was not finite. */
    void (*optimizer_step)(backend *);
    /* Wait for the step's work; fill a pending loss report (may be NULL) and
     * the pending gradient check (bad_tensor, may be NULL). 0, or -1 with
     * the reason in be->error (a device fault). */
    int (*finish)(backend *, loss_report *, int *bad_tensor);
    /* The state in host memory, in the parameter layout (layout.total floats). */
    void (*get_params)(backend *, float *);
    void (*set_params)(backend *, const float *);
    void (*get_grads)(backend *, float *);
    void (*get_adam)(backend *, float *m, float *v, int64_t *step);
    void (*set_adam)(backend *, const float *m, const float *v, int64_t step);
    /* LSH bucket of every row in graph layer l (id stack first) from the last
     * forward pass: the batch's rows ints. */
    void (*get_hashes)(backend *, int layer, int *out);
    /* Use these buckets (one array of the batch's rows per graph layer)
     * instead of hashing, for the next forward passes; NULL hashes again.
     * The arrays must stay valid while in use. (The self-check compares the
     * two backends on the same binning.) */
    void (*force_hashes)(backend *, const int *const *per_layer);
    /* The activation memory reserved so far, bytes. */
    size_t (*activation_bytes)(const backend *);
    /* Seconds of forward + backward by kind of work so far (prof.h kinds),
     * cumulative; PROF_NONE excluded. */
    void (*time_by_kind)(backend *, double out[PROF_N]);
    /* Seconds spent so far in forward, backward and the optimizer (wall time
     * on the CPU, device time on the GPU), cumulative. */
    void (*phase_seconds)(backend *, double out[3]);
    /* Optional (NULL on the CPU): start copying a batch to the device now, so
     * that its forward pass does not wait for it (overlap with the step in
     * flight). The batch must stay unchanged until that forward returns. */
    int (*stage)(backend *, const mlpf_batch *);
    /* Optional (NULL on the CPU): compute the matrix products in "fp32" from
     * now on, or back in the backend's own precision (NULL). The self-check
     * checks the kernels in fp32 first, then the products in the run's
     * precision. 0, or -1 with the reason in be->error. */
    int (*set_precision)(backend *, const char *precision);
    /* Optional (NULL on the CPU, which reduces grads_host with MPI itself):
     * the gradient all-reduce on the device.
     * comm_id: rank 0 makes NCCL's unique id (at most cap bytes); its length, or -1.
     * comm_init: set the communicator up (collective over the ranks); 0 or -1.
     *   From then on backward launches the buckets itself (grad_ready unused).
     * comm_reduce: after backward: launch what is left; the optimizer step
     *   (enqueued after it) waits for the last bucket. No host wait with NCCL.
     * comm_stats: the figures so far (valid after finish).
     * comm_error: from any thread: 1 with the reason when the communicator
     *   failed (a peer gone: NCCL's asynchronous error), else 0.
     * comm_abort: from any thread: abort the communicator so no kernel waits
     *   for a peer forever (before the job ends). */
    int (*comm_id)(backend *, void *id, size_t cap);
    int (*comm_init)(backend *, const comm_opts *);
    void (*comm_reduce)(backend *);
    void (*comm_stats)(backend *, allreduce_stats *);
    int (*comm_error)(backend *, char *why, size_t n);
    void (*comm_abort)(backend *);
} backend_ops;

struct backend {
    const backend_ops *ops;
    mlpf_config cfg;
    param_layout layout;
    char device[8];        /* "cpu" or "cuda" */
    char precision[8];     /* "fp32", "tf32", "bf16" */
    char description[256]; /* what computes: "CPU (N threads)", the GPU's name, ... */
    char gpu_uuid[64], gpu_pci[32]; /* the GPU's identity (empty on the CPU) */
    int emulated;          /* the CUDA host execution path (tests only): never a GPU result */
    /* The gradient buffer the all-reduce works on when it is in host memory
     * (the CPU backend), else NULL. */
    float *grads_host;
    grad_ready_fn grad_ready;
    void *grad_ready_ctx;
    char error[512];
    void *impl;
};

typedef struct {
    const char *device;    /* "cpu" or "cuda" */
    const char *precision; /* NULL: the device's default (fp32 on the CPU, tf32 on the GPU) */
    int gpu;               /* the CUDA device index */
    int forward_only;      /* inference: activations laid out for forward passes alone */
} backend_opts;

/* Create a backend holding the model of `cfg`, initialised from `seed`
 * (bit-identical weights on every backend: param_init, lsh_init run on the
 * host). 0, or -1 with the reason in err. */
int backend_create(backend *be, const backend_opts *o, const mlpf_config *cfg, uint64_t seed, char *err,
                   size_t errlen);
void backend_destroy(backend *be);

/* The CPU backend (src/cpu/backend_cpu.c) and the CUDA one (cuda/gpu.c loads
 * it), each filling a backend whose cfg, layout, device and precision are
 * set: the CPU from the seed, the CUDA one from the initial parameters and
 * LSH matrices made on the host. */
int cpu_backend_init(backend *be, const backend_opts *o, uint64_t seed, char *err, size_t errlen);
int cuda_backend_init(backend *be, const backend_opts *o, const float *params, const float *lsh, char *err,
                      size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
