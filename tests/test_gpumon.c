/* The GPU monitor (src/run/gpumon.c) against the fake NVML of the tests
 * (tests/gpu_host/fake_nvml.c, built as <build>/fake_nvml/libnvidia-ml.so.1),
 * and the GPU figures of the report: per rank, per node, in all and in the
 * closing table, the file validated against docs/mlpf_summary.schema.json.
 * Nothing here is a GPU figure. */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gpumon.h"
#include "report.h"

static const char *const FAKE_VARS[] = {
    "MLPF_FAKE_NVML_POWER_W",       "MLPF_FAKE_NVML_POWER_LIMIT_W", "MLPF_FAKE_NVML_SM_MHZ",
    "MLPF_FAKE_NVML_MEM_MHZ",       "MLPF_FAKE_NVML_TEMPERATURE_C", "MLPF_FAKE_NVML_UTIL_GPU",
    "MLPF_FAKE_NVML_UTIL_MEM",      "MLPF_FAKE_NVML_REASONS",       "MLPF_FAKE_NVML_MEMORY_USED_MIB",
    "MLPF_FAKE_NVML_NO_ENERGY",     "MLPF_FAKE_NVML_NOT_SUPPORTED", "MLPF_FAKE_NVML_UNKNOWN",
    "MLPF_FAKE_NVML_BUS_UNKNOWN",   "MLPF_FAKE_NVML_INIT_FAIL",
};

/* The build directory: where this test program is. */
static void build_dir(char *buf, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_msg(len > 0, "cannot read /proc/self/exe");
    exe[len] = '\0';
    snprintf(buf, n, "%s", dirname(exe));
}

/* The fake library with its defaults (no MLPF_FAKE_NVML_* left from another test). */
static void use_fake(void)
{
    char dir[PATH_MAX], lib[PATH_MAX + 64];
    build_dir(dir, sizeof dir);
    snprintf(lib, sizeof lib, "%s/fake_nvml/libnvidia-ml.so.1", dir);
    ck_assert_msg(access(lib, R_OK) == 0, "%s is not built (make test-unit builds it)", lib);
    setenv("MLPF_NVML_LIBRARY", lib, 1);
    for (size_t k = 0; k < sizeof FAKE_VARS / sizeof FAKE_VARS[0]; k++) unsetenv(FAKE_VARS[k]);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
}

#define BUS "0000:17:00.0"
#define UUID "GPU-0a1b2c3d-0000-1111-2222-333344445555"

/* Sample for `s` seconds at 20 Hz; the wall time around it in *wall. */
static void sample_for(double s, gpu_figures *f, double *wall)
{
    char err[512] = "";
    double t0 = now_s();
    gpumon *m = gpumon_start(BUS, UUID, 20, err, sizeof err);
    ck_assert_msg(m != NULL, "gpumon_start: %s", err);
    sleep_s(s);
    gpumon_stop(m, f);
    *wall = now_s() - t0;
}

START_TEST(test_energy_counter)
{
    use_fake();
    setenv("MLPF_FAKE_NVML_POWER_W", "250", 1);
    gpu_figures f;
    double wall;
    sample_for(0.5, &f, &wall);
    ck_assert_int_eq(f.sampled, 1);
    ck_assert_msg(!strcmp(f.note, ""), "note: %s", f.note);
    /* 0.5 s at 20 Hz: the first sample, ~10 in the thread, the last at stop */
    ck_assert_msg(f.samples >= 6 && f.samples <= 13, "%lld samples", (long long)f.samples);
    ck_assert_msg(f.seconds >= 0.5 && f.seconds <= wall, "window %.3f s, wall %.3f s", f.seconds, wall);
    ck_assert_int_eq(f.energy_counter, 1);
    ck_assert_msg(fabs(f.energy_j - 250 * f.seconds) <= 0.02 * 250 * f.seconds, "%.3f J in %.3f s at 250 W",
                  f.energy_j, f.seconds);
    ck_assert_double_eq_tol(f.power_mean_w, 250, 1e-9);
    ck_assert_double_eq_tol(f.power_max_w, 250, 1e-9);
    ck_assert_double_eq_tol(f.power_limit_w, 700, 1e-9);
    ck_assert_double_eq_tol(f.sm_clock_mean_mhz, 1980, 1e-9);
    ck_assert_double_eq_tol(f.sm_clock_min_mhz, 1980, 1e-9);
    ck_assert_double_eq_tol(f.sm_clock_max_mhz, 1980, 1e-9);
    ck_assert_double_eq_tol(f.mem_clock_mean_mhz, 2619, 1e-9);
    ck_assert_double_eq_tol(f.temperature_max_c, 61, 1e-9);
    ck_assert_double_eq_tol(f.util_gpu_mean, 97, 1e-9);
    ck_assert_double_eq_tol(f.util_mem_mean, 41, 1e-9);
    ck_assert_uint_eq(f.throttle_reasons, 0x4);
    ck_assert_double_eq_tol(f.memory_used_max_mib, 12345, 1e-6);
}
END_TEST

