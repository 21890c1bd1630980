#include "mpictx.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

mpictx g_mpi = {.comm = MPI_COMM_NULL, .io_comm = MPI_COMM_NULL, .node_comm = MPI_COMM_NULL, .size = 1};

void mpictx_init(int *argc, char ***argv)
{
    int provided = 0;
    g_mpi.launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ||
                     getenv("SLURM_PROCID") || getenv("SLURM_JOB_ID");
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    g_mpi.comm = MPI_COMM_WORLD;
    MPI_Comm_rank(g_mpi.comm, &g_mpi.rank);
    MPI_Comm_size(g_mpi.comm, &g_mpi.size);
    MPI_Comm_dup(g_mpi.comm, &g_mpi.io_comm);
    MPI_Comm_split_type(g_mpi.comm, MPI_COMM_TYPE_SHARED, g_mpi.rank, MPI_INFO_NULL, &g_mpi.node_comm);
    MPI_Comm_rank(g_mpi.node_comm, &g_mpi.local_rank);
    MPI_Comm_size(g_mpi.node_comm, &g_mpi.local_size);
    g_mpi.threads_ok = provided >= MPI_THREAD_MULTIPLE;
    if (gethostname(g_mpi.host, sizeof g_mpi.host) != 0) snprintf(g_mpi.host, sizeof g_mpi.host, "?");
    g_mpi.host[sizeof g_mpi.host - 1] = '\0';
    /* Slurm's name for the node, where one host carries several (emulated) nodes */
    const char *sn = getenv("SLURMD_NODENAME");
    if (sn && *sn) snprintf(g_mpi.host, sizeof g_mpi.host, "%s", sn);
}

void mpictx_finalize(void)
{
    if (g_mpi.io_comm != MPI_COMM_NULL) MPI_Comm_free(&g_mpi.io_comm);
    if (g_mpi.node_comm != MPI_COMM_NULL) MPI_Comm_free(&g_mpi.node_comm);
    MPI_Finalize();
}

static char last_error[2048];
static void (*fatal_hook)(const char *msg);
static void (*abort_hook)(void);
static atomic_int fatal_taken;

void mlpf_errorf(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n') msg[--n] = '\0';
    fprintf(stderr, "mlpfbench: %s\n", msg);
    snprintf(last_error, sizeof last_error, "%s", msg);
}

const char *mlpf_last_error(void) { return last_error; }

void mlpf_set_fatal_hook(void (*hook)(const char *msg)) { fatal_hook = hook; }
void mlpf_set_abort_hook(void (*hook)(void)) { abort_hook = hook; }

void mlpf_fatal(const char *fmt, ...)
{
    char msg[2048], full[2400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "rank %d (%.64s): %s", g_mpi.rank, g_mpi.host, msg);
    /* one thread ends the rank (the main thread and the run guard's may both
     * get here, e.g. when the guard's abort makes the step fail): the first
     * one's message and report stand, the other waits for the end */
    if (atomic_exchange(&fatal_taken, 1)) {
        fprintf(stderr, "mlpfbench: %s (while the rank was already ending)\n", full);
        for (;;) pause();
    }
    fprintf(stderr, "mlpfbench: %s\n", full);
    fflush(stderr);
    if (fatal_hook) {
        void (*h)(const char *) = fatal_hook;
        fatal_hook = NULL; /* once */
        h(full);
    }
    if (abort_hook) abort_hook(); /* after the report: a device communicator, so no kernel waits for a peer */
    int init = 0;
    MPI_Initialized(&init);
    if (init && g_mpi.size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

int mpictx_any(int failed)
{
    int any = failed;
    if (g_mpi.size > 1) MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, g_mpi.comm);
    return any != 0;
}
