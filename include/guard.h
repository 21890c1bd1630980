/* Run guard: a thread that turns a hang or a termination into a clean end.
 * - Watchdog: if the run makes no progress (no step or validation batch
 *   finished) for `timeout` seconds, e.g. a rank waits in a collective for a
 *   rank that died or hangs, it ends the whole job with an error naming the
 *   rank, host and step.
 * - Wait limits: while the main thread waits for data (the prefetched batch)
 *   or in a collective (the gradient all-reduce, the step's reductions), a
 *   wait longer than its own limit ends the job the same way, naming what it
 *   waited for. Both are shorter than the overall limit by default.
 * - SIGTERM/SIGINT/SIGHUP (mpirun or Slurm ending the job because another
 *   rank failed, or a cancel): the handler only writes a byte to a pipe; the
 *   guard thread then calls the exit hook (rank 0 writes the failed report)
 *   and exits. */
#ifndef MLPF_GUARD_H
#define MLPF_GUARD_H

#include <stddef.h>

enum { GUARD_NONE, GUARD_DATA, GUARD_COLLECTIVE };

/* Limits in seconds, 0 = none: no progress at all, one data wait, one
 * collective wait. */
void guard_start(double timeout_s, double data_s, double collective_s, void (*on_exit)(const char *why));
/* Bracket a wait of the main thread; `what` is kept for the message. */
void guard_wait_begin(int kind, const char *what);
void guard_wait_end(void);
/* Mark progress; `where` is kept for the message (e.g. "step 12"). */
void guard_progress(const char *where);
void guard_stop(void);
/* A device communicator to watch (the GPU's gradient all-reduce): every
 * second the guard asks poll() (1 and the reason: it failed, e.g. a peer is
 * gone), and before it ends the job (that failure, a wait limit, no
 * progress) it calls abort() so that no GPU kernel is left waiting for a
 * peer. `device` names the GPU for the messages. NULLs: no watch. */
void guard_watch(int (*poll_cb)(void *ctx, char *why, size_t n), void (*abort_fn)(void *ctx), void *ctx,
                 const char *device);

#endif
