/* mlpfbench infer: forward passes only (inference speed), on one rank. */
#include <cblas.h>
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "binding.h"
#include "cli.h"
#include "clock.h"
#include "config.h"
#include "dataset.h"
#include "loader.h"
#include "backend.h"
#include "gpu.h"
#include "blas_core.h"
#include "mpictx.h"
#include "report.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mlpfbench infer [options]\n"
            "\n"
            "Times forward passes (inference, no backward, no optimizer) over the first\n"
            "training events of a dataset, in file order, on one rank, and prints events/s,\n"
            "seconds per batch, GFLOP/s (spec cost model) and memory.\n"
            "\n"
            "options:\n"
            "  --data DIR        dataset directory (default data/default)\n"
            "  --device cpu|cuda compute device (default cpu; cuda: GPU 0)\n"
            "  --precision P     fp32, tf32 or bf16 (default fp32 on the CPU, tf32 on the GPU)\n"
            "  --preset NAME     model preset: %s (default hepscore22)\n"
            "  --batch-size B    events per forward pass (default 4)\n"
            "  --steps N         timed batches (default 4)\n"
            "  --warmup W        untimed batches first (default 1)\n"
            "  --threads T       threads (default: all cores)\n"
            "  --seed S          seed of the initial weights (default 42)\n"
            "  --json FILE       also write the figures as JSON\n"
            "  --blas-core NAME  the OpenBLAS kernels to run (default: chosen at start)\n"
            "  -h, --help        this help\n",
            mlpf_config_preset_names());
}

int cmd_infer(int argc, char **argv)
{
    const char *data = "data/default", *preset = "hepscore22", *json = NULL, *device = "cpu", *precision = NULL;
    long long B = 4, steps = 4, warmup = 1, threads = 0, seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (g_mpi.rank == 0) usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset")) rc = cli_preset(a, v, &preset);
        else if (!strcmp(a, "--data")) rc = cli_path(a, v, "a directory", &data);
        else if (!strcmp(a, "--batch-size")) rc = cli_int(a, v, 1, 4096, &B);
        else if (!strcmp(a, "--steps")) rc = cli_int(a, v, 1, 1 << 30, &steps);
        else if (!strcmp(a, "--warmup")) rc = cli_int(a, v, 0, 1 << 30, &warmup);
        else if (!strcmp(a, "--threads")) rc = cli_int(a, v, 1, 4096, &threads);
        else if (!strcmp(a, "--seed")) rc = cli_int(a, v, 0, (1LL << 62), &seed);
        else if (!strcmp(a, "--json")) rc = cli_path(a, v, "a file", &json);
        else if (!strcmp(a, "--device")) rc = cli_choice(a, v, "cpu|cuda", &device);
        else if (!strcmp(a, "--precision")) rc = cli_choice(a, v, "fp32|tf32|bf16", &precision);
        else {
            fprintf(stderr, "mlpfbench: unknown option '%s' (see mlpfbench infer --help)\n", a);
            return 2;
        }
        if (rc != 0) return 2;
        i++;
    }
    if (g_mpi.size != 1) {
        if (g_mpi.rank == 0) fprintf(stderr, "mlpfbench: infer runs on one rank (got %d)\n", g_mpi.size);
        return 2;
    }
    binding_info bi;
    binding_setup(0, 1, 1, &bi);
    int nt = threads > 0 ? (int)threads : (bi.bound ? bi.n_bound_cores : bi.n_cores);
    if (nt < 1) nt = 1;
    omp_set_num_threads(nt);
    openblas_set_num_threads(nt);
    mlpf_config cfg;
    mlpf_config_preset(preset, &cfg);
    dataset_t ds;
    if (dataset_open(&ds, data, "train", g_mpi.comm) != 0) return 1;
    if (ds.events < (warmup + steps) * B) {
        fprintf(stderr, "mlpfbench: %s has %lld training events; infer needs (warmup %lld + steps "
                        "%lld) x batch %lld = %lld\n", data, (long long)ds.events, warmup, steps, B,
                (warmup + steps) * B);
        dataset_close(&ds);
        return 1;
    }
    backend be;
    backend_opts bo = {.device = device, .precision = precision, .gpu = 0, .forward_only = 1};
    char err[600];
    if (!strcmp(device, "cuda") && gpu_device_count(err, sizeof err) < 0) {
        fprintf(stderr, "mlpfbench: --device cuda: %s\n", err);
        dataset_close(&ds);
        return 2;
    }
    if (backend_create(&be, &bo, &cfg, (uint64_t)seed, err, sizeof err) != 0) {
        fprintf(stderr, "mlpfbench: %s\n", err);
        dataset_close(&ds);
        return 2;
    }
    loader *l = loader_create(&ds, (int)B, 0, 1, (uint64_t)seed, 0, g_mpi.threads_ok);
    loader_begin_epoch(l, 0);
    int64_t *ids = malloc(sizeof(int64_t) * B);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss0 = ru.ru_maxrss / 1024.0;
    double t_timed = 0.0;
    int64_t ev = 0, el = 0;
    for (long long s = 0; s < warmup + steps; s++) {
        mlpf_batch b;
        int n_ids;
        if (!loader_next(l, &b, ids, &n_ids)) break;
        loss_report r;
        double t0 = mlpf_now();
        if (be.ops->forward(&be, &b, b.n_rows, &r) != 0 || be.ops->finish(&be, &r, NULL) != 0)
            mlpf_fatal("%s", be.error);
        double dt = mlpf_now() - t0;
        if (s >= warmup) t_timed += dt, ev += n_ids, el += b.n_rows;
        batch_free(&b);
    }
    loader_drain(l);
    getrusage(RUSAGE_SELF, &ru);
    double rss = ru.ru_maxrss / 1024.0, act = be.ops->activation_bytes(&be) / 1048576.0;
    double flops = model_flops_per_element(&cfg) * el / t_timed;
    printf("infer: %s on %s (%s), %d thread(s), batch %lld: %lld events (%lld elements) in %.2f s: %.3f events/s, "
           "%.3f s/batch, %.1f GFLOP/s; activations %.0f MiB, peak RSS %.0f MiB (%.0f MiB before the "
           "first batch)\n", preset, be.description, be.precision, nt, B, (long long)ev, (long long)el, t_timed, ev / t_timed,
           t_timed / steps, flops / 1e9, act, rss, rss0);
    int rc = 0;
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:i, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                              "mode", "inference", "preset", preset, "device", be.description,
                              "precision", be.precision, "host_execution_path", be.emulated, "threads", nt, "batch_size",
                              (json_int_t)B, "steps", (json_int_t)steps, "events", (json_int_t)ev,
                              "elements", (json_int_t)el, "seconds", t_timed, "events_per_s",
                              ev / t_timed, "s_per_step", t_timed / steps, "flops", flops,
                              "activation_mib", act, "peak_rss_mib", rss, "rss_before_mib", rss0);
        if (o) json_object_set_new(o, "blas", blas_core_json());
        if (report_json_file(o, json, JSON_INDENT(1)) != 0) rc = 1;
        json_decref(o);
    }
    free(ids);
    loader_free(l);
    backend_destroy(&be);
    dataset_close(&ds);
    return rc;
}
