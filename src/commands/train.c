/* mlpfbench train: data-parallel training on a dataset of HDF5 shards.
 *
 * cmd_train runs the phases a reader expects, each a function: parse the
 * options, set the run up (report skeleton, guard, binding), open the data,
 * create the backend (and self-check it on a GPU), reserve memory for the
 * worst batch, resume, the epochs, the report. Everything it does with the
 * model goes through the backend contract (include/backend.h). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "allreduce.h"
#include "backend.h"
#include "batch.h"
#include "binding.h"
#include "checkpoint.h"
#include "cli.h"
#include "clock.h"
#include "config.h"
#include "dataset.h"
#include "failpoint.h"
#include "gpu.h"
#include "gpumon.h"
#include "gpuplace.h"
#include "guard.h"
#include "loader.h"
#include "mpictx.h"
#include "optim.h"
#include "prof.h"
#include "report.h"
#include "selfcheck.h"
#include "timeline.h"

/* Fusion bucket size: see docs/benchmarks.md for the measurement behind it. */
#define DEFAULT_BUCKET_MB 4.0
/* --epochs 1: the score is the throughput after this many warm-up steps
 * (unless --warmup-steps says otherwise) */
#define ONE_EPOCH_WARMUP 1

typedef struct {
    const char *preset, *data, *save_weights, *bind, *timeline, *results, *device, *precision;
    const char *checkpoint, *resume, *allreduce;
    long long batch_size, epochs, max_steps, warmup_steps, seed, threads, checkpoint_every;
    double lr, bucket_mb, log_every, timeout, data_timeout, collective_timeout;
    int skip_self_check, allow_shared_gpu, allreduce_given;
} train_opts;

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: mlpfbench train [options]\n"
            "       mpirun -np N mlpfbench train [options]\n"
            "\n"
            "Trains the MLPF model on a dataset of HDF5 shards (see 'mlpfbench generate')\n"
            "and prints the parameter count, the seven loss components of every step,\n"
            "a validation pass after every epoch, and the speed. With N ranks every rank\n"
            "reads its share of each global batch and the gradients are summed.\n"
            "\n"
            "options:\n"
            "  --data DIR          dataset directory (default data/default)\n"
            "  --results DIR       where mlpf_summary.json is written (default results)\n"
            "  --device cpu|cuda   compute device (default cpu); cuda: one GPU per rank, the\n"
            "                      rank's local index among the node's ranks (SLURM_LOCALID\n"
            "                      under srun), or the one GPU CUDA_VISIBLE_DEVICES leaves it;\n"
            "                      each rank binds to the cores nearest its GPU\n"
            "  --allreduce nccl|mpi  the GPUs' gradient all-reduce: NCCL (default), or staging\n"
            "                      through pinned host memory and MPI (no NCCL, shared GPUs);\n"
            "                      the CPU backend always uses MPI\n"
            "  --allow-shared-gpu  let ranks share a GPU (refused by default: it measures the\n"
            "                      sharing, not the GPUs); implies --allreduce mpi\n"
            "  --precision P       fp32, tf32 or bf16 (bf16 products with fp32 master weights,\n"
            "                      accumulation and losses); default tf32 on the GPU; the CPU\n"
            "                      computes in fp32\n"
            "  --skip-self-check   on a GPU, do not compare one step of a fixed batch with the\n"
            "                      CPU backend before training (the summary then says so)\n"
            "  --log-every S       progress: a line every S seconds (0: every step); default:\n"
            "                      a progress bar on a terminal, a line every 10 s otherwise\n"
            "  --preset NAME       model preset: %s (default hepscore22)\n"
            "  --batch-size B      events per step on each rank (default 4)\n"
            "  --epochs E          passes over the training events (default 2; the score is\n"
            "                      the mean over epochs 2..E, epoch 1 being warm-up; with one\n"
            "                      epoch, the throughput after its first %d step(s), or after\n"
            "                      --warmup-steps)\n"
            "  --max-steps S       stop after S steps in total (default 0: no limit)\n"
            "  --warmup-steps W    leave the first W steps out of the per-rank step figures\n"
            "                      (step time, time by kind, all-reduce, data wait) for a\n"
            "                      steady-state measurement; epoch times and scores count\n"
            "                      every step (default 0)\n"
            "  --seed S            seed of the initial weights and of the event order (default 42)\n"
            "  --threads T         worker threads per rank (default: the cores bound to the rank)\n"
            "  --bind auto|none    bind each rank to its share of the node's cores (hwloc;\n"
            "                      default auto; see 'mlpfbench info')\n"
            "  --lr X              learning rate (default: the preset's; hepscore22 1e-5)\n"
            "  --bucket-mb X       gradient all-reduce fusion bucket, MiB (default %g)\n"
            "  --checkpoint-every N  write a checkpoint every N steps (default 0: never)\n"
            "  --checkpoint FILE   where (default <results>/checkpoint.bin)\n"
            "  --resume FILE       continue from a checkpoint (same preset and global batch,\n"
            "                      written by either backend): the final weights equal those\n"
            "                      of an uninterrupted run on the CPU backend\n"
            "  --timeout S         end the job with an error when no step finishes for S\n"
            "                      seconds (default 900, 0 = never)\n"
            "  --collective-timeout S  ... when one wait in a collective (gradient all-reduce,\n"
            "                      the step's reductions) lasts S seconds: a rank is stuck or\n"
            "                      gone (default 300, 0 = never)\n"
            "  --data-timeout S    ... when one wait for the next batch's data lasts S seconds\n"
            "                      (default 300, 0 = never)\n"
            "  --timeline FILE     write a Chrome-trace JSON of every rank's forward, backward,\n"
            "                      all-reduce buckets, data reads/waits and optimizer spans\n"
            "  --save-weights F    write the final weights (raw float32, parameter order of\n"
            "                      docs/parity-fixture.md) to F\n"
            "  --blas-core NAME    the OpenBLAS kernels to run (default: OpenBLAS's choice,\n"
            "                      corrected at start where it fell back to older ones)\n"
            "  -h, --help          this help\n",
            mlpf_config_preset_names(), ONE_EPOCH_WARMUP, DEFAULT_BUCKET_MB);
}

