/* The one clock of the project: seconds from CLOCK_MONOTONIC. Timings,
 * timeline spans and the watchdog all use it, so their values compare. */
#ifndef MLPF_CLOCK_H
#define MLPF_CLOCK_H

#include <time.h>

static inline double mlpf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#endif
