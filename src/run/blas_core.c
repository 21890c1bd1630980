/* Choosing the BLAS kernels at start, checked in a child process, used by
 * restarting the process (include/blas_core.h). Runs before MPI_Init: no
 * MPI here, and the rank is read from the launcher's environment. */
#include "blas_core.h"

#include "clock.h"
#include "cpu_isa.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

blas_state g_blas;

#define RESTART_VAR "MLPF_BLAS_RESTART"
#define CHECK_EXIT_WRONG 3

/* OpenBLAS's x86 core names (driver/others/dynamic.c) by the class of
 * instructions their kernels use: 0 SSE only, 1 AVX, 2 AVX2 + FMA, 3 AVX-512.
 * A name not here (another architecture, a newer release) is not judged. */
static const struct { const char *name; int level; } CORES[] = {
    {"Katmai", 0}, {"Coppermine", 0}, {"Northwood", 0}, {"Prescott", 0}, {"Banias", 0}, {"Atom", 0},
    {"Core2", 0}, {"Penryn", 0}, {"Dunnington", 0}, {"Nehalem", 0}, {"Athlon", 0}, {"Opteron", 0},
    {"Opteron(SSE3)", 0}, {"Opteron_SSE3", 0}, {"Barcelona", 0}, {"Nano", 0}, {"Bobcat", 0},
    {"Sandybridge", 1}, {"Bulldozer", 1}, {"Piledriver", 1}, {"Steamroller", 1}, {"Excavator", 1},
    {"Haswell", 2}, {"Zen", 2},
    {"SkylakeX", 3}, {"Cooperlake", 3}, {"SapphireRapids", 3},
};
static const char *const CLASS_NAMES[4] = {"sse", "avx", "avx2+fma", "avx512"};

static int core_level(const char *name)
{
    for (size_t k = 0; k < sizeof CORES / sizeof CORES[0]; k++)
        if (!strcasecmp(name, CORES[k].name)) return CORES[k].level;
    return -1;
}

static int class_of(const char *word)
{
    for (int k = 0; k < 4; k++)
        if (!strcasecmp(word, CLASS_NAMES[k])) return k;
    if (!strcasecmp(word, "avx2")) return 2;
    return -1;
}

/* What this CPU runs (or MLPF_TEST_BLAS_CPU). */
static int cpu_level(void)
{
    const char *hook = getenv("MLPF_TEST_BLAS_CPU");
    if (hook && *hook && class_of(hook) >= 0) return class_of(hook);
    isa_set has = cpu_isa_this()->has;
    if ((has & ISA_AVX512_CORE) == ISA_AVX512_CORE) return 3;
    if ((has & ISA_AVX2_FMA) == ISA_AVX2_FMA) return 2;
    if (has & ISA_BIT(ISA_AVX)) return 1;
    return 0;
}

/* The core mlpfbench chooses for a class: the one OpenBLAS's newer releases
 * pick for such CPUs (SkylakeX also on Zen 4). */
static const char *core_for(int level)
{
    const char *v = cpu_isa_this()->vendor;
    switch (level) {
    case 3: return "SkylakeX";
    case 2: return (!strcmp(v, "AuthenticAMD") || !strcmp(v, "HygonGenuine")) ? "Zen" : "Haswell";
    case 1: return "Sandybridge";
    default: return NULL;
    }
}

