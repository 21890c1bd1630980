/* mlpfbench gemm-bench: the machine's fp32 matrix-product rate through the
 * BLAS at the model's shapes, the limit that make bench compares training to. */
#include <cblas.h>
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "config.h"
#include "gpu.h"
#include "mpictx.h"
#include "report.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mlpfbench gemm-bench [options]\n"
            "\n"
            "Times cblas_sgemm (row-major, no transposes) at the model's shapes, M x N x K:\n"
            "  dense   rows x width x width     (the dense layers: theta, wh, gate, encoder)\n"
            "  gram    bin x bin x dist_dim     (the kernel distances of one bin)\n"
            "  message bin x width x bin        (A (n H) inside one bin)\n"
            "and prints GFLOP/s of each (best of repeated runs) and the rate of the model's\n"
            "mix of them, weighted by the spec's cost model: the limit training is held to;\n"
            "then the cores' fp32 fused multiply-add peak (registers only), which no\n"
            "matrix product can exceed.\n"
            "\n"
            "options:\n"
            "  --preset NAME   shapes of this preset (default hepscore22)\n"
            "  --rows N        rows of the dense shape (default 5000, one event)\n"
            "  --threads T     BLAS threads (default: all cores)\n"
            "  --seconds S     time per shape (default 2)\n"
            "  --device cpu|cuda  the BLAS on the CPU (default) or cuBLAS on GPU 0\n"
            "  --precision P   on cuda: fp32, tf32 (default) or bf16 (fp32 accumulation)\n"
            "  --json FILE     also write the figures as JSON\n"
            "  -h, --help      this help\n");
}

static double rate(int M, int N, int K, double seconds)
{
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N),
          *C = malloc(sizeof(float) * M * N);
    if (!A || !B || !C) mlpf_fatal("gemm-bench: out of memory for %d x %d x %d", M, N, K);
    for (long i = 0; i < (long)M * K; i++) A[i] = (float)((i % 13) - 6) * 0.01f;
    for (long i = 0; i < (long)K * N; i++) B[i] = (float)((i % 7) - 3) * 0.01f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    double best = 0.0, t_end = mlpf_now() + seconds;
    while (mlpf_now() < t_end) {
        double t0 = mlpf_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        double r = 2.0 * M * N * K / (mlpf_now() - t0);
        if (r > best) best = r;
    }
    free(A);
    free(B);
    free(C);
    return best;
}

/* The cores' fp32 fused multiply-add peak: every thread runs 12 independent
 * chains of the widest FMA this build may use (enough chains to cover the
 * latency of two FMA pipes), in registers, no memory traffic. No matrix product
 * can beat it: with the model's FLOPs it bounds training from above. Returns
 * FLOP/s and names the instructions, or 0 where the build has no FMA. */
