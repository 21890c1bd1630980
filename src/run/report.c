#include "report.h"

#include "blas_core.h"
#include "cpu_isa.h"
#include "prof.h"

#include <cblas.h>
#include <errno.h>
#include <hdf5.h>
#include <hwloc.h>
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifndef GIT_COMMIT
#define GIT_COMMIT "unknown"
#endif

double model_flops_per_element(const mlpf_config *c)
{
    const double W = c->width, S = c->bin_size, Dd = c->dist_dim, Dh = c->dist_hidden;
    const double nc = c->n_classes, H = c->head_hidden;
    double f = 2.0 * (mlpf_enc_in(c) * W + W * W); /* encoder */
    double graph = 2.0 * (W * Dh + Dh * Dd) + 3 * 2.0 * W * W /* ffn_dist, theta, wh, wt */
                   + 2.0 * S * Dd + 2.0 * S * W;            /* kernel Gram, A (n H) */
    f += (c->n_graph_id + c->n_graph_reg) * graph;
    struct { double in; int hidden, out; } heads[6] = {
        {W, c->id_hidden_layers, (int)nc}, {W, c->ch_hidden_layers, 1},
        {W + nc, c->reg_hidden_layers, 1}, {W + nc, c->reg_hidden_layers, 2},
        {2 * (W + nc), c->reg_hidden_layers, 1}, {2 * (W + nc), c->reg_hidden_layers, 2}};
    for (int h = 0; h < 6; h++) {
        double in = heads[h].in;
        for (int i = 0; i <= heads[h].hidden; i++) {
            double o = i < heads[h].hidden ? H / (1 << i) : heads[h].out;
            f += 2.0 * in * o;
            in = o;
        }
    }
    return f;
}

int report_json_file(const json_t *o, const char *path, size_t flags)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!o || json_dump_file(o, tmp, flags) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "mlpfbench: cannot write %s\n", path);
        remove(tmp);
        return -1;
    }
    return 0;
}

void report_timestamp(char *buf, int n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void report_cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ') p++;
                p[strcspn(p, "\n")] = '\0';
                snprintf(buf, n, "%s", p);
            }
            break;
        }
    fclose(f);
}