static int parse(int argc, char **argv, train_opts *o)
{
    *o = (train_opts){.preset = "hepscore22", .data = "data/default", .batch_size = 4,
                      .epochs = 2, .max_steps = 0, .seed = 42, .threads = 0, .lr = 0,
                      .bucket_mb = DEFAULT_BUCKET_MB, .bind = "auto",
                      .results = "results", .device = "cpu", .precision = NULL, .log_every = -1,
                      .timeout = 900, .data_timeout = 300, .collective_timeout = 300};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (g_mpi.rank == 0) train_usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--skip-self-check")) {
            o->skip_self_check = 1;
            continue;
        }
        if (!strcmp(a, "--allow-shared-gpu")) {
            o->allow_shared_gpu = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--preset")) {
            rc = cli_preset(a, v, &o->preset);
        } else if (!strcmp(a, "--data")) {
            rc = cli_path(a, v, "a directory", &o->data);
        } else if (!strcmp(a, "--bind")) {
            rc = cli_choice(a, v, "auto|none", &o->bind);
        } else if (!strcmp(a, "--results")) {
            rc = cli_path(a, v, "a directory", &o->results);
        } else if (!strcmp(a, "--device")) {
            rc = cli_choice(a, v, "cpu|cuda", &o->device);
        } else if (!strcmp(a, "--allreduce")) {
            rc = cli_choice(a, v, "nccl|mpi", &o->allreduce);
        } else if (!strcmp(a, "--precision")) {
            rc = cli_choice(a, v, "fp32|tf32|bf16", &o->precision);
        } else if (!strcmp(a, "--checkpoint")) {
            rc = cli_path(a, v, "a file name", &o->checkpoint);
        } else if (!strcmp(a, "--resume")) {
            rc = cli_path(a, v, "a file name", &o->resume);
        } else if (!strcmp(a, "--checkpoint-every")) {
            rc = cli_int(a, v, 0, 1000000000, &o->checkpoint_every);
        } else if (!strcmp(a, "--timeout")) {
            rc = cli_double(a, v, 0.0, 1e7, &o->timeout);
        } else if (!strcmp(a, "--data-timeout")) {
            rc = cli_double(a, v, 0.0, 1e7, &o->data_timeout);
        } else if (!strcmp(a, "--collective-timeout")) {
            rc = cli_double(a, v, 0.0, 1e7, &o->collective_timeout);
        } else if (!strcmp(a, "--log-every")) {
            rc = cli_double(a, v, 0.0, 86400.0, &o->log_every);
        } else if (!strcmp(a, "--timeline")) {
            rc = cli_path(a, v, "a file name", &o->timeline);
        } else if (!strcmp(a, "--save-weights")) {
            rc = cli_path(a, v, "a file name", &o->save_weights);
        } else if (!strcmp(a, "--batch-size")) rc = cli_int(a, v, 1, 65536, &o->batch_size);
        else if (!strcmp(a, "--epochs")) rc = cli_int(a, v, 1, 1000000, &o->epochs);
        else if (!strcmp(a, "--max-steps")) rc = cli_int(a, v, 0, 1000000000, &o->max_steps);
        else if (!strcmp(a, "--warmup-steps")) rc = cli_int(a, v, 0, 1000000000, &o->warmup_steps);
        else if (!strcmp(a, "--seed")) rc = cli_int(a, v, 0, 1LL << 62, &o->seed);
        else if (!strcmp(a, "--threads")) rc = cli_int(a, v, 1, 4096, &o->threads);
        else if (!strcmp(a, "--lr")) rc = cli_double(a, v, 1e-12, 10.0, &o->lr);
        else if (!strcmp(a, "--bucket-mb")) rc = cli_double(a, v, 0.001, 4096.0, &o->bucket_mb);
        else {
            fprintf(stderr, "mlpfbench: unknown option '%s' for train (see --help)\n", a);
            return -1;
        }
        if (rc != 0) return -1;
        i++;
    }
    if (!strcmp(o->device, "cpu") && o->precision && strcmp(o->precision, "fp32")) {
        fprintf(stderr, "mlpfbench: --precision %s needs a GPU; the CPU backend computes in fp32\n", o->precision);
        return -1;
    }
    if (!o->precision) o->precision = strcmp(o->device, "cuda") ? "fp32" : "tf32";
    o->allreduce_given = o->allreduce != NULL;
    if (strcmp(o->device, "cuda") && o->allreduce && !strcmp(o->allreduce, "nccl")) {
        fprintf(stderr, "mlpfbench: --allreduce nccl needs --device cuda; the CPU backend reduces with MPI\n");
        return -1;
    }
    if (o->allow_shared_gpu && strcmp(o->device, "cuda")) {
        fprintf(stderr, "mlpfbench: --allow-shared-gpu needs --device cuda\n");
        return -1;
    }
    if (o->allow_shared_gpu && o->allreduce && !strcmp(o->allreduce, "nccl")) {
        fprintf(stderr, "mlpfbench: --allow-shared-gpu with --allreduce nccl: NCCL refuses two ranks on one "
                "GPU; use --allreduce mpi\n");
        return -1;
    }
    return 0;
}

/* The option parser alone, for the fuzzer: 0 ok, 1 help, -1 refused. */
int train_check_options(int argc, char **argv)
{
    train_opts o;
    return parse(argc, argv, &o);
}

/* ------------------------------------------------------------ the report */

/* The report of this run, kept so that a fatal error can still write it. */
static run_summary summary;
static char results_dir[4096];

static void write_failed_report(const char *msg)
{
    if (g_mpi.rank != 0) return;
    summary.error = msg;
    report_write(results_dir, &summary, 0);
}

/* Error found collectively (dataset checks): rank 0 reports the first
 * rank's message that has one. */
static int fail_collectively(void)
{
    char mine[512], *all = g_mpi.rank == 0 ? malloc((size_t)512 * g_mpi.size) : NULL;
    snprintf(mine, sizeof mine, "%s", mlpf_last_error());
    MPI_Gather(mine, 512, MPI_CHAR, all, 512, MPI_CHAR, 0, g_mpi.comm);
    if (g_mpi.rank == 0) {
        const char *msg = "failed (see the messages on stderr)";
        for (int r = 0; r < g_mpi.size; r++)
            if (all[512 * r]) {
                msg = all + 512 * r;
                break;
            }
        write_failed_report(msg);
        free(all);
    }
    return 1;
}

/* ------------------------------------------------------------ one step */

static rank_figures fig;   /* this rank's measurements, for the report */
static long long cur_step; /* for error messages */

/* Sum a loss report over the ranks (each rank's losses are already divided
 * by the global element count). */
static void reduce_report(loss_report *r)
{
    if (g_mpi.size == 1) return;
    MPI_Allreduce(MPI_IN_PLACE, r->loss, LOSS_N, MPI_DOUBLE, MPI_SUM, g_mpi.comm);
    int64_t v[2] = {r->n_rows, r->n_correct};
    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_SUM, g_mpi.comm);
    r->n_rows = v[0];
    r->n_correct = v[1];
}

static void check_loss(const loss_report *r)
{
    for (int k = 1; k < LOSS_N; k++) /* this rank's part, before any reduction */
        if (!isfinite(r->loss[k]))
            mlpf_fatal("step %lld: the %s loss of this rank's events is %g (the model diverged "
                       "or the data overflows float32)", cur_step, LOSS_NAMES[k], r->loss[k]);
}

static void on_grad_ready(void *ctx, size_t watermark, const void *device_event)
{
    (void)device_event; /* the host all-reduce works on finished host memory */
    grad_allreduce_ready(ctx, watermark);
}

/* The backend's cumulative figures, to take differences of around a step. */
typedef struct {
    double kind[PROF_N], phase[3];
} backend_clock;

static backend_clock backend_read(backend *be)
{
    backend_clock c;
    be->ops->time_by_kind(be, c.kind);
    be->ops->phase_seconds(be, c.phase);
    return c;
}

/* How the gradients are summed over the ranks: on the host with MPI
 * (grad_allreduce, the CPU backend), or by the device backend itself
 * (ops->comm_*, cuda/comm.cu: NCCL or MPI staging). */
typedef struct {
    grad_allreduce *host;
    int device; /* the backend's communicator is set up */
} reducer;