/* The global rank, from the launcher (before MPI_Init). */
static int launch_rank(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
    for (int k = 0; k < 4; k++) {
        const char *v = getenv(vars[k]);
        if (v && *v) return atoi(v);
    }
    return 0;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    size_t len = strlen(g_blas.notes);
    if (len + 3 >= sizeof g_blas.notes) return;
    if (len) {
        memcpy(g_blas.notes + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_blas.notes + len, sizeof g_blas.notes - len, fmt, ap);
    va_end(ap);
}

/* ---- the check, in a child process ----------------------------------- */

typedef struct {
    int ok;
    char core[32]; /* the core the child ran ("" if it said nothing) */
    char how[256]; /* "passed: ..." or why it failed */
} check_result;

static double check_timeout(void)
{
    const char *t = getenv("MLPF_BLAS_CHECK_TIMEOUT");
    double s = t && *t ? atof(t) : 60.0;
    return s > 0 ? s : 60.0;
}

/* Runs `mlpfbench __blas-check` with OPENBLAS_CORETYPE=core (core NULL: the
 * environment as it is). */
static void run_check(const char *core, check_result *r)
{
    memset(r, 0, sizeof *r);
    int n_env = 0;
    while (environ[n_env]) n_env++;
    char **envp = calloc((size_t)n_env + 2, sizeof(char *));
    char set[64];
    int m = 0;
    if (!envp) {
        snprintf(r->how, sizeof r->how, "not run: out of memory");
        return;
    }
    for (int k = 0; k < n_env; k++) {
        if (!strncmp(environ[k], RESTART_VAR "=", strlen(RESTART_VAR) + 1)) continue;
        if (core && !strncmp(environ[k], "OPENBLAS_CORETYPE=", 18)) continue;
        envp[m++] = environ[k];
    }
    if (core) {
        snprintf(set, sizeof set, "OPENBLAS_CORETYPE=%s", core);
        envp[m++] = set;
    }
    envp[m] = NULL;
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(r->how, sizeof r->how, "not run: pipe: %s", strerror(errno));
        free(envp);
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 2);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    char *args[] = {"mlpfbench", "__blas-check", NULL};
    pid_t pid;
    int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(fd[1]);
    if (err != 0) {
        close(fd[0]);
        snprintf(r->how, sizeof r->how, "not run: cannot start /proc/self/exe __blas-check: %s", strerror(err));
        return;
    }
    /* its output until it closes the pipe, within the time limit */
    char out[4096];
    size_t len = 0;
    const double limit = check_timeout(), t_end = mlpf_now() + limit;
    int timed_out = 0;
    for (;;) {
        double left = t_end - mlpf_now();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd p = {.fd = fd[0], .events = POLLIN};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        ssize_t got = read(fd[0], out + len, sizeof out - 1 - len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
        if (len >= sizeof out - 1) len = 0; /* keep only the tail of a flood */
    }
    out[len] = '\0';
    close(fd[0]);
    int status = 0;
    if (timed_out) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    } else {
        /* the pipe is closed: the child is ending; give it the rest of the limit */
        for (;;) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid || (w < 0 && errno != EINTR)) break;
            if (mlpf_now() > t_end) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                timed_out = 1;
                break;
            }
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
    /* "core NAME" first, then "passed ..." or "wrong ..." (and whatever
     * OpenBLAS itself printed) */
    char last[200] = "";
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "core ", 5) && !r->core[0]) sscanf(line + 5, "%31s", r->core);
        else snprintf(last, sizeof last, "%s", line);
    }
    if (timed_out) {
        snprintf(r->how, sizeof r->how, "hung: no answer in %.0f s (killed)", limit);
    } else if (WIFSIGNALED(status)) {
        int s = WTERMSIG(status);
        snprintf(r->how, sizeof r->how, "crashed: killed by signal %d (SIG%s, %s)", s, sigabbrev_np(s) ? sigabbrev_np(s) : "?",
                 strsignal(s));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !strncmp(last, "passed", 6)) {
        r->ok = 1;
        snprintf(r->how, sizeof r->how, "%s", last);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == CHECK_EXIT_WRONG) {
        snprintf(r->how, sizeof r->how, "wrong results: %s", strncmp(last, "wrong: ", 7) ? last : last + 7);
    } else {
        snprintf(r->how, sizeof r->how, "exit status %d: %s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 last[0] ? last : "no output");
    }
    if (r->ok && core && strcasecmp(r->core, core)) {
        r->ok = 0;
        snprintf(r->how, sizeof r->how, "this OpenBLAS has no core '%s' (with OPENBLAS_CORETYPE=%s it ran %s)", core,
                 core, r->core[0] ? r->core : "an unnamed core");
    }
}

/* ---- the child: products against a float64 reference ---------------- */

