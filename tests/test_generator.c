/* Unit tests of the synthetic event generator (src/generator.c). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generator.h"

Suite *generator_suite(void);

/* Portable math of src/generator.c, not in generator.h: exported for this test. */
double gen_exp(double x);
void gen_sincos(double x, double *s, double *c);
double gen_cosh(double x);
double gen_asinh(double x);

enum { F = GEN_N_FEATURES, T = GEN_N_TARGETS };

static const double LN2 = 0.69314718055994530942, PI_2 = 1.57079632679489661923;

/* Golden values of test_golden_events. */
#define GOLDEN_N_DEFAULT 5675
#define GOLDEN_H_DEFAULT 0xcaf05454796235dbull
#define GOLDEN_N_SMALL 74
#define GOLDEN_H_SMALL 0x5133c401c59f5f68ull

typedef struct {
    int64_t n;
    float *X, *y;
} event;

static event make_event(const gen_config *cfg, uint64_t index)
{
    event e;
    e.n = gen_event_size(cfg, index);
    e.X = malloc((size_t)(e.n ? e.n : 1) * F * sizeof(float));
    e.y = malloc((size_t)(e.n ? e.n : 1) * T * sizeof(float));
    ck_assert_ptr_nonnull(e.X);
    ck_assert_ptr_nonnull(e.y);
    /* Garbage first, so a value the generator forgets to write shows up. */
    memset(e.X, 0xA5, (size_t)e.n * F * sizeof(float));
    memset(e.y, 0x5A, (size_t)e.n * T * sizeof(float));
    gen_event(cfg, index, e.X, e.y);
    return e;
}

static void free_event(event *e)
{
    free(e->X);
    free(e->y);
}

static int same_event(const event *a, const event *b)
{
    return a->n == b->n && memcmp(a->X, b->X, (size_t)a->n * F * sizeof(float)) == 0 &&
           memcmp(a->y, b->y, (size_t)a->n * T * sizeof(float)) == 0;
}

static gen_config small_config(void)
{
    gen_config c = gen_config_default();
    c.mean_elements = 100;
    c.min_elements = 50;
    c.max_elements = 150;
    return c;
}

static double correlation(const double *a, const double *b, int64_t n)
{
    double ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
    for (int64_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= n;
    mb /= n;
    for (int64_t i = 0; i < n; i++) {
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
        sab += (a[i] - ma) * (b[i] - mb);
    }
    return sab / sqrt(saa * sbb);
}

/* ------------------------------------------------------ portable math ---- */

START_TEST(test_exp_matches_libm)
{
    double worst = 0;
    for (int i = -200000; i <= 200000; i++) {
        double x = i * 3.7e-4; /* [-74, 74], not aligned with ln2 */
        double rel = fabs(gen_exp(x) - exp(x)) / exp(x);
        if (rel > worst) worst = rel;
    }
    double edge[] = {0.0, -0.0, 1e-300, -1e-300, 1e-9, 0.5 * LN2, -0.5 * LN2, 700.0, -700.0};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        double rel = fabs(gen_exp(edge[i]) - exp(edge[i])) / exp(edge[i]);
        if (rel > worst) worst = rel;
    }
    ck_assert_msg(worst < 1e-13, "gen_exp worst relative error %.3g", worst);
    ck_assert(isfinite(gen_exp(1e6)));
    ck_assert(gen_exp(-1e6) == 0.0);
}
END_TEST

START_TEST(test_sincos_matches_libm)
{
    double worst = 0;
    for (int i = -400000; i <= 400000; i++) {
        double x = i * 2.5e-4 + 1e-7; /* [-100, 100] */
        double s, c;
        gen_sincos(x, &s, &c);
        double err = fmax(fabs(s - sin(x)), fabs(c - cos(x)));
        if (err > worst) worst = err;
    }
    for (int k = -1000; k <= 1000; k++) { /* multiples of pi/2: the worst cancellation */
        double x = k * PI_2, s, c;
        gen_sincos(x, &s, &c);
        double err = fmax(fabs(s - sin(x)), fabs(c - cos(x)));
        if (err > worst) worst = err;
    }
    ck_assert_msg(worst < 1e-14, "gen_sincos worst absolute error %.3g", worst);
    /* Relative accuracy near zero, where absolute error says little. */
    for (double x = 1e-12; x < 1.0; x *= 1.7) {
        double s, c;
        gen_sincos(x, &s, &c);
        ck_assert_msg(fabs(s - sin(x)) <= 1e-13 * fabs(sin(x)), "sin(%g)", x);
        gen_sincos(-x, &s, &c);
        ck_assert_msg(fabs(s - sin(-x)) <= 1e-13 * fabs(sin(x)), "sin(%g)", -x);
    }
}
END_TEST

