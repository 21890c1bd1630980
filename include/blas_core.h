/* The BLAS kernels this process runs, chosen at start (issue 16).
 *
 * OpenBLAS built with DYNAMIC_ARCH picks its kernels ("core") from cpuid
 * when it loads; a release older than the CPU falls back to a generic or
 * older core (Debian 12's 0.3.21 runs Prescott, SSE3, on Sapphire Rapids:
 * 6x slower products). blas_core_setup, called by main before MPI_Init in
 * every command that uses the BLAS (train, infer, gemm-bench, info):
 *   - the user's choice wins: `--blas-core NAME` (any command that uses the
 *     BLAS), else OPENBLAS_CORETYPE already set; it is checked like any
 *     chosen core, and a core that fails its check is refused (exit 1; a
 *     name this OpenBLAS does not know: exit 2);
 *   - otherwise, when OpenBLAS picked a core of a lower class than this CPU
 *     runs (AVX-512 F/BW/DQ/VL, AVX2 + FMA, AVX: include/cpu_isa.h), the
 *     best core of each higher class is tried in turn (SkylakeX; Zen on AMD,
 *     Haswell elsewhere; Sandybridge), each checked first;
 *   - the check: `mlpfbench __blas-check` in a child process with
 *     OPENBLAS_CORETYPE=NAME runs a few sgemm, dgemm and dsyrk products
 *     against a plain float64 reference (a crash, wrong results, a hang or
 *     a different core than asked for fail it);
 *   - a core that passes is used by restarting the process (execv of
 *     /proc/self/exe, same arguments) with OPENBLAS_CORETYPE set: OpenBLAS
 *     reads it only when it loads. Rank 0 says so once. The restarted
 *     process knows it was restarted from MLPF_BLAS_RESTART (removed again
 *     at once), so it never restarts twice.
 * The outcome (library, version, core, who chose it, whether it was
 * corrected, the check) goes into `info`, gemm-bench's JSON, the summary
 * (wl-stats.blas) and the closing table.
 *
 * Test hooks (the tests' only way to see a fallback on a CPU whose
 * OpenBLAS is right; never set in normal runs; a run with any of them says
 * so in wl-stats.blas.test_hook):
 *   MLPF_TEST_BLAS_AS_DETECTED=1  OPENBLAS_CORETYPE (which the test sets, e.g.
 *                                 to Prescott) counts as OpenBLAS's own pick,
 *                                 not as the user's choice
 *   MLPF_TEST_BLAS_CPU=avx512|avx2|avx|sse  the CPU class the choice assumes
 *   MLPF_TEST_BLAS_CHECK=perturb  the check's child adds an error of 1e-3 (of
 *                                 the entry's magnitude) to one entry of each
 *                                 product: the check must fail
 *   MLPF_TEST_BLAS_CHECK=hang     the check's child stops answering
 *   MLPF_BLAS_CHECK_TIMEOUT=S     the check's time limit (default 60 s) */
#ifndef MLPF_BLAS_CORE_H
#define MLPF_BLAS_CORE_H

#include <jansson.h>
#include <stddef.h>

typedef struct {
    char library[32], version[32], config[256];
    int dynamic_arch;      /* OPENBLAS_CORETYPE can change the core */
    char core[32];         /* the kernels in use (openblas_get_corename) */
    char chosen_by[32];    /* "OpenBLAS" (its own detection), "mlpfbench" (corrected),
                              "OPENBLAS_CORETYPE" or "--blas-core" (the user) */
    int corrected;         /* mlpfbench replaced OpenBLAS's pick */
    char corrected_from[32];
    char cpu_class[32];    /* what this CPU runs: "avx512", "avx2+fma", "avx", "sse" */
    char suits[32];        /* the core mlpfbench would choose for this CPU ("" none better than generic) */
    char check[256];       /* the child-process check of the core in use, or why none ran */
    char notes[1536];      /* cores refused and why, warnings; "" if none */
    int restarted;         /* this process is the restart */
    int test_hook;         /* an MLPF_TEST_BLAS_* hook was set */
} blas_state;

extern blas_state g_blas;

/* Before MPI_Init, with main's argc/argv (argv[1] the command): may restart
 * the process (then it does not return) or exit with a message. Removes
 * `--blas-core NAME` from argv and returns the new argc. */
int blas_core_setup(int argc, char **argv);
/* `mlpfbench __blas-check` (internal, no MPI): the child of the check. */
int blas_check_main(int argc, char **argv);
/* One line: "OpenBLAS 0.3.21, core Zen (OpenBLAS's own choice)". */
void blas_core_describe(char *buf, size_t n);
/* wl-stats.blas, and gemm-bench's "blas". */
json_t *blas_core_json(void);

#endif
