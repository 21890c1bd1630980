/* mlpfbench train: data-parallel training on a dataset of HDF5 shards. */
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

#include "clock.h"
#include "allreduce.h"
#include "batch.h"
#include "binding.h"
#include "checkpoint.h"
#include "cli.h"
#include "config.h"
#include "dataset.h"
#include "failpoint.h"
#include "gpu.h"
#include "guard.h"
#include "loader.h"
#include "model.h"
#include "prof.h"
#include "mpictx.h"
#include "optim.h"
#include "report.h"
#include "timeline.h"

/* Fusion bucket size: see docs/benchmarks.md for the measurement behind it. */
#define DEFAULT_BUCKET_MB 4.0

typedef struct {
    const char *preset, *data, *save_weights, *bind, *timeline, *results, *device, *precision;
    const char *checkpoint, *resume;
    long long batch_size, epochs, max_steps, warmup_steps, seed, threads, checkpoint_every;
    double lr, bucket_mb, log_every, timeout, data_timeout, collective_timeout;
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
            "  --device cpu|cuda   compute device (default cpu; training on the GPU is not\n"
            "                      written yet: cuda says why it cannot run)\n"
            "  --precision P       fp32 (the CPU backend's only precision; tf32, bf16 on GPUs)\n"
            "  --log-every S       progress: a line every S seconds (0: every step); default:\n"
            "                      a progress bar on a terminal, a line every 10 s otherwise\n"
            "  --preset NAME       model preset: %s (default hepscore22)\n"
            "  --batch-size B      events per step on each rank (default 4)\n"
            "  --epochs E          passes over the training events (default 2; the score is\n"
            "                      the mean over epochs 2..E, epoch 1 being warm-up)\n"
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
            "  --resume FILE       continue from a checkpoint (same preset and global batch):\n"
            "                      the final weights equal those of an uninterrupted run\n"
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
            "  -h, --help          this help\n",
            mlpf_config_preset_names(), DEFAULT_BUCKET_MB);
}


static int parse(int argc, char **argv, train_opts *o)
{
    *o = (train_opts){.preset = "hepscore22", .data = "data/default", .batch_size = 4,
                      .epochs = 2, .max_steps = 0, .seed = 42, .threads = 0, .lr = 0,
                      .bucket_mb = DEFAULT_BUCKET_MB, .bind = "auto",
                      .results = "results", .device = "cpu", .precision = "fp32", .log_every = -1,
                      .timeout = 900, .data_timeout = 300, .collective_timeout = 300};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (g_mpi.rank == 0) train_usage(stdout);
            return 1;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--preset")) {
            rc = cli_preset(a, v, &o->preset);
        } else if (!strcmp(a, "--data")) {
            rc = cli_path(a, v, "a directory", &o->data);
        } else if (!strcmp(a, "--bind")) {
            if (!v || (strcmp(v, "auto") && strcmp(v, "none"))) {
                fprintf(stderr, "mlpfbench: --bind must be auto or none, got '%s'\n", v ? v : "(nothing)");
                return -1;
            }
            o->bind = v;
        } else if (!strcmp(a, "--results")) {
            rc = cli_path(a, v, "a directory", &o->results);
        } else if (!strcmp(a, "--device")) {
            if (!v || (strcmp(v, "cpu") && strcmp(v, "cuda"))) {
                fprintf(stderr, "mlpfbench: --device must be cpu or cuda, got '%s'\n", v ? v : "(nothing)");
                return -1;
            }
            if (!strcmp(v, "cuda")) {
                char err[512];
                int n = gpu_device_count(err, sizeof err);
                if (n < 0)
                    fprintf(stderr, "mlpfbench: --device cuda: %s\n", err);
                else
                    fprintf(stderr, "mlpfbench: --device cuda: %d GPU(s) visible, but training on the GPU "
                                    "is not written yet (only device discovery and gemm-bench are); "
                                    "use --device cpu\n", n);
                return -1;
            }
            o->device = v;
        } else if (!strcmp(a, "--precision")) {
            if (!v || (strcmp(v, "fp32") && strcmp(v, "tf32") && strcmp(v, "bf16"))) {
                fprintf(stderr, "mlpfbench: --precision must be fp32, tf32 or bf16, got '%s'\n", v ? v : "(nothing)");
                return -1;
            }
            if (strcmp(v, "fp32")) {
                fprintf(stderr, "mlpfbench: --precision %s needs a GPU; the CPU backend computes in fp32\n", v);
                return -1;
            }
            o->precision = v;
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
    return 0;
}

