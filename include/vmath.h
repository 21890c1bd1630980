/* exp and expm1 for the element-wise loops, written so that the compiler can
 * vectorise them (no library call, no branch): the loops over kernel matrices,
 * gates and activations run 4-8 values at a time instead of one expf call per
 * value. Accuracy: relative error below 3e-7 (2-3 ulp) for x in -87.3..88
 * (the model only needs x <= 0); below -87.3 the result is 0, as expf
 * underflows there to within denormals. Tested against the C library's double
 * results in tests/test_model.c. */
#ifndef MLPF_VMATH_H
#define MLPF_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Host+device: the same functions are compiled into the CPU backend (C), the
 * CUDA kernels (nvcc) and the kernels' host execution path (g++), so that both
 * backends evaluate one definition of the math (include/mathfn.h). */
#if defined(__CUDACC__) || defined(MLPF_CUDA_HOST)
#define MLPF_HD __host__ __device__
#else
#define MLPF_HD
#endif

static inline MLPF_HD float vm_exp(float x)
{
    const float lo = -87.33654f, hi = 88.0f; /* above 88 the result is exp(88) */
    /* ternaries, not fminf/fmaxf: those stay library calls (NaN rules) */
    float xc = x < lo ? lo : (x > hi ? hi : x);
    /* n = round(x / ln2): adding 1.5 * 2^23 rounds to an integer (floorf
     * would stay a library call in ISO C mode and block vectorisation) */
    const float magic = 12582912.0f;
    float n = (xc * 1.44269504088896341f + magic) - magic;
    /* r = x - n ln2, with ln2 split in two so that n * hi is exact */
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < lo ? 0.0f : e * scale;
}

/* exp(x) - 1 without cancellation near 0: a Taylor polynomial for |x| < 0.5
 * (truncation error below 1e-8 relative), exp(x) - 1 elsewhere. */
/* min(max(x, 0), 1) */
static inline MLPF_HD float vm_clamp01(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }

static inline MLPF_HD float vm_expm1(float x)
{
    float p = 1.0f / 40320.0f;
    p = p * x + 1.0f / 5040.0f;
    p = p * x + 1.0f / 720.0f;
    p = p * x + 1.0f / 120.0f;
    p = p * x + 1.0f / 24.0f;
    p = p * x + 1.0f / 6.0f;
    p = p * x + 0.5f;
    float small = x + x * x * p;
    float big = vm_exp(x) - 1.0f;
    return fabsf(x) < 0.5f ? small : big;
}

/* erfc(x), to 7.2e-7 relative (measured over every float; the C library: 1 ulp): for a = |x|, erfc(a) = t exp(-a^2) exp(P(t))
 * with t = 1 / (1 + 0.4 a) and P a degree-10 polynomial fitted to
 * log(erfc(a) e^(a^2) / t) over a in [0, 10.5] (least squares with error
 * reweighting; largest fit error 4e-9 in float64); a^2 is split into its
 * rounded value and the rounding error (fmaf) so that exp(-a^2) keeps its
 * accuracy for large a; negative x: erfc(x) = 2 - erfc(-x). Below ~1e-38
 * (a > 9.3) the result is 0. Tested against the C library in tests/test_model.c. */
static inline MLPF_HD float vm_erfc(float x)
{
    float a = fabsf(x);
    a = a > 10.0f ? 10.0f : a; /* erfc(10) underflows anyway; keeps a * a finite (and NaN a NaN) */
    float t = 1.0f / (1.0f + 0.4f * a);
    float p = 1.925459027e-01f;
    p = p * t + -1.086772013e+00f;
    p = p * t + 2.459641747e+00f;
    p = p * t + -2.808061310e+00f;
    p = p * t + 1.797109720e+00f;
    p = p * t + -8.861302467e-01f;
    p = p * t + 2.672368784e-01f;
    p = p * t + 1.283291857e-01f;
    p = p * t + 4.250411687e-01f;
    p = p * t + 9.997090154e-01f;
    p = p * t + -1.488650044e+00f;
    float aa = a * a, err = fmaf(a, a, -aa); /* a^2 = aa + err exactly */
    float r = t * vm_exp(-aa) * vm_exp(p) * (1.0f - err);
    return x < 0.0f ? 2.0f - r : r;
}

#endif
