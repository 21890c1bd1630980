/* The GPU monitor (src/run/gpumon.c) against the fake NVML of the tests
 * (tests/gpu_host/fake_nvml.c, built as <build>/fake_nvml/libnvidia-ml.so.1).
 * Nothing here is a GPU figure. */
#include <check.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpumon.h"

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
    return s;
}