static json_t *darray(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

/* ---- the GPU figures (gpumon.h) ---- */

static int has_gpu(const rank_figures *r) { return r->gpu_name[0] != '\0'; }
/* energy measured: sampled, and the energy figure exists */
static int energy_measured(const rank_figures *r) { return has_gpu(r) && r->gpu.sampled && isfinite(r->gpu.energy_j); }

static void put_num(json_t *o, const char *key, double v)
{
    if (isfinite(v)) json_object_set_new(o, key, json_real(v));
}

static json_t *reason_array(unsigned long long reasons)
{
    json_t *a = json_array();
    char names[512];
    gpumon_reason_names(reasons & ~GPUMON_REASONS_UNKNOWN, names, sizeof names);
    if (strcmp(names, "none"))
        for (char *p = names, *q; p && *p; p = q) {
            q = strchr(p, ',');
            if (q) *q++ = '\0';
            json_array_append_new(a, json_string(p));
        }
    return a;
}

static json_t *gpu_json(const rank_figures *r)
{
    const gpu_figures *g = &r->gpu;
    json_t *o = json_object(), *n = json_object();
    json_object_set_new(o, "device", json_integer(r->gpu_device));
    json_object_set_new(o, "name", json_string(r->gpu_name));
    json_object_set_new(o, "uuid", json_string(r->gpu_uuid));
    json_object_set_new(o, "pci_bus_id", json_string(r->gpu_pci));
    json_object_set_new(n, "sampled", json_boolean(g->sampled));
    json_object_set_new(n, "note", json_string(g->note));
    if (g->sampled) {
        json_object_set_new(n, "samples", json_integer(g->samples));
        json_object_set_new(n, "seconds", json_real(g->seconds));
        if (isfinite(g->energy_j)) {
            json_object_set_new(n, "energy_j", json_real(g->energy_j));
            json_object_set_new(n, "energy_source", json_string(g->energy_counter ? "energy counter" : "integrated power"));
            if (r->events > 0) json_object_set_new(n, "energy_per_event_j", json_real(g->energy_j / r->events));
        }
        put_num(n, "power_mean_w", g->power_mean_w);
        put_num(n, "power_max_w", g->power_max_w);
        put_num(n, "power_limit_w", g->power_limit_w);
        put_num(n, "sm_clock_mean_mhz", g->sm_clock_mean_mhz);
        put_num(n, "sm_clock_min_mhz", g->sm_clock_min_mhz);
        put_num(n, "sm_clock_max_mhz", g->sm_clock_max_mhz);
        put_num(n, "mem_clock_mean_mhz", g->mem_clock_mean_mhz);
        put_num(n, "temperature_max_c", g->temperature_max_c);
        put_num(n, "utilization_gpu_mean", g->util_gpu_mean);
        put_num(n, "utilization_memory_mean", g->util_mem_mean);
        if (!(g->throttle_reasons & GPUMON_REASONS_UNKNOWN))
            json_object_set_new(n, "throttle_reasons", reason_array(g->throttle_reasons));
        put_num(n, "memory_used_max_mib", g->memory_used_max_mib);
    }
    json_object_set_new(o, "nvml", n);
    return o;
}

/* The GPU figures of the whole run (or of one host when `host` is set). */
typedef struct {
    int gpus, sampled, measured, counter, integrated;
    int64_t events; /* training events of the ranks whose energy was measured */
    double energy_j, power_w; /* sums */
    int n_clock;
    double sm_mean_sum, sm_min, mem_mean_sum, temp_max;
    int n_memclk, have_temp, have_reasons;
    unsigned long long reasons;
    const rank_figures *first_unmeasured;
} gpu_total;

static gpu_total gpu_totals(const rank_figures *r, int n, const char *host)
{
    gpu_total t = {.sm_min = INFINITY, .temp_max = -INFINITY};
    for (int i = 0; r && i < n; i++) {
        const rank_figures *x = &r[i];
        if (!has_gpu(x) || (host && strcmp(x->host, host))) continue;
        /* ranks sharing a GPU (--allow-shared-gpu): its energy and power once, the events of all */
        int first = i;
        for (int j = 0; j < i && first == i; j++)
            if (has_gpu(&r[j]) && x->gpu_uuid[0] && !strcmp(r[j].gpu_uuid, x->gpu_uuid) && !strcmp(r[j].host, x->host))
                first = j;
        if (first != i) {
            if (energy_measured(&r[first])) t.events += x->events;
            continue;
        }
        t.gpus++;
        if (!energy_measured(x) && !t.first_unmeasured) t.first_unmeasured = x;
        if (!x->gpu.sampled) continue;
        const gpu_figures *g = &x->gpu;
        t.sampled++;
        if (isfinite(g->power_mean_w)) t.power_w += g->power_mean_w;
        if (energy_measured(x)) {
            t.measured++;
            t.energy_j += g->energy_j;
            t.events += x->events;
            if (g->energy_counter) t.counter++;
            else t.integrated++;
        }
        if (isfinite(g->sm_clock_mean_mhz)) {
            t.n_clock++;
            t.sm_mean_sum += g->sm_clock_mean_mhz;
            if (g->sm_clock_min_mhz < t.sm_min) t.sm_min = g->sm_clock_min_mhz;
        }
        if (isfinite(g->mem_clock_mean_mhz)) t.n_memclk++, t.mem_mean_sum += g->mem_clock_mean_mhz;
        if (isfinite(g->temperature_max_c)) {
            t.have_temp = 1;
            if (g->temperature_max_c > t.temp_max) t.temp_max = g->temperature_max_c;
        }
        if (!(g->throttle_reasons & GPUMON_REASONS_UNKNOWN)) t.have_reasons = 1, t.reasons |= g->throttle_reasons;
    }
    return t;
}

static const char *energy_source(const gpu_total *t)
{
    return !t->integrated ? "energy counter" : !t->counter ? "integrated power" : "energy counter and integrated power";
}

/* Why a rank's GPU energy is missing: "rank R (host): note". */
static void unmeasured_why(const rank_figures *x, char *buf, size_t n)
{
    const char *why = x->gpu.note[0] ? x->gpu.note : "NVML was not asked (no monitor started)";
    snprintf(buf, n, "rank %d (%s): %s", x->rank, x->host, why);
}

#define FAKE_NVML_NOTE "the CUDA host execution path of the tests: the figures come from the fake NVML of the " \
                       "tests, not a GPU measurement"

static json_t *gpu_energy_json(const run_summary *s, const gpu_total *t)
{
    json_t *o = json_object();
    char why[400] = "", note[600] = "";
    if (t->first_unmeasured) unmeasured_why(t->first_unmeasured, why, sizeof why);
    if (t->measured) {
        json_object_set_new(o, "joules", json_real(t->energy_j));
        json_object_set_new(o, "joules_per_event", json_real(t->events > 0 ? t->energy_j / t->events : 0.0));
        json_object_set_new(o, "gpus_measured", json_integer(t->measured));
        json_object_set_new(o, "source", json_string(energy_source(t)));
        json_object_set_new(o, "power_mean_w", json_real(t->power_w));
        if (t->measured < t->gpus)
            snprintf(note, sizeof note, "%d of %d GPU(s) measured; %s", t->measured, t->gpus, why);
    } else {
        snprintf(note, sizeof note, "not measured: %s", why);
    }
    if (s->emulated) {
        size_t len = strlen(note);
        snprintf(note + len, sizeof note - len, "%s%s", len ? "; " : "", FAKE_NVML_NOTE);
    }
    if (note[0] || !t->measured) json_object_set_new(o, "note", json_string(note));
    return o;
}

static json_t *rank_json(const rank_figures *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "rank", json_integer(r->rank));
    json_object_set_new(o, "host", json_string(r->host));
    json_object_set_new(o, "local_rank", json_integer(r->local_rank));
    json_object_set_new(o, "cpus", json_string(r->cpus));
    json_object_set_new(o, "threads", json_integer(r->threads));
    json_object_set_new(o, "events", json_integer(r->events));
    json_object_set_new(o, "elements", json_integer(r->elements));
    json_object_set_new(o, "steps", json_integer(r->steps));
    json_object_set_new(o, "warmup_steps", json_integer(r->warmup_steps));
    json_object_set_new(o, "throughput", json_real(r->step_s > 0 ? r->events / r->step_s : 0.0));
    json_object_set_new(o, "step_time", json_real(r->step_s));
    json_object_set_new(o, "forward_time", json_real(r->forward_s));
    json_object_set_new(o, "backward_time", json_real(r->backward_s));
    json_object_set_new(o, "allreduce_time", json_real(r->allreduce_s));
    json_object_set_new(o, "allreduce_exposed_time", json_real(r->allreduce_exposed_s));
    json_object_set_new(o, "data_wait_time", json_real(r->data_wait_s));
    json_object_set_new(o, "data_read_time", json_real(r->read_s));
    json_object_set_new(o, "data_read_bytes", json_integer(r->bytes_read));
    json_object_set_new(o, "optimizer_time", json_real(r->optimizer_s));
    json_object_set_new(o, "peak_memory_mib", json_real(r->peak_rss_mib));
    json_object_set_new(o, "activation_mib", json_real(r->activation_mib));
    json_t *k = json_object();
    for (int i = 1; i < PROF_N; i++) json_object_set_new(k, PROF_NAMES[i], json_real(r->kind_s[i]));
    json_object_set_new(k, "optimizer", json_real(r->optimizer_s));
    json_object_set_new(k, "data_wait", json_real(r->data_wait_s));
    json_object_set_new(k, "allreduce_exposed", json_real(r->allreduce_exposed_s));
    json_object_set_new(o, "time_by_kind", k);
    if (has_gpu(r)) json_object_set_new(o, "gpu", gpu_json(r));
    return o;
}