START_TEST(test_cosh_asinh_match_libm)
{
    double worst_cosh = 0, worst_asinh = 0;
    for (int i = -100000; i <= 100000; i++) {
        double x = i * 1.0e-4; /* [-10, 10] */
        double rel = fabs(gen_cosh(x) - cosh(x)) / cosh(x);
        if (rel > worst_cosh) worst_cosh = rel;
        double z = i * 1.0e-2; /* [-1000, 1000] */
        double a = asinh(z), err = fabs(gen_asinh(z) - a) / fmax(1.0, fabs(a));
        if (err > worst_asinh) worst_asinh = err;
    }
    ck_assert_msg(worst_cosh < 1e-13, "gen_cosh worst relative error %.3g", worst_cosh);
    ck_assert_msg(worst_asinh < 1e-13, "gen_asinh worst error %.3g", worst_asinh);
    ck_assert(gen_asinh(0.0) == 0.0);
    ck_assert(fabs(gen_asinh(1e-8) - 1e-8) < 1e-15);
}
END_TEST

/* ------------------------------------------------------- determinism ---- */

START_TEST(test_default_config)
{
    gen_config c = gen_config_default();
    ck_assert_uint_eq(c.seed, 0);
    ck_assert_int_eq(c.mean_elements, 5000);
    ck_assert_int_eq(c.min_elements, 4000);
    ck_assert_int_eq(c.max_elements, 6400);
}
END_TEST

START_TEST(test_same_event_twice)
{
    gen_config c = gen_config_default();
    c.seed = 12345;
    event a = make_event(&c, 7), b = make_event(&c, 7);
    ck_assert(same_event(&a, &b));
    free_event(&a);
    free_event(&b);
}
END_TEST

/* Events generated forwards, backwards and alone are the same bytes. */
START_TEST(test_order_independent)
{
    gen_config c = small_config();
    c.seed = 99;
    enum { N = 12 };
    event fwd[N], bwd[N];
    for (int i = 0; i < N; i++) fwd[i] = make_event(&c, (uint64_t)i);
    for (int i = N - 1; i >= 0; i--) bwd[i] = make_event(&c, (uint64_t)i);
    for (int i = 0; i < N; i++) ck_assert_msg(same_event(&fwd[i], &bwd[i]), "event %d", i);
    /* A far-away index alone, then again after others. */
    event lone = make_event(&c, 1000003);
    for (int i = 0; i < N; i++) {
        free_event(&fwd[i]);
        free_event(&bwd[i]);
    }
    event again = make_event(&c, 1000003);
    ck_assert(same_event(&lone, &again));
    free_event(&lone);
    free_event(&again);

    gen_config d = gen_config_default();
    event x = make_event(&d, 3);
    event other = make_event(&d, 2);
    event y = make_event(&d, 3);
    ck_assert(same_event(&x, &y));
    free_event(&x);
    free_event(&other);
    free_event(&y);
}
END_TEST

START_TEST(test_seeds_and_indices_differ)
{
    gen_config c0 = gen_config_default(), c1 = gen_config_default();
    c1.seed = 1;
    event a = make_event(&c0, 0), b = make_event(&c1, 0), d = make_event(&c0, 1);
    ck_assert(!same_event(&a, &b));
    ck_assert(!same_event(&a, &d));
    /* Not merely different sizes: the common rows differ too. */
    int64_t n = a.n < b.n ? a.n : b.n;
    ck_assert(memcmp(a.X, b.X, (size_t)n * F * sizeof(float)) != 0);
    int sizes_differ = 0;
    for (uint64_t i = 0; i < 20; i++) sizes_differ |= gen_event_size(&c0, i) != gen_event_size(&c1, i);
    ck_assert(sizes_differ);
    free_event(&a);
    free_event(&b);
    free_event(&d);
}
END_TEST

/* FNV-1a over the little-endian bytes of every float of an event (the same
 * hash whatever the byte order of the machine). */