static allreduce_stats reducer_stats(backend *be, const reducer *red)
{
    allreduce_stats st = {0};
    if (red->device) be->ops->comm_stats(be, &st);
    else if (red->host) st = grad_allreduce_stats(red->host);
    return st;
}

/* The first half of a step on this rank's part of a global batch: forward,
 * and for training (red not NULL) backward (the all-reduce overlapped with
 * it), the gradient check and the optimizer step. On an asynchronous backend
 * this only enqueues the work: step_end waits for it. */
static void step_begin(backend *be, const mlpf_batch *b, const reducer *red, loss_report *r)
{
    grad_allreduce *ar = red ? red->host : NULL;
    int64_t n_global = b->n_rows;
    if (g_mpi.size > 1) {
        guard_wait_begin(GUARD_COLLECTIVE, "the batch size reduction");
        MPI_Allreduce(MPI_IN_PLACE, &n_global, 1, MPI_INT64_T, MPI_SUM, g_mpi.comm);
        guard_wait_end();
    }
    const int training = red != NULL;
    if (training) {
        be->ops->zero_grad(be);
        if (ar) grad_allreduce_begin(ar);
    }
    double t0 = mlpf_now();
    if (be->ops->forward(be, b, n_global, r) != 0) mlpf_fatal("step %lld: %s", cur_step, be->error);
    if (!r->pending) check_loss(r);
    double t1 = mlpf_now();
    timeline_span(training ? "forward" : "validation forward", TL_MAIN, t0, t1);
    if (!training) return;
    /* with the device's all-reduce, backward launches its buckets: a peer that
     * never joins shows here (NCCL connects at the first collective) */
    if (red->device) guard_wait_begin(GUARD_COLLECTIVE, "backward, launching the gradient all-reduce");
    be->ops->backward(be);
    if (red->device) guard_wait_end();
    double t2 = mlpf_now();
    timeline_span("backward", TL_MAIN, t1, t2);
    guard_wait_begin(GUARD_COLLECTIVE, "the gradient all-reduce");
    if (red->device) be->ops->comm_reduce(be); /* NCCL: enqueued; MPI staging: waits here */
    else grad_allreduce_finish(ar);
    guard_wait_end();
    double t3 = mlpf_now();
    timeline_span("all-reduce wait", TL_MAIN, t2, t3);
    int bad = be->ops->check_grads(be);
    if (bad >= 0)
        mlpf_fatal("step %lld: the gradient of %s is not finite (after the all-reduce)", cur_step,
                   be->layout.t[bad].name);
    be->ops->optimizer_step(be);
    timeline_span("optimizer", TL_MAIN, t3, mlpf_now());
}

/* The second half: wait for the step, check what was pending, sum the
 * report over the ranks. */
static void step_end(backend *be, loss_report *r, int device_comm)
{
    int bad = -1;
    if (device_comm) guard_wait_begin(GUARD_COLLECTIVE, "the step on the GPU, with its gradient all-reduce");
    if (be->ops->finish(be, r, &bad) != 0) mlpf_fatal("step %lld: %s", cur_step, be->error);
    if (device_comm) guard_wait_end();
    check_loss(r);
    if (bad >= 0)
        mlpf_fatal("step %lld: the gradient of %s is not finite (after the all-reduce)", cur_step,
                   be->layout.t[bad].name);
    guard_wait_begin(GUARD_COLLECTIVE, "the loss reduction");
    reduce_report(r);
    guard_wait_end();
}

/* The next batch, its wait watched by the guard. */
static int next_batch(loader *l, mlpf_batch *b, int64_t *ids, int *n_ids, const char *what)
{
    char w[64];
    snprintf(w, sizeof w, "the next %s batch", what);
    guard_wait_begin(GUARD_DATA, w);
    int more = loader_next(l, b, ids, n_ids);
    guard_wait_end();
    return more;
}

/* ------------------------------------------------------------ set-up */

/* All ranks must start from the same weights: compare a checksum. */
static void verify_same_weights(backend *be, float *host)
{
    if (g_mpi.size == 1) return;
    be->ops->get_params(be, host);
    unsigned long crc = crc32(0L, (const Bytef *)host, (uInt)(be->layout.total * sizeof(float)));
    unsigned long lo = crc, hi = crc;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UNSIGNED_LONG, MPI_MIN, g_mpi.comm);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UNSIGNED_LONG, MPI_MAX, g_mpi.comm);
    if (lo != hi) mlpf_fatal("initial weights differ between ranks (CRC-32 %08lx here, range %08lx..%08lx)", crc, lo, hi);
}

static void print_losses(const loss_report *r)
{
    printf("loss %.7g [", r->loss[0]);
    for (int k = 1; k < LOSS_N; k++) printf("%s %.4g%s", LOSS_NAMES[k], r->loss[k], k + 1 < LOSS_N ? " " : "]");
    printf(" acc %.4f", r->n_rows ? (double)r->n_correct / r->n_rows : 0.0);
}

/* The largest batch this rank can get: the B largest events of a split, their
 * elements and LSH bins. */
static void worst_batch(const mlpf_config *c, const dataset_t *ds, int B, int64_t *rows_out, int64_t *bins_out)
{
    int64_t *top = calloc(B, sizeof(int64_t)); /* the B largest sizes, descending */
    for (int s = 0; s < ds->n_shards; s++)
        for (int64_t e = 0; e < ds->shards[s].events; e++) {
            int64_t n = ds->shards[s].offsets[e + 1] - ds->shards[s].offsets[e];
            for (int i = 0; i < B; i++)
                if (n > top[i]) {
                    memmove(top + i + 1, top + i, sizeof(int64_t) * (B - i - 1));
                    top[i] = n;
                    break;
                }
        }
    int64_t rows = 0, bins = 0, S = c->bin_size;
    for (int i = 0; i < B; i++) rows += top[i], bins += (top[i] + S - 1) / S;
    free(top);
    *rows_out = rows;
    *bins_out = bins;
}

/* The shape the activations are planned for: the largest rows and bins of a
 * batch of either split (an upper bound of every batch this rank can get). */
static void worst_shape(const mlpf_config *c, const dataset_t *train, const dataset_t *valid, int B,
                        int64_t *rows, int64_t *bins)
{
    int64_t r1, b1, r2, b2;
    worst_batch(c, train, B, &r1, &b1);
    worst_batch(c, valid, B, &r2, &b2);
    *rows = r1 > r2 ? r1 : r2;
    *bins = b1 > b2 ? b1 : b2;
}

/* Refuse, before training, a run whose model and activations of the worst
 * batch cannot fit in the memory of this rank's device (the host's memory
 * shared among the node's ranks on the CPU, the GPU's free memory), then
 * allocate the activations for it (no step allocates). */