/* Per node: sums of events and throughput, means of times, sum of memory. */
static json_t *nodes_json(const rank_figures *r, int n, int *n_nodes, int *max_per_node)
{
    json_t *arr = json_array();
    char (*seen)[64] = calloc((size_t)(n > 0 ? n : 1), 64);
    int ns = 0;
    *max_per_node = 0;
    for (int i = 0; i < n; i++) {
        int k;
        for (k = 0; k < ns; k++)
            if (!strcmp(seen[k], r[i].host)) break;
        if (k < ns) continue;
        snprintf(seen[ns++], 64, "%s", r[i].host);
        int ranks = 0;
        int64_t events = 0, elements = 0;
        double thr = 0, step = 0, fwd = 0, bwd = 0, arx = 0, wait = 0, opt = 0, mem = 0;
        json_t *list = json_array();
        for (int j = 0; j < n; j++) {
            if (strcmp(r[j].host, r[i].host)) continue;
            ranks++;
            json_array_append_new(list, json_integer(r[j].rank));
            events += r[j].events;
            elements += r[j].elements;
            thr += r[j].step_s > 0 ? r[j].events / r[j].step_s : 0.0;
            step += r[j].step_s, fwd += r[j].forward_s, bwd += r[j].backward_s;
            arx += r[j].allreduce_exposed_s, wait += r[j].data_wait_s, opt += r[j].optimizer_s;
            mem += r[j].peak_rss_mib;
        }
        if (ranks > *max_per_node) *max_per_node = ranks;
        json_t *o = json_object();
        json_object_set_new(o, "host", json_string(r[i].host));
        json_object_set_new(o, "ranks", list);
        json_object_set_new(o, "events", json_integer(events));
        json_object_set_new(o, "elements", json_integer(elements));
        json_object_set_new(o, "throughput", json_real(thr));
        json_object_set_new(o, "mean_step_time", json_real(step / ranks));
        json_object_set_new(o, "mean_forward_time", json_real(fwd / ranks));
        json_object_set_new(o, "mean_backward_time", json_real(bwd / ranks));
        json_object_set_new(o, "mean_allreduce_exposed_time", json_real(arx / ranks));
        json_object_set_new(o, "mean_data_wait_time", json_real(wait / ranks));
        json_object_set_new(o, "mean_optimizer_time", json_real(opt / ranks));
        json_object_set_new(o, "peak_memory_mib", json_real(mem));
        gpu_total g = gpu_totals(r, n, r[i].host);
        json_object_set_new(o, "gpus", json_integer(g.gpus));
        if (g.measured) {
            json_object_set_new(o, "gpu_energy_j", json_real(g.energy_j));
            json_object_set_new(o, "gpu_energy_per_event_j", json_real(g.events > 0 ? g.energy_j / g.events : 0.0));
        }
        if (g.sampled) json_object_set_new(o, "gpu_power_mean_w", json_real(g.power_w));
        json_array_append_new(arr, o);
    }
    *n_nodes = ns;
    free(seen);
    return arr;
}

