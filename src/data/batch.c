#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "generator.h"

int batch_alloc(mlpf_batch *b, int n_events, const int64_t *sizes)
{
    memset(b, 0, sizeof *b);
    b->n_events = n_events;
    b->offsets = malloc(sizeof(int64_t) * (n_events + 1));
    if (!b->offsets) return -1;
    b->offsets[0] = 0;
    for (int e = 0; e < n_events; e++) b->offsets[e + 1] = b->offsets[e] + sizes[e];
    b->n_rows = b->offsets[n_events];
    b->X = malloc(sizeof(float) * BATCH_X_COLS * (b->n_rows ? b->n_rows : 1));
    b->y = malloc(sizeof(float) * BATCH_Y_COLS * (b->n_rows ? b->n_rows : 1));
    if (!b->X || !b->y) {
        batch_free(b);
        return -1;
    }
    return 0;
}

void batch_free(mlpf_batch *b)
{
    free(b->offsets);
    free(b->X);
    free(b->y);
    memset(b, 0, sizeof *b);
}

int batch_generate(mlpf_batch *b, const gen_config *g, uint64_t first, int n_events)
{
    int64_t *sizes = calloc(n_events ? n_events : 1, sizeof(int64_t));
    if (!sizes) return -1;
    for (int e = 0; e < n_events; e++) sizes[e] = gen_event_size(g, first + e);
    int rc = batch_alloc(b, n_events, sizes);
    free(sizes);
    if (rc != 0) return -1;
    for (int e = 0; e < n_events; e++)
        gen_event(g, first + e, b->X + b->offsets[e] * BATCH_X_COLS, b->y + b->offsets[e] * BATCH_Y_COLS);
    return 0;
}
