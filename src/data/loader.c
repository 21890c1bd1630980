#include "loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "failpoint.h"
#include "mpictx.h"
#include "rng.h"
#include "timeline.h"

typedef struct {
    mlpf_batch b;
    int64_t *ids;
    int n_ids;
    double read_s;
    int64_t bytes;
} slot_t;

struct loader {
    dataset_t *ds;
    int B, rank, n_ranks, shuffle, prefetch;
    uint64_t seed;
    int64_t *order; /* the epoch's global order */
    int64_t step, steps;
    int *touched;   /* scratch: shards of a global batch */
    loader_stats st;
    /* prefetch */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t want;   /* step requested from the thread, -1 none */
    int ready, quit;
    slot_t slot;
};


static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Read this rank's part of global batch k into s (collective). */
static void read_step(loader *l, int64_t k, slot_t *s)
{
    const int64_t N = l->ds->events, G = (int64_t)l->B * l->n_ranks;
    int64_t g0 = k * G, g1 = g0 + G < N ? g0 + G : N;
    int64_t a = g0 + (int64_t)l->rank * l->B, e = a + l->B;
    if (a > g1) a = g1;
    if (e > g1) e = g1;
    s->n_ids = (int)(e - a);
    memcpy(s->ids, l->order + a, sizeof(int64_t) * s->n_ids);
    qsort(s->ids, s->n_ids, sizeof(int64_t), cmp_i64);
    /* shards of the whole global batch, ascending: the collective read plan */
    int n_sh = l->ds->n_shards, nt = 0;
    memset(l->touched, 0, sizeof(int) * n_sh);
    for (int64_t p = g0; p < g1; p++) l->touched[dataset_shard_of(l->ds, l->order[p])] = 1;
    for (int i = 0; i < n_sh; i++)
        if (l->touched[i]) l->touched[nt++] = i;
    char err[1024];
    if (l->shuffle && failpoint("stall-read", k + 1, l->rank)) failpoint_stall();
    double t0 = mlpf_now();
    int64_t bytes = dataset_read(l->ds, s->ids, s->n_ids, l->touched, nt, &s->b, err, sizeof err);
    if (bytes < 0) mlpf_fatal("reading %s data: %s", l->ds->split, err);
    double t1 = mlpf_now();
    s->read_s = t1 - t0;
    timeline_span("read batch", TL_IO, t0, t1);
    s->bytes = bytes;
}

static void *worker(void *arg)
{
    loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (l->want < 0 && !l->quit) pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        int64_t k = l->want;
        pthread_mutex_unlock(&l->mu);
        read_step(l, k, &l->slot);
        pthread_mutex_lock(&l->mu);
        l->want = -1;
        l->ready = 1;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

loader *loader_create(dataset_t *ds, int batch_per_rank, int rank, int n_ranks, uint64_t seed,
                      int shuffle, int prefetch)
{
    loader *l = calloc(1, sizeof *l);
    l->ds = ds;
    l->B = batch_per_rank;
    l->rank = rank;
    l->n_ranks = n_ranks;
    l->seed = seed;
    l->shuffle = shuffle;
    l->prefetch = prefetch;
    l->order = malloc(sizeof(int64_t) * (ds->events > 0 ? ds->events : 1));
    l->touched = malloc(sizeof(int) * ds->n_shards);
    l->slot.ids = malloc(sizeof(int64_t) * batch_per_rank);
    int64_t G = (int64_t)batch_per_rank * n_ranks;
    l->steps = (ds->events + G - 1) / G;
    l->want = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (l->prefetch) pthread_create(&l->thread, NULL, worker, l);
    return l;
}

void loader_free(loader *l)
{
    if (!l) return;
    loader_drain(l); /* let a read in flight finish, drop its batch */
    if (l->prefetch) {
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->order);
    free(l->touched);
    free(l->slot.ids);
    free(l);
}

int64_t loader_steps(const loader *l) { return l->steps; }

loader_stats loader_get_stats(const loader *l) { return l->st; }

static void request(loader *l, int64_t k)
{
    pthread_mutex_lock(&l->mu);
    l->want = k;
    l->ready = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void loader_drain(loader *l)
{
    if (!l->prefetch) return;
    pthread_mutex_lock(&l->mu);
    while (l->want >= 0) pthread_cond_wait(&l->cv, &l->mu);
    if (l->ready) {
        batch_free(&l->slot.b);
        l->ready = 0;
    }
    pthread_mutex_unlock(&l->mu);
}

void loader_begin_epoch(loader *l, int epoch) { loader_begin_epoch_at(l, epoch, 0); }

void loader_begin_epoch_at(loader *l, int epoch, int64_t first_step)
{
    loader_drain(l);
    const int64_t N = l->ds->events;
    for (int64_t i = 0; i < N; i++) l->order[i] = i;
    if (l->shuffle) { /* Fisher-Yates from a stream of (seed, epoch): the same on every rank */
        rng_stream s = rng_stream_make(l->seed, 0x5eed0000ull + (uint64_t)epoch);
        for (int64_t i = N - 1; i > 0; i--) {
            int64_t j = (int64_t)(rng_next_u64(&s) % (uint64_t)(i + 1));
            int64_t t = l->order[i];
            l->order[i] = l->order[j];
            l->order[j] = t;
        }
    }
    l->step = first_step;
    if (l->prefetch && l->step < l->steps) request(l, l->step);
}

int loader_next(loader *l, mlpf_batch *b, int64_t *ids, int *n_ids)
{
    if (l->step >= l->steps) return 0;
    double t0 = mlpf_now();
    if (l->prefetch) {
        pthread_mutex_lock(&l->mu);
        while (!l->ready) pthread_cond_wait(&l->cv, &l->mu);
        pthread_mutex_unlock(&l->mu);
    } else {
        read_step(l, l->step, &l->slot);
    }
    double t1 = mlpf_now();
    l->st.wait_s += t1 - t0;
    timeline_span("data wait", TL_MAIN, t0, t1);
    *b = l->slot.b;
    memset(&l->slot.b, 0, sizeof l->slot.b);
    *n_ids = l->slot.n_ids;
    memcpy(ids, l->slot.ids, sizeof(int64_t) * l->slot.n_ids);
    l->st.read_s += l->slot.read_s;
    l->st.bytes += l->slot.bytes;
    l->st.events += l->slot.n_ids;
    l->st.elements += b->n_rows;
    l->step++;
    if (l->prefetch) {
        pthread_mutex_lock(&l->mu);
        l->ready = 0;
        pthread_mutex_unlock(&l->mu);
        if (l->step < l->steps) request(l, l->step);
    }
    return 1;
}
