/* include/selfcheck.h */
#include "selfcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "generator.h"

/* Tolerances per precision, chosen from the errors measured on the check
 * batch (`build-gpuhost/test_backend measure`: tiny and hepscore22, seeds
 * 1-3, on the host execution path with cuBLAS's rounding of the inputs;
 * docs/design.md "Self-check" has the table). fp32 checks the kernels: every
 * tensor within 2e-3 (largest seen 6e-5), the whole buffer within 1e-5 (4e-7),
 * the losses within 1e-5 (2.4e-7), while a wrong term in a kernel gives
 * 1e-2..1 in some tensor. tf32 and bf16 check the reduced-precision products
 * as a whole: the buffer within 1e-2 / 5e-2 (largest seen 1.5e-3 / 1.1e-2),
 * each tensor within 0.2 / 0.9 (2.6e-2 / 0.37: the distance path's gradients
 * are ill-conditioned, close pairs amplify the rounding of the distance
 * features; 0.9 still refuses a tensor left at zero), the losses within
 * 1e-2 / 5e-2 (1.5e-3 / 1.4e-2). */
void selfcheck_tolerances(const char *precision, double *grad_tol, double *global_tol, double *loss_tol)
{
    if (!strcmp(precision, "bf16")) *grad_tol = 0.9, *global_tol = 5e-2, *loss_tol = 5e-2;
    else if (!strcmp(precision, "tf32")) *grad_tol = 0.2, *global_tol = 1e-2, *loss_tol = 1e-2;
    else *grad_tol = 2e-3, *global_tol = 1e-5, *loss_tol = 1e-5;
}

/* The check batch: two generated events of 1.1 and 0.6 bins (three bins,
 * one of them partly padding), the same on every machine. */
static int check_batch(const mlpf_config *c, mlpf_batch *b)
{
    const int64_t S = c->bin_size;
    int64_t sizes[2] = {S + S / 10, (6 * S) / 10};
    if (sizes[1] < 1) sizes[1] = 1;
    if (batch_alloc(b, 2, sizes) != 0) return -1;
    for (int e = 0; e < 2; e++) {
        gen_config g = gen_config_default();
        g.seed = 20261202;
        g.mean_elements = g.min_elements = g.max_elements = (int)sizes[e];
        gen_event(&g, (uint64_t)e, b->X + b->offsets[e] * BATCH_X_COLS, b->y + b->offsets[e] * BATCH_Y_COLS);
    }
    return 0;
}

/* The error of a gradient tensor: |g - g_ref|_2 / max(|g_ref|_2, floor),
 * floor = SELFCHECK_NULL_FLOOR x the RMS of the whole reference gradient x
 * sqrt(n). The
 * floor matters for tensors whose exact gradient is zero, where both
 * backends give only rounding noise: ffn_dist's last bias (the kernel sees
 * differences of distance features, which a shift of all of them leaves
 * alone), 1e-9 of a typical gradient. A gradient a wrong kernel gives there
 * is of a typical size, far above the floor. */
double selfcheck_tensor_error(const float *a, const float *ref, size_t n, double floor_rms)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - ref[i];
        d += e * e;
        r += (double)ref[i] * ref[i];
    }
    if (!isfinite(d)) return INFINITY;
    double floor = floor_rms * sqrt((double)n), den = sqrt(r) > floor ? sqrt(r) : floor;
    return den > 0 ? sqrt(d) / den : sqrt(d);
}

double selfcheck_rms(const float *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return n ? sqrt(s / n) : 0.0;
}

/* One comparison: a step of the device in its current precision against the
 * CPU on the device's binning. 0, or -1 with the reason in msg. */