static int reserve_memory(backend *be, int64_t rows, int64_t bins, int B, int gpu_sharers)
{
    const int gpu = !strcmp(be->device, "cuda");
    double need = be->ops->bytes_for(be, rows, bins, B), avail = be->ops->bytes_free(be);
    double share = gpu ? avail / (gpu_sharers > 1 ? gpu_sharers : 1) : avail / (g_mpi.local_size > 0 ? g_mpi.local_size : 1);
    if (avail > 0 && need > 0.9 * share) {
        if (gpu)
            mlpf_errorf("not enough GPU memory: a batch of %d events needs %.0f MiB on %s (model, optimizer "
                        "and activations of the largest events), %.0f MiB is free there; use a smaller "
                        "--batch-size", B, need / 1048576.0, be->description, share / 1048576.0);
        else
            mlpf_errorf("not enough memory: a batch of %d events needs %.0f MiB on each rank (model, "
                        "optimizer and activations of the largest events), %.0f MiB is available to "
                        "each of the %d rank(s) on %s; use a smaller --batch-size or more nodes",
                        B, need / 1048576.0, share / 1048576.0, g_mpi.local_size, g_mpi.host);
        return 1;
    }
    if (be->ops->reserve(be, rows, bins, B) == 0) return 0;
    mlpf_errorf("%s (the largest batch of the dataset); use a smaller --batch-size", be->error);
    return 1;
}

/* Progress on rank 0: a bar on a terminal, else a line every few seconds. */
typedef struct {
    int tty;
    double every, last;
} progress_t;

static void progress(progress_t *p, long long ep, long long epochs, long long step, long long total,
                     const loss_report *r, double ev_s, double eta, int last)
{
    double t = mlpf_now();
    if (p->tty && p->every < 0) {
        int width = 30, done = (int)(width * step / (total ? total : 1));
        printf("\r epoch %lld/%lld [", ep, epochs);
        for (int i = 0; i < width; i++) putchar(i < done ? '#' : '.');
        printf("] step %lld/%lld %.2f ev/s loss %.4f ETA %02d:%02d:%02d ", step, total, ev_s, r->loss[0],
               (int)(eta / 3600), (int)(eta / 60) % 60, (int)eta % 60);
        if (last) putchar('\n');
        fflush(stdout);
        return;
    }
    double every = p->every < 0 ? 10.0 : p->every;
    if (!last && step > 1 && t - p->last < every) return;
    p->last = t;
    printf("epoch %lld step %lld/%lld ", ep, step, total);
    print_losses(r);
    printf(" %.2f ev/s ETA %.0f s\n", ev_s, eta);
    fflush(stdout);
}

/* ------------------------------------------------------------ the run */

/* Everything a run holds, for the phases below. */
typedef struct {
    train_opts o;
    mlpf_config cfg;
    binding_info bi;
    int threads, root;
    dataset_t train, valid;
    int have_train, have_valid;
    backend be;
    int have_backend;
    float *host_params; /* host copies, for checkpoints and checks */
    adam_state host_opt;
    checkpoint_header ck;
    reducer red;
    const char *transport; /* "mpi (host)", "nccl", "mpi (pinned host staging)" */
    int gpu;               /* this rank's CUDA device */
    int gpu_sharers;       /* local ranks on that GPU (1 unless --allow-shared-gpu) */
    gpu_placement place;
    gpu_info gi;
    gpumon *mon;           /* NVML sampling of this rank's GPU during training */
    char mon_note[160];    /* why not */
    loader *lt, *lv;
    long long steps_per_epoch, total_steps;
} run_t;

static void run_free(run_t *r)
{
    guard_watch(NULL, NULL, NULL, NULL); /* the communicator goes with the backend */
    if (r->mon) gpumon_stop(r->mon, &fig.gpu);
    loader_free(r->lt);
    loader_free(r->lv);
    grad_allreduce_free(r->red.host);
    if (r->have_backend) backend_destroy(&r->be);
    adam_free(&r->host_opt);
    free(r->host_params);
    if (r->have_train) dataset_close(&r->train);
    if (r->have_valid) dataset_close(&r->valid);
    free(summary.ranks);
    free(summary.epoch_time);
    free(summary.throughput);
    free(summary.val_acc);
    free(summary.val_loss);
}

/* The report's skeleton first (every failure from here on is reported), the
 * guard, this rank's binding and threads. */
static int setup_run(run_t *r, int argc, char **argv)
{
    static char cmdline[8192];
    int off = snprintf(cmdline, sizeof cmdline, "mlpfbench");
    for (int i = 0; i < argc && off < (int)sizeof cmdline - 1; i++)
        off += snprintf(cmdline + off, sizeof cmdline - off, " %s", argv[i]);
    snprintf(results_dir, sizeof results_dir, "%s", r->o.results);
    summary = (run_summary){.command_line = cmdline, .preset = r->o.preset, .device = r->o.device,
                            .precision = r->o.precision, .data_dir = r->o.data, .bind = r->o.bind,
                            .world_size = g_mpi.size, .batch_per_rank = r->o.batch_size,
                            .seed = r->o.seed, .bucket_mib = r->o.bucket_mb};
    report_timestamp(summary.train_start, sizeof summary.train_start);
    mlpf_set_fatal_hook(write_failed_report);
    guard_start(r->o.timeout, r->o.data_timeout, r->o.collective_timeout, write_failed_report);
    mlpf_config_preset(r->o.preset, &r->cfg);
    if (r->o.lr > 0) r->cfg.lr = (float)r->o.lr;
    return 0;
}

/* The GPU of this rank (include/gpuplace.h), refused when two ranks of the
 * node would share one unless --allow-shared-gpu; then the cores nearest it
 * (or, on the CPU, the rank's share of the node's cores) and the threads. */
