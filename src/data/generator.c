/* Synthetic Delphes-like event generator (include/generator.h, shared/spec/data.md).
 *
 * Event model, in short. An event has n elements, about 57% tracks and the rest
 * calorimeter towers. Every element comes from hidden generator particles:
 * - each track is a charged particle with |eta| < 2.5 (charged hadron, electron
 *   or muon; the target is the particle itself), or a pile-up particle or a fake
 *   track (no target);
 * - calorimeter particles (photons, neutral hadrons, and charged hadrons beyond
 *   the tracker, |eta| > 2.5, which count as neutral hadrons) fill an eta-phi
 *   grid of cells together with the energy of the tracked particles, deposited
 *   where their bent tracks reach the calorimeter;
 * - a tower is a cell with energy; the n_towers cells with the largest measured
 *   Et are kept (a zero-suppression threshold); a tower's target sums the
 *   particles in it that have no track, grouped into neutral hadrons and photons;
 *   a neutral-hadron group under 9 GeV is dropped; the class is the remaining
 *   group with the most energy, or 0 if none is left.
 * Measurements are the true values smeared by a few percent, so the targets are
 * a learnable function of the inputs plus noise.
 *
 * Portability: every value must be bit-identical on every machine. Random
 * numbers come from the counter-based streams of rng.h; the only floating-point
 * operations are + - * / and sqrt (correctly rounded by IEEE 754), plus the small
 * exp / sin / cos below, built from those, and rng_log. A fused multiply-add
 * would change last bits, so the Makefile MUST compile this file (and rng.c)
 * with -ffp-contract=off and never with -ffast-math. GCC ignores the standard
 * pragma below (and warns about it), so it is given to other compilers only. */
#if defined(__clang__) || !defined(__GNUC__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "generator.h"

#include <float.h>
#include <math.h> /* sqrt only: correctly rounded by IEEE 754 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#if defined(__FAST_MATH__)
#error "generator.c must not be compiled with -ffast-math (events would differ between machines)"
#endif
#if FLT_EVAL_METHOD != 0
#error "generator.c needs plain IEEE double arithmetic (FLT_EVAL_METHOD == 0, e.g. SSE2, not x87)"
#endif

/* Portable math, exported (but not declared in generator.h) only so that the
 * unit tests can compare it with libm. */
double gen_exp(double x);
void gen_sincos(double x, double *s, double *c);
double gen_cosh(double x);
double gen_asinh(double x);

static const double PI = 3.14159265358979323846;
static const double TWO_PI = 6.28318530717958647692;

/* ---------------------------------------------------------------- math ---- */

/* 1/i: multiplying by these is faster than dividing (the compiler folds the
 * constants with IEEE rounding, so they are the same everywhere). */
static const double INV_INT[20] = {
    0.0,        1.0,        1.0 / 2.0,  1.0 / 3.0,  1.0 / 4.0,  1.0 / 5.0,  1.0 / 6.0,
    1.0 / 7.0,  1.0 / 8.0,  1.0 / 9.0,  1.0 / 10.0, 1.0 / 11.0, 1.0 / 12.0, 1.0 / 13.0,
    1.0 / 14.0, 1.0 / 15.0, 1.0 / 16.0, 1.0 / 17.0, 1.0 / 18.0, 1.0 / 19.0};

/* exp(x): x = k ln2 + r with |r| <= ln2/2, exp(r) from its Taylor series (the
 * degree-14 remainder is below 1e-17), then 2^k put into the exponent bits.
 * ln2 is split in two so that k * LN2_HI is exact for |k| < 2^20. */
