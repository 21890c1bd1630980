/* mlpfbench gemm-bench: the machine's fp32 matrix-product rate through the
 * BLAS at the model's shapes, the limit that make bench compares training to. */
#include <cblas.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "blas_core.h"
#include "cli.h"
#include "clock.h"
#include "config.h"
#include "cpu_isa.h"
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
            "matrix product can exceed. A BLAS whose dense product runs under 50%% of that\n"
            "peak is flagged as misconfigured (wrong kernels for this CPU).\n"
            "\n"
            "options:\n"
            "  --preset NAME   shapes of this preset (default hepscore22)\n"
            "  --rows N        rows of the dense shape (default 5000, one event)\n"
            "  --threads T     BLAS threads (default: all cores)\n"
            "  --seconds S     time per shape (default 2)\n"
            "  --device cpu|cuda  the BLAS on the CPU (default) or cuBLAS on GPU 0\n"
            "  --precision P   on cuda: fp32, tf32 (default) or bf16 (fp32 accumulation)\n"
            "  --json FILE     also write the figures as JSON\n"
            "  --blas-core NAME  the OpenBLAS kernels to run (default: chosen at start)\n"
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
 * chains of the widest FMA this CPU runs (enough chains to cover the
 * latency of two FMA pipes), in registers, no memory traffic. No matrix product
 * can beat it: with the model's FLOPs it bounds training from above. The
 * kernels are compiled for their instruction set (target attributes) and
 * chosen by cpuid, whatever ARCH the binary was built for: the BLAS picks its
 * own kernels at run time, and the peak must be the CPU's, not the build's.
 * Returns FLOP/s and names the instructions, or 0 where the CPU has no FMA. */
#if defined(__x86_64__) && defined(__GNUC__)
#define PEAK_CHAINS(V, SET, FMA, ADD, STORE, LANES)                                                          \
    const V b = SET(0.9999999f), c = SET(1e-7f);                                                             \
    V a0 = SET(1), a1 = SET(2), a2 = SET(3), a3 = SET(4), a4 = SET(5), a5 = SET(6), a6 = SET(7), a7 = SET(8), \
      a8 = SET(9), a9 = SET(10), a10 = SET(11), a11 = SET(12);                                               \
    for (long i = 0; i < iters; i++) {                                                                       \
        a0 = FMA(a0, b, c), a1 = FMA(a1, b, c), a2 = FMA(a2, b, c);                                          \
        a3 = FMA(a3, b, c), a4 = FMA(a4, b, c), a5 = FMA(a5, b, c);                                          \
        a6 = FMA(a6, b, c), a7 = FMA(a7, b, c), a8 = FMA(a8, b, c);                                          \
        a9 = FMA(a9, b, c), a10 = FMA(a10, b, c), a11 = FMA(a11, b, c);                                      \
    }                                                                                                        \
    V s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));                                  \
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));                                                             \
    float t[LANES], total = 0.0f;                                                                            \
    STORE(t, s);                                                                                             \
    for (int k = 0; k < LANES; k++) total += t[k];                                                           \
    return total;

__attribute__((target("avx512f"))) static float peak_chains_avx512(long iters)
{
    PEAK_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps, 16)
}
__attribute__((target("avx2,fma"))) static float peak_chains_avx2(long iters)
{
    PEAK_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps, 8)
}
#endif

static double fma_peak(int threads, double seconds, const char **isa)
{
#if defined(__x86_64__) && defined(__GNUC__)
    const isa_set has = cpu_isa_this()->has;
    float (*chains)(long) = NULL;
    int lanes = 0;
    if (has & ISA_BIT(ISA_AVX512F)) chains = peak_chains_avx512, lanes = 16, *isa = "avx512 fma";
    else if ((has & ISA_AVX2_FMA) == ISA_AVX2_FMA) chains = peak_chains_avx2, lanes = 8, *isa = "avx2 fma";
    if (!chains) {
        *isa = "none (this CPU has no AVX2 + FMA)";
        return 0.0;
    }
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
            total += chains(iters);
        }
        sink += total; /* keeps the chains alive */
        double r = (double)ran * iters * 12 * lanes * 2 / (mlpf_now() - t0);
        if (r > best) best = r;
    } while (mlpf_now() < t_end);
    return best;
#else
    (void)threads, (void)seconds;
    *isa = "none (not measured on this architecture)";
    return 0.0;
#endif
}