static uint64_t lcg = 0x9e3779b97f4a7c15ull;
static double uniform(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* One product C = alpha op(A) op(B) + beta C, row-major, in single or double
 * precision through the BLAS, compared entry by entry with a float64 loop:
 * the error of an entry relative to sum_k |alpha a_ik b_kj| + |beta c_ij|.
 * syrk: C = alpha A A^T + beta C on the lower triangle (B unused). */
typedef struct { const char *what; int dbl, syrk, ta, tb, M, N, K, pad; double alpha, beta; } product;

static int check_product(const product *p, double *worst, char *msg, size_t n, int perturb)
{
    const int M = p->M, N = p->N, K = p->K;
    const int rA = p->ta ? K : M, cA = p->ta ? M : K, rB = p->tb ? N : K, cB = p->tb ? K : N;
    const int lda = cA + p->pad, ldb = cB + p->pad, ldc = N + p->pad;
    double *A = malloc(sizeof(double) * rA * lda), *B = malloc(sizeof(double) * rB * ldb),
           *C0 = malloc(sizeof(double) * M * ldc), *R = malloc(sizeof(double) * M * ldc),
           *S = malloc(sizeof(double) * M * ldc);
    float *Af = malloc(sizeof(float) * rA * lda), *Bf = malloc(sizeof(float) * rB * ldb),
          *Cf = malloc(sizeof(float) * M * ldc);
    double *Cd = malloc(sizeof(double) * M * ldc);
    if (!A || !B || !C0 || !R || !S || !Af || !Bf || !Cf || !Cd) {
        snprintf(msg, n, "out of memory");
        return -1;
    }
    /* values exactly representable in float, so that both precisions see the same inputs */
    for (long i = 0; i < (long)rA * lda; i++) Af[i] = (float)uniform(), A[i] = Af[i];
    for (long i = 0; i < (long)rB * ldb; i++) Bf[i] = (float)uniform(), B[i] = Bf[i];
    for (long i = 0; i < (long)M * ldc; i++) Cf[i] = (float)uniform(), C0[i] = Cf[i], Cd[i] = Cf[i];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < (p->syrk ? i + 1 : N); j++) {
            double s = 0, a = 0;
            for (int k = 0; k < K; k++) {
                double x = p->ta ? A[(long)k * lda + i] : A[(long)i * lda + k];
                double y = p->syrk ? A[(long)j * lda + k] : p->tb ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                s += x * y;
                a += fabs(x * y);
            }
            R[(long)i * ldc + j] = p->alpha * s + p->beta * C0[(long)i * ldc + j];
            S[(long)i * ldc + j] = fabs(p->alpha) * a + fabs(p->beta * C0[(long)i * ldc + j]) + 1e-300;
        }
    const enum CBLAS_TRANSPOSE tA = p->ta ? CblasTrans : CblasNoTrans, tB = p->tb ? CblasTrans : CblasNoTrans;
    if (p->syrk)
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, M, K, p->alpha, A, lda, p->beta, Cd, ldc);
    else if (p->dbl)
        cblas_dgemm(CblasRowMajor, tA, tB, M, N, K, p->alpha, A, lda, B, ldb, p->beta, Cd, ldc);
    else
        cblas_sgemm(CblasRowMajor, tA, tB, M, N, K, (float)p->alpha, Af, lda, Bf, ldb, (float)p->beta, Cf, ldc);
    const int dbl = p->dbl || p->syrk;
    if (perturb) { /* the test hook: one entry off by 1e-3 of its magnitude */
        long at = (long)(M / 2) * ldc + (p->syrk ? M / 4 : N / 2);
        if (dbl) Cd[at] += 1e-3 * S[at];
        else Cf[at] += (float)(1e-3 * S[at]);
    }
    const double tol = dbl ? 1e-12 : 1e-4;
    int bad = 0;
    for (int i = 0; i < M && !bad; i++)
        for (int j = 0; j < (p->syrk ? i + 1 : N); j++) {
            long at = (long)i * ldc + j;
            double got = dbl ? Cd[at] : Cf[at];
            double e = fabs(got - R[at]) / S[at];
            if (!(e <= tol)) { /* also NaN */
                snprintf(msg, n, "%s: entry (%d, %d) is %.9g, the float64 reference %.9g (error %.2e of its "
                         "magnitude, tolerance %.0e)", p->what, i, j, got, R[at], e, tol);
                bad = 1;
                break;
            }
            if (e > *worst) *worst = e;
        }
    free(A), free(B), free(C0), free(R), free(S), free(Af), free(Bf), free(Cf), free(Cd);
    return bad;
}