#if defined(__AVX512F__)
#define PEAK_ISA "avx512 fma"
#define PEAK_LANES 16
typedef __m512 peak_v;
#define PEAK_SET(x) _mm512_set1_ps(x)
#define PEAK_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define PEAK_ADD(a, b) _mm512_add_ps(a, b)
#define PEAK_SUM(a) _mm512_reduce_add_ps(a)
#elif defined(__FMA__)
#define PEAK_ISA "avx2 fma"
#define PEAK_LANES 8
typedef __m256 peak_v;
#define PEAK_SET(x) _mm256_set1_ps(x)
#define PEAK_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define PEAK_ADD(a, b) _mm256_add_ps(a, b)
static float peak_sum8(__m256 a)
{
    float t[8];
    _mm256_storeu_ps(t, a);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#define PEAK_SUM(a) peak_sum8(a)
#endif

static double fma_peak(int threads, double seconds, const char **isa)
{
#ifdef PEAK_ISA
    *isa = PEAK_ISA;
    const long iters = 20000000; /* per thread and repetition: ~0.1 s */
    double best = 0.0, t_end = mlpf_now() + seconds;
    volatile float sink = 0.0f;
    do {
        double t0 = mlpf_now();
        float total = 0.0f;
        int ran = 1;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
#pragma omp single
            ran = omp_get_num_threads(); /* OMP_THREAD_LIMIT may give fewer */
            const peak_v b = PEAK_SET(0.9999999f), c = PEAK_SET(1e-7f);
            peak_v a0 = PEAK_SET(1), a1 = PEAK_SET(2), a2 = PEAK_SET(3), a3 = PEAK_SET(4), a4 = PEAK_SET(5),
                   a5 = PEAK_SET(6), a6 = PEAK_SET(7), a7 = PEAK_SET(8), a8 = PEAK_SET(9), a9 = PEAK_SET(10),
                   a10 = PEAK_SET(11), a11 = PEAK_SET(12);
            for (long i = 0; i < iters; i++) {
                a0 = PEAK_FMA(a0, b, c), a1 = PEAK_FMA(a1, b, c), a2 = PEAK_FMA(a2, b, c);
                a3 = PEAK_FMA(a3, b, c), a4 = PEAK_FMA(a4, b, c), a5 = PEAK_FMA(a5, b, c);
                a6 = PEAK_FMA(a6, b, c), a7 = PEAK_FMA(a7, b, c), a8 = PEAK_FMA(a8, b, c);
                a9 = PEAK_FMA(a9, b, c), a10 = PEAK_FMA(a10, b, c), a11 = PEAK_FMA(a11, b, c);
            }
            peak_v s = PEAK_ADD(PEAK_ADD(PEAK_ADD(a0, a1), PEAK_ADD(a2, a3)), PEAK_ADD(PEAK_ADD(a4, a5), PEAK_ADD(a6, a7)));
            s = PEAK_ADD(s, PEAK_ADD(PEAK_ADD(a8, a9), PEAK_ADD(a10, a11)));
            total += PEAK_SUM(s);
        }
        sink += total; /* keeps the chains alive */
        double r = (double)ran * iters * 12 * PEAK_LANES * 2 / (mlpf_now() - t0);
        if (r > best) best = r;
    } while (mlpf_now() < t_end);
    return best;
#else
    (void)threads, (void)seconds;
    *isa = "none (built without FMA instructions)";
    return 0.0;
#endif
}

/* cuBLAS at the same shapes on GPU 0 (the limit issue 7's training is held to). */
static int gpu_bench(const mlpf_config *c, int rows, const char *precision, double seconds)
{
    char err[512];
    gpu_info gi;
    if (gpu_device_count(err, sizeof err) < 0 || gpu_describe(0, &gi, err, sizeof err) != 0) {
        fprintf(stderr, "mlpfbench: gemm-bench --device cuda: %s\n", err);
        return 1;
    }
    const int W = c->width, S = c->bin_size, Dd = c->dist_dim;
    const int shape[3][3] = {{rows, W, W}, {S, S, Dd}, {S, W, S}};
    const char *name[3] = {"dense", "gram", "message"};
    printf("gemm-bench: cuBLAS on %s (sm_%d%d, %.0f MiB), %s, best of %.1f s each\n", gi.name,
           gi.cc_major, gi.cc_minor, gi.total_mib, precision, seconds);
    for (int k = 0; k < 3; k++) {
        double r = gpu_gemm_rate(0, precision, shape[k][0], shape[k][1], shape[k][2], seconds, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "mlpfbench: gemm-bench --device cuda: %s\n", err);
            return 1;
        }
        printf("  %-7s %5d x %4d x %4d  %8.1f TFLOP/s\n", name[k], shape[k][0], shape[k][1], shape[k][2], r / 1e12);
    }
    return 0;
}