static int compare(backend *dev, backend *cpu, const mlpf_batch *b, int **hash, int *own, float *g_dev, float *g_cpu,
                   selfcheck_pass *p, char *msg, size_t msglen)
{
    const int n_layers = dev->cfg.n_graph_id + dev->cfg.n_graph_reg;
    const size_t n = dev->layout.total;
    loss_report rd, rc;
    selfcheck_tolerances(p->precision, &p->grad_tolerance, &p->global_tolerance, &p->loss_tolerance);
    /* the device: one step's forward and backward, binning itself */
    dev->ops->zero_grad(dev);
    if (dev->ops->forward(dev, b, b->n_rows, &rd) != 0) {
        snprintf(msg, msglen, "self-check: forward on the device: %.400s", dev->error);
        return -1;
    }
    dev->ops->backward(dev);
    if (dev->ops->finish(dev, &rd, NULL) != 0) {
        snprintf(msg, msglen, "self-check: %.450s", dev->error);
        return -1;
    }
    dev->ops->get_grads(dev, g_dev);
    for (int l = 0; l < n_layers; l++) dev->ops->get_hashes(dev, l, hash[l]);
    /* the device's buckets must be valid for each event (0 .. 2k-1) */
    for (int e = 0; e < b->n_events; e++) {
        int64_t r0 = b->offsets[e], ne = b->offsets[e + 1] - r0;
        int k = mlpf_lsh_k(&dev->cfg, (int)((ne + dev->cfg.bin_size - 1) / dev->cfg.bin_size));
        for (int l = 0; l < n_layers; l++)
            for (int64_t i = r0; i < r0 + ne; i++)
                if (hash[l][i] < 0 || hash[l][i] >= 2 * k) {
                    snprintf(p->worst_tensor, sizeof p->worst_tensor, "LSH buckets of graph layer %d", l);
                    p->worst_error = INFINITY;
                    return 0;
                }
    }
    /* the CPU binning alone, for the record; then the CPU on the device's
     * binning (a near-tie of two LSH projections may go either way in a
     * different summation order, and a different bin changes gradients far
     * beyond any tolerance) */
    if (cpu->ops->forward(cpu, b, b->n_rows, &rc) != 0) {
        snprintf(msg, msglen, "self-check: forward on the CPU: %.400s", cpu->error);
        return -1;
    }
    int64_t same = 0;
    for (int l = 0; l < n_layers; l++) {
        cpu->ops->get_hashes(cpu, l, own);
        for (int64_t i = 0; i < b->n_rows; i++) same += own[i] == hash[l][i];
    }
    p->hash_agreement = (double)same / ((double)b->n_rows * n_layers);
    cpu->ops->force_hashes(cpu, (const int *const *)hash);
    cpu->ops->zero_grad(cpu);
    cpu->ops->forward(cpu, b, b->n_rows, &rc);
    cpu->ops->backward(cpu);
    cpu->ops->get_grads(cpu, g_cpu);
    cpu->ops->force_hashes(cpu, NULL);
    p->worst_error = -1;
    const double floor = SELFCHECK_NULL_FLOOR * selfcheck_rms(g_cpu, n);
    for (int i = 0; i < dev->layout.n; i++) {
        const tensor_info *t = &dev->layout.t[i];
        double e = selfcheck_tensor_error(g_dev + t->offset, g_cpu + t->offset, (size_t)t->rows * t->cols, floor);
        if (!(e <= p->worst_error)) { /* NaN counts as worst */
            p->worst_error = e;
            snprintf(p->worst_tensor, sizeof p->worst_tensor, "%s", t->name);
        }
    }
    p->global_error = selfcheck_tensor_error(g_dev, g_cpu, n, 0.0);
    p->loss_error = -1;
    for (int k = 1; k < LOSS_N; k++) {
        double ref = rc.loss[k], e = fabs(rd.loss[k] - ref) / (fabs(ref) > 1e-30 ? fabs(ref) : 1e-30);
        if (!(e <= p->loss_error)) {
            p->loss_error = e;
            snprintf(p->worst_loss, sizeof p->worst_loss, "%s", LOSS_NAMES[k]);
        }
    }
    p->passed = p->worst_error <= p->grad_tolerance && p->global_error <= p->global_tolerance &&
                p->loss_error <= p->loss_tolerance;
    return 0;
}