static uint64_t hash_floats(uint64_t h, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        for (int b = 0; b < 32; b += 8) h = (h ^ ((bits >> b) & 0xFFu)) * 0x100000001B3ull;
    }
    return h;
}

static uint64_t event_hash(const event *e)
{
    uint64_t h = hash_floats(0xCBF29CE484222325ull, e->X, (size_t)e->n * F);
    return hash_floats(h, e->y, (size_t)e->n * T);
}

/* Pinned bytes: the same events must come out on every machine and compiler
 * (this is what catches a libm call, a fused multiply-add or x87 rounding).
 * Update the values only on a deliberate change of the event model or of the
 * random streams of rng.c, since it changes every generated dataset. */
START_TEST(test_golden_events)
{
    gen_config c = gen_config_default();
    event e = make_event(&c, 0);
    uint64_t h_default = event_hash(&e);
    int64_t n_default = e.n;
    free_event(&e);
    gen_config s = small_config();
    s.seed = 2024;
    e = make_event(&s, 17);
    uint64_t h_small = event_hash(&e);
    int64_t n_small = e.n;
    free_event(&e);
    ck_assert_msg(n_default == GOLDEN_N_DEFAULT && h_default == GOLDEN_H_DEFAULT,
                  "default event 0: n %lld hash 0x%016llx", (long long)n_default,
                  (unsigned long long)h_default);
    ck_assert_msg(n_small == GOLDEN_N_SMALL && h_small == GOLDEN_H_SMALL,
                  "small event 17 seed 2024: n %lld hash 0x%016llx", (long long)n_small,
                  (unsigned long long)h_small);
}
END_TEST

/* ------------------------------------------------------ element rules ---- */

static int near(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(1.0, fabs(b)); }

/* Check records every assertion (a write to its pipe), far too slow per
 * element: the rule checker stops at the first broken rule, says which in
 * rule_failure, and the caller asserts once. */
static char rule_failure[256];
#define RULE(cond)                                                                               \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            snprintf(rule_failure, sizeof rule_failure, "row %lld (%s): %s", (long long)r,       \
                     track ? "track" : "tower", #cond);                                          \
            return -1;                                                                           \
        }                                                                                        \
    } while (0)

/* Every input and target rule of one event; returns the number of tracks, or
 * -1 with rule_failure set. */
static int64_t check_event_rules(const event *e)
{
    int64_t n_trk = 0;
    int seen_tower = 0;
    for (int64_t r = 0; r < e->n; r++) {
        const float *x = e->X + r * F, *y = e->y + r * T;
        int track = x[0] == 2.0f;
        for (int j = 0; j < F; j++) RULE(isfinite(x[j]));
        for (int j = 0; j < T; j++) RULE(isfinite(y[j]));
        RULE(x[0] == 1.0f || x[0] == 2.0f);
        if (track) {
            RULE(!seen_tower); /* tracks first */
            n_trk++;
        } else {
            seen_tower = 1;
        }
        /* Common columns: pt/Et > 0, |eta| in acceptance, unit (sin, cos), E >= pt. */
        RULE(x[1] > 0.0f);
        RULE(fabs(x[2]) <= (track ? 2.6 : 4.0));
        RULE(near(x[3] * x[3] + x[4] * x[4], 1.0, 1e-5));
        RULE(x[5] >= x[1] * (1.0f - 1e-6f));
        if (track) {
            RULE(near(x[5], x[1] * cosh(x[2]), 1e-5)); /* p = pt cosh(eta) */
            RULE(fabs(x[6]) <= 4.0f);
            RULE(near(x[7] * x[7] + x[8] * x[8], 1.0, 1e-5));
            RULE(x[9] == 1.0f || x[9] == -1.0f);
            RULE(x[10] == 0.0f || x[10] == 1.0f);
            RULE(x[11] == 0.0f || x[11] == 1.0f);
        } else {
            RULE(x[6] >= 0.0f && x[7] >= 0.0f);
            RULE(near(x[5], (double)x[6] + x[7], 1e-5)); /* E = E_em + E_had */
            RULE(near(x[1], x[5] / cosh(x[2]), 1e-5));   /* Et = E / cosh(eta) */
            for (int j = 8; j < F; j++) RULE(x[j] == 0.0f);
        }

        /* Targets. */
        float cls = y[0];
        RULE(cls == (float)(int)cls && cls >= 0.0f && cls <= 5.0f);
        if (cls == 0.0f) {
            for (int j = 1; j < T; j++) RULE(y[j] == 0.0f);
            continue;
        }
        if (track) {
            RULE(cls == 1.0f || cls == 4.0f || cls == 5.0f);
            RULE(y[1] == 1.0f || y[1] == -1.0f);
            RULE(y[1] == x[9]); /* the measured charge is the particle's */
            RULE(fabs(y[3]) <= 2.5f);
        } else {
            RULE(cls == 2.0f || cls == 3.0f);
            RULE(y[1] == 0.0f);
            RULE(fabs(y[3]) <= 4.1f);
            RULE(cls != 2.0f || y[6] >= 9.0f); /* softer neutral hadrons are dropped */
        }
        RULE(y[2] > 0.0f && y[6] > 0.0f);
        RULE(y[6] >= y[2] * (1.0f - 1e-6f)); /* E >= pt */
        RULE(fabs(y[4]) <= 1.0f && fabs(y[5]) <= 1.0f);
        RULE(near(y[4] * y[4] + y[5] * y[5], 1.0, 1e-5));
    }
    return n_trk;
}

