/* A ragged batch of events: rows of all events back to back, no padding. */
#ifndef MLPF_BATCH_H
#define MLPF_BATCH_H

#include <stdint.h>

#include "generator.h"

/* Columns of the data format (shared/spec/data.md). */
enum { BATCH_X_COLS = GEN_N_FEATURES, BATCH_Y_COLS = GEN_N_TARGETS };

typedef struct {
    int n_events;
    int64_t n_rows;   /* total real elements */
    int64_t *offsets; /* n_events + 1: event e is rows [offsets[e], offsets[e+1]) */
    float *X;         /* n_rows x 12 */
    float *y;         /* n_rows x 7: class, charge, pt, eta, sin_phi, cos_phi, energy */
} mlpf_batch;

/* Allocate a batch for events of the given sizes (rows). Returns 0 or -1. */
int batch_alloc(mlpf_batch *b, int n_events, const int64_t *sizes);
void batch_free(mlpf_batch *b);
/* A batch of generated events first .. first + n_events - 1 of a stream. */
int batch_generate(mlpf_batch *b, const gen_config *gen_cfg, uint64_t first, int n_events);

#endif
