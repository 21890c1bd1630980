#include "optim.h"

#include <math.h>
#include <stdlib.h>

#include "mathfn.h"

int adam_init(adam_state *s, size_t n)
{
    /* malloc and zero here rather than calloc: calloc's pages would be
     * faulted in by the first update, inside the first training step; the
     * same static schedule as adam_update puts each page, on a multi-socket
     * node, next to the thread that updates it */
    s->m = malloc((n ? n : 1) * sizeof(float));
    s->v = malloc((n ? n : 1) * sizeof(float));
    s->n = n;
    s->step = 0;
    if (!s->m || !s->v) {
        adam_free(s);
        return -1;
    }
    float *m = s->m, *v = s->v;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < (int64_t)n; i++) m[i] = v[i] = 0.0f;
    return 0;
}

void adam_free(adam_state *s)
{
    free(s->m);
    free(s->v);
    s->m = s->v = NULL;
}

double adam_lr(const mlpf_config *c, int64_t t)
{
    return c->lr * pow(c->decay_rate, (double)((t - 1) / c->decay_steps));
}

float adam_lr_t(const mlpf_config *c, int64_t t)
{
    return (float)(adam_lr(c, t) * sqrt(1.0 - pow(c->beta2, (double)t)) / (1.0 - pow(c->beta1, (double)t)));
}

void adam_update(const mlpf_config *c, adam_state *s, float *params, const float *grads)
{
    const float b1 = c->beta1, b2 = c->beta2, eps = c->adam_eps;
    const float lr_t = adam_lr_t(c, ++s->step);
    float *m = s->m, *v = s->v;
    const int64_t n = (int64_t)s->n;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        mlpf_adam_element(params + i, m + i, v + i, grads[i], b1, b2, lr_t, eps);
    }
}