int blas_check_main(int argc, char **argv)
{
    (void)argc, (void)argv;
    printf("core %s\n", openblas_get_corename());
    fflush(stdout);
    const char *hook = getenv("MLPF_TEST_BLAS_CHECK");
    if (hook && !strcmp(hook, "hang"))
        for (;;) pause();
    const int perturb = hook && !strcmp(hook, "perturb");
    /* odd sizes, padded leading dimensions, every transpose the model uses,
     * one product large enough for OpenBLAS to split it among threads, and
     * the float64 dgemm and dsyrk of the distance products */
    static const product P[] = {
        {"sgemm NN 67x131x95", 0, 0, 0, 0, 67, 131, 95, 3, 1.0, 0.0},
        {"sgemm TN 96x70x133", 0, 0, 1, 0, 96, 70, 133, 1, 0.5, 1.5},
        {"sgemm NT 200x160x64", 0, 0, 0, 1, 200, 160, 64, 0, 1.0, 1.0},
        {"sgemm NN 384x320x256", 0, 0, 0, 0, 384, 320, 256, 0, 1.0, 0.0},
        {"dgemm NT 90x100x70", 1, 0, 0, 1, 90, 100, 70, 2, 1.0, 0.0},
        {"dsyrk lower 96x80", 1, 1, 0, 0, 96, 96, 80, 5, 1.0, 0.0},
    };
    const int np = (int)(sizeof P / sizeof P[0]);
    double worst = 0;
    char msg[256];
    for (int k = 0; k < np; k++) {
        int rc = check_product(&P[k], &worst, msg, sizeof msg, perturb);
        if (rc) {
            printf("wrong: %s\n", msg);
            return rc < 0 ? 1 : CHECK_EXIT_WRONG;
        }
    }
    printf("passed: %d products (sgemm NN/TN/NT, dgemm, dsyrk) within %.1e of a float64 reference\n", np, worst);
    return 0;
}

/* ---- the choice -------------------------------------------------------- */

static void fill_library(void)
{
    const char *cfg = openblas_get_config();
    snprintf(g_blas.config, sizeof g_blas.config, "%s", cfg ? cfg : "");
    snprintf(g_blas.library, sizeof g_blas.library, "OpenBLAS");
    if (cfg && sscanf(cfg, "OpenBLAS %31s", g_blas.version) != 1) snprintf(g_blas.version, sizeof g_blas.version, "?");
    g_blas.dynamic_arch = cfg && strstr(cfg, "DYNAMIC_ARCH") != NULL;
    snprintf(g_blas.core, sizeof g_blas.core, "%s", openblas_get_corename());
}

static void remove_arg(int *argc, char **argv, int i, int count)
{
    for (int k = i; k + count <= *argc; k++) argv[k] = argv[k + count];
    *argc -= count;
}

/* src without '|', the separator of the restart marker's fields */
static const char *field(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src);
    for (char *p = dst; *p; p++)
        if (*p == '|') *p = '/';
    return dst;
}

/* Restart with OPENBLAS_CORETYPE=core; returns only if execv failed. The
 * marker tells the restarted process who chose the core, what it replaced,
 * the check and the notes: chosen_by|from|check|notes. */
