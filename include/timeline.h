/* --timeline FILE: a Chrome-trace JSON (chrome://tracing, Perfetto) of every
 * rank's forward, backward, gradient all-reduce buckets, data reads and waits
 * and optimizer spans, as Horovod's timeline shows them. Spans are kept in
 * memory and gathered to rank 0 at the end. */
#ifndef MLPF_TIMELINE_H
#define MLPF_TIMELINE_H

#include <mpi.h>

enum { TL_MAIN = 0, TL_IO = 1, TL_COMM = 2 };

/* Collective: start recording (aligns the ranks' clocks at a barrier). */
void timeline_start(MPI_Comm comm);
int timeline_enabled(void);
/* Record a span [t0, t1] (mlpf_now() seconds); thread-safe. */
void timeline_span(const char *name, int tid, double t0, double t1);
/* Collective: gather every rank's spans and write path on rank 0 (temporary
 * file, then rename). Returns 0 or -1 (on rank 0, with a message). */
int timeline_write(const char *path, MPI_Comm comm, const char *host);

#endif