/* ------------------------------------------------------------- sizes ---- */

static void check_sizes(const gen_config *c, int n_events, double mean_tol)
{
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n_events; i++) {
        int64_t n = gen_event_size(c, (uint64_t)i);
        ck_assert_msg(n >= c->min_elements && n <= c->max_elements, "event %d size %lld", i,
                      (long long)n);
        sum += (double)n;
        sum2 += (double)n * (double)n;
    }
    double mean = sum / n_events, sd = sqrt(sum2 / n_events - mean * mean);
    ck_assert_msg(fabs(mean - c->mean_elements) < mean_tol * c->mean_elements, "mean size %.1f",
                  mean);
    double room = fmin(c->mean_elements - c->min_elements, c->max_elements - c->mean_elements);
    ck_assert_msg(sd > 0.2 * room, "sizes barely vary: sd %.1f", sd);
}

START_TEST(test_sizes_default)
{
    gen_config c = gen_config_default();
    check_sizes(&c, 200, 0.02);
    c.seed = 77;
    check_sizes(&c, 200, 0.02);
}
END_TEST

START_TEST(test_sizes_small)
{
    gen_config c = small_config();
    check_sizes(&c, 200, 0.05);
    /* Asymmetric range: the mean still holds. */
    c.mean_elements = 1000;
    c.min_elements = 900;
    c.max_elements = 2000;
    check_sizes(&c, 200, 0.02);
}
END_TEST

START_TEST(test_sizes_fixed_and_degenerate)
{
    gen_config c = gen_config_default();
    int fixed[] = {1, 2, 3, 64, 5000};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) {
        c.mean_elements = c.min_elements = c.max_elements = fixed[k];
        for (uint64_t i = 0; i < 5; i++) {
            ck_assert_int_eq(gen_event_size(&c, i), fixed[k]);
            event e = make_event(&c, i);
            ck_assert_msg(check_event_rules(&e) >= 0, "size %d: %s", fixed[k], rule_failure);
            free_event(&e);
        }
    }
    /* Two or more elements: at least one track and one tower. */
    c.mean_elements = c.min_elements = c.max_elements = 2;
    event e = make_event(&c, 0);
    ck_assert(e.X[0] == 2.0f && e.X[F] == 1.0f);
    free_event(&e);
    /* Mean outside [min, max] is clamped; min > max collapses to min. */
    c.mean_elements = 10;
    c.min_elements = 20;
    c.max_elements = 30;
    for (uint64_t i = 0; i < 20; i++) {
        int64_t n = gen_event_size(&c, i);
        ck_assert(n >= 20 && n <= 30);
    }
    c.min_elements = 40;
    ck_assert_int_eq(gen_event_size(&c, 0), 40);
    /* Empty events are allowed and write nothing. */
    c.mean_elements = c.min_elements = c.max_elements = 0;
    ck_assert_int_eq(gen_event_size(&c, 0), 0);
    float sentinel = 42.0f;
    gen_event(&c, 0, &sentinel, &sentinel);
    ck_assert(sentinel == 42.0f);
}
END_TEST

/* ---------------------------------------------------- rules in events ---- */

