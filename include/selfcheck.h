/* The self-check of a GPU run, as HPL checks its residual: before any timed
 * step, one training step of a small fixed batch on the device backend and on
 * the CPU backend (same initial weights, same LSH binning), comparing the
 * loss components and every gradient tensor. First with the device's matrix
 * products in fp32, against tight tolerances: that checks every kernel on
 * this GPU; then, for a tf32 or bf16 run, in the run's precision against
 * that precision's tolerances (docs/design.md "Self-check" says how they were
 * chosen). A run whose check fails writes no scores. */
#ifndef MLPF_SELFCHECK_H
#define MLPF_SELFCHECK_H

#include <stdint.h>

#include "backend.h"

typedef struct {
    char precision[8];
    char worst_tensor[64];       /* the gradient tensor furthest from the CPU's */
    double worst_error;          /* its error (selfcheck_tensor_error) */
    double grad_tolerance;
    double global_error;         /* the error of the whole gradient buffer, relative L2 */
    double global_tolerance;
    char worst_loss[16];
    double loss_error, loss_tolerance; /* relative, worst loss component */
    double hash_agreement;       /* rows whose LSH bucket agrees when each backend bins alone */
    int passed;
} selfcheck_pass;

typedef struct {
    int ran, passed;
    int64_t rows, events;        /* the check batch */
    int n_passes;                /* fp32 first, then the run's precision when it is not fp32 */
    selfcheck_pass pass[2];
    double seconds;
    char message[512];           /* one line: passed, or why not */
} selfcheck_result;

/* The error of one tensor a against its reference, |a - ref|_2 / max(|ref|_2,
 * floor_rms sqrt(n)); for gradients floor_rms = SELFCHECK_NULL_FLOOR x the
 * RMS of the whole reference buffer (src/run/selfcheck.c says why). */
#define SELFCHECK_NULL_FLOOR 1e-4
double selfcheck_tensor_error(const float *a, const float *ref, size_t n, double floor_rms);
double selfcheck_rms(const float *g, size_t n);
/* The tolerances of a precision (fp32, tf32, bf16): the worst tensor, the
 * whole gradient buffer, the worst loss component. */
void selfcheck_tolerances(const char *precision, double *grad_tol, double *global_tol, double *loss_tol);

/* Run the check of backend `dev` (created from `seed`; its gradients are
 * left zeroed, its weights and optimizer untouched). 0 when it ran (passed
 * or not: see res), -1 when it could not run (res->message says why). */
int selfcheck_run(backend *dev, uint64_t seed, selfcheck_result *res);

#endif
