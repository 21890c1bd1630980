/* The self-check of a GPU run, as HPL checks its residual: before any timed
 * step, one training step of a small fixed batch on the device backend and on
 * the CPU backend (same initial weights, same LSH binning), comparing the
 * loss components and every gradient tensor with the tolerance of the
 * device's precision (docs/design.md "Self-check" says how they were chosen).
 * A run whose check fails writes no scores. */
#ifndef MLPF_SELFCHECK_H
#define MLPF_SELFCHECK_H

#include <stdint.h>

#include "backend.h"

typedef struct {
    int ran, passed;
    int64_t rows, events;        /* the check batch */
    double hash_agreement;       /* rows whose LSH bucket agrees when each backend bins alone */
    char worst_tensor[64];       /* the gradient tensor furthest from the CPU's */
    double worst_error;          /* its error: |g - g_cpu|_2 / |g_cpu|_2 */
    double grad_tolerance;
    char worst_loss[16];
    double loss_error, loss_tolerance; /* relative, worst loss component */
    double seconds;
    char message[512];           /* one line: passed, or why not */
} selfcheck_result;

/* The tolerances of a precision (fp32, tf32, bf16). */
void selfcheck_tolerances(const char *precision, double *grad_tol, double *loss_tol);

/* Run the check of backend `dev` (created from `seed`; its gradients are
 * left zeroed, its weights and optimizer untouched). 0 when it ran (passed
 * or not: see res), -1 when it could not run (res->message says why). */
int selfcheck_run(backend *dev, uint64_t seed, selfcheck_result *res);

#endif
