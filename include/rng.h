/* Portable deterministic random numbers: the same seed gives bit-identical
 * values on every machine and compiler. Integer counter-based generation and
 * floating point built from + - * / and sqrt only (all IEEE-exact); the files
 * that use it are compiled with -ffp-contract=off so no fused multiply-add
 * changes a last bit. */
#ifndef MLPF_RNG_H
#define MLPF_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} rng_stream;

/* A 64-bit mix of x (splitmix64 finaliser): a counter-based hash. */
uint64_t rng_mix64(uint64_t x);
/* Independent stream for (seed, stream id). */
rng_stream rng_stream_make(uint64_t seed, uint64_t stream);
uint64_t rng_next_u64(rng_stream *s);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(rng_stream *s);
/* Standard normal (Marsaglia polar method with rng_log). */
double rng_normal(rng_stream *s);
/* Natural logarithm of x > 0, portable (no libm), relative error < 1e-15. */
double rng_log(double x);

#endif
