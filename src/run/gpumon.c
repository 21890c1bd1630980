/* GPU figures sampled through NVML in a thread (include/gpumon.h).
 *
 * There is no nvml.h where this is built: the few types, constants and
 * functions used are declared here, with the values of NVIDIA's NVML API
 * reference (nvmlReturn_t, nvmlClockType_t, nvmlTemperatureSensors_t,
 * nvmlUtilization_t, nvmlMemory_t, the nvmlClocksEventReasons bits). Only
 * functions whose signature has been stable since NVML 5 are called. */
#include "gpumon.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int nvmlReturn_t;
typedef struct nvml_device *nvmlDevice_t;
typedef struct {
    unsigned int gpu, memory; /* percent of the last sample period */
} nvmlUtilization_t;
typedef struct {
    unsigned long long total, free, used; /* bytes */
} nvmlMemory_t;

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
};
enum { NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2 };  /* nvmlClockType_t */
enum { NVML_TEMPERATURE_GPU = 0 };               /* nvmlTemperatureSensors_t */

typedef struct {
    void *lib;
    char path[512];
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*shutdown)(void);
    const char *(*error_string)(nvmlReturn_t);
    nvmlReturn_t (*by_pci)(const char *, nvmlDevice_t *);
    nvmlReturn_t (*by_uuid)(const char *, nvmlDevice_t *);
    /* optional: a figure whose function is missing is left out */
    nvmlReturn_t (*energy)(nvmlDevice_t, unsigned long long *);  /* mJ since the driver loaded */
    nvmlReturn_t (*power)(nvmlDevice_t, unsigned int *);         /* mW */
    nvmlReturn_t (*power_limit)(nvmlDevice_t, unsigned int *);   /* mW */
    nvmlReturn_t (*clock)(nvmlDevice_t, int, unsigned int *);    /* MHz */
    nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned int *); /* degrees C */
    nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t *);
    nvmlReturn_t (*reasons)(nvmlDevice_t, unsigned long long *);
    nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t *);
} nvml_api;

/* One NVML for the process: loaded and initialised by the first monitor,
 * shut down and unloaded after the last one stops. */
static pthread_mutex_t api_lock = PTHREAD_MUTEX_INITIALIZER;
static nvml_api api;
static int api_users;

/* The figures, in the order of the note. */
enum { F_ENERGY, F_POWER, F_LIMIT, F_SM, F_MEMCLK, F_TEMP, F_UTIL, F_REASONS, F_MEMORY, F_N };
static const char *const FIGURE_NAMES[F_N] = {"energy counter", "power", "power limit", "SM clock", "memory clock",
                                              "temperature", "utilization", "clock event reasons", "memory used"};

typedef struct {
    double t;
    nvmlReturn_t rc[F_N];
    unsigned long long energy_mj, reasons, mem_used;
    unsigned int power_mw, sm, memclk, temp;
    nvmlUtilization_t util;
} sample;

