/* The model's per-element and per-row formulas, defined once for both
 * backends: the CPU backend calls them inside its (vectorised) loops, the CUDA
 * kernels call them per thread, and the kernels' host execution path compiles
 * the same lines again. The CPU unit tests and the parity test against the
 * PyTorch twin therefore cover the arithmetic of the GPU kernels too; what
 * differs between the backends is only the order of summations (matrix
 * products, reductions) and the precision of the products (tf32, bf16).
 *
 * Both sides compile without floating-point contraction (C11 default; nvcc
 * --fmad=false, see the Makefile), so an element-wise result is the same bits
 * on the CPU, on the GPU and on the host path. */
#ifndef MLPF_MATHFN_H
#define MLPF_MATHFN_H

#include "vmath.h"

/* ------------------------------------------------------------ activations */

#define MLPF_INV_SQRT2 0.70710678118654752f
#define MLPF_INV_SQRT_2PI 0.39894228040143268f

/* gelu(x) = x Phi(x), exact (erf) form; Phi through erfc, since 1 + erf(x)
 * would cancel for x << 0. */
static inline MLPF_HD float mlpf_gelu(float x) { return 0.5f * x * vm_erfc(-x * MLPF_INV_SQRT2); }

/* d gelu / dx = Phi(x) + x phi(x) */
static inline MLPF_HD float mlpf_gelu_grad(float x)
{
    float cdf = 0.5f * vm_erfc(-x * MLPF_INV_SQRT2);
    float pdf = MLPF_INV_SQRT_2PI * vm_exp(-0.5f * x * x);
    return cdf + x * pdf;
}

static inline MLPF_HD float mlpf_elu(float x) { return x > 0.0f ? x : vm_expm1(x); }

/* dy * elu'(x) from the input x */
static inline MLPF_HD float mlpf_elu_grad(float x, float dy) { return x > 0.0f ? dy : dy * vm_exp(x); }

/* dy * elu'(x) from the output y = elu(x): 1 above 0, exp(x) = y + 1 below */
static inline MLPF_HD float mlpf_elu_grad_from_out(float y, float dy) { return y > 0.0f ? dy : dy * (y + 1.0f); }

/* ------------------------------------------------------------ graph layer */

/* The gate G = sigmoid(p) and its complement 1 - G, each computed without
 * cancellation: for a saturated gate, 1 - G in float32 would keep no digits. */
static inline MLPF_HD void mlpf_gate(float p, float *g, float *gc)
{
    float e = vm_exp(-fabsf(p)), big = 1.0f / (1.0f + e), small = e / (1.0f + e);
    *g = p >= 0.0f ? big : small;
    *gc = p >= 0.0f ? small : big;
}

/* The layer's message before the residual: elu(G Fhom + (1 - G) Fhet), from
 * the gate pre-activation gp. */
static inline MLPF_HD float mlpf_graph_out(float gp, float fhom, float fhet)
{
    float g, gc;
    mlpf_gate(gp, &g, &gc);
    return mlpf_elu(g * fhom + gc * fhet);
}

/* Its backward: from dz (the gradient of the message) the gradients of the
 * gate pre-activation, of Fhom and of Fhet. */
static inline MLPF_HD void mlpf_graph_out_grad(float gp, float fhom, float fhet, float dz, float *dgp,
                                               float *dfhom, float *dfhet)
{
    float g, gc;
    mlpf_gate(gp, &g, &gc);
    float z = g * fhom + gc * fhet;
    float dzz = z > 0.0f ? dz : dz * vm_exp(z);
    *dgp = dzz * (fhom - fhet) * g * gc;
    *dfhom = dzz * g;
    *dfhet = dzz * gc;
}

/* Smallest squared distance of the kernel, and the distance it gives. */
#define MLPF_KERNEL_SQ_MIN 1e-6
/* D of a clamped pair: sqrtf((float)1e-6) == (float)sqrt(1e-6) == 1e-3f
 * (unit-tested); no gradient flows through a clamped distance. */
static inline MLPF_HD float mlpf_kernel_dmin(void) { return 1e-3f; }

/* The kernel between two elements of a bin from their squared distance
 * sq = |d_i|^2 - 2 d_i.d_j + |d_j|^2 (float64: see docs/design.md
 * "Numerics"): D = sqrt(max(sq, 1e-6)), A = clip(exp(-mult D), 0, 1). The
 * diagonal is passed as sq = 0 exactly (self-loop). Returns A, stores D. */
static inline MLPF_HD float mlpf_kernel_value(double sq, float mult, float *dist)
{
    float d = sqrtf((float)(sq > MLPF_KERNEL_SQ_MIN ? sq : MLPF_KERNEL_SQ_MIN));
    *dist = d;
    return vm_clamp01(vm_exp(-mult * d));
}

/* dL/dsq from dL/dA (da, with the degree term already added): A = exp(-mult D),
 * D = sqrt(max(sq, 1e-6)); no gradient where the distance was clamped. */
static inline MLPF_HD float mlpf_kernel_dsq(float da, float a, float d, float mult)
{
    return d > mlpf_kernel_dmin() ? da * (-mult) * a / (2.0f * d) : 0.0f;
}

