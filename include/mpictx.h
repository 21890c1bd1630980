/* The MPI context of a run and fatal-error handling: every error names the
 * rank and host; a fatal error mid-run aborts the whole job so no rank is
 * left waiting in a collective. */
#ifndef MLPF_MPICTX_H
#define MLPF_MPICTX_H

#include <mpi.h>

typedef struct {
    MPI_Comm comm;    /* MPI_COMM_WORLD */
    MPI_Comm io_comm; /* a duplicate for file I/O, used by the prefetch thread */
    MPI_Comm node_comm; /* the ranks of this node (shared memory), by local rank */
    int rank, size;
    int local_rank, local_size;
    int threads_ok; /* MPI_THREAD_MULTIPLE provided */
    int launched;   /* started by mpirun/srun (seen before MPI_Init sets its own variables) */
    char host[256];
} mpictx;

extern mpictx g_mpi;

/* MPI_Init_thread (asking for MPI_THREAD_MULTIPLE) and fill g_mpi. */
void mpictx_init(int *argc, char ***argv);
void mpictx_finalize(void);
/* Print "mlpfbench: rank R (host): message" on stderr and abort the job. */
void mlpf_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Print "mlpfbench: message" on stderr and keep it as the last error (for
 * the failed-run report). */
void mlpf_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *mlpf_last_error(void);
/* Called by mlpf_fatal before it aborts (rank 0 writes a failed report). */
void mlpf_set_fatal_hook(void (*hook)(const char *msg));
/* Called by mlpf_fatal after that hook, before it aborts (the run guard's
 * device communicator abort). */
void mlpf_set_abort_hook(void (*hook)(void));
/* Collective: 1 if `failed` is set on any rank. */
int mpictx_any(int failed);

#endif