struct gpumon {
    nvmlDevice_t dev;
    double period;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    /* the window, under mu */
    double t_mark, t_first, t_last;
    int64_t n;
    sample first, last;
    nvmlReturn_t rc_limit;
    unsigned int limit_mw;
    int64_t count[F_N];
    nvmlReturn_t fail[F_N]; /* the last failure of each figure */
    double p_sum, p_max, p_prev_t, p_prev_w, p_integral_j;
    double sm_sum, sm_min, sm_max, memclk_sum, temp_max, util_gpu_sum, util_mem_sum, mem_max;
    unsigned long long reasons;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *nvml_error(nvmlReturn_t rc)
{
    if (rc == NVML_ERROR_FUNCTION_NOT_FOUND) return "not in this NVML";
    const char *s = api.error_string ? api.error_string(rc) : NULL;
    return s ? s : "unknown NVML error";
}

static void *sym(const char *name) { return dlsym(api.lib, name); }

/* Under api_lock. */
static int api_acquire(char *err, size_t n)
{
    if (api_users > 0) {
        api_users++;
        return 0;
    }
    const char *env = getenv("MLPF_NVML_LIBRARY");
    const char *path = env && env[0] ? env : "libnvidia-ml.so.1";
    memset(&api, 0, sizeof api);
    snprintf(api.path, sizeof api.path, "%s", path);
    dlerror();
    api.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!api.lib) {
        const char *why = dlerror();
        snprintf(err, n, "cannot load the NVML library %s%s: %s", path,
                 env && env[0] ? " (MLPF_NVML_LIBRARY)" : " (it comes with the NVIDIA driver)", why ? why : "dlopen failed");
        return -1;
    }
    *(void **)&api.init = sym("nvmlInit_v2");
    *(void **)&api.shutdown = sym("nvmlShutdown");
    *(void **)&api.error_string = sym("nvmlErrorString");
    *(void **)&api.by_pci = sym("nvmlDeviceGetHandleByPciBusId_v2");
    *(void **)&api.by_uuid = sym("nvmlDeviceGetHandleByUUID");
    const char *missing = !api.init ? "nvmlInit_v2" : !api.shutdown ? "nvmlShutdown" : !api.error_string ? "nvmlErrorString"
                        : !api.by_pci ? "nvmlDeviceGetHandleByPciBusId_v2" : !api.by_uuid ? "nvmlDeviceGetHandleByUUID" : NULL;
    if (missing) {
        snprintf(err, n, "the NVML library %s has no %s (too old, or not NVML)", path, missing);
        dlclose(api.lib);
        memset(&api, 0, sizeof api);
        return -1;
    }
    *(void **)&api.energy = sym("nvmlDeviceGetTotalEnergyConsumption");
    *(void **)&api.power = sym("nvmlDeviceGetPowerUsage");
    *(void **)&api.power_limit = sym("nvmlDeviceGetEnforcedPowerLimit");
    *(void **)&api.clock = sym("nvmlDeviceGetClockInfo");
    *(void **)&api.temperature = sym("nvmlDeviceGetTemperature");
    *(void **)&api.utilization = sym("nvmlDeviceGetUtilizationRates");
    *(void **)&api.reasons = sym("nvmlDeviceGetCurrentClocksEventReasons"); /* the name since NVML 12.535 */
    if (!api.reasons) *(void **)&api.reasons = sym("nvmlDeviceGetCurrentClocksThrottleReasons");
    *(void **)&api.memory = sym("nvmlDeviceGetMemoryInfo");
    nvmlReturn_t rc = api.init();
    if (rc != NVML_SUCCESS) {
        snprintf(err, n, "NVML (%s) did not start: nvmlInit_v2: %s", path, nvml_error(rc));
        dlclose(api.lib);
        memset(&api, 0, sizeof api);
        return -1;
    }
    api_users = 1;
    return 0;
}

/* Under api_lock. */
static void api_release(void)
{
    if (--api_users > 0) return;
    api.shutdown();
    dlclose(api.lib);
    memset(&api, 0, sizeof api);
}

#define READ(fn, ...) (api.fn ? api.fn(__VA_ARGS__) : NVML_ERROR_FUNCTION_NOT_FOUND)

static void read_sample(const gpumon *m, sample *s)
{
    s->t = now_s();
    s->rc[F_ENERGY] = READ(energy, m->dev, &s->energy_mj);
    s->rc[F_POWER] = READ(power, m->dev, &s->power_mw);
    s->rc[F_LIMIT] = NVML_SUCCESS; /* read once, at the start */
    s->rc[F_SM] = READ(clock, m->dev, NVML_CLOCK_SM, &s->sm);
    s->rc[F_MEMCLK] = READ(clock, m->dev, NVML_CLOCK_MEM, &s->memclk);
    s->rc[F_TEMP] = READ(temperature, m->dev, NVML_TEMPERATURE_GPU, &s->temp);
    s->rc[F_UTIL] = READ(utilization, m->dev, &s->util);
    s->rc[F_REASONS] = READ(reasons, m->dev, &s->reasons);
    nvmlMemory_t mem;
    s->rc[F_MEMORY] = READ(memory, m->dev, &mem);
    s->mem_used = s->rc[F_MEMORY] == NVML_SUCCESS ? mem.used : 0;
}