json_t *report_software_json(void)
{
    json_t *o = json_object();
    char buf[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(buf, &len);
    buf[strcspn(buf, ",\n")] = '\0';
    json_object_set_new(o, "mlpfbench", json_string(MLPF_VERSION));
    json_object_set_new(o, "git_commit", json_string(GIT_COMMIT));
    json_object_set_new(o, "compiler", json_string(__VERSION__));
    json_object_set_new(o, "mpi", json_string(buf));
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(buf, sizeof buf, "%u.%u.%u", maj, min, rel);
    json_object_set_new(o, "hdf5", json_string(buf));
    unsigned hv = hwloc_get_api_version();
    snprintf(buf, sizeof buf, "%u.%u.%u", hv >> 16, (hv >> 8) & 0xff, hv & 0xff);
    json_object_set_new(o, "hwloc", json_string(buf));
    json_object_set_new(o, "openblas", json_string(openblas_get_config()));
    json_object_set_new(o, "jansson", json_string(JANSSON_VERSION));
    return o;
}

/* What the binary was built for and what this CPU runs (include/cpu_isa.h). */
static json_t *build_json(void)
{
    char names[1024];
    json_t *o = json_object();
    json_object_set_new(o, "arch", json_string(cpu_isa_built_arch()));
    json_object_set_new(o, "built_on", json_string(cpu_isa_built_host()));
    cpu_isa_names(cpu_isa_built(), names, sizeof names);
    json_object_set_new(o, "isa", json_string(names));
    cpu_isa_names(cpu_isa_this()->has, names, sizeof names);
    json_object_set_new(o, "cpu_isa", json_string(names));
    return o;
}

static void score_of(const run_summary *s, double *thr, double *epoch_t, char *basis, size_t n);

/* An energy in J, kJ, MJ or GJ. */
static void energy_text(double j, char *buf, size_t n)
{
    static const char *const UNITS[] = {"J", "kJ", "MJ", "GJ"};
    int u = 0;
    while (u < 3 && fabs(j) >= 1000.0) j /= 1000.0, u++;
    snprintf(buf, n, "%.*f %s", u ? 1 : 0, j, UNITS[u]);
}

/* The closing table's GPU rows: none on a CPU run. */
static void print_gpu_rows(const run_summary *s)
{
    gpu_total t = gpu_totals(s->ranks, s->world_size, NULL);
    if (!t.gpus) return;
    const char *fake = s->emulated ? " [fake NVML of the tests: not a GPU measurement]" : "";
    char why[400] = "";
    if (t.first_unmeasured) unmeasured_why(t.first_unmeasured, why, sizeof why);
    if (t.measured) {
        char e[32], part[480] = "";
        energy_text(t.energy_j, e, sizeof e);
        if (t.measured < t.gpus) snprintf(part, sizeof part, "; %d of %d GPU(s) measured, %s", t.measured, t.gpus, why);
        double per_event = t.events > 0 ? t.energy_j / t.events : 0.0;
        printf("%-34s %s, %.*f J/training event, %d GPU(s), mean %.0f W in all (NVML %s)%s%s\n", "GPU energy", e,
               per_event >= 100 ? 0 : per_event >= 10 ? 1 : 2, per_event, t.measured, t.power_w, energy_source(&t), part,
               fake);
    } else {
        printf("%-34s not measured: %s%s\n", "GPU energy", why, fake);
    }
    if (t.n_clock || t.have_temp || t.have_reasons) {
        char line[700] = "", names[400];
        size_t len = 0;
        if (t.n_clock)
            len += snprintf(line + len, sizeof line - len, "SM mean %.0f MHz, min %.0f MHz", t.sm_mean_sum / t.n_clock,
                            t.sm_min);
        if (t.n_memclk)
            len += snprintf(line + len, sizeof line - len, "%smemory %.0f MHz", len ? "; " : "", t.mem_mean_sum / t.n_memclk);
        if (t.have_temp) len += snprintf(line + len, sizeof line - len, "%smax %.0f C", len ? "; " : "", t.temp_max);
        if (t.have_reasons) {
            gpumon_reason_names(t.reasons, names, sizeof names);
            len += snprintf(line + len, sizeof line - len, "%sthrottle reasons: %s", len ? "; " : "", names);
        }
        printf("%-34s %s%s\n", "GPU clocks", line, fake);
    }
}

static void print_table(const run_summary *s, int n_nodes)
{
    printf("\n%-34s %s\n", "mlpfbench result", s->error ? "FAILED" : "ok");
    printf("%-34s %s, %d rank(s) on %d node(s), %d threads/rank\n", "model, launch", s->preset,
           s->world_size, n_nodes, s->threads_per_rank);
    printf("%-34s %lld events x %d epoch(s), batch %lld/rank\n", "training", s->train_events,
           s->epochs, s->batch_per_rank);
    for (int e = 0; e < s->epochs; e++)
        printf("  epoch %-4d %10.2f s %10.3f events/s   validation acc %.4f loss %.4f\n", e + 1,
               s->epoch_time[e], s->throughput[e], s->val_acc[e], s->val_loss[e][0]);
    double thr = 0, et = 0;
    char basis[160] = "";
    score_of(s, &thr, &et, basis, sizeof basis);
    if (basis[0]) printf("%-34s %.3f events/s, %.2f s/epoch (%s)\n", "mean throughput", thr, et, basis);
    if (s->self_check.message[0]) printf("%-34s %s\n", "GPU self-check", s->self_check.message);
    char blas[256];
    blas_core_describe(blas, sizeof blas);
    printf("%-34s %s\n", "BLAS", blas);
    printf("%-34s ARCH=%s (built on %s)\n", "binary", cpu_isa_built_arch(), cpu_isa_built_host());
    if (s->emulated) printf("%-34s %s\n", "note", "CUDA host execution path (tests): not a GPU result, no scores");
    print_gpu_rows(s);
    printf("%-34s %.1f GFLOP/event, %.1f GFLOP/s achieved\n", "compute", s->flops_per_event / 1e9,
           s->achieved_flops / 1e9);
    if (s->error) printf("%-34s %s\n", "error", s->error);
    fflush(stdout);
}

/* The scores: the mean over epochs 2..n (the reference's rule), or with one
 * epoch the throughput after its warm-up steps; basis says which, or is
 * left empty when there is no score. */
static void score_of(const run_summary *s, double *thr, double *epoch_t, char *basis, size_t n)
{
    if (s->epochs >= 2) {
        *thr = *epoch_t = 0;
        for (int e = 1; e < s->epochs; e++) *thr += s->throughput[e], *epoch_t += s->epoch_time[e];
        *thr /= s->epochs - 1;
        *epoch_t /= s->epochs - 1;
        snprintf(basis, n, "mean over epochs 2..%d (epoch 1 is warm-up)", s->epochs);
    } else if (s->epochs == 1 && s->score_seconds > 0 && s->score_events > 0) {
        *thr = s->score_events / s->score_seconds;
        *epoch_t = s->train_events / *thr;
        snprintf(basis, n, "one epoch: its steps after the first %lld warm-up step(s) (%lld events in %.3f s); "
                 "mean_epoch_time is an epoch at that rate", s->score_warmup_steps, s->score_events,
                 s->score_seconds);
    }
}

static const char *gpu_name(const run_summary *s)
{
    if (!s->device || strcmp(s->device, "cuda") || !s->device_description) return "none";
    return s->emulated ? "none (CUDA host execution path of the tests, not a GPU)" : s->device_description;
}

static json_t *selfcheck_json(const selfcheck_result *c)
{
    json_t *o = json_object(), *passes = json_array();
    json_object_set_new(o, "ran", json_boolean(c->ran));
    json_object_set_new(o, "passed", json_boolean(c->passed));
    json_object_set_new(o, "message", json_string(c->message));
    if (c->ran) {
        json_object_set_new(o, "rows", json_integer(c->rows));
        json_object_set_new(o, "events", json_integer(c->events));
        json_object_set_new(o, "seconds", json_real(c->seconds));
        for (int k = 0; k < c->n_passes; k++) {
            const selfcheck_pass *p = &c->pass[k];
            json_t *q = json_object();
            json_object_set_new(q, "precision", json_string(p->precision));
            json_object_set_new(q, "passed", json_boolean(p->passed));
            json_object_set_new(q, "worst_gradient", json_string(p->worst_tensor));
            json_object_set_new(q, "worst_gradient_error", json_real(isfinite(p->worst_error) ? p->worst_error : 1e300));
            json_object_set_new(q, "gradient_tolerance", json_real(p->grad_tolerance));
            json_object_set_new(q, "all_gradients_error", json_real(isfinite(p->global_error) ? p->global_error : 1e300));
            json_object_set_new(q, "all_gradients_tolerance", json_real(p->global_tolerance));
            json_object_set_new(q, "worst_loss", json_string(p->worst_loss));
            json_object_set_new(q, "worst_loss_error", json_real(isfinite(p->loss_error) ? p->loss_error : 1e300));
            json_object_set_new(q, "loss_tolerance", json_real(p->loss_tolerance));
            json_object_set_new(q, "lsh_bucket_agreement", json_real(p->hash_agreement));
            json_array_append_new(passes, q);
        }
    }
    json_object_set_new(o, "passes", passes);
    return o;
}

int report_write(const char *dir, const run_summary *s, int table)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mlpfbench: cannot create the results directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    json_t *root = json_object(), *run_info = json_object(), *report = json_object();
    json_t *scores = json_object(), *stats = json_object(), *app = json_object();
    json_object_set_new(run_info, "copies", json_integer(s->world_size));
    json_object_set_new(run_info, "threads_per_copy", json_integer(s->threads_per_rank));
    json_object_set_new(run_info, "events_per_thread",
                        json_integer(s->world_size ? s->train_events / s->world_size : 0));
    json_object_set_new(run_info, "extra_arguments", json_string(s->command_line ? s->command_line : ""));

    int n_nodes = 1, per_node = s->world_size;
    json_t *per_rank = json_array(), *nodes = NULL;
    if (s->ranks) {
        for (int r = 0; r < s->world_size; r++) json_array_append_new(per_rank, rank_json(&s->ranks[r]));
        nodes = nodes_json(s->ranks, s->world_size, &n_nodes, &per_node);
    } else {
        nodes = json_array();
    }
    double mean_thr = 0, mean_t = 0;
    char basis[160] = "";
    score_of(s, &mean_thr, &mean_t, basis, sizeof basis);
    if (!s->error && !s->emulated && basis[0]) {
        json_object_set_new(scores, "mean_throughput", json_real(mean_thr));
        json_object_set_new(scores, "mean_epoch_time", json_real(mean_t));
    }
    char cpu[256];
    report_cpu_model(cpu, sizeof cpu);
    json_object_set_new(stats, "num_epochs", json_integer(s->epochs));
    json_object_set_new(stats, "epoch_times", darray(s->epoch_time, s->epochs));
    json_object_set_new(stats, "throughput_per_epoch", darray(s->throughput, s->epochs));
    json_object_set_new(stats, "train_start", json_string(s->train_start));
    json_object_set_new(stats, "train_stop", json_string(s->train_stop));
    json_object_set_new(stats, "train_time", json_real(s->train_time));
    json_object_set_new(stats, "GPU", json_string(gpu_name(s)));
    json_object_set_new(stats, "CPU", json_string(cpu));
    json_object_set_new(stats, "train_set_size", json_integer(s->train_events));
    json_object_set_new(stats, "batch_size_per_device", json_integer(s->batch_per_rank));
    json_object_set_new(stats, "batch_size_total", json_integer(s->batch_per_rank * s->world_size));
    json_object_set_new(stats, "steps_per_epoch", json_integer(s->steps_per_epoch));
    json_object_set_new(stats, "events_per_epoch", json_integer(s->train_events));
    json_object_set_new(stats, "horovod_enabled", json_boolean(s->world_size > 1));
    if (basis[0]) json_object_set_new(stats, "score_basis", json_string(basis));
    if (s->emulated)
        json_object_set_new(stats, "note", json_string("the CUDA kernels ran on the CPU through the host "
                                                       "execution path of the tests: not a GPU result, no scores"));
    if (s->device_description) {
        json_t *d = json_object();
        json_object_set_new(d, "description", json_string(s->device_description));
        if (s->gpu_uuid && s->gpu_uuid[0]) json_object_set_new(d, "uuid", json_string(s->gpu_uuid));
        if (s->gpu_pci && s->gpu_pci[0]) json_object_set_new(d, "pci_bus_id", json_string(s->gpu_pci));
        json_object_set_new(d, "host_execution_path", json_boolean(s->emulated));
        json_object_set_new(stats, "backend", d);
    }
    if (s->self_check.ran || s->self_check.message[0]) json_object_set_new(stats, "self_check", selfcheck_json(&s->self_check));
    json_object_set_new(stats, "validation_set_size", json_integer(s->valid_events));
    json_object_set_new(stats, "validation_accuracy", darray(s->val_acc, s->epochs));
    json_t *vl = json_object();
    for (int k = 0; k < LOSS_N; k++) {
        json_t *a = json_array();
        for (int e = 0; e < s->epochs; e++) json_array_append_new(a, json_real(s->val_loss[e][k]));
        json_object_set_new(vl, LOSS_NAMES[k], a);
    }
    json_object_set_new(stats, "validation_loss", vl);
    json_object_set_new(stats, "world_size", json_integer(s->world_size));
    json_object_set_new(stats, "nodes", json_integer(n_nodes));
    json_object_set_new(stats, "ranks_per_node", json_integer(per_node));
    json_object_set_new(stats, "device", json_string(s->device));
    json_object_set_new(stats, "precision", json_string(s->precision));
    json_object_set_new(stats, "preset", json_string(s->preset));
    json_object_set_new(stats, "trainable_parameters", json_integer(s->n_params));
    json_object_set_new(stats, "seed", json_integer(s->seed));
    json_object_set_new(stats, "data", json_string(s->data_dir ? s->data_dir : ""));
    json_object_set_new(stats, "bind", json_string(s->bind ? s->bind : ""));
    json_object_set_new(stats, "allreduce_bucket_mib", json_real(s->bucket_mib));
    if (s->allreduce) json_object_set_new(stats, "allreduce_transport", json_string(s->allreduce));
    json_object_set_new(stats, "flops_per_event", json_real(s->flops_per_event));
    json_object_set_new(stats, "flops_per_element", json_real(s->flops_per_element));
    json_object_set_new(stats, "achieved_flops", json_real(s->achieved_flops));
    gpu_total gt = gpu_totals(s->ranks, s->ranks ? s->world_size : 0, NULL);
    json_object_set_new(stats, "gpus", json_integer(gt.gpus));
    if (gt.gpus) json_object_set_new(stats, "gpu_energy", gpu_energy_json(s, &gt));
    json_object_set_new(stats, "per_node", nodes);
    json_object_set_new(stats, "per_rank", per_rank);
    json_object_set_new(stats, "software", report_software_json());
    json_object_set_new(stats, "blas", blas_core_json());
    json_object_set_new(stats, "build", build_json());
    json_object_set_new(stats, "command_line", json_string(s->command_line ? s->command_line : ""));
    json_object_set_new(report, "wl-scores", scores);
    json_object_set_new(report, "wl-stats", stats);
    json_object_set_new(report, "log", json_string(s->error ? s->error : "ok"));
    json_object_set_new(app, "version", json_string(MLPF_VERSION));
    json_object_set_new(app, "description", json_string("mlpfbench: MLPF (hepscore22) training benchmark"));
    json_object_set_new(app, "containment", json_string("none"));
    json_object_set_new(root, "run_info", run_info);
    json_object_set_new(root, "report", report);
    json_object_set_new(root, "app", app);

    char path[4200];
    snprintf(path, sizeof path, "%s/mlpf_summary.json", dir);
    int rc = report_json_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(root);
    if (table) print_table(s, n_nodes);
    if (rc == 0) printf("summary: %s\n", path);
    return rc;
}