START_TEST(test_rules_default)
{
    gen_config c = gen_config_default();
    for (uint64_t i = 0; i < 6; i++) {
        event e = make_event(&c, i);
        int64_t n_trk = check_event_rules(&e);
        ck_assert_msg(n_trk >= 0, "event %d: %s", (int)i, rule_failure);
        double share = (double)n_trk / (double)e.n;
        ck_assert_msg(share > 0.5 && share < 0.65, "event %d track share %.3f", (int)i, share);
        free_event(&e);
    }
}
END_TEST

START_TEST(test_rules_small_and_other_seeds)
{
    gen_config c = small_config();
    for (uint64_t seed = 0; seed < 4; seed++) {
        c.seed = seed * 0x9E3779B97F4A7C15ull;
        for (uint64_t i = 0; i < 50; i++) {
            event e = make_event(&c, i);
            int64_t n_trk = check_event_rules(&e);
            ck_assert_msg(n_trk >= 0, "seed %llu event %d: %s", (unsigned long long)c.seed, (int)i,
                          rule_failure);
            ck_assert(n_trk > 0 && n_trk < e.n);
            free_event(&e);
        }
    }
}
END_TEST

/* ------------------------------------------------- realism, learning ---- */

START_TEST(test_realistic_mix)
{
    gen_config c = gen_config_default();
    enum { NE = 10 };
    long count[2][6] = {{0}}, n_trk = 0, n_tow = 0;
    for (uint64_t i = 0; i < NE; i++) {
        event e = make_event(&c, i);
        for (int64_t r = 0; r < e.n; r++) {
            int track = e.X[r * F] == 2.0f;
            count[track][(int)e.y[r * T]]++;
            if (track)
                n_trk++;
            else
                n_tow++;
        }
        free_event(&e);
    }
    /* Most towers have no target, but some are neutral hadrons and photons. */
    ck_assert_msg(count[0][0] > 0.5 * n_tow, "towers with class 0: %ld of %ld", count[0][0], n_tow);
    ck_assert_msg(count[0][2] > 100 * NE, "neutral hadrons per event %ld", count[0][2] / NE);
    ck_assert_msg(count[0][3] > 100 * NE, "photons per event %ld", count[0][3] / NE);
    /* Most tracks are charged hadrons; some fakes / pile-up; a few leptons. */
    ck_assert_msg(count[1][1] > 1000 * NE, "charged hadrons per event %ld", count[1][1] / NE);
    ck_assert(count[1][0] > 0.02 * n_trk && count[1][0] < 0.2 * n_trk);
    ck_assert(count[1][4] > 0.005 * n_trk && count[1][4] < 0.05 * n_trk);
    ck_assert(count[1][5] > 0.005 * n_trk && count[1][5] < 0.05 * n_trk);
}
END_TEST