/* Under m->mu. */
static void window_reset(gpumon *m, double t)
{
    m->t_mark = t;
    m->n = 0;
    memset(m->count, 0, sizeof m->count);
    for (int k = 0; k < F_N; k++) m->fail[k] = NVML_SUCCESS;
    m->p_sum = m->p_max = m->p_integral_j = 0;
    m->sm_sum = m->memclk_sum = m->util_gpu_sum = m->util_mem_sum = 0;
    m->sm_min = INFINITY, m->sm_max = -INFINITY, m->temp_max = -INFINITY, m->mem_max = -INFINITY;
    m->reasons = 0;
}

/* Under m->mu. A sample read before the window's start is dropped. */
static void accumulate(gpumon *m, const sample *s)
{
    if (s->t < m->t_mark) return;
    for (int k = 0; k < F_N; k++) {
        if (k == F_LIMIT) continue;
        if (s->rc[k] == NVML_SUCCESS) m->count[k]++;
        else m->fail[k] = s->rc[k];
    }
    if (m->n == 0) m->first = *s, m->t_first = s->t;
    m->last = *s;
    m->t_last = s->t;
    m->n++;
    if (s->rc[F_POWER] == NVML_SUCCESS) {
        double w = s->power_mw / 1000.0;
        if (m->count[F_POWER] > 1) m->p_integral_j += 0.5 * (w + m->p_prev_w) * (s->t - m->p_prev_t);
        m->p_prev_t = s->t, m->p_prev_w = w;
        m->p_sum += w;
        if (w > m->p_max) m->p_max = w;
    }
    if (s->rc[F_SM] == NVML_SUCCESS) {
        m->sm_sum += s->sm;
        if (s->sm < m->sm_min) m->sm_min = s->sm;
        if (s->sm > m->sm_max) m->sm_max = s->sm;
    }
    if (s->rc[F_MEMCLK] == NVML_SUCCESS) m->memclk_sum += s->memclk;
    if (s->rc[F_TEMP] == NVML_SUCCESS && s->temp > m->temp_max) m->temp_max = s->temp;
    if (s->rc[F_UTIL] == NVML_SUCCESS) m->util_gpu_sum += s->util.gpu, m->util_mem_sum += s->util.memory;
    if (s->rc[F_REASONS] == NVML_SUCCESS) m->reasons |= s->reasons;
    if (s->rc[F_MEMORY] == NVML_SUCCESS && s->mem_used / 1048576.0 > m->mem_max) m->mem_max = s->mem_used / 1048576.0;
}

static void take_sample(gpumon *m)
{
    sample s;
    read_sample(m, &s);
    pthread_mutex_lock(&m->mu);
    accumulate(m, &s);
    pthread_mutex_unlock(&m->mu);
}

static void *sampler(void *arg)
{
    gpumon *m = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        double t = next.tv_sec + next.tv_nsec * 1e-9 + m->period, now = now_s();
        if (t < now) t = now + m->period; /* late (a slow read): the next one a period from now */
        next.tv_sec = (time_t)t;
        next.tv_nsec = (long)((t - (double)next.tv_sec) * 1e9);
        pthread_mutex_lock(&m->mu);
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &next) == 0) {}
        int stop = m->stop;
        pthread_mutex_unlock(&m->mu);
        if (stop) return NULL;
        take_sample(m);
    }
}

