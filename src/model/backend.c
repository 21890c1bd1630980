/* include/backend.h: choosing and creating a backend. */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const LOSS_NAMES[LOSS_N] = {"total", "cls", "charge", "pt",
                                        "eta", "sin_phi", "cos_phi", "energy"};

int backend_create(backend *be, const backend_opts *o, const mlpf_config *cfg, uint64_t seed, char *err,
                   size_t errlen)
{
    memset(be, 0, sizeof *be);
    be->cfg = *cfg;
    const int cuda = !strcmp(o->device, "cuda");
    if (!cuda && strcmp(o->device, "cpu")) {
        snprintf(err, errlen, "unknown device '%s' (cpu or cuda)", o->device);
        return -1;
    }
    const char *prec = o->precision ? o->precision : (cuda ? "tf32" : "fp32");
    if (strcmp(prec, "fp32") && strcmp(prec, "tf32") && strcmp(prec, "bf16")) {
        snprintf(err, errlen, "precision must be fp32, tf32 or bf16, got '%s'", prec);
        return -1;
    }
    if (!cuda && strcmp(prec, "fp32")) {
        snprintf(err, errlen, "precision %s needs a GPU; the CPU backend computes in fp32", prec);
        return -1;
    }
    if (cfg->n_features != BATCH_X_COLS) {
        snprintf(err, errlen, "preset '%s' has %d input features; the data format has %d", cfg->preset,
                 cfg->n_features, (int)BATCH_X_COLS);
        return -1;
    }
    if (param_layout_build(cfg, &be->layout) != 0) {
        snprintf(err, errlen, "configuration '%s' exceeds the model's fixed limits", cfg->preset);
        return -1;
    }
    snprintf(be->device, sizeof be->device, "%s", o->device);
    snprintf(be->precision, sizeof be->precision, "%s", prec);
    if (!cuda) return cpu_backend_init(be, o, seed, err, errlen);
    /* the initial state is made on the host, so that it is the same bits on
     * every backend */
    float *params = malloc(be->layout.total * sizeof(float)), *lsh = malloc(lsh_buffer_size(cfg) * sizeof(float));
    int rc = -1;
    if (!params || !lsh) {
        snprintf(err, errlen, "cannot allocate the initial weights on the host");
    } else {
        param_init(&be->layout, params, seed);
        lsh_init(cfg, lsh, seed);
        rc = cuda_backend_init(be, o, params, lsh, err, errlen);
    }
    free(params);
    free(lsh);
    return rc;
}

void backend_destroy(backend *be)
{
    if (be->ops) be->ops->destroy(be);
    memset(be, 0, sizeof *be);
}