int cmd_gemm_bench(int argc, char **argv)
{
    const char *preset = "hepscore22", *json = NULL, *device = "cpu", *precision = "tf32";
    long long rows = 5000, threads = 0;
    double seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (g_mpi.rank == 0) usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset")) rc = cli_preset(a, v, &preset);
        else if (!strcmp(a, "--rows")) rc = cli_int(a, v, 1, 1 << 22, &rows);
        else if (!strcmp(a, "--threads")) rc = cli_int(a, v, 1, 4096, &threads);
        else if (!strcmp(a, "--seconds")) rc = cli_double(a, v, 0.01, 3600, &seconds);
        else if (!strcmp(a, "--json")) rc = cli_path(a, v, "a file", &json);
        else if (!strcmp(a, "--device")) rc = cli_choice(a, v, "cpu|cuda", &device);
        else if (!strcmp(a, "--precision")) rc = cli_choice(a, v, "fp32|tf32|bf16", &precision);
        else {
            fprintf(stderr, "mlpfbench: unknown option '%s' (see mlpfbench gemm-bench --help)\n", a);
            return 2;
        }
        if (rc != 0) return 2;
        i++;
    }
    mlpf_config c;
    mlpf_config_preset(preset, &c);
    if (!strcmp(device, "cuda")) return gpu_bench(&c, (int)rows, precision, seconds);
    if (threads > 0) openblas_set_num_threads((int)threads);
    int nt = openblas_get_num_threads();
    const int W = c.width, S = c.bin_size, Dd = c.dist_dim;
    double r_dense = rate((int)rows, W, W, seconds);
    double r_gram = rate(S, S, Dd, seconds);
    double r_msg = rate(S, W, S, seconds);
    /* the model's FLOPs per element by shape class (spec cost model) */
    const double layers = c.n_graph_id + c.n_graph_reg, total = model_flops_per_element(&c);
    const double f_gram = layers * 2.0 * S * Dd / total, f_msg = layers * 2.0 * S * W / total;
    const double f_dense = 1.0 - f_gram - f_msg;
    double mix = 1.0 / (f_dense / r_dense + f_gram / r_gram + f_msg / r_msg);
    const char *isa;
    double peak = fma_peak(nt, seconds < 1.0 ? seconds : 1.0, &isa);
    if (g_mpi.rank == 0) {
        printf("gemm-bench: %s shapes, %d BLAS thread(s), best of %.1f s each\n", preset, nt, seconds);
        printf("  dense   %5lld x %4d x %4d  %8.1f GFLOP/s  (%4.1f%% of the model's FLOPs)\n", rows, W, W, r_dense / 1e9, 100 * f_dense);
        printf("  gram    %5d x %4d x %4d  %8.1f GFLOP/s  (%4.1f%%)\n", S, S, Dd, r_gram / 1e9, 100 * f_gram);
        printf("  message %5d x %4d x %4d  %8.1f GFLOP/s  (%4.1f%%)\n", S, W, S, r_msg / 1e9, 100 * f_msg);
        printf("  model mix (the limit)        %8.1f GFLOP/s\n", mix / 1e9);
        if (peak > 0)
            printf("  fp32 FMA peak (%s, %d thread(s)) %6.1f GFLOP/s: the limit is %.0f%% of it\n", isa, nt,
                   peak / 1e9, 100.0 * mix / peak);
        else
            printf("  fp32 FMA peak: not measured (%s)\n", isa);
    }
    if (json && g_mpi.rank == 0) {
        json_t *o = json_pack("{s:s, s:i, s:I, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "preset", preset,
                              "threads", nt, "rows", (json_int_t)rows, "width", W, "bin", S, "dist_dim", Dd,
                              "dense_flops", r_dense,
                              "gram_flops", r_gram, "message_flops", r_msg, "mix_flops", mix,
                              "dense_share", f_dense, "gram_share", f_gram, "message_share", f_msg,
                              "fma_peak_flops", peak, "fma_isa", isa);
        int bad = report_json_file(o, json, JSON_INDENT(1)) != 0;
        json_decref(o);
        if (bad) return 1;
    }
    return 0;
}