double gen_exp(double x)
{
    static const double LN2_HI = 6.93147180369123816490e-01;
    static const double LN2_LO = 1.90821492927058770002e-10;
    static const double INV_LN2 = 1.44269504088896338700e+00;
    if (x != x) return x;
    if (x > 709.0) x = 709.0; /* the generator never gets near; stay finite */
    if (x < -708.0) return 0.0;
    double kd = x * INV_LN2;
    int k = (int)(kd >= 0.0 ? kd + 0.5 : kd - 0.5);
    double r = (x - k * LN2_HI) - k * LN2_LO;
    double p = 1.0; /* Horner: 1 + r (1 + r/2 (1 + r/3 (...))) */
    for (int i = 14; i >= 1; i--) p = 1.0 + r * p * INV_INT[i];
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* sin and cos: x = k pi/2 + r with |r| <= pi/4 (pi/2 split in three parts, the
 * first two short enough that k * part is exact), Taylor series of sin r and
 * cos r (remainders below 1e-16), then the quadrant k mod 4. Accurate to
 * ~1e-16 absolute for |x| up to ~1e5; the generator only uses |x| < 10. */
void gen_sincos(double x, double *s, double *c)
{
    static const double PIO2_1 = 1.57079632673412561417e+00;
    static const double PIO2_2 = 6.07710050630396597660e-11;
    static const double PIO2_3 = 2.02226624879595063154e-21;
    static const double TWO_OVER_PI = 6.36619772367581382433e-01;
    double kd = x * TWO_OVER_PI;
    int64_t k = (int64_t)(kd >= 0.0 ? kd + 0.5 : kd - 0.5);
    double r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    double r2 = r * r;
    double ps = 1.0, pc = 1.0; /* Horner on r^2: sin r = r (1 - r2/(2*3) (1 - r2/(4*5) (...))) */
    for (int i = 18; i >= 2; i -= 2) {
        ps = 1.0 - r2 * ps * (INV_INT[i] * INV_INT[i + 1]);
        pc = 1.0 - r2 * pc * (INV_INT[i - 1] * INV_INT[i]);
    }
    double sr = r * ps, cr = pc;
    switch ((int)(k & 3)) {
    case 0: *s = sr; *c = cr; break;
    case 1: *s = cr; *c = -sr; break;
    case 2: *s = -sr; *c = -cr; break;
    default: *s = -cr; *c = sr; break;
    }
}

double gen_cosh(double x)
{
    double e = gen_exp(x < 0.0 ? -x : x);
    return 0.5 * (e + 1.0 / e);
}

/* asinh(x) = log(|x| + sqrt(x^2 + 1)) with the sign of x: symmetric, so no
 * cancellation for large negative x; absolute error ~1e-16 near 0. */
double gen_asinh(double x)
{
    double a = x < 0.0 ? -x : x;
    double v = rng_log(a + sqrt(a * a + 1.0));
    return x < 0.0 ? -v : v;
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

static double wrap_phi(double phi)
{
    while (phi >= PI) phi -= TWO_PI;
    while (phi < -PI) phi += TWO_PI;
    return phi;
}

/* ------------------------------------------------------ random numbers ---- */

/* Streams of one event, one per purpose, so that each part of an event is
 * independent of the others and of every other event. The tag keeps them
 * apart from streams that other modules derive from the same seed. */
enum { S_SIZE = 1, S_SPLIT = 2, S_TRACKS = 3, S_CALO = 4, S_SMEAR = 5 };
static const uint64_t GEN_TAG = 0x47454E4556454E54ull; /* "GENEVENT" */

static rng_stream event_stream(uint64_t seed, uint64_t index, uint64_t purpose)
{
    return rng_stream_make(seed, rng_mix64(index ^ GEN_TAG) ^ purpose);
}

static double uniform(rng_stream *s, double a, double b) { return a + (b - a) * rng_uniform(s); }

/* Lomax (shifted Pareto) draw, density ~ (1 + x/scale)^-(shape+1): a steeply
 * falling spectrum with a power-law tail, by inverting its CDF. */
static double lomax(rng_stream *s, double scale, double shape)
{
    double u = 1.0 - rng_uniform(s); /* (0, 1] */
    return scale * (gen_exp(-rng_log(u) / shape) - 1.0);
}

/* ------------------------------------------------------- event physics ---- */

enum { CLS_NONE = 0, CLS_CH = 1, CLS_NH = 2, CLS_PHOTON = 3, CLS_ELECTRON = 4, CLS_MUON = 5 };

static const double ETA_CALO = 4.0;    /* calorimeter acceptance |eta| < 4 */
static const double ETA_TRACKER = 2.5; /* tracker acceptance */
static const double E_MAX = 6500.0;    /* no particle above the beam energy */
static const double PT_MAX = 1000.0;

/* Spectra: most particles soft (pile-up like), a fraction from a harder
 * (hard-scatter like) component. */
static const double PT_MIN_TRACK = 0.3, PT_MIN_CALO = 0.1;
static const double SOFT_SCALE = 0.5, SOFT_SHAPE = 3.0;
static const double HARD_SCALE = 4.0, HARD_SHAPE = 2.5;
static const double P_HARD = 0.15, P_HARD_PILEUP = 0.02, P_HARD_CALO_HADRON = 0.5;

/* Tracks: share of all elements, fakes and pile-up tracks (no target), lepton mix. */
static const double TRACK_SHARE = 0.57, TRACK_SHARE_SD = 0.015;
static const double P_FAKE = 0.03, P_PILEUP = 0.06;
static const double P_ELECTRON = 0.02, P_MUON = 0.015;
static const double BEND = 0.735; /* 0.3 B R / 2 in GeV: B = 3.8 T, calorimeter at R = 1.29 m */

/* Calorimeter-only particles per kept tower, and their type mix. */
static const double CALO_PER_TOWER = 1.5;
static const double P_PHOTON_CENTRAL = 0.3;              /* else neutral hadron */
static const double P_PHOTON_FWD = 0.25, P_NH_FWD = 0.3; /* else charged hadron */
static const double NH_MIN_ENERGY = 9.0;

typedef struct {
    int cls; /* true type, as a target class */
    int charge;
    double pt, eta, phi, e;
} particle;

static double draw_pt(rng_stream *s, double pt_min, double p_hard)
{
    double pt = rng_uniform(s) < p_hard ? lomax(s, HARD_SCALE, HARD_SHAPE)
                                         : lomax(s, SOFT_SCALE, SOFT_SHAPE);
    return pt_min + (pt < PT_MAX ? pt : PT_MAX);
}

/* Massless kinematics: E = pt cosh(eta), capped at the beam energy. */
static void set_energy(particle *p)
{
    double ch = gen_cosh(p->eta);
    if (p->pt * ch > E_MAX) p->pt = E_MAX / ch;
    p->e = p->pt * ch;
}

/* --------------------------------------------------- calorimeter grid ---- */

/* Cells of 0.1 in eta over [-4, 4] and 2 pi / n_phi in phi (n_phi = 72 unless
 * the event asks for so many towers that the grid must be finer). */
enum { N_ETA = 80, N_PHI_BASE = 72 };
static const double CELL_ETA = 0.1;

typedef struct {
    double em, had; /* true deposited energy, GeV */
    double nh[4];   /* particles without a track, neutral-hadron group: px, py, pz, E */
    double ph[4];   /* photon group */
    int active;
} cell;

typedef struct {
    int n_phi;
    double cell_phi;
    int64_t n_cells, n_active;
    cell *cells;
} grid;

typedef struct {
    int64_t cell;
    double em, had, et; /* measured */
} tower;

static void *alloc_or_die(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "%s:%d: generator: out of memory (%zu x %zu bytes)\n", __FILE__, __LINE__,
                n, size);
        abort();
    }
    return p;
}

