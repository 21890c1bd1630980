/* The fusion buckets of the gradient all-reduce, shared by the CPU transport
 * (src/dist/allreduce.c) and the GPU ones (cuda/comm.cu): the one contiguous
 * gradient buffer of n floats is cut into buckets of `bucket` floats from its
 * END, since backward finishes the gradients from the end (heads) to the
 * start (encoder). Bucket 0 is the last stretch of the buffer; a bucket may
 * split a tensor, and the first bucket of the buffer may be shorter. */
#ifndef MLPF_BUCKETS_H
#define MLPF_BUCKETS_H

#include <stddef.h>
#include <stdint.h>

/* What the all-reduce did, summed over steps (every transport). */
typedef struct {
    double total_s;   /* first launch to last completion, summed over steps */
    double exposed_s; /* time the step waited for it (not hidden behind backward), summed */
    int64_t bytes;    /* bytes reduced, summed over steps */
    int64_t steps, buckets;
} allreduce_stats;

static inline size_t bucket_floats(size_t bucket_bytes)
{
    size_t b = bucket_bytes / sizeof(float);
    if (b < 1) b = 1;
    if (b > (size_t)1 << 30) b = (size_t)1 << 30; /* int counts for MPI */
    return b;
}
static inline int bucket_count(size_t n, size_t bucket) { return (int)((n + bucket - 1) / bucket); }
/* Bucket j covers [bucket_start, bucket_end). */
static inline size_t bucket_start(size_t n, size_t bucket, int j)
{
    size_t from_end = (size_t)(j + 1) * bucket;
    return from_end >= n ? 0 : n - from_end;
}
static inline size_t bucket_end(size_t n, size_t bucket, int j) { return n - (size_t)j * bucket; }

#endif
