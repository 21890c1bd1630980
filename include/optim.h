/* Adam in the Keras form with a staircase exponential learning-rate decay:
 *   lr_t  = lr * decay_rate^floor((t-1) / decay_steps) * sqrt(1 - beta2^t) / (1 - beta1^t)
 *   m     = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   p    -= lr_t m / (sqrt(v) + eps)          (eps outside the bias correction)
 * for update t = 1, 2, ... The moments are one buffer each, in the parameter
 * layout. */
#ifndef MLPF_OPTIM_H
#define MLPF_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct {
    float *m, *v;
    size_t n;
    int64_t step; /* updates done so far */
} adam_state;

int adam_init(adam_state *s, size_t n);
void adam_free(adam_state *s);
/* The decayed learning rate of update t (1-based), before bias correction. */
double adam_lr(const mlpf_config *c, int64_t t);
/* lr_t of update t: the decayed rate with both bias corrections, the factor
 * of m / (sqrt(v) + eps) in the update (the same for both backends). */
float adam_lr_t(const mlpf_config *c, int64_t t);
void adam_update(const mlpf_config *c, adam_state *s, float *params, const float *grads);

#endif
