/* Gradient all-reduce in buckets, overlapped with the backward pass
 * (Horovod-style fusion buckets over the one contiguous gradient buffer).
 *
 * Buckets are cut from the END of the buffer, since backward finishes the
 * gradients from the end (heads) to the start (encoder). The model reports a
 * watermark w (every gradient at offsets >= w is final); each bucket lying
 * wholly above it is launched at once as a non-blocking MPI_Iallreduce, and
 * outstanding ones are progressed (MPI_Testall) at every report. finish()
 * launches the rest and waits; the time spent waiting there is the part of
 * the all-reduce NOT hidden behind backward. */
#ifndef MLPF_ALLREDUCE_H
#define MLPF_ALLREDUCE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "buckets.h"

typedef struct grad_allreduce grad_allreduce;

/* buf: n floats; bucket_bytes: fusion bucket size. */
grad_allreduce *grad_allreduce_create(float *buf, size_t n, size_t bucket_bytes, MPI_Comm comm);
void grad_allreduce_free(grad_allreduce *g);
void grad_allreduce_begin(grad_allreduce *g);
void grad_allreduce_ready(grad_allreduce *g, size_t watermark);
void grad_allreduce_finish(grad_allreduce *g);
allreduce_stats grad_allreduce_stats(const grad_allreduce *g);
/* Bus bandwidth (nccl-tests convention): algbw * 2 (n - 1) / n. */
double allreduce_busbw(double bytes, double seconds, int ranks);

#endif