static int64_t cell_of(const grid *g, double eta, double phi)
{
    double te = (eta + ETA_CALO) / CELL_ETA, tp = (wrap_phi(phi) + PI) / g->cell_phi;
    int ie = te < 0.0 ? 0 : te >= N_ETA ? N_ETA - 1 : (int)te;
    int ip = tp < 0.0 ? 0 : tp >= g->n_phi ? g->n_phi - 1 : (int)tp;
    return (int64_t)ie * g->n_phi + ip;
}

static double cell_eta(const grid *g, int64_t c)
{
    return -ETA_CALO + ((double)(c / g->n_phi) + 0.5) * CELL_ETA;
}

static double cell_phi(const grid *g, int64_t c)
{
    return -PI + ((double)(c % g->n_phi) + 0.5) * g->cell_phi;
}

static void deposit(grid *g, int64_t c, double em, double had)
{
    cell *k = &g->cells[c];
    k->em += em;
    k->had += had;
    if (!k->active) {
        k->active = 1;
        g->n_active++;
    }
}

/* Energy split between the EM and hadronic calorimeters by particle type. */
static void deposit_particle(grid *g, rng_stream *s, const particle *p, int64_t c)
{
    if (p->cls == CLS_PHOTON || p->cls == CLS_ELECTRON) {
        double f = clampd(0.97 + 0.02 * rng_normal(s), 0.85, 1.0);
        deposit(g, c, f * p->e, (1.0 - f) * p->e);
    } else if (p->cls == CLS_MUON) { /* minimum ionising: a GeV or so */
        double mip = 0.3 + 0.7 * rng_uniform(s);
        if (mip > p->e) mip = p->e;
        deposit(g, c, 0.2 * mip, 0.8 * mip);
    } else { /* hadron shower: its pi0 part goes to the EM calorimeter */
        double f = clampd(0.25 + 0.12 * rng_normal(s), 0.0, 0.9);
        deposit(g, c, f * p->e, (1.0 - f) * p->e);
    }
}

