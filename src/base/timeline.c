#include "timeline.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

typedef struct {
    char name[32];
    int tid;
    double t0, t1;
} span_t;

static struct {
    int on;
    double origin;
    span_t *spans;
    size_t n, cap;
    pthread_mutex_t mu;
} tl = {.mu = PTHREAD_MUTEX_INITIALIZER};


void timeline_start(MPI_Comm comm)
{
    MPI_Barrier(comm);
    tl.origin = mlpf_now();
    tl.on = 1;
}

int timeline_enabled(void) { return tl.on; }

void timeline_span(const char *name, int tid, double t0, double t1)
{
    if (!tl.on) return;
    pthread_mutex_lock(&tl.mu);
    if (tl.n == tl.cap) {
        size_t cap = tl.cap ? 2 * tl.cap : 1024;
        span_t *p = realloc(tl.spans, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&tl.mu);
            return; /* a trace is best effort; training goes on */
        }
        tl.spans = p;
        tl.cap = cap;
    }
    span_t *s = &tl.spans[tl.n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->tid = tid;
    s->t0 = t0 - tl.origin;
    s->t1 = t1 - tl.origin;
    pthread_mutex_unlock(&tl.mu);
}

int timeline_write(const char *path, MPI_Comm comm, const char *host)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    long long n = (long long)tl.n;
    long long *counts = rank == 0 ? malloc(sizeof(long long) * size) : NULL;
    MPI_Gather(&n, 1, MPI_LONG_LONG, counts, 1, MPI_LONG_LONG, 0, comm);
    char hosts[64];
    snprintf(hosts, sizeof hosts, "%s", host);
    char *allhosts = rank == 0 ? malloc((size_t)64 * size) : NULL;
    MPI_Gather(hosts, 64, MPI_CHAR, allhosts, 64, MPI_CHAR, 0, comm);
    int rc = 0;
    if (rank != 0) {
        MPI_Send(tl.spans, (int)(n * sizeof(span_t)), MPI_BYTE, 0, 77, comm);
    } else {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (!f) {
            fprintf(stderr, "mlpfbench: cannot write the timeline %s\n", tmp);
            rc = -1;
        }
        if (f) fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
        const char *tids[3] = {"compute", "data reader", "gradient all-reduce"};
        int first = 1;
        for (int r = 0; r < size; r++) {
            span_t *s = r == 0 ? tl.spans : malloc(sizeof(span_t) * (counts[r] ? counts[r] : 1));
            if (r > 0)
                MPI_Recv(s, (int)(counts[r] * sizeof(span_t)), MPI_BYTE, r, 77, comm, MPI_STATUS_IGNORE);
            if (f) {
                fprintf(f, "%s{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"rank %d (%s)\"}}",
                        first ? "" : ",\n", r, r, allhosts + 64 * r);
                first = 0;
                for (int t = 0; t < 3; t++)
                    fprintf(f, ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": {\"name\": \"%s\"}}",
                            r, t, tids[t]);
                for (long long i = 0; i < counts[r]; i++)
                    fprintf(f, ",\n{\"name\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.1f, \"dur\": %.1f}",
                            s[i].name, r, s[i].tid, s[i].t0 * 1e6, (s[i].t1 - s[i].t0) * 1e6);
            }
            if (r > 0) free(s);
        }
        if (f) {
            fprintf(f, "\n]}\n");
            if (fclose(f) != 0 || rename(tmp, path) != 0) {
                fprintf(stderr, "mlpfbench: cannot write the timeline %s\n", path);
                rc = -1;
            }
        }
    }
    free(counts);
    free(allhosts);
    MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
    return rc;
}
