/* Batches of a dataset split for this rank, with a seeded global shuffle and
 * prefetch.
 *
 * Per epoch one seeded permutation fixes the GLOBAL event order. Global batch
 * k is positions [k G, (k+1) G) of it, G = batch_per_rank x ranks; rank r takes
 * positions [k G + r B, k G + (r+1) B). So 1 rank with batch 4 and 4 ranks with
 * batch 1 see the same global batches. The last global batch may be short
 * (every event is read exactly once per epoch); a rank may then get fewer or
 * no events, and still takes part in the collective reads.
 *
 * Batch k+1 is read by a background thread while batch k computes (needs
 * MPI_THREAD_MULTIPLE; the reads use their own communicator). */
#ifndef MLPF_LOADER_H
#define MLPF_LOADER_H

#include <stdint.h>

#include "batch.h"
#include "dataset.h"

typedef struct {
    double read_s;  /* time spent reading (background thread) */
    double wait_s;  /* time the caller waited for a batch */
    int64_t bytes;  /* bytes read by this rank */
    int64_t events; /* events delivered to this rank */
    int64_t elements;
} loader_stats;

typedef struct loader loader;

loader *loader_create(dataset_t *ds, int batch_per_rank, int rank, int n_ranks, uint64_t seed,
                      int shuffle, int prefetch);
void loader_free(loader *l);
/* Global batches per epoch. */
int64_t loader_steps(const loader *l);
void loader_begin_epoch(loader *l, int epoch);
/* The same, resuming at global batch first_step of the epoch (checkpoints). */
void loader_begin_epoch_at(loader *l, int epoch, int64_t first_step);
/* The next batch of this rank in the epoch: 1 with *b filled (free it with
 * batch_free) and ids[0..*n_ids) its global event indices (ascending;
 * ids must hold batch_per_rank entries); 0 when the epoch is over. A read or
 * validation error is fatal for the whole job (it names the file and event). */
int loader_next(loader *l, mlpf_batch *b, int64_t *ids, int *n_ids);
loader_stats loader_get_stats(const loader *l);
/* Wait for a read in flight and drop its batch. Call it when an epoch is cut
 * short, before another loader reads: HDF5 calls must not overlap, and every
 * rank must make the same sequence of collective reads. */
void loader_drain(loader *l);

#endif
