/* The CPU backend behind include/backend.h: the model of src/cpu/model.c and
 * Adam on host buffers. Everything is synchronous: loss reports and the
 * gradient check are ready when their call returns. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "clock.h"
#include "model.h"
#include "optim.h"

typedef struct {
    mlpf_model m;
    adam_state opt;
    const mlpf_batch *batch; /* of the last forward, for backward */
    double phase_s[3];       /* forward, backward, optimizer */
} cpu_impl;

static cpu_impl *impl(const backend *be) { return be->impl; }

static void on_ready(void *ctx, size_t watermark, const void *ev)
{
    backend *be = ctx;
    if (be->grad_ready) be->grad_ready(be->grad_ready_ctx, watermark, ev);
}

static void cpu_destroy(backend *be)
{
    cpu_impl *c = impl(be);
    if (!c) return;
    model_free(&c->m);
    adam_free(&c->opt);
    free(c);
    be->impl = NULL;
}

static double cpu_bytes_for(const backend *be, int64_t rows, int64_t bins, int64_t events)
{
    const mlpf_model *m = &impl(be)->m;
    return (double)model_activation_bytes_for(m, rows, bins, events) + 4.0 * m->layout.total * sizeof(float) +
           lsh_buffer_size(&m->cfg) * 4.0;
}

static double cpu_bytes_free(const backend *be)
{
    double avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &avail) == 1) {
            avail *= 1024.0;
            break;
        }
    if (f) fclose(f);
    return avail;
}

static int cpu_reserve(backend *be, int64_t rows, int64_t bins, int64_t events)
{
    if (model_reserve(&impl(be)->m, rows, bins, events) == 0) return 0;
    snprintf(be->error, sizeof be->error, "cannot allocate %.0f MiB of activations for a batch of %lld events "
             "(%lld elements)", model_activation_bytes_for(&impl(be)->m, rows, bins, events) / 1048576.0,
             (long long)events, (long long)rows);
    return -1;
}

static int cpu_forward(backend *be, const mlpf_batch *b, int64_t n_global, loss_report *r)
{
    cpu_impl *c = impl(be);
    c->batch = b;
    memset(r, 0, sizeof *r);
    if (b->n_rows == 0) return 0;
    double t0 = mlpf_now();
    int rc = model_forward(&c->m, b, n_global, r);
    c->phase_s[0] += mlpf_now() - t0;
    if (rc == 0) return 0;
    snprintf(be->error, sizeof be->error, "cannot allocate the activations of a batch of %lld elements",
             (long long)b->n_rows);
    return -1;
}

static void cpu_backward(backend *be)
{
    cpu_impl *c = impl(be);
    double t0 = mlpf_now();
    if (c->batch && c->batch->n_rows > 0) model_backward(&c->m, c->batch);
    c->phase_s[1] += mlpf_now() - t0;
}

static void cpu_zero_grad(backend *be) { model_zero_grad(&impl(be)->m); }
static int cpu_check_grads(backend *be) { return model_first_nonfinite_grad(&impl(be)->m); }

static void cpu_optimizer_step(backend *be)
{
    cpu_impl *c = impl(be);
    double t0 = mlpf_now();
    adam_update(&c->m.cfg, &c->opt, c->m.params, c->m.grads);
    c->phase_s[2] += mlpf_now() - t0;
}

static int cpu_finish(backend *be, loss_report *r, int *bad)
{
    (void)be, (void)r, (void)bad; /* nothing pending */
    return 0;
}

static size_t nbytes(const backend *be) { return be->layout.total * sizeof(float); }
static void cpu_get_params(backend *be, float *out) { memcpy(out, impl(be)->m.params, nbytes(be)); }
static void cpu_set_params(backend *be, const float *in) { memcpy(impl(be)->m.params, in, nbytes(be)); }
static void cpu_get_grads(backend *be, float *out) { memcpy(out, impl(be)->m.grads, nbytes(be)); }

static void cpu_get_adam(backend *be, float *m, float *v, int64_t *step)
{
    adam_state *o = &impl(be)->opt;
    memcpy(m, o->m, nbytes(be));
    memcpy(v, o->v, nbytes(be));
    *step = o->step;
}

static void cpu_set_adam(backend *be, const float *m, const float *v, int64_t step)
{
    adam_state *o = &impl(be)->opt;
    memcpy(o->m, m, nbytes(be));
    memcpy(o->v, v, nbytes(be));
    o->step = step;
}

static void cpu_get_hashes(backend *be, int layer, int *out)
{
    cpu_impl *c = impl(be);
    memcpy(out, model_hashes(&c->m, layer), sizeof(int) * (c->batch ? c->batch->n_rows : 0));
}

static void cpu_force_hashes(backend *be, const int *const *per_layer) { impl(be)->m.forced_hash = per_layer; }
static size_t cpu_activation_bytes(const backend *be) { return model_activation_bytes(&impl(be)->m); }
static void cpu_time_by_kind(backend *be, double out[PROF_N]) { (void)be, prof_get(out); }
static void cpu_phase_seconds(backend *be, double out[3]) { memcpy(out, impl(be)->phase_s, sizeof impl(be)->phase_s); }

static const backend_ops CPU_OPS = {
    .destroy = cpu_destroy, .bytes_for = cpu_bytes_for, .bytes_free = cpu_bytes_free,
    .reserve = cpu_reserve, .forward = cpu_forward, .backward = cpu_backward,
    .zero_grad = cpu_zero_grad, .check_grads = cpu_check_grads, .optimizer_step = cpu_optimizer_step,
    .finish = cpu_finish, .get_params = cpu_get_params, .set_params = cpu_set_params,
    .get_grads = cpu_get_grads, .get_adam = cpu_get_adam, .set_adam = cpu_set_adam,
    .get_hashes = cpu_get_hashes, .force_hashes = cpu_force_hashes,
    .activation_bytes = cpu_activation_bytes, .time_by_kind = cpu_time_by_kind,
    .phase_seconds = cpu_phase_seconds, .stage = NULL, .set_precision = NULL,
};

int cpu_backend_init(backend *be, const backend_opts *o, uint64_t seed, char *err, size_t errlen)
{
    cpu_impl *c = calloc(1, sizeof *c);
    if (!c || model_create(&c->m, &be->cfg, seed) != 0 ||
        (!o->forward_only && adam_init(&c->opt, c->m.layout.total) != 0)) {
        snprintf(err, errlen, "cannot allocate the model (%s) on the host", be->cfg.preset);
        if (c) model_free(&c->m);
        free(c);
        return -1;
    }
    if (o->forward_only) model_set_forward_only(&c->m);
    c->m.grad_ready = on_ready;
    c->m.grad_ready_ctx = be;
    be->impl = c;
    be->ops = &CPU_OPS;
    be->grads_host = c->m.grads;
    snprintf(be->description, sizeof be->description, "CPU (%d threads)", omp_get_max_threads());
    return 0;
}