/* A particle without a track joins its cell's target: photons in the photon
 * group, every hadron (neutral, or charged beyond the tracker) in the
 * neutral-hadron group. */
static void add_to_target(grid *g, const particle *p, int64_t c)
{
    double *v = p->cls == CLS_PHOTON ? g->cells[c].ph : g->cells[c].nh;
    double sp, cp;
    gen_sincos(p->phi, &sp, &cp);
    double ex = gen_exp(p->eta);
    v[0] += p->pt * cp;
    v[1] += p->pt * sp;
    v[2] += p->pt * 0.5 * (ex - 1.0 / ex); /* pt sinh(eta) */
    v[3] += p->e;
}

/* ------------------------------------------------------------- sizes ---- */

static void size_bounds(const gen_config *cfg, int64_t *lo, int64_t *hi, double *mean)
{
    *lo = cfg->min_elements < 0 ? 0 : cfg->min_elements;
    *hi = cfg->max_elements < *lo ? *lo : cfg->max_elements;
    *mean = clampd((double)cfg->mean_elements, (double)*lo, (double)*hi);
}

gen_config gen_config_default(void)
{
    gen_config c = {.seed = 0, .mean_elements = 5000, .min_elements = 4000, .max_elements = 6400};
    return c;
}

/* Normal around the mean, redrawn until it rounds into [min, max]. Its width
 * is 1/2.5 of the distance to the nearer bound, so the truncation moves the
 * mean by well under 1%. */
int64_t gen_event_size(const gen_config *cfg, uint64_t index)
{
    int64_t lo, hi;
    double mean;
    size_bounds(cfg, &lo, &hi, &mean);
    if (lo == hi) return lo;
    double near = mean - lo < hi - mean ? mean - lo : hi - mean;
    double sd = near > 0.0 ? near / 2.5 : (hi - lo) / 4.0;
    rng_stream s = event_stream(cfg->seed, index, S_SIZE);
    for (int i = 0; i < 1000; i++) {
        double v = mean + sd * rng_normal(&s);
        if (v >= lo - 0.5 && v < hi + 0.5) {
            int64_t n = (int64_t)(v + 0.5); /* v + 0.5 >= 0: truncation is floor */
            return n < lo ? lo : n > hi ? hi : n;
        }
    }
    return (int64_t)(mean + 0.5);
}