START_TEST(test_integrated_power)
{
    use_fake();
    setenv("MLPF_FAKE_NVML_NO_ENERGY", "1", 1);
    setenv("MLPF_FAKE_NVML_POWER_W", "400", 1);
    setenv("MLPF_FAKE_NVML_REASONS", "0x44", 1);
    gpu_figures f;
    double wall;
    sample_for(0.5, &f, &wall);
    ck_assert_int_eq(f.sampled, 1);
    ck_assert_int_eq(f.energy_counter, 0);
    ck_assert_msg(f.seconds >= 0.5 && f.seconds <= wall, "window %.3f s, wall %.3f s", f.seconds, wall);
    ck_assert_msg(fabs(f.energy_j - 400 * f.seconds) <= 0.02 * 400 * f.seconds, "%.3f J in %.3f s at 400 W",
                  f.energy_j, f.seconds);
    ck_assert_msg(strstr(f.note, "energy integrated from power: no energy counter (Not Supported)"), "note: %s", f.note);
    ck_assert_uint_eq(f.throttle_reasons, 0x44);
}
END_TEST

/* Figures a GPU does not support are left out, and the note names them. */
START_TEST(test_not_supported)
{
    use_fake();
    setenv("MLPF_FAKE_NVML_NOT_SUPPORTED", "temperature,utilization,reasons,memory,limit", 1);
    gpu_figures f;
    double wall;
    sample_for(0.25, &f, &wall);
    ck_assert_int_eq(f.sampled, 1);
    ck_assert_int_eq(f.energy_counter, 1);
    ck_assert(isfinite(f.energy_j) && isfinite(f.power_mean_w) && isfinite(f.sm_clock_mean_mhz));
    ck_assert(isnan(f.temperature_max_c) && isnan(f.util_gpu_mean) && isnan(f.util_mem_mean));
    ck_assert(isnan(f.memory_used_max_mib) && isnan(f.power_limit_w));
    ck_assert_uint_eq(f.throttle_reasons, GPUMON_REASONS_UNKNOWN);
    ck_assert_msg(!strcmp(f.note, "not supported by this GPU: power limit, temperature, utilization, clock event "
                                  "reasons, memory used"), "note: %s", f.note);

    /* neither an energy counter nor power: no energy figure, and why */
    use_fake();
    setenv("MLPF_FAKE_NVML_NOT_SUPPORTED", "energy,power", 1);
    sample_for(0.15, &f, &wall);
    ck_assert_int_eq(f.sampled, 1);
    ck_assert(isnan(f.energy_j) && isnan(f.power_mean_w) && isnan(f.power_max_w));
    ck_assert(isfinite(f.sm_clock_mean_mhz));
    ck_assert_msg(strstr(f.note, "no energy figure: no energy counter (Not Supported), no power sample(s)") &&
                  strstr(f.note, "not supported by this GPU: power"), "note: %s", f.note);
}
END_TEST