/* The option parser alone, for the fuzzer: 0 ok, 1 help, -1 refused. */
int train_check_options(int argc, char **argv)
{
    train_opts o;
    return parse(argc, argv, &o);
}

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

static void on_grad_ready(void *ctx, size_t watermark) { grad_allreduce_ready(ctx, watermark); }

static rank_figures fig; /* this rank's measurements, for the report */
static long long cur_step;  /* for error messages */

/* Forward (and backward) of this rank's part of a global batch; with a
 * gradient all-reduce, the gradients are summed over the ranks, overlapped
 * with backward. */
static void run_batch(mlpf_model *m, const mlpf_batch *b, grad_allreduce *ar, loss_report *r)
{
    int64_t n_global = b->n_rows;
    if (g_mpi.size > 1) {
        guard_wait_begin(GUARD_COLLECTIVE, "the batch size reduction");
        MPI_Allreduce(MPI_IN_PLACE, &n_global, 1, MPI_INT64_T, MPI_SUM, g_mpi.comm);
        guard_wait_end();
    }
    memset(r, 0, sizeof *r);
    if (ar) {
        model_zero_grad(m);
        grad_allreduce_begin(ar);
    }
    double k0[PROF_N], k1[PROF_N];
    prof_get(k0);
    if (b->n_rows > 0) {
        double t0 = mlpf_now();
        if (model_forward(m, b, n_global, r) != 0) mlpf_fatal("cannot allocate activations");
        for (int k = 1; k < LOSS_N; k++) /* this rank's part, before any reduction */
            if (!isfinite(r->loss[k]))
                mlpf_fatal("step %lld: the %s loss of this rank's events is %g (the model diverged "
                           "or the data overflows float32)", cur_step, LOSS_NAMES[k], r->loss[k]);
        double t1 = mlpf_now();
        timeline_span(ar ? "forward" : "validation forward", TL_MAIN, t0, t1);
        if (ar) {
            fig.forward_s += t1 - t0;
            model_backward(m, b);
            double t2 = mlpf_now();
            fig.backward_s += t2 - t1;
            timeline_span("backward", TL_MAIN, t1, t2);
        }
    }
    prof_get(k1);
    if (ar)
        for (int k = 1; k < PROF_N; k++) fig.kind_s[k] += k1[k] - k0[k];
    if (ar) {
        double t0 = mlpf_now();
        guard_wait_begin(GUARD_COLLECTIVE, "the gradient all-reduce");
        grad_allreduce_finish(ar);
        guard_wait_end();
        timeline_span("all-reduce wait", TL_MAIN, t0, mlpf_now());
        int bad = model_first_nonfinite_grad(m);
        if (bad >= 0)
            mlpf_fatal("step %lld: the gradient of %s is not finite (after the all-reduce)", cur_step,
                       m->layout.t[bad].name);
    }
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

/* All ranks must start from the same weights: compare a checksum. */
static void verify_same_weights(const mlpf_model *m)
{
    unsigned long crc = crc32(0L, (const Bytef *)m->params, (uInt)(m->layout.total * sizeof(float)));
    unsigned long lo = crc, hi = crc;
    if (g_mpi.size == 1) return;
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
static void worst_batch(const mlpf_model *m, const dataset_t *ds, int B, int64_t *rows_out, int64_t *bins_out)
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
    int64_t rows = 0, bins = 0, S = m->cfg.bin_size;
    for (int i = 0; i < B; i++) rows += top[i], bins += (top[i] + S - 1) / S;
    free(top);
    *rows_out = rows;
    *bins_out = bins;
}

/* The shape the activations are planned for: the largest rows and bins of a
 * batch of either split (an upper bound of every batch this rank can get). */
static void worst_shape(const mlpf_model *m, const dataset_t *train, const dataset_t *valid, int B,
                        int64_t *rows, int64_t *bins)
{
    int64_t r1, b1, r2, b2;
    worst_batch(m, train, B, &r1, &b1);
    worst_batch(m, valid, B, &r2, &b2);
    *rows = r1 > r2 ? r1 : r2;
    *bins = b1 > b2 ? b1 : b2;
}

/* Allocate the activations of that shape before the first step (see
 * model_reserve). */
static int reserve_activations(mlpf_model *m, int64_t rows, int64_t bins, int B)
{
    if (model_reserve(m, rows, bins, B) == 0) return 0;
    mlpf_errorf("cannot allocate %.0f MiB of activations for a batch of %d events (%lld elements, "
                "the largest of the dataset); use a smaller --batch-size",
                model_activation_bytes_for(m, rows, bins, B) / 1048576.0, B, (long long)rows);
    return 1;
}

/* Refuse, before training, a run that cannot fit in the memory available to
 * the ranks of this node. */
static int check_memory(const mlpf_model *m, int64_t rows, int64_t bins, int B)
{
    size_t act = model_activation_bytes_for(m, rows, bins, B); /* what reserve_activations allocates */
    double need = (double)act + 4.0 * m->layout.total * sizeof(float) + lsh_buffer_size(&m->cfg) * 4.0;
    double avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &avail) == 1) {
            avail *= 1024.0;
            break;
        }
    if (f) fclose(f);
    if (avail <= 0) return 0; /* unknown: let the allocation decide */
    double share = avail / (g_mpi.local_size > 0 ? g_mpi.local_size : 1);
    if (need > 0.9 * share) {
        mlpf_errorf("not enough memory: a batch of %d events needs %.0f MiB on each rank (model, "
                    "optimizer and activations of the largest events), %.0f MiB is available to "
                    "each of the %d rank(s) on %s; use a smaller --batch-size or more nodes",
                    B, need / 1048576.0, share / 1048576.0, g_mpi.local_size, g_mpi.host);
        return 1;
    }
    return 0;
}

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