/* ------------------------------------------------------------ tracks ---- */

static void store_angle(float *dst, double phi)
{
    double sp, cp;
    gen_sincos(phi, &sp, &cp);
    dst[0] = (float)clampd(sp, -1.0, 1.0);
    dst[1] = (float)clampd(cp, -1.0, 1.0);
}

static void store_target(float *y, int cls, int charge, double pt, double eta, double sphi,
                         double cphi, double e)
{
    y[0] = (float)cls;
    y[1] = (float)charge;
    y[2] = (float)pt;
    y[3] = (float)eta;
    y[4] = (float)clampd(sphi, -1.0, 1.0);
    y[5] = (float)clampd(cphi, -1.0, 1.0);
    y[6] = (float)e;
}

/* One track row x (12) and its target y (7); a real particle also deposits its
 * energy where its track meets the calorimeter. */
static void make_track(grid *g, rng_stream *s, float *x, float *y)
{
    double u = rng_uniform(s);
    int fake = u < P_FAKE, pileup = !fake && u < P_FAKE + P_PILEUP;

    particle p;
    double v = rng_uniform(s);
    p.cls = fake ? CLS_NONE
            : v < P_ELECTRON ? CLS_ELECTRON
            : v < P_ELECTRON + P_MUON ? CLS_MUON
                                      : CLS_CH;
    p.charge = rng_uniform(s) < 0.5 ? -1 : 1;
    p.pt = draw_pt(s, PT_MIN_TRACK, fake || pileup ? P_HARD_PILEUP : P_HARD);
    p.eta = uniform(s, -ETA_TRACKER, ETA_TRACKER);
    p.phi = uniform(s, -PI, PI);
    set_energy(&p);

    /* Inner measurement: a few per cent in pt (worse at high pt), mrad in angles. */
    double sig_pt = clampd(0.01 + 0.0005 * p.pt, 0.0, 0.3);
    double pt_m = p.pt * clampd(1.0 + sig_pt * rng_normal(s), 0.2, 5.0);
    double eta_m = p.eta + 0.002 * rng_normal(s);
    double phi_m = wrap_phi(p.phi + 0.002 * rng_normal(s));

    /* Outer point: bent by the field as -q/pt (saturating for loopers), plus
     * multiple scattering ~1/pt. A fake's outer point does not follow its pt. */
    double eta_o, phi_o;
    if (fake) {
        eta_o = p.eta + 0.2 * rng_normal(s);
        phi_o = wrap_phi(p.phi + uniform(s, -1.0, 1.0));
    } else {
        double ms = 0.002 + 0.01 / p.pt;
        eta_o = p.eta + ms * rng_normal(s);
        phi_o = wrap_phi(p.phi - p.charge * BEND / (p.pt + BEND) + ms * rng_normal(s));
    }

    /* Generator-level lepton flags with a small mislabel rate. */
    double um = rng_uniform(s), ue = rng_uniform(s);
    int is_mu = p.cls == CLS_MUON ? um < 0.98 : um < 0.002;
    int is_e = p.cls == CLS_ELECTRON ? ue < 0.97 : ue < 0.003;

    x[0] = 2.0f;
    x[1] = (float)pt_m;
    x[2] = (float)eta_m;
    store_angle(x + 3, phi_m);
    x[5] = (float)(pt_m * gen_cosh(eta_m));
    x[6] = (float)eta_o;
    store_angle(x + 7, phi_o);
    x[9] = (float)p.charge;
    x[10] = (float)is_mu;
    x[11] = (float)is_e;

    if (!fake) deposit_particle(g, s, &p, cell_of(g, eta_o, phi_o));
    if (!fake && !pileup) {
        double sp, cp;
        gen_sincos(p.phi, &sp, &cp);
        store_target(y, p.cls, p.charge, p.pt, p.eta, sp, cp, p.e);
    }
}

