/* Run guard: a thread that turns a hang or a termination into a clean end.
 * - Watchdog: if the run makes no progress (no step or validation batch
 *   finished) for `timeout` seconds, e.g. a rank waits in a collective for a
 *   rank that died or hangs, it ends the whole job with an error naming the
 *   rank, host and step.
 * - SIGTERM/SIGINT/SIGHUP (mpirun or Slurm ending the job because another
 *   rank failed, or a cancel): the handler only writes a byte to a pipe; the
 *   guard thread then calls the exit hook (rank 0 writes the failed report)
 *   and exits. */
#ifndef MLPF_GUARD_H
#define MLPF_GUARD_H

void guard_start(double timeout_s, void (*on_exit)(const char *why));
/* Mark progress; `where` is kept for the message (e.g. "step 12"). */
void guard_progress(const char *where);
void guard_stop(void);

#endif
