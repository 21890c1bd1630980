/* mlpfbench allreduce-bench: the gradient all-reduce alone, nccl-tests style. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "allreduce.h"
#include "cli.h"
#include "gpu.h"
#include "gpuplace.h"
#include "mpictx.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mpirun -np N mlpfbench allreduce-bench [options]\n"
            "\n"
            "Times the bucketed gradient all-reduce that training uses (float sum) over\n"
            "a range of sizes and checks every result. One line per size: size (bytes),\n"
            "count (floats), time per all-reduce (us), algbw and busbw (GB/s, busbw =\n"
            "algbw x 2(n-1)/n as in nccl-tests) and #wrong (elements that differ from the\n"
            "exact sum).\n"
            "\n"
            "options:\n"
            "  --min-bytes B    smallest size (default 4)\n"
            "  --max-bytes B    largest size (default 64 MiB)\n"
            "  --factor F       size multiplier between lines (default 2)\n"
            "  --extra-floats K add K floats to every size, for odd sizes (default 0)\n"
            "  --iters I        timed iterations per size (default 20; 2 warm-up)\n"
            "  --bucket-mb X    fusion bucket size, MiB (default 4)\n"
            "  --device cpu|cuda  cpu (default): host buffers, MPI_Iallreduce; cuda: device\n"
            "                   buffers, one GPU per rank, the transports of train --device cuda\n"
            "  --allreduce nccl|mpi|both  with --device cuda: NCCL, staging through pinned\n"
            "                   host memory and MPI, or a table for each (default both; NCCL\n"
            "                   is left out, with a note, where ranks share a GPU)\n"
            "  -h, --help       this help\n");
}


/* Values whose sum over ranks is exact in float: small integers. */
static float value(size_t i, int rank) { return (float)((i % 61) + 3 * rank); }

static void print_columns(void)
{
    printf("# %12s %12s %6s %6s %12s %10s %10s %8s\n", "size", "count", "type", "redop", "time(us)", "algbw", "busbw",
           "#wrong");
}

/* One line of the table: this rank's mean time and wrong elements at `count`
 * floats, the slowest rank's time and the sum of wrong elements printed by
 * rank 0. Collective; returns the wrong elements of all ranks. */
static long long table_line(size_t count, double t, long long wrong)
{
    const int n = g_mpi.size;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, g_mpi.comm);
    MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG_LONG, MPI_SUM, g_mpi.comm);
    double b = (double)count * 4.0, algbw = t > 0 ? b / t / 1e9 : 0.0;
    if (g_mpi.rank == 0)
        printf("  %12.0f %12zu %6s %6s %12.2f %10.3f %10.3f %8lld\n", b, count, "float", "sum", t * 1e6, algbw,
               allreduce_busbw(b, t, n) / 1e9, wrong);
    return wrong;
}

/* One table: the sizes min_b, min_b x factor, ... of one GPU transport. */
static long long gpu_table(int dev, const char *transport, const char *gpu, long long min_b, long long max_b,
                           long long factor, long long extra, long long iters, double bucket_mb)
{
    const int n = g_mpi.size;
    int n_sizes = 0;
    size_t counts[64];
    for (long long bytes = min_b; bytes <= max_b && n_sizes < 64; bytes *= factor) counts[n_sizes++] = (size_t)(bytes / 4 + extra);
    unsigned char id[512] = {0};
    char err[1024] = "";
    int bad = 0;
    if (!strcmp(transport, "nccl") && g_mpi.rank == 0 && gpu_nccl_id(dev, id, sizeof id, err, sizeof err) < 0) bad = 1;
    if (mpictx_any(bad)) {
        if (g_mpi.rank == 0) fprintf(stderr, "mlpfbench: allreduce-bench --allreduce nccl: %s\n", err);
        return -1;
    }
    MPI_Bcast(id, (int)sizeof id, MPI_BYTE, 0, g_mpi.comm);
    comm_opts co = {.transport = transport, .rank = g_mpi.rank, .size = n, .mpi_comm = &g_mpi.comm, .nccl_id = id,
                    .bucket_bytes = (size_t)(bucket_mb * 1048576.0), .init_timeout_s = 120};
    double sec[64];
    long long wrong[64];
    /* a failure mid-way leaves the peers inside a collective: end the job */
    if (gpu_allreduce_bench(dev, &co, counts, n_sizes, (int)iters, sec, wrong, err, sizeof err) != 0)
        mlpf_fatal("allreduce-bench --device cuda --allreduce %s: %s", transport, err);
    if (g_mpi.rank == 0) {
        printf("# mlpfbench allreduce-bench --device cuda --allreduce %s: %d rank(s), %s, bucket %g MiB, %lld "
               "iterations\n", transport, n, gpu, bucket_mb, iters);
        print_columns();
    }
    long long total = 0;
    for (int k = 0; k < n_sizes; k++) total += table_line(counts[k], sec[k], wrong[k]);
    if (g_mpi.rank == 0) printf("# total wrong (%s): %lld\n", transport, total);
    return total;
}

/* --device cuda: each rank's GPU as train chooses it (shared GPUs allowed
 * here: the staging transport runs, NCCL is left out). */
