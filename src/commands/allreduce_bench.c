/* mlpfbench allreduce-bench: the gradient all-reduce alone, nccl-tests style. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "allreduce.h"
#include "cli.h"
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
            "  -h, --help       this help\n");
}


/* Values whose sum over ranks is exact in float: small integers. */
static float value(size_t i, int rank) { return (float)((i % 61) + 3 * rank); }

int cmd_allreduce_bench(int argc, char **argv)
{
    long long min_b = 4, max_b = 64LL << 20, factor = 2, extra = 0, iters = 20;
    double bucket_mb = 4.0;
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
    const int n = g_mpi.size, rank = g_mpi.rank;
    size_t max_count = (size_t)(max_b / 4 + extra);
    float *buf = malloc(sizeof(float) * (max_count ? max_count : 1));
    if (!buf) mlpf_fatal("cannot allocate %zu floats", max_count);
    if (rank == 0) {
        printf("# mlpfbench allreduce-bench: %d rank(s), bucket %g MiB, %lld iterations\n", n, bucket_mb, iters);
        printf("# %12s %12s %6s %6s %12s %10s %10s %8s\n", "size", "count", "type", "redop", "time(us)",
               "algbw", "busbw", "#wrong");
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
        double tmax = t / iters;
        MPI_Allreduce(MPI_IN_PLACE, &tmax, 1, MPI_DOUBLE, MPI_MAX, g_mpi.comm);
        MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG_LONG, MPI_SUM, g_mpi.comm);
        total_wrong += wrong;
        double b = (double)count * 4.0, algbw = tmax > 0 ? b / tmax / 1e9 : 0.0;
        if (rank == 0)
            printf("  %12.0f %12zu %6s %6s %12.2f %10.3f %10.3f %8lld\n", b, count, "float", "sum",
                   tmax * 1e6, algbw, allreduce_busbw(b, tmax, n) / 1e9, wrong);
    }
    if (rank == 0) printf("# total wrong: %lld\n", total_wrong);
    free(buf);
    return total_wrong == 0 ? 0 : 1;
}
