#include "allreduce.h"

#include <stdlib.h>
#include <stdio.h>
#include <time.h>

#include "clock.h"
#include "timeline.h"

struct grad_allreduce {
    float *buf;
    size_t n, bucket;   /* floats */
    int n_buckets, next; /* next bucket to launch (0 = the last one of the buffer) */
    MPI_Request *req;
    double *t_launch; /* per bucket, mlpf_now() */
    int *idx;
    MPI_Comm comm;
    int size;
    double t_first;
    allreduce_stats st;
};


grad_allreduce *grad_allreduce_create(float *buf, size_t n, size_t bucket_bytes, MPI_Comm comm)
{
    grad_allreduce *g = calloc(1, sizeof *g);
    g->buf = buf;
    g->n = n;
    g->bucket = bucket_floats(bucket_bytes);
    g->n_buckets = bucket_count(n, g->bucket);
    g->req = malloc(sizeof(MPI_Request) * (g->n_buckets > 0 ? g->n_buckets : 1));
    g->t_launch = calloc(g->n_buckets > 0 ? g->n_buckets : 1, sizeof(double));
    g->idx = malloc(sizeof(int) * (g->n_buckets > 0 ? g->n_buckets : 1));
    g->comm = comm;
    MPI_Comm_size(comm, &g->size);
    for (int i = 0; i < g->n_buckets; i++) g->req[i] = MPI_REQUEST_NULL;
    return g;
}

void grad_allreduce_free(grad_allreduce *g)
{
    if (!g) return;
    free(g->req);
    free(g->t_launch);
    free(g->idx);
    free(g);
}

void grad_allreduce_begin(grad_allreduce *g)
{
    g->next = 0;
    g->t_first = 0.0;
}

static void launch_upto(grad_allreduce *g, size_t watermark)
{
    while (g->next < g->n_buckets && bucket_start(g->n, g->bucket, g->next) >= watermark) {
        int j = g->next++;
        size_t a = bucket_start(g->n, g->bucket, j), e = bucket_end(g->n, g->bucket, j);
        if (g->t_first == 0.0) g->t_first = mlpf_now();
        g->t_launch[j] = mlpf_now();
        MPI_Iallreduce(MPI_IN_PLACE, g->buf + a, (int)(e - a), MPI_FLOAT, MPI_SUM, g->comm, &g->req[j]);
    }
}

/* Timeline spans of the buckets just seen complete (launch to observed end). */
static void record(grad_allreduce *g, int n_done)
{
    if (!timeline_enabled() || n_done == MPI_UNDEFINED) return;
    double t = mlpf_now();
    char name[32];
    for (int i = 0; i < n_done; i++) {
        snprintf(name, sizeof name, "allreduce bucket %d", g->idx[i]);
        timeline_span(name, TL_COMM, g->t_launch[g->idx[i]], t);
    }
}

void grad_allreduce_ready(grad_allreduce *g, size_t watermark)
{
    if (g->size == 1) return;
    launch_upto(g, watermark);
    int n_done = 0;
    if (g->next > 0) MPI_Testsome(g->next, g->req, &n_done, g->idx, MPI_STATUSES_IGNORE); /* progress */
    record(g, n_done);
}

void grad_allreduce_finish(grad_allreduce *g)
{
    if (g->size == 1) return;
    double t0 = mlpf_now();
    launch_upto(g, 0);
    for (;;) {
        int n_done = 0;
        MPI_Waitsome(g->n_buckets, g->req, &n_done, g->idx, MPI_STATUSES_IGNORE);
        if (n_done == MPI_UNDEFINED) break; /* all complete */
        record(g, n_done);
    }
    double t1 = mlpf_now();
    g->st.exposed_s += t1 - t0;
    g->st.total_s += t1 - g->t_first;
    g->st.bytes += (int64_t)(g->n * sizeof(float));
    g->st.buckets += g->n_buckets;
    g->st.steps++;
}

allreduce_stats grad_allreduce_stats(const grad_allreduce *g) { return g->st; }

double allreduce_busbw(double bytes, double seconds, int ranks)
{
    if (seconds <= 0.0 || ranks < 1) return 0.0;
    return bytes / seconds * 2.0 * (ranks - 1) / ranks;
}