static int choose_device(run_t *r)
{
    r->gpu = 0;
    char **node_pci = NULL, *pci = NULL;
    if (!strcmp(r->o.device, "cuda")) {
        char err[512];
        int bad = 0, n = gpu_device_count(err, sizeof err);
        if (n < 0) {
            mlpf_errorf("rank %d (%s): --device cuda: %s", g_mpi.rank, g_mpi.host, err);
            bad = 1;
        } else if (gpuplace_choose(g_mpi.local_rank, g_mpi.local_size, n, r->o.allow_shared_gpu, &r->place, err,
                                   sizeof err) != 0) {
            mlpf_errorf("rank %d (%s): --device cuda: %s", g_mpi.rank, g_mpi.host, err);
            bad = 1;
        } else if (gpu_describe(r->place.device, &r->gi, err, sizeof err) != 0) {
            mlpf_errorf("rank %d (%s): --device cuda: GPU %d: %s", g_mpi.rank, g_mpi.host, r->place.device, err);
            bad = 1;
        }
        if (mpictx_any(bad)) return 1;
        r->gpu = r->place.device;
        /* the node's GPUs, by local rank: one rank each unless allowed */
        const int L = g_mpi.local_size;
        const size_t U = sizeof r->gi.uuid, P = sizeof r->gi.pci_bus_id;
        char *uu = calloc((size_t)L, U);
        pci = calloc((size_t)L, P);
        node_pci = calloc((size_t)L, sizeof *node_pci);
        MPI_Allgather(r->gi.uuid, (int)U, MPI_CHAR, uu, (int)U, MPI_CHAR, g_mpi.node_comm);
        MPI_Allgather(r->gi.pci_bus_id, (int)P, MPI_CHAR, pci, (int)P, MPI_CHAR, g_mpi.node_comm);
        for (int k = 0; k < L; k++) node_pci[k] = pci + (size_t)k * P;
        int a = -1, b = -1, shared = gpuplace_find_shared(uu, L, U, &a, &b);
        r->gpu_sharers = 0;
        for (int k = 0; k < L; k++) r->gpu_sharers += !strncmp(uu + (size_t)k * U, r->gi.uuid, U);
        if (shared && !r->o.allow_shared_gpu) {
            if (g_mpi.local_rank == b)
                mlpf_errorf("--device cuda: local ranks %d and %d on %s share GPU %s (%s, %s): start one rank per "
                            "GPU (mpirun -np = the node's GPUs, or srun --gpus-per-task 1), or pass "
                            "--allow-shared-gpu to measure the sharing", a, b, g_mpi.host, r->gi.uuid, r->gi.name,
                            r->gi.pci_bus_id);
            bad = 1;
        }
        free(uu);
        if (mpictx_any(bad)) {
            free(pci);
            free(node_pci);
            return 1;
        }
        if (shared && !r->o.allreduce) r->o.allreduce = "mpi"; /* NCCL refuses two ranks on one GPU */
        if (!r->o.allreduce) r->o.allreduce = "nccl";
    }
    if (!r->o.allreduce) r->o.allreduce = "mpi";
    const int apply = !strcmp(r->o.bind, "auto");
    int rc = node_pci ? binding_setup_gpu(g_mpi.local_rank, g_mpi.local_size, (const char *const *)node_pci, apply, &r->bi)
                      : binding_setup(g_mpi.local_rank, g_mpi.local_size, apply, &r->bi);
    free(pci);
    if (mpictx_any(rc != 0)) {
        free(node_pci);
        return 1;
    }
    r->threads = (int)r->o.threads;
    if (r->threads <= 0) {
        r->threads = r->bi.bound || node_pci ? r->bi.n_bound_cores
                                             : r->bi.n_cores / (g_mpi.local_size > 0 ? g_mpi.local_size : 1);
        if (r->threads < 1) r->threads = 1;
    }
    free(node_pci);
    omp_set_num_threads(r->threads);
    openblas_set_num_threads(r->threads);
    summary.threads_per_rank = r->threads;
    return 0;
}

static int open_data(run_t *r)
{
    if (dataset_open(&r->train, r->o.data, "train", g_mpi.comm) != 0) return fail_collectively();
    r->have_train = 1;
    if (dataset_open(&r->valid, r->o.data, "valid", g_mpi.comm) != 0) return fail_collectively();
    r->have_valid = 1;
    summary.train_events = r->train.events;
    summary.valid_events = r->valid.events;
    if (r->train.events < g_mpi.size) {
        if (r->root)
            mlpf_errorf("dataset %s has %lld training events, fewer than the %d ranks", r->o.data,
                        (long long)r->train.events, g_mpi.size);
        return fail_collectively();
    }
    return 0;
}

/* The backend, the host copies of its state, and on a GPU the self-check. */
static int create_backend(run_t *r, int gpu)
{
    backend_opts bo = {.device = r->o.device, .precision = r->o.precision, .gpu = gpu};
    char err[600];
    int bad = backend_create(&r->be, &bo, &r->cfg, (uint64_t)r->o.seed, err, sizeof err) != 0;
    if (bad) mlpf_errorf("%s", err);
    else r->have_backend = 1;
    if (mpictx_any(bad)) return fail_collectively();
    summary.n_params = (int64_t)r->be.layout.total;
    summary.device_description = r->be.description;
    summary.gpu_uuid = r->be.gpu_uuid;
    summary.gpu_pci = r->be.gpu_pci;
    summary.emulated = r->be.emulated;
    r->host_params = malloc(r->be.layout.total * sizeof(float));
    if (!r->host_params || adam_init(&r->host_opt, r->be.layout.total) != 0)
        mlpf_fatal("cannot allocate the host copies of the model (%s)", r->cfg.preset);
    if (r->root && r->be.emulated)
        printf("mlpfbench: %s: the CUDA kernels run on the CPU through the host execution path of the "
               "tests; nothing this run measures is a GPU figure\n", r->be.description);
    if (strcmp(r->be.device, "cuda")) return 0;
    selfcheck_result *sc = &summary.self_check;
    if (r->o.skip_self_check) {
        snprintf(sc->message, sizeof sc->message, "self-check skipped (--skip-self-check)");
        if (r->root) printf("  %s\n", sc->message);
        return 0;
    }
    bad = selfcheck_run(&r->be, (uint64_t)r->o.seed, sc) != 0 || !sc->passed;
    if (r->root) printf("  %s (%.1f s)\n", sc->message, sc->seconds);
    if (bad) mlpf_errorf("%s", sc->message);
    if (mpictx_any(bad)) return fail_collectively();
    return 0;
}

static int watch_poll(void *ctx, char *why, size_t n)
{
    backend *be = ctx;
    return be->ops->comm_error(be, why, n);
}

static void watch_abort(void *ctx)
{
    backend *be = ctx;
    be->ops->comm_abort(be);
}

/* The device backend's gradient all-reduce: NCCL (rank 0 makes the unique
 * id, every rank gets it over MPI) or the MPI staging transport; watched by
 * the run guard from then on. */
static int setup_device_comm(run_t *r)
{
    backend *be = &r->be;
    const int nccl = !strcmp(r->o.allreduce, "nccl");
    unsigned char id[512] = {0};
    int bad = 0;
    if (nccl && r->root && be->ops->comm_id(be, id, sizeof id) < 0) {
        mlpf_errorf("rank 0 (%s): --allreduce nccl: %s", g_mpi.host, be->error);
        bad = 1;
    }
    if (mpictx_any(bad)) return fail_collectively();
    if (nccl) MPI_Bcast(id, (int)sizeof id, MPI_BYTE, 0, g_mpi.comm);
    comm_opts co = {.transport = r->o.allreduce, .rank = g_mpi.rank, .size = g_mpi.size, .mpi_comm = &g_mpi.comm,
                    .nccl_id = id, .bucket_bytes = (size_t)(r->o.bucket_mb * 1048576.0),
                    .init_timeout_s = r->o.collective_timeout};
    guard_wait_begin(GUARD_COLLECTIVE, nccl ? "the NCCL communicator's set-up" : "the staging transport's set-up");
    bad = be->ops->comm_init(be, &co) != 0;
    guard_wait_end();
    if (bad) mlpf_errorf("rank %d (%s): --allreduce %s: %s", g_mpi.rank, g_mpi.host, r->o.allreduce, be->error);
    if (mpictx_any(bad)) return fail_collectively();
    r->red.device = 1;
    r->transport = nccl ? "nccl" : "mpi, staged through pinned host memory";
    static char dev[200];
    snprintf(dev, sizeof dev, "GPU %d (%.80s, %.32s)", r->gpu, r->gi.name, r->gi.pci_bus_id);
    guard_watch(watch_poll, watch_abort, be, dev);
    if (r->root)
        printf("  gradient all-reduce: %s, buckets of %g MiB on a communication stream\n", r->transport,
               r->o.bucket_mb);
    return 0;
}

