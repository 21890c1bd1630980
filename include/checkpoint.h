/* Checkpoints: weights, Adam state, and where training stands (epoch, step in
 * the epoch, steps done; the data order is a function of the seed and the
 * epoch). Written by rank 0 to a temporary file and renamed, with a CRC-32 of
 * the whole content at the end; resumed by every rank from rank 0's read. */
#ifndef MLPF_CHECKPOINT_H
#define MLPF_CHECKPOINT_H

#include <stdint.h>

#include "model.h"
#include "optim.h"

typedef struct {
    char magic[8];  /* "MLPFCKPT" */
    int32_t version;
    char preset[32];
    int64_t n_params;
    int64_t steps_done, epoch, step_in_epoch, adam_step;
    int64_t seed, world_size, batch_per_rank;
} checkpoint_header;

/* Returns 0, or -1 with a message. */
int checkpoint_write(const char *path, const checkpoint_header *h, const float *params,
                     const adam_state *opt);
/* Read and verify (size, magic, version, CRC-32, preset and parameter count);
 * fills h, params and the Adam state. Returns 0, or -1 with a message naming
 * the file and the cause. */
int checkpoint_read(const char *path, const char *preset, int64_t n_params, checkpoint_header *h,
                    float *params, adam_state *opt);

#endif