gpumon *gpumon_start(const char *pci_bus_id, const char *uuid, double hz, char *err, size_t n)
{
    int have_pci = pci_bus_id && pci_bus_id[0], have_uuid = uuid && uuid[0];
    if (!have_pci && !have_uuid) {
        snprintf(err, n, "no PCI bus id or UUID of the GPU to find it by in NVML");
        return NULL;
    }
    pthread_mutex_lock(&api_lock);
    if (api_acquire(err, n) != 0) {
        pthread_mutex_unlock(&api_lock);
        return NULL;
    }
    nvmlDevice_t dev = NULL;
    nvmlReturn_t rp = NVML_SUCCESS, ru = NVML_SUCCESS;
    int found = 0;
    if (have_pci) found = (rp = api.by_pci(pci_bus_id, &dev)) == NVML_SUCCESS;
    if (!found && have_uuid) found = (ru = api.by_uuid(uuid, &dev)) == NVML_SUCCESS;
    if (!found) {
        char a[200] = "", b[200] = "";
        if (have_pci) snprintf(a, sizeof a, "PCI bus id %s: %s", pci_bus_id, nvml_error(rp));
        if (have_uuid) snprintf(b, sizeof b, "UUID %s: %s", uuid, nvml_error(ru));
        snprintf(err, n, "NVML (%s) does not know this GPU (%s%s%s)", api.path, a, a[0] && b[0] ? "; " : "", b);
        api_release();
        pthread_mutex_unlock(&api_lock);
        return NULL;
    }
    pthread_mutex_unlock(&api_lock);

    gpumon *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, n, "out of memory for the GPU monitor");
        pthread_mutex_lock(&api_lock);
        api_release();
        pthread_mutex_unlock(&api_lock);
        return NULL;
    }
    m->dev = dev;
    m->period = 1.0 / (hz > 0 ? hz : 10.0);
    m->rc_limit = READ(power_limit, dev, &m->limit_mw);
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    window_reset(m, now_s());
    take_sample(m); /* the window's first sample */
    int rc = pthread_create(&m->thread, NULL, sampler, m);
    if (rc != 0) {
        snprintf(err, n, "cannot start the GPU sampling thread: %s", strerror(rc));
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        free(m);
        pthread_mutex_lock(&api_lock);
        api_release();
        pthread_mutex_unlock(&api_lock);
        return NULL;
    }
    return m;
}

void gpumon_mark(gpumon *m)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    window_reset(m, now_s());
    pthread_mutex_unlock(&m->mu);
    take_sample(m);
}

/* Append "text" to the note, separated by "; ". */
static void note_add(char *note, size_t n, const char *text)
{
    size_t len = strlen(note), k = strlen(text);
    if (len && len + 3 < n) memcpy(note + len, "; ", 2), len += 2;
    if (len + k + 1 > n) k = n > len + 1 ? n - len - 1 : 0; /* cut at the end */
    memcpy(note + len, text, k);
    note[len + k] = '\0';
}