/* resume: rank 0 reads and checks the checkpoint, every rank gets it */
static int resume(run_t *r)
{
    if (!r->o.resume) return 0;
    const train_opts *o = &r->o;
    checkpoint_header *ck = &r->ck;
    int bad = r->root ? checkpoint_read(o->resume, r->cfg.preset, (int64_t)r->be.layout.total, ck,
                                        r->host_params, &r->host_opt)
                      : 0;
    if (!bad && r->root && ck->world_size * ck->batch_per_rank != g_mpi.size * o->batch_size) {
        mlpf_errorf("checkpoint %s was written with a global batch of %lld (%lld ranks x %lld); "
                    "resume with the same global batch", o->resume,
                    (long long)(ck->world_size * ck->batch_per_rank), (long long)ck->world_size,
                    (long long)ck->batch_per_rank);
        bad = 1;
    }
    if (!bad && r->root && ck->seed != o->seed) {
        mlpf_errorf("checkpoint %s was written with --seed %lld; resume with the same seed", o->resume,
                    (long long)ck->seed);
        bad = 1;
    }
    if (mpictx_any(bad)) return fail_collectively();
    const int n = (int)r->be.layout.total;
    MPI_Bcast(ck, (int)sizeof *ck, MPI_BYTE, 0, g_mpi.comm);
    MPI_Bcast(r->host_params, n, MPI_FLOAT, 0, g_mpi.comm);
    MPI_Bcast(r->host_opt.m, n, MPI_FLOAT, 0, g_mpi.comm);
    MPI_Bcast(r->host_opt.v, n, MPI_FLOAT, 0, g_mpi.comm);
    r->be.ops->set_params(&r->be, r->host_params);
    r->be.ops->set_adam(&r->be, r->host_opt.m, r->host_opt.v, ck->adam_step);
    if (r->root)
        printf("  resuming from %s: epoch %lld, step %lld of it, %lld steps done\n", o->resume,
               (long long)ck->epoch + 1, (long long)ck->step_in_epoch, (long long)ck->steps_done);
    return 0;
}

static void write_checkpoint(run_t *r, const char *path, long long step, long long ep, long long sie)
{
    checkpoint_header h = {.n_params = (int64_t)r->be.layout.total, .steps_done = step, .epoch = ep,
                           .step_in_epoch = sie, .seed = r->o.seed, .world_size = g_mpi.size,
                           .batch_per_rank = r->o.batch_size};
    snprintf(h.preset, sizeof h.preset, "%s", r->cfg.preset);
    int bad = 0;
    if (r->root) {
        r->be.ops->get_params(&r->be, r->host_params);
        r->be.ops->get_adam(&r->be, r->host_opt.m, r->host_opt.v, &r->host_opt.step);
        h.adam_step = r->host_opt.step;
        bad = checkpoint_write(path, &h, r->host_params, &r->host_opt);
    }
    if (mpictx_any(bad)) mlpf_fatal("step %lld: cannot write the checkpoint %s", step, path);
}

static void print_setup(const run_t *r)
{
    if (r->root) {
        printf("mlpfbench train: preset %s, %zu trainable parameters, %s (%s, %s)\n", r->cfg.preset,
               r->be.layout.total, r->be.device, r->be.description, r->be.precision);
        printf("  data %s: %lld training events (%lld elements), %lld validation events\n", r->o.data,
               (long long)r->train.events, (long long)r->train.elements, (long long)r->valid.events);
        printf("  %d rank(s) x batch %lld = global batch %lld, %lld steps/epoch, %lld epoch(s), "
               "%d threads/rank, lr %g, seed %lld%s\n",
               g_mpi.size, r->o.batch_size, r->o.batch_size * g_mpi.size, r->steps_per_epoch, r->o.epochs,
               r->threads, r->cfg.lr, r->o.seed, g_mpi.threads_ok ? "" : " (no prefetch: MPI lacks thread support)");
    }
    /* every rank's actual binding, gathered to rank 0 */
    char *all = r->root ? malloc((size_t)g_mpi.size * 320) : NULL;
    char mine[320];
    if (!strcmp(r->be.device, "cuda"))
        snprintf(mine, sizeof mine, "%.60s:%.120s GPU %d %.32s", g_mpi.host, r->bi.cpus[0] ? r->bi.cpus : "?", r->gpu,
                 r->gi.pci_bus_id);
    else
        snprintf(mine, sizeof mine, "%.60s:%.250s", g_mpi.host, r->bi.cpus[0] ? r->bi.cpus : "?");
    MPI_Gather(mine, 320, MPI_CHAR, all, 320, MPI_CHAR, 0, g_mpi.comm);
    if (r->root) {
        printf("  binding (%s):", r->o.bind);
        for (int k = 0; k < g_mpi.size && k < 16; k++)
            printf(" rank %d %s%s", k, all + k * 320, k + 1 < g_mpi.size ? "," : "");
        printf("%s\n", g_mpi.size > 16 ? " ..." : "");
        fflush(stdout);
        free(all);
    }
}

/* Validation after an epoch: forward only, all validation events. */
static void validate(run_t *r, int64_t *ids, loss_report *tot)
{
    loader_begin_epoch(r->lv, 0);
    memset(tot, 0, sizeof *tot);
    mlpf_batch b;
    int n_ids;
    while (next_batch(r->lv, &b, ids, &n_ids, "validation")) {
        loss_report lr;
        step_begin(&r->be, &b, NULL, &lr);
        step_end(&r->be, &lr, 0);
        /* lr is normalised by this global batch's count: weight it back */
        for (int k = 0; k < LOSS_N; k++) tot->loss[k] += lr.loss[k] * lr.n_rows;
        tot->n_rows += lr.n_rows;
        tot->n_correct += lr.n_correct;
        batch_free(&b);
        guard_progress("a validation batch");
    }
    for (int k = 0; k < LOSS_N; k++) tot->loss[k] /= tot->n_rows > 0 ? tot->n_rows : 1;
}

