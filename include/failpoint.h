/* Fault injection for the reliability tests (never set in normal runs).
 * MLPF_FAILPOINT="name[@step][:rank],..." arms the named point; failpoint()
 * returns 1 where the code should then misbehave:
 *   stall-step@N:R   rank R's main thread stops before the forward of step N
 *   stall-read@N:R   rank R's reader stops before reading batch N of an epoch
 *   probe-crash      the shard probe process crashes (SIGSEGV)
 * Without ":R" every rank; without "@N" every step. */
#ifndef MLPF_FAILPOINT_H
#define MLPF_FAILPOINT_H

int failpoint(const char *name, long long step, int rank);
/* Sleeps for good (until the job is ended from outside). */
void failpoint_stall(void);

#endif
