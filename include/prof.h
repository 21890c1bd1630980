/* Where the model's time goes, by kind of work (make bench's breakdown).
 * One current kind at a time on the calling thread (the model runs on the
 * main thread, with OpenMP and BLAS threads inside): prof_switch() charges the
 * time since the last switch to the kind that was current, so nested work
 * (a matrix product inside the binning) is charged once, exclusively. */
#ifndef MLPF_PROF_H
#define MLPF_PROF_H

enum {
    PROF_NONE,
    PROF_GEMM,       /* float32 matrix products (sgemm, sgemv) */
    PROF_BINNING,    /* LSH buckets and the sort into bins */
    PROF_KERNEL,     /* kernel matrix: distances, exp, degrees, gathers into bins */
    PROF_ELEMENTWISE,/* activations, gates, layer norm, bias, concatenation */
    PROF_LOSS,       /* loss terms and their gradients */
    PROF_GEMM64,     /* the kernel distances' float64 products (dgemm) */
    PROF_N
};
extern const char *const PROF_NAMES[PROF_N];

/* Make `kind` current; returns the previous kind. */
int prof_switch(int kind);
/* Seconds charged to each kind so far (PROF_NONE excluded). */
void prof_get(double out[PROF_N]);
void prof_reset(void);

#endif