int selfcheck_run(backend *dev, uint64_t seed, selfcheck_result *res)
{
    memset(res, 0, sizeof *res);
    double t0 = mlpf_now();
    const int n_layers = dev->cfg.n_graph_id + dev->cfg.n_graph_reg;
    mlpf_batch b;
    backend cpu;
    char err[512];
    backend_opts co = {.device = "cpu"};
    if (check_batch(&dev->cfg, &b) != 0) {
        snprintf(res->message, sizeof res->message, "self-check: cannot allocate its batch");
        return -1;
    }
    if (backend_create(&cpu, &co, &dev->cfg, seed, err, sizeof err) != 0) {
        snprintf(res->message, sizeof res->message, "self-check: the CPU backend: %.400s", err);
        batch_free(&b);
        return -1;
    }
    res->rows = b.n_rows;
    res->events = b.n_events;
    const size_t n = dev->layout.total;
    float *g_dev = malloc(n * sizeof(float)), *g_cpu = malloc(n * sizeof(float));
    int **hash = calloc(n_layers, sizeof(int *)), *own = malloc(sizeof(int) * b.n_rows);
    int rc = -1;
    for (int l = 0; l < n_layers && hash; l++) hash[l] = malloc(sizeof(int) * b.n_rows);
    if (!g_dev || !g_cpu || !hash || !own || !hash[n_layers - 1]) {
        snprintf(res->message, sizeof res->message, "self-check: out of host memory");
        goto out;
    }
    /* the kernels in fp32 first, then the run's precision */
    const int reduced = strcmp(dev->precision, "fp32") && dev->ops->set_precision;
    res->n_passes = reduced ? 2 : 1;
    for (int k = 0; k < res->n_passes; k++) {
        selfcheck_pass *p = &res->pass[k];
        snprintf(p->precision, sizeof p->precision, "%s", k == 0 && reduced ? "fp32" : dev->precision);
        if (reduced && dev->ops->set_precision(dev, k == 0 ? "fp32" : NULL) != 0) {
            snprintf(res->message, sizeof res->message, "self-check: %.450s", dev->error);
            goto out;
        }
        if (compare(dev, &cpu, &b, hash, own, g_dev, g_cpu, p, res->message, sizeof res->message) != 0) goto out;
    }
    res->ran = 1;
    res->passed = 1;
    int off = 0;
    for (int k = 0; k < res->n_passes; k++) {
        const selfcheck_pass *p = &res->pass[k];
        res->passed &= p->passed;
        off += snprintf(res->message + off, sizeof res->message - off,
                        "%s%s %s: worst gradient %s %.1e (tol %.0e), all gradients %.1e (tol %.0e), worst loss %s "
                        "%.1e (tol %.0e), buckets %.4f",
                        k ? "; " : "", p->precision, p->passed ? "ok" : "FAILED", p->worst_tensor, p->worst_error,
                        p->grad_tolerance, p->global_error, p->global_tolerance, p->worst_loss, p->loss_error,
                        p->loss_tolerance, p->hash_agreement);
        if (off >= (int)sizeof res->message) break;
    }
    char head[96];
    snprintf(head, sizeof head, "self-check %s (%lld elements in %lld events): ", res->passed ? "passed" : "FAILED",
             (long long)res->rows, (long long)res->events);
    size_t hl = strlen(head), ml = strlen(res->message);
    if (hl + ml >= sizeof res->message) ml = sizeof res->message - hl - 1;
    memmove(res->message + hl, res->message, ml);
    memcpy(res->message, head, hl);
    res->message[hl + ml] = '\0';
    rc = 0;
out:
    dev->ops->zero_grad(dev);
    if (hash)
        for (int l = 0; l < n_layers; l++) free(hash[l]);
    free(hash);
    free(own);
    free(g_dev);
    free(g_cpu);
    backend_destroy(&cpu);
    batch_free(&b);
    res->seconds = mlpf_now() - t0;
    return rc;
}