START_TEST(test_targets_follow_inputs)
{
    gen_config c = gen_config_default();
    c.seed = 5;
    /* Track targets vs track measurements. */
    size_t cap = 40000;
    double *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
    double *d = malloc(cap * sizeof *d), *f = malloc(cap * sizeof *f);
    ck_assert(a && b && d && f);
    int64_t nt = 0, nw = 0;
    long mu_total = 0, mu_flagged = 0, not_mu = 0, not_mu_flagged = 0;
    long e_total = 0, e_flagged = 0, far_tracks = 0, far_towers = 0;
    double em_frac_photon = 0, em_frac_nh = 0;
    long n_photon = 0, n_nh = 0;
    for (uint64_t i = 0; i < 4; i++) {
        event e = make_event(&c, i);
        for (int64_t r = 0; r < e.n; r++) {
            const float *x = e.X + r * F, *y = e.y + r * T;
            if (y[0] == 0.0f) continue;
            if (x[0] == 2.0f) {
                if ((size_t)nt == cap) continue;
                a[nt] = y[2];
                b[nt] = x[1];
                nt++;
                if (y[0] == 5.0f) {
                    mu_total++;
                    mu_flagged += x[10] == 1.0f;
                } else {
                    not_mu++;
                    not_mu_flagged += x[10] == 1.0f;
                }
                if (y[0] == 4.0f) {
                    e_total++;
                    e_flagged += x[11] == 1.0f;
                }
                far_tracks += fabs(y[3] - x[2]) > 0.05 || y[4] * x[3] + y[5] * x[4] < 0.99;
            } else {
                if ((size_t)nw == cap) continue;
                d[nw] = y[6];
                f[nw] = x[5];
                nw++;
                far_towers += fabs(y[3] - x[2]) > 0.1 || y[4] * x[3] + y[5] * x[4] < 0.99;
                double em = x[6] / x[5];
                if (y[0] == 3.0f) {
                    em_frac_photon += em;
                    n_photon++;
                } else {
                    em_frac_nh += em;
                    n_nh++;
                }
            }
        }
        free_event(&e);
    }
    /* Target direction = measured direction up to resolution (tracks) or the
     * cell size (towers). */
    ck_assert_msg(far_tracks == 0, "%ld tracks far from their target", far_tracks);
    ck_assert_msg(far_towers == 0, "%ld towers far from their target", far_towers);
    double r_pt = correlation(a, b, nt), r_e = correlation(d, f, nw);
    ck_assert_msg(r_pt > 0.9, "track pt correlation %.4f", r_pt);
    ck_assert_msg(r_e > 0.9, "tower energy correlation %.4f", r_e);
    /* Class evidence: lepton flags and the EM fraction of towers. */
    ck_assert(mu_total > 0 && e_total > 0);
    ck_assert_msg(mu_flagged > 0.9 * mu_total, "muon flags %ld of %ld", mu_flagged, mu_total);
    ck_assert_msg(e_flagged > 0.9 * e_total, "electron flags %ld of %ld", e_flagged, e_total);
    ck_assert(not_mu_flagged < 0.01 * not_mu);
    ck_assert(n_photon > 0 && n_nh > 0);
    em_frac_photon /= n_photon;
    em_frac_nh /= n_nh;
    ck_assert_msg(em_frac_photon > em_frac_nh + 0.2, "EM fraction: photons %.3f, hadrons %.3f",
                  em_frac_photon, em_frac_nh);
    free(a);
    free(b);
    free(d);
    free(f);
}
END_TEST

/* Tracks are bent by q/pt: the outer phi leans to the side of -charge, more
 * at low pt. */
START_TEST(test_track_bending)
{
    gen_config c = gen_config_default();
    event e = make_event(&c, 11);
    long agree = 0, total = 0;
    for (int64_t r = 0; r < e.n; r++) {
        const float *x = e.X + r * F;
        if (x[0] != 2.0f || e.y[r * T] == 0.0f || x[1] > 5.0f) continue;
        double sin_dphi = x[7] * x[4] - x[8] * x[3]; /* sin(phi_outer - phi) */
        agree += sin_dphi * x[9] < 0.0;
        total++;
    }
    free_event(&e);
    ck_assert(total > 1000);
    ck_assert_msg(agree > 0.98 * total, "bending sign right for %ld of %ld", agree, total);
}
END_TEST

Suite *generator_suite(void)
{
    Suite *s = suite_create("generator");
    TCase *math = tcase_create("math");
    tcase_add_test(math, test_exp_matches_libm);
    tcase_add_test(math, test_sincos_matches_libm);
    tcase_add_test(math, test_cosh_asinh_match_libm);
    suite_add_tcase(s, math);

    TCase *det = tcase_create("determinism");
    tcase_set_timeout(det, 60);
    tcase_add_test(det, test_default_config);
    tcase_add_test(det, test_same_event_twice);
    tcase_add_test(det, test_order_independent);
    tcase_add_test(det, test_seeds_and_indices_differ);
    tcase_add_test(det, test_golden_events);
    suite_add_tcase(s, det);

    TCase *sizes = tcase_create("sizes");
    tcase_set_timeout(sizes, 60);
    tcase_add_test(sizes, test_sizes_default);
    tcase_add_test(sizes, test_sizes_small);
    tcase_add_test(sizes, test_sizes_fixed_and_degenerate);
    suite_add_tcase(s, sizes);

    TCase *rules = tcase_create("rules");
    tcase_set_timeout(rules, 60);
    tcase_add_test(rules, test_rules_default);
    tcase_add_test(rules, test_rules_small_and_other_seeds);
    tcase_add_test(rules, test_realistic_mix);
    tcase_add_test(rules, test_targets_follow_inputs);
    tcase_add_test(rules, test_track_bending);
    suite_add_tcase(s, rules);
    return s;
}