static void fill(const gpumon *m, gpu_figures *f)
{
    memset(f, 0, sizeof *f);
    f->sampled = 1;
    f->samples = m->n;
    f->seconds = m->n > 1 ? m->t_last - m->t_first : 0.0;
    const int64_t *c = m->count;
    f->power_mean_w = c[F_POWER] ? m->p_sum / c[F_POWER] : NAN;
    f->power_max_w = c[F_POWER] ? m->p_max : NAN;
    f->power_limit_w = m->rc_limit == NVML_SUCCESS ? m->limit_mw / 1000.0 : NAN;
    f->sm_clock_mean_mhz = c[F_SM] ? m->sm_sum / c[F_SM] : NAN;
    f->sm_clock_min_mhz = c[F_SM] ? m->sm_min : NAN;
    f->sm_clock_max_mhz = c[F_SM] ? m->sm_max : NAN;
    f->mem_clock_mean_mhz = c[F_MEMCLK] ? m->memclk_sum / c[F_MEMCLK] : NAN;
    f->temperature_max_c = c[F_TEMP] ? m->temp_max : NAN;
    f->util_gpu_mean = c[F_UTIL] ? m->util_gpu_sum / c[F_UTIL] : NAN;
    f->util_mem_mean = c[F_UTIL] ? m->util_mem_sum / c[F_UTIL] : NAN;
    f->throttle_reasons = c[F_REASONS] ? m->reasons : GPUMON_REASONS_UNKNOWN;
    f->memory_used_max_mib = c[F_MEMORY] ? m->mem_max : NAN;

    /* energy: the counter's difference over the window, else power integrated */
    char why[120] = "";
    int counter_read = m->first.rc[F_ENERGY] == NVML_SUCCESS && m->last.rc[F_ENERGY] == NVML_SUCCESS;
    if (m->n < 2) {
        f->energy_j = NAN;
        note_add(f->note, sizeof f->note, "a single sample: no window to measure energy over");
    } else if (counter_read && m->last.energy_mj >= m->first.energy_mj) {
        f->energy_j = (m->last.energy_mj - m->first.energy_mj) / 1000.0;
        f->energy_counter = 1;
    } else {
        if (counter_read)
            snprintf(why, sizeof why, "the energy counter went back (driver reloaded?)");
        else
            snprintf(why, sizeof why, "no energy counter (%s)",
                     nvml_error(m->first.rc[F_ENERGY] != NVML_SUCCESS ? m->first.rc[F_ENERGY] : m->last.rc[F_ENERGY]));
        if (c[F_POWER] >= 2) {
            f->energy_j = m->p_integral_j;
            char t[160];
            snprintf(t, sizeof t, "energy integrated from power: %s", why);
            note_add(f->note, sizeof f->note, t);
        } else {
            f->energy_j = NAN;
            char t[160];
            snprintf(t, sizeof t, "no energy figure: %s, %s power sample(s)", why, c[F_POWER] ? "one" : "no");
            note_add(f->note, sizeof f->note, t);
        }
    }
    /* figures left out, by cause */
    char unsupported[160] = "";
    for (int k = F_POWER; k < F_N; k++) {
        nvmlReturn_t rc = k == F_LIMIT ? m->rc_limit : c[k] ? NVML_SUCCESS : m->fail[k];
        if (rc == NVML_SUCCESS) continue;
        if (rc == NVML_ERROR_NOT_SUPPORTED) {
            note_add(unsupported, sizeof unsupported, FIGURE_NAMES[k]);
        } else {
            char t[120];
            snprintf(t, sizeof t, "%s: %s", FIGURE_NAMES[k], nvml_error(rc));
            note_add(f->note, sizeof f->note, t);
        }
    }
    if (unsupported[0]) {
        for (char *p = unsupported; (p = strchr(p, ';')); ) *p = ',';
        char t[200];
        snprintf(t, sizeof t, "not supported by this GPU: %s", unsupported);
        note_add(f->note, sizeof f->note, t);
    }
}

void gpumon_stop(gpumon *m, gpu_figures *out)
{
    if (!m) {
        if (out) memset(out, 0, sizeof *out);
        return;
    }
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    take_sample(m); /* the window's last sample */
    if (out) fill(m, out);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
    pthread_mutex_lock(&api_lock);
    api_release();
    pthread_mutex_unlock(&api_lock);
}

void gpumon_reason_names(unsigned long long reasons, char *buf, size_t n)
{
    static const struct { unsigned long long bit; const char *name; } NAMES[] = {
        {0x1ULL, "gpu_idle"},      {0x2ULL, "applications_clocks"}, {0x4ULL, "sw_power_cap"},
        {0x8ULL, "hw_slowdown"},   {0x10ULL, "sync_boost"},         {0x20ULL, "sw_thermal"},
        {0x40ULL, "hw_thermal"},   {0x80ULL, "hw_power_brake"},     {0x100ULL, "display_clocks"},
    };
    if (!n) return;
    buf[0] = '\0';
    if (reasons & GPUMON_REASONS_UNKNOWN) {
        snprintf(buf, n, "unknown");
        reasons &= ~GPUMON_REASONS_UNKNOWN;
        if (!reasons) return;
    }
    if (!reasons && !buf[0]) {
        snprintf(buf, n, "none");
        return;
    }
    for (int b = 0; b < 63; b++) {
        unsigned long long bit = 1ULL << b;
        if (!(reasons & bit)) continue;
        const char *name = NULL;
        char hex[24];
        for (size_t k = 0; k < sizeof NAMES / sizeof NAMES[0]; k++)
            if (NAMES[k].bit == bit) name = NAMES[k].name;
        if (!name) {
            snprintf(hex, sizeof hex, "0x%llx", bit);
            name = hex;
        }
        size_t len = strlen(buf);
        if (len + 1 >= n) return;
        snprintf(buf + len, n - len, "%s%s", len ? "," : "", name);
    }
}