static void restart(char **argv, const char *core, const char *chosen_by, const char *from, const char *check)
{
    char marker[2400], a[64], b[64], c[300], d[sizeof g_blas.notes];
    snprintf(marker, sizeof marker, "%s|%s|%s|%s", field(a, sizeof a, chosen_by), field(b, sizeof b, from),
             field(c, sizeof c, check), field(d, sizeof d, g_blas.notes));
    setenv("OPENBLAS_CORETYPE", core, 1);
    setenv(RESTART_VAR, marker, 1);
    fflush(stdout);
    fflush(stderr);
    execv("/proc/self/exe", argv);
    int e = errno;
    unsetenv(RESTART_VAR);
    fprintf(stderr, "mlpfbench: BLAS: cannot restart with OPENBLAS_CORETYPE=%s (execv /proc/self/exe: %s); "
            "keeping core %s\n", core, strerror(e), g_blas.core);
    note("the restart with OPENBLAS_CORETYPE=%s failed: %s", core, strerror(e));
}

/* The restarted process: what the first one decided. */
static void restarted(const char *marker)
{
    char buf[2400];
    snprintf(buf, sizeof buf, "%s", marker);
    unsetenv(RESTART_VAR);
    char *f[4] = {buf, "", "", ""};
    for (int k = 1; k < 4; k++) {
        char *bar = strchr(f[k - 1], '|');
        if (!bar) break;
        *bar = '\0';
        f[k] = bar + 1;
    }
    g_blas.restarted = 1;
    snprintf(g_blas.chosen_by, sizeof g_blas.chosen_by, "%.31s", f[0]);
    g_blas.corrected = !strcmp(f[0], "mlpfbench");
    snprintf(g_blas.corrected_from, sizeof g_blas.corrected_from, "%.31s", g_blas.corrected ? f[1] : "");
    snprintf(g_blas.check, sizeof g_blas.check, "%.255s", f[2]);
    snprintf(g_blas.notes, sizeof g_blas.notes, "%.1535s", f[3]);
    const char *want = getenv("OPENBLAS_CORETYPE");
    if (want && strcasecmp(want, g_blas.core)) {
        note("restarted with OPENBLAS_CORETYPE=%s, but OpenBLAS runs %s", want, g_blas.core);
        if (launch_rank() == 0)
            fprintf(stderr, "mlpfbench: BLAS: restarted with OPENBLAS_CORETYPE=%s, but OpenBLAS runs %s\n", want,
                    g_blas.core);
        g_blas.corrected = 0;
    }
}

static void refuse(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void refuse(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "mlpfbench: rank %d: BLAS: %s\n", launch_rank(), msg);
    exit(code);
}