/* ------------------------------------------------------------ towers ---- */

/* A particle seen only by the calorimeter, anywhere in |eta| < 4. */
static particle draw_calo_particle(rng_stream *s)
{
    particle p;
    p.eta = uniform(s, -ETA_CALO, ETA_CALO);
    p.phi = uniform(s, -PI, PI);
    double u = rng_uniform(s);
    if (p.eta > -ETA_TRACKER && p.eta < ETA_TRACKER)
        p.cls = u < P_PHOTON_CENTRAL ? CLS_PHOTON : CLS_NH;
    else /* charged hadrons out here have no track: they count as neutral hadrons */
        p.cls = u < P_PHOTON_FWD ? CLS_PHOTON : u < P_PHOTON_FWD + P_NH_FWD ? CLS_NH : CLS_CH;
    p.charge = 0;
    p.pt = draw_pt(s, PT_MIN_CALO, p.cls == CLS_PHOTON ? P_HARD : P_HARD_CALO_HADRON);
    set_energy(&p);
    return p;
}

/* Soft pile-up neutral hadron in an empty cell (found by probing from a random
 * one), for the rare event whose particles light fewer cells than it needs
 * towers. Its energy stays under the 9 GeV threshold: no target. */
static void fill_empty_cell(grid *g, rng_stream *s)
{
    int64_t c = (int64_t)(rng_uniform(s) * (double)g->n_cells);
    while (g->cells[c].active) c = (c + 1) % g->n_cells;
    particle p;
    p.cls = CLS_NH;
    p.charge = 0;
    p.eta = cell_eta(g, c) + uniform(s, -0.5, 0.5) * CELL_ETA;
    p.phi = cell_phi(g, c) + uniform(s, -0.5, 0.5) * g->cell_phi;
    p.e = uniform(s, 0.5, 2.5);
    p.pt = p.e / gen_cosh(p.eta);
    deposit_particle(g, s, &p, c);
    add_to_target(g, &p, c);
}

/* Largest Et first; ties by cell index, so the order is total and any sort
 * gives the same result. */
static int by_et_desc(const void *a, const void *b)
{
    const tower *x = a, *y = b;
    if (x->et != y->et) return x->et > y->et ? -1 : 1;
    return (x->cell > y->cell) - (x->cell < y->cell);
}

static int by_cell(const void *a, const void *b)
{
    const tower *x = a, *y = b;
    return (x->cell > y->cell) - (x->cell < y->cell);
}

/* Target of a tower from its particles without a track. */
static void tower_target(const cell *k, float *y)
{
    int keep_nh = k->nh[3] >= NH_MIN_ENERGY, keep_ph = k->ph[3] > 0.0;
    if (!keep_nh && !keep_ph) return;
    double v[4];
    for (int i = 0; i < 4; i++) v[i] = (keep_nh ? k->nh[i] : 0.0) + (keep_ph ? k->ph[i] : 0.0);
    double pt = sqrt(v[0] * v[0] + v[1] * v[1]);
    if (!(pt > 0.0)) return;
    int cls = keep_nh && (!keep_ph || k->nh[3] >= k->ph[3]) ? CLS_NH : CLS_PHOTON;
    store_target(y, cls, 0, pt, gen_asinh(v[2] / pt), v[1] / pt, v[0] / pt, v[3]);
}

/* Resolution: stochastic term plus a constant, a few per cent at a few GeV. */
static double smear(rng_stream *s, double e, double stoch, double konst)
{
    if (e <= 0.0) return 0.0;
    double sig = sqrt(stoch * stoch / e + konst * konst);
    return e * clampd(1.0 + sig * rng_normal(s), 0.05, 3.0);
}

/* ------------------------------------------------------------- event ---- */

