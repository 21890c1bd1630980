/* The HEPscore-compatible result summary (shared/spec/report.md): rank 0
 * writes <results>/mlpf_summary.json, atomically, with the reference MLPF
 * benchmark's field names plus validation, distributed and per-rank/per-node
 * figures. A failed run writes the same file with report.log = the error and
 * no scores. docs/mlpf_summary.schema.json describes it. */
#ifndef MLPF_REPORT_H
#define MLPF_REPORT_H

#include <jansson.h>
#include <stdint.h>

#include "backend.h"
#include "gpumon.h"
#include "selfcheck.h"

#define MLPF_VERSION "0.4.0"

/* What one rank measured; gathered to rank 0 as raw bytes (same binary). */
typedef struct {
    int rank, local_rank, threads;
    char host[64], cpus[128];
    int64_t events, elements, steps, bytes_read;
    int64_t warmup_steps; /* first steps left out of the step figures below (--warmup-steps) */
    double step_s, forward_s, backward_s, optimizer_s, data_wait_s, read_s;
    double allreduce_s, allreduce_exposed_s;
    double peak_rss_mib;
    double activation_mib; /* the activation arena (largest batch so far) */
    double kind_s[8]; /* training forward + backward time by kind of work (prof.h order) */
    /* this rank's GPU (an empty name: none, a CPU run) and what NVML measured
     * of it over the training window (gpumon.h; gpu.sampled == 0: nothing,
     * gpu.note says why) */
    int gpu_device;
    char gpu_name[96], gpu_uuid[48], gpu_pci[24];
    gpu_figures gpu;
} rank_figures;

typedef struct {
    /* the launch */
    const char *command_line, *preset, *device, *precision, *data_dir, *bind;
    int world_size, threads_per_rank;
    long long batch_per_rank, train_events, valid_events, steps_per_epoch, seed;
    int64_t n_params;
    double bucket_mib;
    const char *allreduce; /* the gradient transport: "mpi" (host), "nccl", "mpi, staged through pinned host memory" */
    /* the backend: what computes (the GPU's name, UUID and PCI bus id), and
     * whether it is the CUDA host execution path of the tests */
    const char *device_description, *gpu_uuid, *gpu_pci;
    int emulated;
    selfcheck_result self_check; /* ran == 0: not run (CPU, or --skip-self-check) */
    /* results, per completed epoch */
    int epochs;
    double *epoch_time, *throughput, *val_acc;
    double (*val_loss)[LOSS_N];
    char train_start[32], train_stop[32];
    double train_time, flops_per_event, flops_per_element, achieved_flops;
    /* one epoch: the score is the throughput of its steps after the first
     * score_warmup_steps (score_events events in score_seconds) */
    long long score_warmup_steps, score_events;
    double score_seconds;
    int64_t train_elements_seen, train_events_seen;
    /* every rank (rank 0 only) */
    rank_figures *ranks;
    /* NULL on success */
    const char *error;
} run_summary;

/* Floating-point operations of one forward pass per element (the spec's cost
 * model: matrix products only); forward + backward is three times this. */
double model_flops_per_element(const mlpf_config *c);
/* The versions of mlpfbench and its libraries (wl-stats.software). */
json_t *report_software_json(void);
/* This CPU's model name (/proc/cpuinfo), "unknown" if none. */
void report_cpu_model(char *buf, size_t n);
/* ISO 8601 UTC now. */
void report_timestamp(char *buf, int n);
/* Write a JSON document to `path` through a temporary file and a rename, so
 * that it is never left half-written; on failure print the path and return
 * -1 (the temporary file is removed). */
int report_json_file(const json_t *o, const char *path, size_t flags);
/* Write <dir>/mlpf_summary.json (temporary file, then rename); prints a table
 * of the key figures on stdout when `table` is set. Returns 0 or -1. */
int report_write(const char *dir, const run_summary *s, int table);

#endif
