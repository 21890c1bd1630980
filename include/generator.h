/* Synthetic Delphes-like event generator (shared/spec/data.md).
 *
 * Every event is a pure function of (seed, event index): event i is the same
 * whatever other events are generated, in whatever order, on whatever machine
 * (integer counter-based random numbers and IEEE-exact arithmetic only, no libm
 * transcendental whose last bit may differ between C libraries).
 *
 * Element rows follow the public dataset's 12 columns (tracks first, then
 * towers); targets are 7 columns [class, charge, pt, eta, sin_phi, cos_phi,
 * energy], built by the dataset's rules from hidden generator particles, so
 * they are a learnable function of the inputs plus noise. */
#ifndef MLPF_GENERATOR_H
#define MLPF_GENERATOR_H

#include <stdint.h>

enum { GEN_N_FEATURES = 12, GEN_N_TARGETS = 7 };

typedef struct {
    uint64_t seed;
    int mean_elements; /* mean elements per event (default 5000) */
    int min_elements;  /* sizes are drawn in [min, max] (defaults 4000..6400) */
    int max_elements;
} gen_config;

/* Default configuration: realistic sizes, seed 0. */
gen_config gen_config_default(void);

/* Number of elements (rows) of event `index`. Always within [min, max]. */
int64_t gen_event_size(const gen_config *cfg, uint64_t index);

/* Fill X (n x 12, row-major) and y (n x 7) for event `index`, where
 * n == gen_event_size(cfg, index). */
void gen_event(const gen_config *cfg, uint64_t index, float *X, float *y);

#endif
