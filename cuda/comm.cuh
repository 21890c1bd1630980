// The gradient all-reduce on the GPU (issue 15): the buckets of
// include/buckets.h over the device gradient buffer, each launched on a
// communication stream as soon as backward has finished its stretch (the
// stream waits for the CUDA event backward recorded there; no host
// synchronisation per bucket), and the compute stream waits for the last one
// before the optimizer step. Two transports:
//   nccl  ncclAllReduce in place, on a non-blocking communicator (so that a
//         dead peer shows as ncclCommGetAsyncError, and ncclCommAbort frees
//         the kernels waiting for it). NCCL is loaded with dlopen on first use
//         (libnccl.so.2, or MLPF_NCCL_LIBRARY): a CPU run never loads it.
//   mpi   for machines without NCCL or ranks that share a GPU: each bucket
//         copied to pinned host memory on the communication stream, reduced
//         with MPI_Iallreduce as soon as its copy is done, copied back.
#pragma once

#include <mpi.h>

#include "common.cuh"

extern "C" {
#include "backend.h"
}

struct dev_comm;

// A communicator over the ranks for the gradient buffer G (n floats) of the
// model whose compute stream is `compute`. Throws cuda_error.
dev_comm *comm_create(const comm_opts &o, float *G, size_t n, cudaStream_t compute);
void comm_destroy(dev_comm *c);
// Work on another buffer of n floats (at most the first one's, for mpi): the
// all-reduce benchmark's sizes. Between steps only.
void comm_set_buffer(dev_comm &c, float *G, size_t n);
// Rank 0: NCCL's unique id into id (cap bytes); returns its length. Throws.
size_t comm_make_id(void *id, size_t cap);
// A new step: the figures of the last one are collected.
void comm_begin(dev_comm &c);
// Every gradient at offsets >= watermark is final once `ev` (recorded on the
// compute stream) is: launch the buckets lying wholly above it.
void comm_ready(dev_comm &c, size_t watermark, cudaEvent_t ev);
// Launch the rest; the compute stream waits for the last bucket.
void comm_finish(dev_comm &c);
void comm_get_stats(dev_comm &c, allreduce_stats *out);
// Thread-safe: 1 and the reason when the communicator has failed.
int comm_failed(dev_comm &c, char *why, size_t n);
void comm_abort(dev_comm &c);