/* The epochs. Returns the number of steps done. */
static long long train_epochs(run_t *r)
{
    const train_opts *o = &r->o;
    backend *be = &r->be;
    if (o->timeline) timeline_start(g_mpi.comm);
    /* a bar only on a real terminal: launchers (mpirun's pseudo-terminal, srun,
     * batch jobs) get plain lines */
    progress_t prog = {.tty = isatty(STDOUT_FILENO) && !g_mpi.launched, .every = o->log_every};
    int64_t *ids = malloc(sizeof(int64_t) * o->batch_size), *ids_next = malloc(sizeof(int64_t) * o->batch_size);
    long long step = r->ck.steps_done, events_done = 0;
    char ckpt_path[4200];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.bin", o->results);
    if (o->checkpoint) snprintf(ckpt_path, sizeof ckpt_path, "%s", o->checkpoint);
    if (o->checkpoint_every > 0 && r->root) mkdir(o->results, 0755);
    int64_t elements_done = 0;
    loader_stats ls_warm = {0}; /* figures at the end of the warm-up steps */
    allreduce_stats as_warm = {0};
    /* --epochs 1: the throughput after the warm-up steps is the score */
    const long long score_warm = o->warmup_steps > 0 ? o->warmup_steps : ONE_EPOCH_WARMUP;
    double t_score = 0;
    long long ev_score = 0;
    double t_start = mlpf_now();
    for (long long ep = r->ck.epoch; ep < o->epochs && step < r->total_steps; ep++) {
        long long sie = ep == r->ck.epoch ? r->ck.step_in_epoch : 0; /* steps done in this epoch */
        loader_begin_epoch_at(r->lt, (int)ep, sie);
        mlpf_batch b, nb;
        int n_ids, n_next;
        double t_ep = mlpf_now();
        long long ev_ep = 0;
        int have = next_batch(r->lt, &b, ids, &n_ids, "training");
        if (have && be->ops->stage) be->ops->stage(be, &b);
        while (step < r->total_steps && have) {
            double t0 = mlpf_now();
            loss_report lr;
            cur_step = step + 1;
            if (failpoint("stall-step", cur_step, g_mpi.rank)) failpoint_stall();
            backend_clock c0 = backend_read(be);
            step_begin(be, &b, &r->red, &lr);
            /* the next batch while this step runs (the device copies it now) */
            int have_next = step + 1 < r->total_steps && next_batch(r->lt, &nb, ids_next, &n_next, "training");
            if (have_next && be->ops->stage) be->ops->stage(be, &nb);
            step_end(be, &lr, r->red.device);
            backend_clock c1 = backend_read(be);
            for (int k = 1; k < PROF_N; k++) fig.kind_s[k] += c1.kind[k] - c0.kind[k];
            fig.forward_s += c1.phase[0] - c0.phase[0];
            fig.backward_s += c1.phase[1] - c0.phase[1];
            fig.optimizer_s += c1.phase[2] - c0.phase[2];
            long long n_ev = n_ids;
            guard_wait_begin(GUARD_COLLECTIVE, "the event count reduction");
            if (g_mpi.size > 1) MPI_Allreduce(MPI_IN_PLACE, &n_ev, 1, MPI_LONG_LONG, MPI_SUM, g_mpi.comm);
            guard_wait_end();
            double dt = mlpf_now() - t0;
            fig.step_s += dt;
            fig.steps++;
            fig.events += n_ids;
            fig.elements += b.n_rows;
            step++;
            if (step - r->ck.steps_done == o->warmup_steps) { /* the steady state starts here */
                rank_figures zero = {0};
                fig = zero;
                fig.warmup_steps = o->warmup_steps;
                if (r->mon) gpumon_mark(r->mon); /* the energy window starts with the measured steps */
                ls_warm = loader_get_stats(r->lt);
                as_warm = reducer_stats(be, &r->red);
            }
            if (ep == 0 && sie + 1 > score_warm) { /* one epoch: after its warm-up */
                t_score += dt;
                ev_score += n_ev;
            }
            events_done += n_ev;
            elements_done += lr.n_rows;
            ev_ep += n_ev;
            if (r->root) {
                double rate = events_done / (mlpf_now() - t_start);
                double eta = (mlpf_now() - t_start) / (step - r->ck.steps_done) * (r->total_steps - step);
                progress(&prog, ep + 1, o->epochs, step, r->total_steps, &lr, rate, eta, step == r->total_steps);
            }
            batch_free(&b);
            b = nb;
            memcpy(ids, ids_next, sizeof(int64_t) * o->batch_size);
            n_ids = n_next;
            have = have_next;
            sie++;
            if (o->checkpoint_every > 0 && step % o->checkpoint_every == 0) write_checkpoint(r, ckpt_path, step, ep, sie);
            char where[64];
            snprintf(where, sizeof where, "step %lld", step);
            guard_progress(where);
        }
        if (have) batch_free(&b);
        loader_drain(r->lt); /* a prefetch in flight when --max-steps ends the epoch */
        double ep_time = mlpf_now() - t_ep;
        loss_report tot;
        validate(r, ids, &tot);
        summary.epoch_time[ep] = ep_time;
        summary.throughput[ep] = ev_ep / ep_time;
        summary.val_acc[ep] = tot.n_rows ? (double)tot.n_correct / tot.n_rows : 0.0;
        memcpy(summary.val_loss[ep], tot.loss, sizeof tot.loss);
        summary.epochs = (int)ep + 1;
        if (r->root) {
            if (prog.tty && prog.every < 0 && step != r->total_steps) putchar('\n'); /* end the bar */
            printf("validation epoch %lld: ", ep + 1);
            print_losses(&tot);
            printf(" (%lld elements); epoch time %.1f s, %.3f events/s\n", (long long)tot.n_rows,
                   ep_time, ev_ep / ep_time);
            fflush(stdout);
        }
    }
    double elapsed = mlpf_now() - t_start;
    if (summary.epochs == 1 && t_score > 0) { /* the one-epoch score (ranks agree: same steps) */
        MPI_Allreduce(MPI_IN_PLACE, &t_score, 1, MPI_DOUBLE, MPI_MAX, g_mpi.comm);
        summary.score_warmup_steps = score_warm;
        summary.score_events = ev_score;
        summary.score_seconds = t_score;
    }
    report_timestamp(summary.train_stop, sizeof summary.train_stop);
    summary.train_time = elapsed;
    summary.train_events_seen = events_done;
    summary.train_elements_seen = elements_done;
    summary.flops_per_element = 3.0 * model_flops_per_element(&r->cfg); /* forward + backward */
    summary.flops_per_event = summary.flops_per_element * (events_done ? (double)elements_done / events_done : 0.0);
    summary.achieved_flops = summary.flops_per_element * elements_done / elapsed;
    /* this rank's figures, the steady state only (--warmup-steps) */
    loader_stats ls = loader_get_stats(r->lt);
    allreduce_stats as = reducer_stats(be, &r->red);
    ls.wait_s -= ls_warm.wait_s;
    ls.read_s -= ls_warm.read_s;
    ls.bytes -= ls_warm.bytes;
    as.total_s -= as_warm.total_s;
    as.exposed_s -= as_warm.exposed_s;
    as.bytes -= as_warm.bytes;
    as.steps -= as_warm.steps;
    as.buckets -= as_warm.buckets;
    fig.data_wait_s = ls.wait_s;
    fig.read_s = ls.read_s;
    fig.bytes_read = ls.bytes;
    fig.allreduce_s = as.total_s;
    fig.allreduce_exposed_s = as.exposed_s;
    if (r->root) {
        printf("done: %lld steps, %lld events in %.1f s, %.3f events/s; rank 0 read %.1f MiB in "
               "%.2f s, waited %.2f s for data; activations %.0f MiB\n",
               step, events_done, elapsed, events_done / elapsed, ls.bytes / 1048576.0, ls.read_s,
               ls.wait_s, be->ops->activation_bytes(be) / 1048576.0);
        printf("time by kind of work (rank 0, training steps):");
        for (int k = 1; k < PROF_N; k++) printf(" %s %.2f s,", PROF_NAMES[k], fig.kind_s[k]);
        printf(" optimizer %.2f s, data wait %.2f s, all-reduce exposed %.2f s; step time %.2f s\n",
               fig.optimizer_s, fig.data_wait_s, fig.allreduce_exposed_s, fig.step_s);
        if (g_mpi.size > 1 && as.steps > 0)
            printf("gradient all-reduce (rank 0, %s): %lld steps x %lld buckets of %g MiB, %.3f s per "
                   "step, %.3f s exposed (%.0f%% hidden), busbw %.2f GB/s\n", r->transport,
                   (long long)as.steps, (long long)(as.buckets / as.steps), o->bucket_mb,
                   as.total_s / as.steps, as.exposed_s / as.steps,
                   as.total_s > 0 && as.exposed_s < as.total_s ? 100.0 * (1.0 - as.exposed_s / as.total_s) : 0.0,
                   allreduce_busbw((double)as.bytes, as.total_s, g_mpi.size) / 1e9);
    }
    free(ids);
    free(ids_next);
    return step;
}