int blas_core_setup(int argc, char **argv)
{
    memset(&g_blas, 0, sizeof g_blas);
    fill_library();
    g_blas.test_hook = getenv("MLPF_TEST_BLAS_AS_DETECTED") || getenv("MLPF_TEST_BLAS_CPU") ||
                       getenv("MLPF_TEST_BLAS_CHECK");
    const int cpu = cpu_level();
    snprintf(g_blas.cpu_class, sizeof g_blas.cpu_class, "%s", CLASS_NAMES[cpu]);
    snprintf(g_blas.suits, sizeof g_blas.suits, "%s", core_for(cpu) ? core_for(cpu) : "");
    const int rank0 = launch_rank() == 0;

    /* --blas-core NAME (or --blas-core=NAME), taken out of the command's arguments below */
    const char *want = NULL;
    int at = -1, count = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--blas-core")) {
            if (i + 1 >= argc || !argv[i + 1][0] || argv[i + 1][0] == '-')
                refuse(2, "--blas-core needs a core name (e.g. SkylakeX, Haswell, Zen, Sandybridge, Prescott)");
            want = argv[i + 1], at = i, count = 2;
        } else if (!strncmp(argv[i], "--blas-core=", 12)) {
            want = argv[i] + 12, at = i, count = 1;
            if (!*want) refuse(2, "--blas-core= needs a core name");
        }
    }

    const char *marker = getenv(RESTART_VAR);
    if (marker) {
        restarted(marker);
    } else if (want) {
        snprintf(g_blas.chosen_by, sizeof g_blas.chosen_by, "--blas-core");
        if (!g_blas.dynamic_arch && strcasecmp(want, g_blas.core))
            refuse(2, "--blas-core %s: this OpenBLAS (%s) is built for the %s core only (no DYNAMIC_ARCH): it "
                   "cannot run another", want, g_blas.config, g_blas.core);
        check_result r;
        run_check(want, &r);
        if (!r.ok && strstr(r.how, "has no core"))
            refuse(2, "--blas-core %s: %s. x86 cores: SapphireRapids, Cooperlake, SkylakeX (AVX-512), Haswell, "
                   "Zen (AVX2), Sandybridge (AVX), Nehalem, Prescott (SSE)", want, r.how);
        if (!r.ok)
            refuse(1, "--blas-core %s: the %s core failed its check in a child process (%s): not used. This CPU "
                   "(%s) runs %s%s%s", want, want, r.how, cpu_isa_this()->model, g_blas.cpu_class,
                   g_blas.suits[0] ? "; try --blas-core " : "", g_blas.suits);
        snprintf(g_blas.check, sizeof g_blas.check, "%s", r.how);
        const char *env = getenv("OPENBLAS_CORETYPE");
        if (env && *env && strcasecmp(env, r.core)) note("--blas-core %s replaced OPENBLAS_CORETYPE=%s", want, env);
        if (strcasecmp(r.core, g_blas.core)) restart(argv, r.core, "--blas-core", g_blas.core, r.how);
    } else if (getenv("OPENBLAS_CORETYPE") && *getenv("OPENBLAS_CORETYPE") && !getenv("MLPF_TEST_BLAS_AS_DETECTED")) {
        /* the user's choice: kept, but checked like any chosen core */
        const char *env = getenv("OPENBLAS_CORETYPE");
        snprintf(g_blas.chosen_by, sizeof g_blas.chosen_by, "OPENBLAS_CORETYPE");
        check_result r;
        run_check(NULL, &r);
        if (!r.ok)
            refuse(1, "OPENBLAS_CORETYPE=%s: the %s core failed its check in a child process (%s): not used. "
                   "Unset OPENBLAS_CORETYPE (mlpfbench then chooses) or set another core; this CPU (%s) runs %s%s%s",
                   env, g_blas.core, r.how, cpu_isa_this()->model, g_blas.cpu_class,
                   g_blas.suits[0] ? ", e.g. " : "", g_blas.suits);
        snprintf(g_blas.check, sizeof g_blas.check, "%s", r.how);
        if (strcasecmp(env, g_blas.core)) {
            note("OpenBLAS has no core '%s' (OPENBLAS_CORETYPE) and runs %s", env, g_blas.core);
            if (rank0) fprintf(stderr, "mlpfbench: BLAS: OPENBLAS_CORETYPE=%s is not a core of this OpenBLAS; it runs %s\n",
                               env, g_blas.core);
        }
        int lv = core_level(g_blas.core);
        if (lv >= 0 && lv < cpu && g_blas.suits[0]) {
            note("kept as the user set it; this CPU (%s) could run %s", g_blas.cpu_class, g_blas.suits);
            if (rank0)
                fprintf(stderr, "mlpfbench: BLAS: OPENBLAS_CORETYPE=%s kept as set; this CPU (%s) could run the "
                        "%s kernels (unset it to let mlpfbench choose)\n", env, g_blas.cpu_class, g_blas.suits);
        }
    } else {
        /* OpenBLAS's own pick (or, with the test hook, the OPENBLAS_CORETYPE
         * the test set, standing for it) */
        snprintf(g_blas.chosen_by, sizeof g_blas.chosen_by, "OpenBLAS");
        snprintf(g_blas.check, sizeof g_blas.check, "not run: OpenBLAS's own choice");
        const char *seen = g_blas.core;
        int lv = core_level(seen);
        if (lv < 0) {
            note("core %s is not one mlpfbench knows: not judged", seen);
        } else if (lv < cpu) {
            if (!g_blas.dynamic_arch) {
                note("OpenBLAS runs %s on a CPU that runs %s, and is built for that core only (no DYNAMIC_ARCH): "
                     "cannot switch", seen, g_blas.cpu_class);
                if (rank0)
                    fprintf(stderr, "mlpfbench: BLAS: WARNING: OpenBLAS runs its %s kernels on a CPU that runs %s, "
                            "and this build of it cannot switch (no DYNAMIC_ARCH): products will be slow\n", seen,
                            g_blas.cpu_class);
            } else {
                int used = 0;
                for (int level = cpu; level > lv; level--) {
                    const char *cand = core_for(level);
                    check_result r;
                    run_check(cand, &r);
                    if (r.ok) {
                        if (rank0)
                            fprintf(stderr, "mlpfbench: BLAS: OpenBLAS %s picked its %s kernels on this CPU (%s, "
                                    "%s); restarting with OPENBLAS_CORETYPE=%s (checked in a child process, %s). "
                                    "OPENBLAS_CORETYPE or --blas-core NAME chooses instead.\n",
                                    g_blas.version, seen, cpu_isa_this()->model, g_blas.cpu_class, cand, r.how);
                        restart(argv, cand, "mlpfbench", seen, r.how);
                        used = 1; /* only if the restart failed */
                        break;
                    }
                    note("%s not used: it failed its check in a child process: %s", cand, r.how);
                    if (rank0)
                        fprintf(stderr, "mlpfbench: BLAS: the %s core failed its check in a child process (%s): not "
                                "used\n", cand, r.how);
                }
                if (!used && rank0)
                    fprintf(stderr, "mlpfbench: BLAS: WARNING: keeping OpenBLAS's %s kernels on a CPU that runs %s: "
                            "no better core passed its check; products will be slow\n", seen, g_blas.cpu_class);
            }
        }
    }
    if (at >= 0) remove_arg(&argc, argv, at, count);
    return argc;
}