int cmd_train(int argc, char **argv)
{
    train_opts o;
    int prc = parse(argc, argv, &o);
    if (prc != 0) return prc > 0 ? 0 : 2;
    const int root = g_mpi.rank == 0;
    /* the report's skeleton first: every failure from here on is reported */
    static char cmdline[8192];
    int off = snprintf(cmdline, sizeof cmdline, "mlpfbench");
    for (int i = 0; i < argc && off < (int)sizeof cmdline - 1; i++)
        off += snprintf(cmdline + off, sizeof cmdline - off, " %s", argv[i]);
    snprintf(results_dir, sizeof results_dir, "%s", o.results);
    summary = (run_summary){.command_line = cmdline, .preset = o.preset, .device = o.device,
                            .precision = o.precision, .data_dir = o.data, .bind = o.bind,
                            .world_size = g_mpi.size, .batch_per_rank = o.batch_size,
                            .seed = o.seed, .bucket_mib = o.bucket_mb};
    report_timestamp(summary.train_start, sizeof summary.train_start);
    mlpf_set_fatal_hook(write_failed_report);
    guard_start(o.timeout, o.data_timeout, o.collective_timeout, write_failed_report);

    binding_info bi;
    if (mpictx_any(binding_setup(g_mpi.local_rank, g_mpi.local_size, !strcmp(o.bind, "auto"), &bi) != 0))
        return fail_collectively();
    int threads = (int)o.threads;
    if (threads <= 0) {
        threads = bi.bound ? bi.n_bound_cores : bi.n_cores / (g_mpi.local_size > 0 ? g_mpi.local_size : 1);
        if (threads < 1) threads = 1;
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    summary.threads_per_rank = threads;
    mlpf_config cfg;
    mlpf_config_preset(o.preset, &cfg);
    if (o.lr > 0) cfg.lr = (float)o.lr;

    dataset_t train, valid;
    if (dataset_open(&train, o.data, "train", g_mpi.comm) != 0) return fail_collectively();
    if (dataset_open(&valid, o.data, "valid", g_mpi.comm) != 0) {
        dataset_close(&train);
        return fail_collectively();
    }
    summary.train_events = train.events;
    summary.valid_events = valid.events;
    if (train.events < g_mpi.size) {
        if (root)
            mlpf_errorf("dataset %s has %lld training events, fewer than the %d ranks", o.data,
                        (long long)train.events, g_mpi.size);
        dataset_close(&train);
        dataset_close(&valid);
        return fail_collectively();
    }
    mlpf_model m;
    adam_state opt;
    if (model_create(&m, &cfg, (uint64_t)o.seed) != 0 || adam_init(&opt, m.layout.total) != 0)
        mlpf_fatal("cannot allocate the model (%s)", cfg.preset);
    summary.n_params = (int64_t)m.layout.total;
    int64_t worst_rows, worst_bins;
    worst_shape(&m, &train, &valid, (int)o.batch_size, &worst_rows, &worst_bins);
    if (mpictx_any(check_memory(&m, worst_rows, worst_bins, (int)o.batch_size) != 0 ||
                   reserve_activations(&m, worst_rows, worst_bins, (int)o.batch_size) != 0)) {
        model_free(&m);
        adam_free(&opt);
        dataset_close(&train);
        dataset_close(&valid);
        return fail_collectively();
    }
    /* resume: rank 0 reads and checks the checkpoint, every rank gets it */
    checkpoint_header ck = {0};
    if (o.resume) {
        int bad = root ? checkpoint_read(o.resume, cfg.preset, (int64_t)m.layout.total, &ck, m.params, &opt) : 0;
        if (!bad && root && ck.world_size * ck.batch_per_rank != g_mpi.size * o.batch_size) {
            mlpf_errorf("checkpoint %s was written with a global batch of %lld (%lld ranks x %lld); "
                        "resume with the same global batch", o.resume,
                        (long long)(ck.world_size * ck.batch_per_rank), (long long)ck.world_size,
                        (long long)ck.batch_per_rank);
            bad = 1;
        }
        if (!bad && root && ck.seed != o.seed) {
            mlpf_errorf("checkpoint %s was written with --seed %lld; resume with the same seed",
                        o.resume, (long long)ck.seed);
            bad = 1;
        }
        if (mpictx_any(bad)) {
            model_free(&m);
            adam_free(&opt);
            dataset_close(&train);
            dataset_close(&valid);
            return fail_collectively();
        }
        MPI_Bcast(&ck, (int)sizeof ck, MPI_BYTE, 0, g_mpi.comm);
        MPI_Bcast(m.params, (int)m.layout.total, MPI_FLOAT, 0, g_mpi.comm);
        MPI_Bcast(opt.m, (int)m.layout.total, MPI_FLOAT, 0, g_mpi.comm);
        MPI_Bcast(opt.v, (int)m.layout.total, MPI_FLOAT, 0, g_mpi.comm);
        opt.step = ck.adam_step;
        if (root)
            printf("  resuming from %s: epoch %lld, step %lld of it, %lld steps done\n", o.resume,
                   (long long)ck.epoch + 1, (long long)ck.step_in_epoch, (long long)ck.steps_done);
    }
    verify_same_weights(&m);
    grad_allreduce *ar = grad_allreduce_create(m.grads, m.layout.total, (size_t)(o.bucket_mb * 1048576.0), g_mpi.comm);
    m.grad_ready = on_grad_ready;
    m.grad_ready_ctx = ar;
    int prefetch = g_mpi.threads_ok;
    loader *lt = loader_create(&train, (int)o.batch_size, g_mpi.rank, g_mpi.size, (uint64_t)o.seed, 1, prefetch);
    loader *lv = loader_create(&valid, (int)o.batch_size, g_mpi.rank, g_mpi.size, (uint64_t)o.seed, 0, prefetch);
    long long steps_per_epoch = loader_steps(lt), total_steps = steps_per_epoch * o.epochs;
    if (o.max_steps > 0 && o.max_steps < total_steps) total_steps = o.max_steps;
    if (o.warmup_steps > 0 && total_steps > ck.steps_done && o.warmup_steps >= total_steps - ck.steps_done) {
        if (root) /* the same on every rank */
            mlpf_errorf("--warmup-steps %lld leaves none of the %lld steps of this run to measure",
                        o.warmup_steps, total_steps - ck.steps_done);
        loader_free(lt);
        loader_free(lv);
        grad_allreduce_free(ar);
        model_free(&m);
        adam_free(&opt);
        dataset_close(&train);
        dataset_close(&valid);
        return fail_collectively();
    }
    summary.steps_per_epoch = steps_per_epoch;
    summary.epoch_time = calloc(o.epochs, sizeof(double));
    summary.throughput = calloc(o.epochs, sizeof(double));
    summary.val_acc = calloc(o.epochs, sizeof(double));
    summary.val_loss = calloc(o.epochs, sizeof *summary.val_loss);
    if (root) {
        printf("mlpfbench train: preset %s, %zu trainable parameters\n", cfg.preset, m.layout.total);
        printf("  data %s: %lld training events (%lld elements), %lld validation events\n", o.data,
               (long long)train.events, (long long)train.elements, (long long)valid.events);
        printf("  %d rank(s) x batch %lld = global batch %lld, %lld steps/epoch, %lld epoch(s), "
               "%d threads/rank, lr %g, seed %lld%s\n",
               g_mpi.size, o.batch_size, o.batch_size * g_mpi.size, steps_per_epoch, o.epochs,
               threads, cfg.lr, o.seed, prefetch ? "" : " (no prefetch: MPI lacks thread support)");
    }
    /* every rank's actual binding, gathered to rank 0 */
    char *all = root ? malloc((size_t)g_mpi.size * 320) : NULL;
    char mine[320];
    snprintf(mine, sizeof mine, "%.60s:%.250s", g_mpi.host, bi.cpus[0] ? bi.cpus : "?");
    MPI_Gather(mine, 320, MPI_CHAR, all, 320, MPI_CHAR, 0, g_mpi.comm);
    if (root) {
        printf("  binding (%s):", o.bind);
        for (int r = 0; r < g_mpi.size && r < 16; r++) printf(" rank %d %s%s", r, all + r * 320, r + 1 < g_mpi.size ? "," : "");
        printf("%s\n", g_mpi.size > 16 ? " ..." : "");
        fflush(stdout);
        free(all);
    }

    if (o.timeline) timeline_start(g_mpi.comm);
    /* a bar only on a real terminal: launchers (mpirun's pseudo-terminal, srun,
     * batch jobs) get plain lines */
    progress_t prog = {.tty = isatty(STDOUT_FILENO) && !g_mpi.launched, .every = o.log_every};
    int64_t *ids = malloc(sizeof(int64_t) * o.batch_size);
    long long step = ck.steps_done, events_done = 0;
    char ckpt_path[4200];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.bin", o.results);
    if (o.checkpoint) snprintf(ckpt_path, sizeof ckpt_path, "%s", o.checkpoint);
    if (o.checkpoint_every > 0 && root) mkdir(o.results, 0755);
    int64_t elements_done = 0;
    loader_stats ls_warm = {0}; /* figures at the end of the warm-up steps */
    allreduce_stats as_warm = {0};
    double t_start = mlpf_now();
    for (long long ep = ck.epoch; ep < o.epochs && step < total_steps; ep++) {
        long long sie = ep == ck.epoch ? ck.step_in_epoch : 0; /* steps done in this epoch */
        loader_begin_epoch_at(lt, (int)ep, sie);
        mlpf_batch b;
        int n_ids;
        double t_ep = mlpf_now();
        long long ev_ep = 0;
        while (step < total_steps && next_batch(lt, &b, ids, &n_ids, "training")) {
            double t0 = mlpf_now();
            loss_report r;
            cur_step = step + 1;
            if (failpoint("stall-step", cur_step, g_mpi.rank)) failpoint_stall();
            run_batch(&m, &b, ar, &r);
            double t_opt = mlpf_now();
            adam_update(&cfg, &opt, m.params, m.grads);
            double t_opt_end = mlpf_now();
            fig.optimizer_s += t_opt_end - t_opt;
            timeline_span("optimizer", TL_MAIN, t_opt, t_opt_end);
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
            if (step - ck.steps_done == o.warmup_steps) { /* the steady state starts here */
                rank_figures zero = {0};
                fig = zero;
                fig.warmup_steps = o.warmup_steps;
                ls_warm = loader_get_stats(lt);
                if (ar) as_warm = grad_allreduce_stats(ar);
            }
            events_done += n_ev;
            elements_done += r.n_rows;
            ev_ep += n_ev;
            if (root) {
                double rate = events_done / (mlpf_now() - t_start);
                double eta = (mlpf_now() - t_start) / step * (total_steps - step);
                progress(&prog, ep + 1, o.epochs, step, total_steps, &r, rate, eta, step == total_steps);
            }
            batch_free(&b);
            sie++;
            if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0) {
                checkpoint_header h = {.n_params = (int64_t)m.layout.total, .steps_done = step,
                                       .epoch = ep, .step_in_epoch = sie, .adam_step = opt.step,
                                       .seed = o.seed, .world_size = g_mpi.size,
                                       .batch_per_rank = o.batch_size};
                snprintf(h.preset, sizeof h.preset, "%s", cfg.preset);
                int bad = root ? checkpoint_write(ckpt_path, &h, m.params, &opt) : 0;
                if (mpictx_any(bad)) mlpf_fatal("step %lld: cannot write the checkpoint %s", step, ckpt_path);
            }
            char where[64];
            snprintf(where, sizeof where, "step %lld", step);
            guard_progress(where);
        }
        loader_drain(lt); /* a prefetch in flight when --max-steps ends the epoch */
        double ep_time = mlpf_now() - t_ep;
        /* validation: forward only, all validation events */
        loader_begin_epoch(lv, 0);
        loss_report tot = {0};
        while (next_batch(lv, &b, ids, &n_ids, "validation")) {
            loss_report r;
            run_batch(&m, &b, NULL, &r);
            /* r is normalised by this global batch's count: weight it back */
            for (int k = 0; k < LOSS_N; k++) tot.loss[k] += r.loss[k] * r.n_rows;
            tot.n_rows += r.n_rows;
            tot.n_correct += r.n_correct;
            batch_free(&b);
            guard_progress("a validation batch");
        }
        for (int k = 0; k < LOSS_N; k++) tot.loss[k] /= tot.n_rows > 0 ? tot.n_rows : 1;
        summary.epoch_time[ep] = ep_time;
        summary.throughput[ep] = ev_ep / ep_time;
        summary.val_acc[ep] = tot.n_rows ? (double)tot.n_correct / tot.n_rows : 0.0;
        memcpy(summary.val_loss[ep], tot.loss, sizeof tot.loss);
        summary.epochs = (int)ep + 1;
        if (root) {
            if (prog.tty && prog.every < 0 && step != total_steps) putchar('\n'); /* end the bar */
            printf("validation epoch %lld: ", ep + 1);
            print_losses(&tot);
            printf(" (%lld elements); epoch time %.1f s, %.3f events/s\n", (long long)tot.n_rows,
                   ep_time, ev_ep / ep_time);
            fflush(stdout);
        }
    }
    double elapsed = mlpf_now() - t_start;
    report_timestamp(summary.train_stop, sizeof summary.train_stop);
    summary.train_time = elapsed;
    summary.train_events_seen = events_done;
    summary.train_elements_seen = elements_done;
    summary.flops_per_element = 3.0 * model_flops_per_element(&cfg); /* forward + backward */
    summary.flops_per_event = summary.flops_per_element * (events_done ? (double)elements_done / events_done : 0.0);
    summary.achieved_flops = 3.0 * model_flops_per_element(&cfg) * elements_done / elapsed;
    loader_stats ls = loader_get_stats(lt);
    allreduce_stats as = grad_allreduce_stats(ar);
    /* this rank's figures, gathered to rank 0 */
    fig.rank = g_mpi.rank;
    fig.local_rank = g_mpi.local_rank;
    fig.threads = threads;
    snprintf(fig.host, sizeof fig.host, "%.63s", g_mpi.host);
    snprintf(fig.cpus, sizeof fig.cpus, "%.127s", bi.cpus);
    ls.wait_s -= ls_warm.wait_s; /* the steady state only (--warmup-steps) */
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
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fig.peak_rss_mib = ru.ru_maxrss / 1024.0;
    fig.activation_mib = model_activation_bytes(&m) / 1048576.0;
    summary.ranks = root ? calloc(g_mpi.size, sizeof(rank_figures)) : NULL;
    MPI_Gather(&fig, (int)sizeof fig, MPI_BYTE, summary.ranks, (int)sizeof fig, MPI_BYTE, 0, g_mpi.comm);
    if (root) {
        printf("done: %lld steps, %lld events in %.1f s, %.3f events/s; rank 0 read %.1f MiB in "
               "%.2f s, waited %.2f s for data; activations %.0f MiB\n",
               step, events_done, elapsed, events_done / elapsed, ls.bytes / 1048576.0, ls.read_s,
               ls.wait_s, model_activation_bytes(&m) / 1048576.0);
        printf("time by kind of work (rank 0, training steps):");
        for (int k = 1; k < PROF_N; k++) printf(" %s %.2f s,", PROF_NAMES[k], fig.kind_s[k]);
        printf(" optimizer %.2f s, data wait %.2f s, all-reduce exposed %.2f s; step time %.2f s\n",
               fig.optimizer_s, fig.data_wait_s, fig.allreduce_exposed_s, fig.step_s);
        if (g_mpi.size > 1 && as.steps > 0)
            printf("gradient all-reduce (rank 0): %lld steps x %lld buckets of %g MiB, %.3f s per "
                   "step, %.3f s exposed (%.0f%% hidden), busbw %.2f GB/s\n",
                   (long long)as.steps, (long long)(as.buckets / as.steps), o.bucket_mb,
                   as.total_s / as.steps, as.exposed_s / as.steps,
                   as.total_s > 0 ? 100.0 * (1.0 - as.exposed_s / as.total_s) : 0.0,
                   allreduce_busbw((double)as.bytes, as.total_s, g_mpi.size) / 1e9);
    }
    grad_allreduce_free(ar);
    int rc = 0;
    if (o.timeline && timeline_write(o.timeline, g_mpi.comm, g_mpi.host) != 0) rc = 1;
    if (root && o.save_weights) { /* temporary file, then rename: never half-written */
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", o.save_weights);
        FILE *f = fopen(tmp, "wb");
        if (!f || fwrite(m.params, sizeof(float), m.layout.total, f) != m.layout.total ||
            fclose(f) != 0 || rename(tmp, o.save_weights) != 0) {
            fprintf(stderr, "mlpfbench: cannot write %s\n", o.save_weights);
            rc = 1;
        }
    }
    guard_stop();
    mlpf_set_fatal_hook(NULL);
    if (root && report_write(results_dir, &summary, 1) != 0) rc = 1;
    free(summary.ranks);
    free(summary.epoch_time);
    free(summary.throughput);
    free(summary.val_acc);
    free(summary.val_loss);
    free(ids);
    loader_free(lt);
    loader_free(lv);
    dataset_close(&train);
    dataset_close(&valid);
    adam_free(&opt);
    model_free(&m);
    return rc;
}
