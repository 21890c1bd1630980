#include "rng.h"

#include <math.h>
#include <string.h>

uint64_t rng_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

rng_stream rng_stream_make(uint64_t seed, uint64_t stream)
{
    rng_stream s = {rng_mix64(rng_mix64(seed) ^ rng_mix64(stream + 0x632BE59BD9B4E019ull))};
    return s;
}

uint64_t rng_next_u64(rng_stream *s)
{
    s->state += 0x9E3779B97F4A7C15ull;
    return rng_mix64(s->state);
}

double rng_uniform(rng_stream *s) { return (double)(rng_next_u64(s) >> 11) * 0x1.0p-53; }

double rng_log(double x)
{
    /* x = m * 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh((m-1)/(m+1)). */
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int e = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull; /* m in [1, 2) */
    double m;
    memcpy(&m, &bits, sizeof m);
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e += 1;
    }
    double s = (m - 1.0) / (m + 1.0), s2 = s * s, term = s, sum = 0.0;
    for (int k = 1; k < 40; k += 2) { /* |s| <= 0.1716: 20 terms reach 1e-17 */
        sum += term / k;
        term *= s2;
    }
    const double ln2_hi = 0.693147180369123816490, ln2_lo = 1.90821492927058770002e-10;
    return e * ln2_hi + (e * ln2_lo + 2.0 * sum);
}

double rng_normal(rng_stream *s)
{
    for (;;) {
        double u = 2.0 * rng_uniform(s) - 1.0, v = 2.0 * rng_uniform(s) - 1.0;
        double r = u * u + v * v;
        if (r > 0.0 && r < 1.0) return u * sqrt(-2.0 * rng_log(r) / r);
    }
}