/* Outside mlpfbench's main (test programs): the library as it loaded. */
static void ensure(void)
{
    if (g_blas.library[0]) return;
    fill_library();
    const int cpu = cpu_level(); /* what this CPU runs, as blas_core_setup says it */
    snprintf(g_blas.cpu_class, sizeof g_blas.cpu_class, "%s", CLASS_NAMES[cpu]);
    snprintf(g_blas.suits, sizeof g_blas.suits, "%s", core_for(cpu) ? core_for(cpu) : "");
    snprintf(g_blas.chosen_by, sizeof g_blas.chosen_by, "OpenBLAS");
    snprintf(g_blas.check, sizeof g_blas.check, "not run: no choice made in this program");
}

void blas_core_describe(char *buf, size_t n)
{
    ensure();
    char who[160];
    if (g_blas.corrected)
        snprintf(who, sizeof who, "corrected by mlpfbench from OpenBLAS's %s", g_blas.corrected_from);
    else if (!strcmp(g_blas.chosen_by, "OpenBLAS"))
        snprintf(who, sizeof who, "OpenBLAS's own choice");
    else
        snprintf(who, sizeof who, "set by %s", g_blas.chosen_by);
    snprintf(buf, n, "%s %s, core %s (%s)%s", g_blas.library, g_blas.version, g_blas.core, who,
             g_blas.test_hook ? " [test hook]" : "");
}

json_t *blas_core_json(void)
{
    ensure();
    json_t *o = json_object();
    json_object_set_new(o, "library", json_string(g_blas.library));
    json_object_set_new(o, "version", json_string(g_blas.version));
    json_object_set_new(o, "config", json_string(g_blas.config));
    json_object_set_new(o, "core", json_string(g_blas.core));
    json_object_set_new(o, "chosen_by", json_string(g_blas.chosen_by));
    json_object_set_new(o, "corrected", json_boolean(g_blas.corrected));
    if (g_blas.corrected) json_object_set_new(o, "corrected_from", json_string(g_blas.corrected_from));
    json_object_set_new(o, "cpu_class", json_string(g_blas.cpu_class));
    json_object_set_new(o, "core_for_this_cpu", json_string(g_blas.suits));
    json_object_set_new(o, "check", json_string(g_blas.check));
    json_object_set_new(o, "restarted", json_boolean(g_blas.restarted));
    json_object_set_new(o, "notes", json_string(g_blas.notes));
    json_object_set_new(o, "test_hook", json_boolean(g_blas.test_hook));
    return o;
}