/* gpumon_mark: the window starts again (after the warm-up steps). */
START_TEST(test_mark)
{
    use_fake();
    char err[512] = "";
    gpumon *m = gpumon_start(BUS, UUID, 20, err, sizeof err);
    ck_assert_msg(m != NULL, "gpumon_start: %s", err);
    sleep_s(0.4);
    double t_mark = now_s();
    gpumon_mark(m);
    sleep_s(0.2);
    gpu_figures f;
    gpumon_stop(m, &f);
    double after = now_s() - t_mark;
    ck_assert_msg(f.seconds >= 0.2 && f.seconds <= after, "window %.3f s after the mark (%.3f s)", f.seconds, after);
    ck_assert_msg(f.samples >= 2 && f.samples <= 7, "%lld samples after the mark", (long long)f.samples);
    ck_assert_msg(fabs(f.energy_j - 300 * f.seconds) <= 0.02 * 300 * f.seconds, "%.3f J in %.3f s", f.energy_j,
                  f.seconds);
}
END_TEST

/* Two monitors share one NVML: stopping one does not shut it down under the other. */
START_TEST(test_two_monitors)
{
    use_fake();
    char err[512] = "";
    gpumon *a = gpumon_start(BUS, UUID, 20, err, sizeof err);
    ck_assert_msg(a != NULL, "%s", err);
    gpumon *b = gpumon_start("0000:65:00.0", "", 20, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    sleep_s(0.1);
    gpu_figures fa, fb;
    gpumon_stop(a, &fa);
    sleep_s(0.2);
    gpumon_stop(b, &fb);
    ck_assert_msg(!strcmp(fa.note, "") && !strcmp(fb.note, ""), "notes: '%s', '%s'", fa.note, fb.note);
    ck_assert_int_eq(fb.energy_counter, 1);
    ck_assert_msg(fb.seconds >= 0.3 && fabs(fb.energy_j - 300 * fb.seconds) <= 0.02 * 300 * fb.seconds,
                  "%.3f J in %.3f s", fb.energy_j, fb.seconds);
    /* and it is loaded again afterwards */
    a = gpumon_start(BUS, UUID, 20, err, sizeof err);
    ck_assert_msg(a != NULL, "%s", err);
    gpumon_stop(a, &fa);
    ck_assert_int_eq(fa.sampled, 1);
}
END_TEST

START_TEST(test_unknown_gpu)
{
    use_fake();
    setenv("MLPF_FAKE_NVML_UNKNOWN", "1", 1);
    char err[512] = "";
    ck_assert_ptr_null(gpumon_start(BUS, UUID, 10, err, sizeof err));
    ck_assert_msg(strstr(err, "does not know this GPU (PCI bus id " BUS ": Not Found; UUID " UUID ": Not Found)") &&
                  strstr(err, "fake_nvml/libnvidia-ml.so.1"), "%s", err);

    /* the bus id unknown: found by its UUID; without a UUID: the bus id named */
    use_fake();
    setenv("MLPF_FAKE_NVML_BUS_UNKNOWN", "1", 1);
    gpumon *m = gpumon_start(BUS, UUID, 10, err, sizeof err);
    ck_assert_msg(m != NULL, "the UUID fallback: %s", err);
    gpu_figures f;
    gpumon_stop(m, &f);
    ck_assert_int_eq(f.sampled, 1);
    ck_assert_ptr_null(gpumon_start(BUS, "", 10, err, sizeof err));
    ck_assert_msg(strstr(err, "(PCI bus id " BUS ": Not Found)"), "%s", err);
    ck_assert_ptr_null(gpumon_start("", NULL, 10, err, sizeof err));
    ck_assert_msg(strstr(err, "no PCI bus id or UUID"), "%s", err);
}
END_TEST

START_TEST(test_no_library)
{
    use_fake();
    setenv("MLPF_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
    char err[512] = "";
    ck_assert_ptr_null(gpumon_start(BUS, UUID, 10, err, sizeof err));
    ck_assert_msg(strstr(err, "cannot load the NVML library /nonexistent/libnvidia-ml.so.1 (MLPF_NVML_LIBRARY): "),
                  "%s", err);
    /* a library that is not NVML */
    setenv("MLPF_NVML_LIBRARY", "libm.so.6", 1);
    ck_assert_ptr_null(gpumon_start(BUS, UUID, 10, err, sizeof err));
    ck_assert_msg(strstr(err, "the NVML library libm.so.6 has no nvmlInit_v2"), "%s", err);
    /* NVML there, the driver not */
    use_fake();
    setenv("MLPF_FAKE_NVML_INIT_FAIL", "1", 1);
    ck_assert_ptr_null(gpumon_start(BUS, UUID, 10, err, sizeof err));
    ck_assert_msg(strstr(err, "did not start: nvmlInit_v2: Driver Not Loaded"), "%s", err);
}
END_TEST

START_TEST(test_reason_names)
{
    char buf[256];
    gpumon_reason_names(0, buf, sizeof buf);
    ck_assert_str_eq(buf, "none");
    gpumon_reason_names(0x4 | 0x40, buf, sizeof buf);
    ck_assert_str_eq(buf, "sw_power_cap,hw_thermal");
    gpumon_reason_names(0x1ff, buf, sizeof buf);
    ck_assert_str_eq(buf, "gpu_idle,applications_clocks,sw_power_cap,hw_slowdown,sync_boost,sw_thermal,hw_thermal,"
                          "hw_power_brake,display_clocks");
    gpumon_reason_names(0x8 | 0x400, buf, sizeof buf);
    ck_assert_str_eq(buf, "hw_slowdown,0x400");
    gpumon_reason_names(GPUMON_REASONS_UNKNOWN, buf, sizeof buf);
    ck_assert_str_eq(buf, "unknown");
    char small[12];
    memset(small, 'x', sizeof small);
    gpumon_reason_names(0x1ff, small, sizeof small);
    ck_assert_uint_lt(strlen(small), sizeof small);
}
END_TEST

/* ---- the report ---- */

static double epoch_time[2] = {2.0, 1.6}, throughput[2] = {4.0, 5.0}, val_acc[2] = {0.5, 0.6};
static double val_loss[2][LOSS_N];

/* Two ranks on two hosts, 8 training events, 2 epochs, batch 2 per rank:
 * each rank trains 8 events in 4 steps. */
static run_summary two_rank_summary(rank_figures *r, int gpus)
{
    run_summary s = {0};
    s.command_line = "mlpfbench train --device cuda";
    s.preset = "tiny";
    s.device = gpus ? "cuda" : "cpu";
    s.precision = gpus ? "tf32" : "fp32";
    s.data_dir = "data/x";
    s.bind = "auto";
    s.world_size = 2;
    s.threads_per_rank = 1;
    s.batch_per_rank = 2;
    s.train_events = 8;
    s.valid_events = 2;
    s.steps_per_epoch = 2;
    s.n_params = 1000;
    s.bucket_mib = 4;
    s.device_description = gpus ? "NVIDIA H200 (GPU 0, sm_90, 132 SMs, 140 GiB)" : "CPU";
    s.epochs = 2;
    s.epoch_time = epoch_time;
    s.throughput = throughput;
    s.val_acc = val_acc;
    s.val_loss = val_loss;
    snprintf(s.train_start, sizeof s.train_start, "2025-01-01T00:00:00Z");
    snprintf(s.train_stop, sizeof s.train_stop, "2025-01-01T00:00:04Z");
    s.train_time = 3.6;
    s.flops_per_event = 1e9;
    s.achieved_flops = 4e9;
    for (int i = 0; i < 2; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].rank = i;
        r[i].threads = 1;
        snprintf(r[i].host, sizeof r[i].host, "node-%c", 'a' + i);
        snprintf(r[i].cpus, sizeof r[i].cpus, "0");
        r[i].events = 8;
        r[i].elements = 400;
        r[i].steps = 4;
        r[i].step_s = 1.8;
        if (!gpus) continue;
        r[i].gpu_device = 0;
        snprintf(r[i].gpu_name, sizeof r[i].gpu_name, "NVIDIA H200");
        snprintf(r[i].gpu_uuid, sizeof r[i].gpu_uuid, "GPU-0000000%c-0000-0000-0000-000000000000", (char)('0' + i));
        snprintf(r[i].gpu_pci, sizeof r[i].gpu_pci, "0000:%02x:00.0", 0x17 + i);
    }
    s.ranks = r;
    return s;
}

static gpu_figures figures(double energy, int counter, double power, double sm_mean, double sm_min, double temp,
                           unsigned long long reasons)
{
    gpu_figures f = {.sampled = 1, .samples = 37, .seconds = 3.6, .energy_j = energy, .energy_counter = counter,
                     .power_mean_w = power, .power_max_w = power + 50, .power_limit_w = 700,
                     .sm_clock_mean_mhz = sm_mean, .sm_clock_min_mhz = sm_min, .sm_clock_max_mhz = 1980,
                     .mem_clock_mean_mhz = 2619, .temperature_max_c = temp, .util_gpu_mean = 95,
                     .util_mem_mean = 40, .throttle_reasons = reasons, .memory_used_max_mib = 20000};
    if (!counter) snprintf(f.note, sizeof f.note, "energy integrated from power: no energy counter (Not Supported)");
    return f;
}

typedef struct {
    char dir[PATH_MAX], table[8192];
    json_t *root, *stats;
} written;

/* report_write into a new directory; the closing table captured. */
static void write_report(const run_summary *s, written *w)
{
    snprintf(w->dir, sizeof w->dir, "/tmp/mlpf_gpumon_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(w->dir));
    char out[PATH_MAX + 32];
    snprintf(out, sizeof out, "%s/table.txt", w->dir);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO), fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert(saved >= 0 && fd >= 0);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    int rc = report_write(w->dir, s, 1);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    ck_assert_int_eq(rc, 0);
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(w->table, 1, sizeof w->table - 1, f);
    w->table[n] = '\0';
    fclose(f);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/mlpf_summary.json", w->dir);
    json_error_t e;
    w->root = json_load_file(path, 0, &e);
    ck_assert_msg(w->root != NULL, "%s: %s", path, e.text);
    w->stats = json_object_get(json_object_get(w->root, "report"), "wl-stats");
    ck_assert_ptr_nonnull(w->stats);
}

/* tests/check_summary.py on the summary: the schema, and its numbers (GPU
 * energy of the nodes and the total = the sums of their ranks'). */
static void check_summary(const written *w, const char *args)
{
    char dir[PATH_MAX], cmd[3 * PATH_MAX];
    build_dir(dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/../tests/check_summary.py %s/mlpf_summary.json %s", dir, w->dir, args);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "%s: exit %d", cmd, rc);
}

static void done(written *w)
{
    json_decref(w->root);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    ck_assert_int_eq(system(cmd), 0);
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    ck_assert_msg(json_is_number(v), "%s is not a number", key);
    return json_number_value(v);
}

START_TEST(test_report_gpu_figures)
{
    rank_figures r[2];
    run_summary s = two_rank_summary(r, 1);
    r[0].gpu = figures(1200, 1, 300, 1900, 1800, 70, 0x4);
    r[1].gpu = figures(1040, 0, 250, 1700, 1500, 75, 0x4 | 0x40);
    r[1].gpu.memory_used_max_mib = NAN; /* not supported there: left out */
    written w;
    write_report(&s, &w);

    json_t *pr = json_object_get(w.stats, "per_rank");
    json_t *g0 = json_object_get(json_array_get(pr, 0), "gpu"), *g1 = json_object_get(json_array_get(pr, 1), "gpu");
    ck_assert_ptr_nonnull(g0);
    ck_assert_str_eq(json_string_value(json_object_get(g0, "name")), "NVIDIA H200");
    ck_assert_str_eq(json_string_value(json_object_get(g1, "pci_bus_id")), "0000:18:00.0");
    ck_assert_str_eq(json_string_value(json_object_get(g1, "uuid")), "GPU-00000001-0000-0000-0000-000000000000");
    ck_assert_int_eq(num(g1, "device"), 0);
    json_t *n0 = json_object_get(g0, "nvml"), *n1 = json_object_get(g1, "nvml");
    ck_assert(json_is_true(json_object_get(n0, "sampled")));
    ck_assert_double_eq_tol(num(n0, "energy_j"), 1200, 1e-9);
    ck_assert_double_eq_tol(num(n0, "energy_per_event_j"), 150, 1e-9);
    ck_assert_double_eq_tol(num(n1, "energy_per_event_j"), 130, 1e-9);
    ck_assert_str_eq(json_string_value(json_object_get(n0, "energy_source")), "energy counter");
    ck_assert_str_eq(json_string_value(json_object_get(n1, "energy_source")), "integrated power");
    ck_assert_double_eq_tol(num(n1, "sm_clock_min_mhz"), 1500, 1e-9);
    ck_assert_double_eq_tol(num(n0, "utilization_gpu_mean"), 95, 1e-9);
    ck_assert_int_eq(num(n0, "samples"), 37);
    ck_assert_ptr_null(json_object_get(n1, "memory_used_max_mib")); /* not sampled: left out */
    ck_assert_double_eq_tol(num(n0, "memory_used_max_mib"), 20000, 1e-9);
    json_t *tr = json_object_get(n1, "throttle_reasons");
    ck_assert_int_eq(json_array_size(tr), 2);
    ck_assert_str_eq(json_string_value(json_array_get(tr, 0)), "sw_power_cap");
    ck_assert_str_eq(json_string_value(json_array_get(tr, 1)), "hw_thermal");

    json_t *pn = json_object_get(w.stats, "per_node");
    ck_assert_int_eq(json_array_size(pn), 2);
    json_t *a = json_array_get(pn, 0), *b = json_array_get(pn, 1);
    ck_assert_int_eq(num(a, "gpus"), 1);
    ck_assert_double_eq_tol(num(a, "gpu_energy_j"), 1200, 1e-9);
    ck_assert_double_eq_tol(num(b, "gpu_energy_per_event_j"), 130, 1e-9);
    ck_assert_double_eq_tol(num(b, "gpu_power_mean_w"), 250, 1e-9);

    ck_assert_int_eq(num(w.stats, "gpus"), 2);
    json_t *ge = json_object_get(w.stats, "gpu_energy");
    ck_assert_double_eq_tol(num(ge, "joules"), 2240, 1e-9);
    ck_assert_double_eq_tol(num(ge, "joules_per_event"), 140, 1e-9); /* 2240 J / 16 events */
    ck_assert_int_eq(num(ge, "gpus_measured"), 2);
    ck_assert_double_eq_tol(num(ge, "power_mean_w"), 550, 1e-9);
    ck_assert_str_eq(json_string_value(json_object_get(ge, "source")), "energy counter and integrated power");
    ck_assert_ptr_null(json_object_get(ge, "note"));

    ck_assert_msg(strstr(w.table, "\nGPU energy                         2.2 kJ, 140 J/training event, 2 GPU(s), mean "
                                  "550 W in all (NVML energy counter and integrated power)\n"), "%s", w.table);
    ck_assert_msg(strstr(w.table, "\nGPU clocks                         SM mean 1800 MHz, min 1500 MHz; memory 2619 MHz; "
                                  "max 75 C; throttle reasons: sw_power_cap,hw_thermal\n"), "%s", w.table);
    check_summary(&w, "--ok --ranks 2 --epochs 2");
    done(&w);

    /* both on one node: its figures are the sums of the two */
    snprintf(r[1].host, sizeof r[1].host, "node-a");
    write_report(&s, &w);
    pn = json_object_get(w.stats, "per_node");
    ck_assert_int_eq(json_array_size(pn), 1);
    a = json_array_get(pn, 0);
    ck_assert_int_eq(num(a, "gpus"), 2);
    ck_assert_double_eq_tol(num(a, "gpu_energy_j"), 2240, 1e-9);
    ck_assert_double_eq_tol(num(a, "gpu_energy_per_event_j"), 140, 1e-9);
    ck_assert_double_eq_tol(num(a, "gpu_power_mean_w"), 550, 1e-9);
    check_summary(&w, "--ok --ranks 2 --epochs 2");
    done(&w);
}
END_TEST

/* GPUs that NVML could not measure, one of two, then none; the host execution path. */
START_TEST(test_report_gpu_unmeasured)
{
    rank_figures r[2];
    run_summary s = two_rank_summary(r, 1);
    r[0].gpu = figures(1200, 1, 300, 1900, 1800, 70, 0x4);
    snprintf(r[1].gpu.note, sizeof r[1].gpu.note, "cannot load the NVML library libnvidia-ml.so.1: no such file");
    written w;
    write_report(&s, &w);
    json_t *ge = json_object_get(w.stats, "gpu_energy");
    ck_assert_int_eq(num(ge, "gpus_measured"), 1);
    ck_assert_double_eq_tol(num(ge, "joules_per_event"), 150, 1e-9); /* the measured rank's events only */
    ck_assert_str_eq(json_string_value(json_object_get(ge, "note")),
                     "1 of 2 GPU(s) measured; rank 1 (node-b): cannot load the NVML library libnvidia-ml.so.1: no such file");
    json_t *n1 = json_object_get(json_object_get(json_array_get(json_object_get(w.stats, "per_rank"), 1), "gpu"), "nvml");
    ck_assert(json_is_false(json_object_get(n1, "sampled")));
    ck_assert_ptr_null(json_object_get(n1, "energy_j"));
    json_t *b = json_array_get(json_object_get(w.stats, "per_node"), 1);
    ck_assert_int_eq(num(b, "gpus"), 1);
    ck_assert_ptr_null(json_object_get(b, "gpu_energy_j"));
    ck_assert_msg(strstr(w.table, "GPU energy                         1.2 kJ, 150 J/training event, 1 GPU(s), mean 300 W "
                                  "in all (NVML energy counter); 1 of 2 GPU(s) measured, rank 1 (node-b): cannot load"),
                  "%s", w.table);
    check_summary(&w, "--ok --ranks 2 --epochs 2");
    done(&w);

    memset(&r[0].gpu, 0, sizeof r[0].gpu);
    snprintf(r[0].gpu.note, sizeof r[0].gpu.note, "NVML does not know this GPU");
    s.emulated = 1;
    write_report(&s, &w);
    ge = json_object_get(w.stats, "gpu_energy");
    ck_assert_ptr_null(json_object_get(ge, "joules"));
    ck_assert_msg(!strcmp(json_string_value(json_object_get(ge, "note")),
                          "not measured: rank 0 (node-a): NVML does not know this GPU; the CUDA host execution path of "
                          "the tests: the figures come from the fake NVML of the tests, not a GPU measurement"),
                  "%s", json_string_value(json_object_get(ge, "note")));
    ck_assert_msg(strstr(w.table, "GPU energy                         not measured: rank 0 (node-a): NVML does not know "
                                  "this GPU [fake NVML of the tests: not a GPU measurement]\n"), "%s", w.table);
    ck_assert_msg(!strstr(w.table, "GPU clocks"), "%s", w.table);
    check_summary(&w, "");
    done(&w);
}
END_TEST

/* A CPU run: no GPU fields, "gpus": 0, no GPU rows in the table. */
START_TEST(test_report_cpu)
{
    rank_figures r[2];
    run_summary s = two_rank_summary(r, 0);
    written w;
    write_report(&s, &w);
    ck_assert_int_eq(num(w.stats, "gpus"), 0);
    ck_assert_ptr_null(json_object_get(w.stats, "gpu_energy"));
    ck_assert_ptr_null(json_object_get(json_array_get(json_object_get(w.stats, "per_rank"), 0), "gpu"));
    json_t *a = json_array_get(json_object_get(w.stats, "per_node"), 0);
    ck_assert_int_eq(num(a, "gpus"), 0);
    ck_assert_ptr_null(json_object_get(a, "gpu_energy_j"));
    ck_assert_ptr_null(json_object_get(a, "gpu_power_mean_w"));
    ck_assert_msg(!strstr(w.table, "GPU energy") && !strstr(w.table, "GPU clocks"), "%s", w.table);
    check_summary(&w, "--ok --ranks 2 --epochs 2");
    done(&w);
}
END_TEST

Suite *gpumon_suite(void)
{
    Suite *s = suite_create("gpumon");
    TCase *nvml = tcase_create("nvml");
    tcase_set_timeout(nvml, 30);
    tcase_add_test(nvml, test_energy_counter);
    tcase_add_test(nvml, test_integrated_power);
    tcase_add_test(nvml, test_not_supported);
    tcase_add_test(nvml, test_mark);
    tcase_add_test(nvml, test_two_monitors);
    tcase_add_test(nvml, test_unknown_gpu);
    tcase_add_test(nvml, test_no_library);
    tcase_add_test(nvml, test_reason_names);
    suite_add_tcase(s, nvml);
    TCase *rep = tcase_create("report");
    tcase_set_timeout(rep, 60);
    tcase_add_test(rep, test_report_gpu_figures);
    tcase_add_test(rep, test_report_gpu_unmeasured);
    tcase_add_test(rep, test_report_cpu);
    suite_add_tcase(s, rep);
    return s;
}