/* This rank's figures gathered to rank 0, the weights, the summary. */
static int finish_run(run_t *r)
{
    fig.rank = g_mpi.rank;
    fig.local_rank = g_mpi.local_rank;
    if (!strcmp(r->be.device, "cuda")) {
        fig.gpu_device = r->gpu;
        snprintf(fig.gpu_name, sizeof fig.gpu_name, "%.95s", r->gi.name);
        snprintf(fig.gpu_uuid, sizeof fig.gpu_uuid, "%.47s", r->be.gpu_uuid);
        snprintf(fig.gpu_pci, sizeof fig.gpu_pci, "%.23s", r->be.gpu_pci);
    }
    fig.threads = r->threads;
    snprintf(fig.host, sizeof fig.host, "%.63s", g_mpi.host);
    snprintf(fig.cpus, sizeof fig.cpus, "%.127s", r->bi.cpus);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fig.peak_rss_mib = ru.ru_maxrss / 1024.0;
    fig.activation_mib = r->be.ops->activation_bytes(&r->be) / 1048576.0;
    summary.ranks = r->root ? calloc(g_mpi.size, sizeof(rank_figures)) : NULL;
    MPI_Gather(&fig, (int)sizeof fig, MPI_BYTE, summary.ranks, (int)sizeof fig, MPI_BYTE, 0, g_mpi.comm);
    int rc = 0;
    if (r->o.timeline && timeline_write(r->o.timeline, g_mpi.comm, g_mpi.host) != 0) rc = 1;
    if (r->root && r->o.save_weights) { /* temporary file, then rename: never half-written */
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", r->o.save_weights);
        r->be.ops->get_params(&r->be, r->host_params);
        FILE *f = fopen(tmp, "wb");
        if (!f || fwrite(r->host_params, sizeof(float), r->be.layout.total, f) != r->be.layout.total ||
            fclose(f) != 0 || rename(tmp, r->o.save_weights) != 0) {
            fprintf(stderr, "mlpfbench: cannot write %s\n", r->o.save_weights);
            rc = 1;
        }
    }
    guard_stop();
    mlpf_set_fatal_hook(NULL);
    if (r->root && report_write(results_dir, &summary, 1) != 0) rc = 1;
    return rc;
}

int cmd_train(int argc, char **argv)
{
    run_t r = {0};
    int prc = parse(argc, argv, &r.o);
    if (prc != 0) return prc > 0 ? 0 : 2;
    r.root = g_mpi.rank == 0;
    if (setup_run(&r, argc, argv) != 0) {
        run_free(&r);
        return 1;
    }
    if (choose_device(&r) != 0) { /* refused like a bad option, with a failed summary */
        fail_collectively();
        run_free(&r);
        return 2;
    }
    if (open_data(&r) != 0 || create_backend(&r, r.gpu) != 0) {
        run_free(&r);
        return 1;
    }
    const train_opts *o = &r.o;
    int64_t worst_rows, worst_bins;
    worst_shape(&r.cfg, &r.train, &r.valid, (int)o->batch_size, &worst_rows, &worst_bins);
    if (mpictx_any(reserve_memory(&r.be, worst_rows, worst_bins, (int)o->batch_size, r.gpu_sharers)) || resume(&r) != 0) {
        fail_collectively();
        run_free(&r);
        return 1;
    }
    verify_same_weights(&r.be, r.host_params);
    if (r.be.ops->comm_init && (g_mpi.size > 1 || o->allreduce_given)) {
        if (setup_device_comm(&r) != 0) {
            run_free(&r);
            return 1;
        }
    } else {
        r.transport = "mpi";
        r.red.host = grad_allreduce_create(r.be.grads_host, r.be.layout.total, (size_t)(o->bucket_mb * 1048576.0),
                                           g_mpi.comm);
        r.be.grad_ready = on_grad_ready;
        r.be.grad_ready_ctx = r.red.host;
    }
    int prefetch = g_mpi.threads_ok;
    r.lt = loader_create(&r.train, (int)o->batch_size, g_mpi.rank, g_mpi.size, (uint64_t)o->seed, 1, prefetch);
    r.lv = loader_create(&r.valid, (int)o->batch_size, g_mpi.rank, g_mpi.size, (uint64_t)o->seed, 0, prefetch);
    r.steps_per_epoch = loader_steps(r.lt);
    r.total_steps = r.steps_per_epoch * o->epochs;
    if (o->max_steps > 0 && o->max_steps < r.total_steps) r.total_steps = o->max_steps;
    const long long todo = r.total_steps - r.ck.steps_done;
    int bad = 0;
    if (o->warmup_steps > 0 && todo > 0 && o->warmup_steps >= todo) {
        if (r.root) /* the same on every rank */
            mlpf_errorf("--warmup-steps %lld leaves none of the %lld steps of this run to measure",
                        o->warmup_steps, todo);
        bad = 1;
    } else if (r.total_steps <= r.steps_per_epoch && !o->resume) {
        /* it ends within epoch 1: scored on the steps after the warm-up */
        const long long warm = o->warmup_steps > 0 ? o->warmup_steps : ONE_EPOCH_WARMUP;
        if (r.total_steps <= warm) {
            if (r.root)
                mlpf_errorf("a run that ends within epoch 1 is scored on the steps after its first %lld warm-up "
                            "step(s), and this run has %lld step(s): give it at least %lld steps (--max-steps, more "
                            "training events, a smaller --batch-size, or --epochs 2)", warm, r.total_steps, warm + 1);
            bad = 1;
        }
    }
    if (bad) {
        fail_collectively();
        run_free(&r);
        return 1;
    }
    summary.steps_per_epoch = r.steps_per_epoch;
    summary.epoch_time = calloc(o->epochs, sizeof(double));
    summary.throughput = calloc(o->epochs, sizeof(double));
    summary.val_acc = calloc(o->epochs, sizeof(double));
    summary.val_loss = calloc(o->epochs, sizeof *summary.val_loss);
    summary.allreduce = r.transport;
    print_setup(&r);
    if (!strcmp(r.be.device, "cuda")) { /* NVML, loaded now: power, energy, clocks of the training window */
        char err[160];
        r.mon = gpumon_start(r.gi.pci_bus_id, r.gi.uuid, 10.0, err, sizeof err);
        if (!r.mon) {
            snprintf(r.mon_note, sizeof r.mon_note, "%s", err);
            if (r.root) printf("  GPU power and energy not measured: %s\n", err);
        }
    }
    train_epochs(&r);
    if (r.mon) gpumon_stop(r.mon, &fig.gpu);
    else snprintf(fig.gpu.note, sizeof fig.gpu.note, "%s", r.mon_note);
    r.mon = NULL;
    int rc = finish_run(&r);
    run_free(&r);
    return rc;
}