static int gpu_bench(long long min_b, long long max_b, long long factor, long long extra, long long iters,
                     double bucket_mb, const char *transport)
{
    char err[512];
    gpu_placement pl;
    gpu_info gi;
    int bad = 0, n = gpu_device_count(err, sizeof err);
    if (n < 0 || gpuplace_choose(g_mpi.local_rank, g_mpi.local_size, n, 1, &pl, err, sizeof err) != 0 ||
        gpu_describe(pl.device, &gi, err, sizeof err) != 0) {
        mlpf_errorf("rank %d (%s): allreduce-bench --device cuda: %s", g_mpi.rank, g_mpi.host, err);
        bad = 1;
    }
    if (mpictx_any(bad)) return 1;
    const int L = g_mpi.local_size;
    char *uu = calloc((size_t)L, sizeof gi.uuid);
    MPI_Allgather(gi.uuid, (int)sizeof gi.uuid, MPI_CHAR, uu, (int)sizeof gi.uuid, MPI_CHAR, g_mpi.node_comm);
    int a = -1, b = -1, shared = gpuplace_find_shared(uu, L, sizeof gi.uuid, &a, &b);
    free(uu);
    shared = mpictx_any(shared);
    char what[400];
    snprintf(what, sizeof what, "rank 0 on GPU %d (%.100s, %.32s)%s", pl.device, gi.name, gi.pci_bus_id,
             shared ? ", ranks sharing GPUs" : "");
    long long wrong = 0;
    int failed = 0;
    if (strcmp(transport, "mpi")) {
        if (shared) {
            if (g_mpi.rank == 0)
                printf("# --allreduce nccl: left out: ranks share a GPU, which NCCL refuses\n");
            if (!strcmp(transport, "nccl")) failed = 1;
        } else {
            long long w = gpu_table(pl.device, "nccl", what, min_b, max_b, factor, extra, iters, bucket_mb);
            if (w < 0) failed = 1;
            else wrong += w;
        }
    }
    if (strcmp(transport, "nccl")) {
        long long w = gpu_table(pl.device, "mpi", what, min_b, max_b, factor, extra, iters, bucket_mb);
        if (w < 0) failed = 1;
        else wrong += w;
    }
    if (g_mpi.rank == 0 && gi.name[0] && strstr(gi.name, "host execution path"))
        printf("# the CUDA host execution path of the tests: these are not GPU figures\n");
    return failed || wrong ? 1 : 0;
}

int cmd_allreduce_bench(int argc, char **argv)
{
    long long min_b = 4, max_b = 64LL << 20, factor = 2, extra = 0, iters = 20;
    double bucket_mb = 4.0;
    const char *device = "cpu", *transport = "both";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (g_mpi.rank == 0) usage(stdout);
            return 0;
        } else if (!strcmp(a, "--min-bytes")) rc = cli_int(a, v, 4, 1LL << 34, &min_b);
        else if (!strcmp(a, "--max-bytes")) rc = cli_int(a, v, 4, 1LL << 34, &max_b);
        else if (!strcmp(a, "--factor")) rc = cli_int(a, v, 2, 1024, &factor);
        else if (!strcmp(a, "--extra-floats")) rc = cli_int(a, v, 0, 1 << 20, &extra);
        else if (!strcmp(a, "--iters")) rc = cli_int(a, v, 1, 1000000, &iters);
        else if (!strcmp(a, "--bucket-mb")) rc = cli_double(a, v, 0.000004, 4096.0, &bucket_mb);
        else if (!strcmp(a, "--device")) rc = cli_choice(a, v, "cpu|cuda", &device);
        else if (!strcmp(a, "--allreduce")) rc = cli_choice(a, v, "nccl|mpi|both", &transport);
        else {
            fprintf(stderr, "mlpfbench: unknown option '%s' for allreduce-bench (see --help)\n", a);
            return 2;
        }
        if (rc != 0) return 2;
        i++;
    }
    if (min_b > max_b) {
        fprintf(stderr, "mlpfbench: --min-bytes is larger than --max-bytes\n");
        return 2;
    }
    if (!strcmp(device, "cuda")) return gpu_bench(min_b, max_b, factor, extra, iters, bucket_mb, transport);
    if (strcmp(transport, "both")) {
        fprintf(stderr, "mlpfbench: --allreduce %s needs --device cuda\n", transport);
        return 2;
    }
    const int n = g_mpi.size, rank = g_mpi.rank;
    size_t max_count = (size_t)(max_b / 4 + extra);
    float *buf = malloc(sizeof(float) * (max_count ? max_count : 1));
    if (!buf) mlpf_fatal("cannot allocate %zu floats", max_count);
    if (rank == 0) {
        printf("# mlpfbench allreduce-bench: %d rank(s), bucket %g MiB, %lld iterations\n", n, bucket_mb, iters);
        print_columns();
    }
    long long total_wrong = 0;
    for (long long bytes = min_b; bytes <= max_b; bytes *= factor) {
        size_t count = (size_t)(bytes / 4 + extra);
        grad_allreduce *g = grad_allreduce_create(buf, count, (size_t)(bucket_mb * 1048576.0), g_mpi.comm);
        double t = 0.0;
        long long wrong = 0;
        for (long long it = -2; it < iters; it++) {
            for (size_t i = 0; i < count; i++) buf[i] = value(i, rank);
            MPI_Barrier(g_mpi.comm);
            double t0 = mlpf_now();
            grad_allreduce_begin(g);
            grad_allreduce_finish(g);
            double dt = mlpf_now() - t0;
            if (it >= 0) t += dt;
            for (size_t i = 0; i < count; i++) {
                float want = 0.0f;
                for (int r = 0; r < n; r++) want += value(i, r);
                wrong += buf[i] != want;
            }
        }
        grad_allreduce_free(g);
        total_wrong += table_line(count, t / iters, wrong);
    }
    if (rank == 0) printf("# total wrong: %lld\n", total_wrong);
    free(buf);
    return total_wrong == 0 ? 0 : 1;
}