/* Degree normalisation n_i = (deg_i + 1e-6)^(-1/2), 0 on padding. */
static inline MLPF_HD float mlpf_degree_norm(double deg, int real)
{
    return real ? (float)(1.0 / sqrt(deg + 1e-6)) : 0.0f;
}

/* ------------------------------------------------------------ LayerNorm */

/* A row's 1 / sqrt(var + eps), from its variance (float64 statistics). */
static inline MLPF_HD float mlpf_ln_rstd(double var, float eps) { return (float)(1.0 / sqrt(var + eps)); }

/* The input gradient of one element from g = dy * gamma, xhat and the row
 * means m1 = mean(g), m2 = mean(g * xhat). */
static inline MLPF_HD float mlpf_ln_dx(float g, float xhat, double m1, double m2, float rstd)
{
    return rstd * (float)(g - m1 - xhat * m2);
}

/* ------------------------------------------------------------ loss */

static inline MLPF_HD float mlpf_huber(float e, float d)
{
    return fabsf(e) <= d ? 0.5f * e * e : d * (fabsf(e) - 0.5f * d);
}
static inline MLPF_HD float mlpf_huber_grad(float e, float d) { return fabsf(e) <= d ? e : (e > 0 ? d : -d); }
static inline MLPF_HD float mlpf_sgn(float x) { return (float)((x > 0) - (x < 0)); }

/* The loss terms of one element (shared/spec/model.md "Loss"). */
enum { MLPF_TERM_CLS, MLPF_TERM_CHARGE, MLPF_TERM_PT, MLPF_TERM_ETA, MLPF_TERM_SIN_PHI,
       MLPF_TERM_COS_PHI, MLPF_TERM_ENERGY, MLPF_N_TERMS };

/* The heads' outputs of one element and the gradients written for it. */
typedef struct {
    const float *logits; /* n_classes */
    float charge, eta, energy;
    const float *phi; /* 2: sin, cos */
    const float *pt;  /* 2: the first is used */
} mlpf_head_out;

typedef struct {
    float *logits; /* n_classes */
    float *charge, *eta, *energy;
    float *phi, *pt; /* 2 each */
} mlpf_head_grad;

/* One element: X its 12 input features, y its 7 targets, inv = 1 / (real
 * elements of the global batch). Adds its seven terms (unnormalised) to
 * terms[], writes the gradients of the normalised loss w.r.t. the heads'
 * outputs, returns 1 if argmax(logits) is the target class (first maximum). */
static inline MLPF_HD int mlpf_loss_element(const float *X, const float *y, int nc, mlpf_head_out o,
                                            float inv, mlpf_head_grad d, double *terms)
{
    const float *l = o.logits;
    int cls = (int)y[0];
    float mx = l[0];
    int arg = 0;
    for (int j = 1; j < nc; j++)
        if (l[j] > mx) mx = l[j], arg = j;
    double se = 0.0;
    for (int j = 0; j < nc; j++) se += exp((double)(l[j] - mx));
    float lse = mx + (float)log(se);
    terms[MLPF_TERM_CLS] += lse - l[cls];
    for (int j = 0; j < nc; j++) d.logits[j] = (expf(l[j] - lse) - (float)(j == cls)) * inv;
    float ec = o.charge - y[1];
    terms[MLPF_TERM_CHARGE] += ec * ec;
    *d.charge = 2.0f * ec * inv;
    float w = cls != 0 ? 1.0f : 0.0f;
    float ep = fabsf(o.pt[0]) - y[2];
    terms[MLPF_TERM_PT] += w * mlpf_huber(ep, 1.0f);
    d.pt[0] = w * mlpf_huber_grad(ep, 1.0f) * mlpf_sgn(o.pt[0]) * inv;
    d.pt[1] = 0.0f;
    float ee = X[2] + o.eta - y[3];
    terms[MLPF_TERM_ETA] += w * mlpf_huber(ee, 0.1f);
    *d.eta = w * mlpf_huber_grad(ee, 0.1f) * inv;
    float es = X[3] + o.phi[0] - y[4], eo = X[4] + o.phi[1] - y[5];
    terms[MLPF_TERM_SIN_PHI] += w * mlpf_huber(es, 0.1f);
    terms[MLPF_TERM_COS_PHI] += w * mlpf_huber(eo, 0.1f);
    d.phi[0] = w * mlpf_huber_grad(es, 0.1f) * inv;
    d.phi[1] = w * mlpf_huber_grad(eo, 0.1f) * inv;
    float pe = X[5] + o.energy;
    float eE = fabsf(pe) - y[6];
    terms[MLPF_TERM_ENERGY] += w * mlpf_huber(eE, 1.0f);
    *d.energy = w * mlpf_huber_grad(eE, 1.0f) * mlpf_sgn(pe) * inv;
    return arg == cls;
}

/* ------------------------------------------------------------ optimizer */

/* One Adam update in the Keras form; lr_t already holds the bias
 * corrections and the learning-rate decay (adam_lr_t). */
static inline MLPF_HD void mlpf_adam_element(float *p, float *m, float *v, float g, float b1, float b2,
                                             float lr_t, float eps)
{
    float mi = b1 * *m + (1.0f - b1) * g;
    float vi = b2 * *v + (1.0f - b2) * g * g;
    *m = mi;
    *v = vi;
    *p -= lr_t * mi / (sqrtf(vi) + eps);
}

#endif