void gen_event(const gen_config *cfg, uint64_t index, float *X, float *y)
{
    int64_t n = gen_event_size(cfg, index);
    if (n <= 0) return;
    memset(X, 0, (size_t)n * GEN_N_FEATURES * sizeof *X);
    memset(y, 0, (size_t)n * GEN_N_TARGETS * sizeof *y);

    rng_stream split = event_stream(cfg->seed, index, S_SPLIT);
    double share = clampd(TRACK_SHARE + TRACK_SHARE_SD * rng_normal(&split), 0.52, 0.62);
    int64_t n_trk = (int64_t)(share * (double)n + 0.5);
    if (n >= 2) n_trk = n_trk < 1 ? 1 : n_trk > n - 1 ? n - 1 : n_trk;
    int64_t n_tow = n - n_trk;

    /* Grid with room to spare: at least 1.25 cells per tower plus a margin. */
    grid g = {.n_phi = N_PHI_BASE};
    while ((double)N_ETA * g.n_phi < 1.25 * (double)n_tow + 64.0) g.n_phi *= 2;
    g.cell_phi = TWO_PI / g.n_phi;
    g.n_cells = (int64_t)N_ETA * g.n_phi;
    g.cells = alloc_or_die((size_t)g.n_cells, sizeof *g.cells);

    /* Tracks first: rows 0 .. n_trk-1. */
    rng_stream ts = event_stream(cfg->seed, index, S_TRACKS);
    for (int64_t i = 0; i < n_trk; i++)
        make_track(&g, &ts, X + i * GEN_N_FEATURES, y + i * GEN_N_TARGETS);

    /* Calorimeter-only particles. */
    rng_stream cs = event_stream(cfg->seed, index, S_CALO);
    int64_t n_calo = (int64_t)(CALO_PER_TOWER * (double)n_tow + 0.5);
    for (int64_t i = 0; i < n_calo; i++) {
        particle p = draw_calo_particle(&cs);
        int64_t c = cell_of(&g, p.eta, p.phi);
        deposit_particle(&g, &cs, &p, c);
        add_to_target(&g, &p, c);
    }
    while (g.n_active < n_tow) fill_empty_cell(&g, &cs);

    /* Measure every lit cell, keep the n_tow with the largest Et. */
    double cosh_eta[N_ETA];
    for (int i = 0; i < N_ETA; i++) cosh_eta[i] = gen_cosh(-ETA_CALO + (i + 0.5) * CELL_ETA);
    tower *tw = alloc_or_die((size_t)g.n_active, sizeof *tw);
    rng_stream ss = event_stream(cfg->seed, index, S_SMEAR);
    int64_t na = 0;
    for (int64_t c = 0; c < g.n_cells; c++) {
        const cell *k = &g.cells[c];
        if (!k->active) continue;
        tower *t = &tw[na++];
        t->cell = c;
        t->em = smear(&ss, k->em, 0.05, 0.01);
        t->had = smear(&ss, k->had, 0.15, 0.03);
        t->et = (t->em + t->had) / cosh_eta[c / g.n_phi];
    }
    qsort(tw, (size_t)na, sizeof *tw, by_et_desc);
    qsort(tw, (size_t)n_tow, sizeof *tw, by_cell);

    /* Tower rows n_trk .. n-1, in cell order. */
    for (int64_t j = 0; j < n_tow; j++) {
        const tower *t = &tw[j];
        float *x = X + (n_trk + j) * GEN_N_FEATURES;
        double e = t->em + t->had;
        x[0] = 1.0f;
        x[1] = (float)t->et;
        x[2] = (float)cell_eta(&g, t->cell);
        store_angle(x + 3, cell_phi(&g, t->cell));
        x[5] = (float)e;
        x[6] = (float)t->em;
        x[7] = (float)t->had;
        tower_target(&g.cells[t->cell], y + (n_trk + j) * GEN_N_TARGETS);
    }
    free(tw);
    free(g.cells);
}