/* The BLAS is misconfigured when the largest product of the model runs
 * under this share of the cores' FMA peak: a BLAS with the right kernels
 * reaches 70-90% there; kernels for an older instruction set (SSE on an AVX2
 * CPU, AVX2 on an AVX-512 one) cannot reach half. */
#define BLAS_HEALTHY_SHARE 0.5

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
    /* the judgement: the largest product against the FMA peak */
    const double share = peak > 0 ? r_dense / peak : 0.0;
    const int judged = peak > 0 && W >= 256, misconfigured = judged && share < BLAS_HEALTHY_SHARE;
    char blas[256], verdict[1024];
    blas_core_describe(blas, sizeof blas);
    if (peak <= 0)
        snprintf(verdict, sizeof verdict, "not judged: the FMA peak was not measured (%s)", isa);
    else if (!judged) /* a product of width 32 is bound by memory, not by the kernels */
        snprintf(verdict, sizeof verdict, "not judged: the %s preset's products (width %d) are too small to show the "
                 "kernels' rate (the dense product runs at %.0f%% of the FMA peak)", preset, W, 100 * share);
    else if (!misconfigured)
        snprintf(verdict, sizeof verdict, "ok: the dense product runs at %.0f%% of the FMA peak (at least %.0f%%)",
                 100 * share, 100 * BLAS_HEALTHY_SHARE);
    else
        snprintf(verdict, sizeof verdict,
                 "MISCONFIGURED: the dense product runs at %.0f%% of the cores' FMA peak (under %.0f%%): the BLAS "
                 "(%s) does not run the kernels this CPU (%s) needs%s%s. The limit above is that BLAS's, not this "
                 "machine's: fix the BLAS (--blas-core NAME, OPENBLAS_CORETYPE, or a newer OpenBLAS) before "
                 "comparing anything with it", 100 * share, 100 * BLAS_HEALTHY_SHARE, blas, g_blas.cpu_class,
                 g_blas.suits[0] && strcasecmp(g_blas.suits, g_blas.core) ? "; mlpfbench's core for it: " : "",
                 g_blas.suits[0] && strcasecmp(g_blas.suits, g_blas.core) ? g_blas.suits : "");
    if (g_mpi.rank == 0) {
        printf("gemm-bench: %s shapes, %d BLAS thread(s), best of %.1f s each; %s\n", preset, nt, seconds, blas);
        printf("  dense   %5lld x %4d x %4d  %8.1f GFLOP/s  (%4.1f%% of the model's FLOPs)\n", rows, W, W, r_dense / 1e9, 100 * f_dense);
        printf("  gram    %5d x %4d x %4d  %8.1f GFLOP/s  (%4.1f%%)\n", S, S, Dd, r_gram / 1e9, 100 * f_gram);
        printf("  message %5d x %4d x %4d  %8.1f GFLOP/s  (%4.1f%%)\n", S, W, S, r_msg / 1e9, 100 * f_msg);
        printf("  model mix (the limit)        %8.1f GFLOP/s\n", mix / 1e9);
        if (peak > 0)
            printf("  fp32 FMA peak (%s, %d thread(s)) %6.1f GFLOP/s: the limit is %.0f%% of it\n", isa, nt,
                   peak / 1e9, 100.0 * mix / peak);
        else
            printf("  fp32 FMA peak: not measured (%s)\n", isa);
        printf("  BLAS: %s\n", verdict);
    }
    if (json && g_mpi.rank == 0) {
        json_t *o = json_pack("{s:s, s:i, s:I, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}", "preset", preset,
                              "threads", nt, "rows", (json_int_t)rows, "width", W, "bin", S, "dist_dim", Dd,
                              "dense_flops", r_dense,
                              "gram_flops", r_gram, "message_flops", r_msg, "mix_flops", mix,
                              "dense_share", f_dense, "gram_share", f_gram, "message_share", f_msg,
                              "fma_peak_flops", peak, "fma_isa", isa);
        json_object_set_new(o, "dense_of_fma_peak", json_real(share));
        json_object_set_new(o, "blas_healthy_share", json_real(BLAS_HEALTHY_SHARE));
        json_object_set_new(o, "blas_misconfigured", judged ? json_boolean(misconfigured) : json_null());
        json_object_set_new(o, "blas_verdict", json_string(verdict));
        json_object_set_new(o, "blas", blas_core_json());
        int bad = report_json_file(o, json, JSON_INDENT(1)) != 0;
        json_decref(o);
        if (bad) return 1;
    }
    return 0;
}
