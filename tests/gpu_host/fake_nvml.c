/* A stand-in for NVML (libnvidia-ml.so.1) for the tests, never part of the
 * product: nothing it answers is a GPU figure. It knows one GPU, found by any
 * PCI bus id or UUID, whose figures are fixed by environment variables:
 *
 *   MLPF_FAKE_NVML_POWER_W         power draw (default 300); the energy counter
 *                                  is this power times the time since nvmlInit
 *   MLPF_FAKE_NVML_POWER_LIMIT_W   enforced power limit (default 700)
 *   MLPF_FAKE_NVML_SM_MHZ          SM clock (default 1980)
 *   MLPF_FAKE_NVML_MEM_MHZ         memory clock (default 2619)
 *   MLPF_FAKE_NVML_TEMPERATURE_C   temperature (default 61)
 *   MLPF_FAKE_NVML_UTIL_GPU        utilization percent (default 97)
 *   MLPF_FAKE_NVML_UTIL_MEM        memory utilization percent (default 41)
 *   MLPF_FAKE_NVML_REASONS         clock event reasons (default 0x4, SW power cap)
 *   MLPF_FAKE_NVML_MEMORY_USED_MIB memory used (default 12345)
 *   MLPF_FAKE_NVML_NO_ENERGY=1     the energy counter answers NOT_SUPPORTED
 *   MLPF_FAKE_NVML_NOT_SUPPORTED   comma-separated figures that answer
 *                                  NOT_SUPPORTED: energy, power, limit, clocks,
 *                                  temperature, utilization, reasons, memory
 *   MLPF_FAKE_NVML_UNKNOWN=1       no device is known (NOT_FOUND)
 *   MLPF_FAKE_NVML_BUS_UNKNOWN=1   only the lookup by PCI bus id fails
 *   MLPF_FAKE_NVML_INIT_FAIL=1     nvmlInit_v2 fails (DRIVER_NOT_LOADED)
 *
 * It refuses calls before nvmlInit_v2 or after the last nvmlShutdown
 * (UNINITIALIZED) and handles it did not give (INVALID_ARGUMENT), so that
 * misuse by the caller shows. Return codes are NVML's. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

enum {
    SUCCESS = 0,
    UNINITIALIZED = 1,
    INVALID_ARGUMENT = 2,
    NOT_SUPPORTED = 3,
    NOT_FOUND = 6,
    DRIVER_NOT_LOADED = 9,
};

typedef struct { unsigned int gpu, memory; } utilization;
typedef struct { unsigned long long total, free, used; } memory_info;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int inits;
static double t_init;
static char the_device; /* its address is the handle */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double env_num(const char *name, double dflt)
{
    const char *v = getenv(name);
    return v && v[0] ? strtod(v, NULL) : dflt;
}

static int env_set(const char *name)
{
    const char *v = getenv(name);
    return v && !strcmp(v, "1");
}

/* Is `figure` in MLPF_FAKE_NVML_NOT_SUPPORTED? */
static int unsupported(const char *figure)
{
    const char *v = getenv("MLPF_FAKE_NVML_NOT_SUPPORTED");
    size_t n = strlen(figure);
    for (const char *p = v; p && *p; p += strcspn(p, ","), p += *p == ',')
        if (!strncmp(p, figure, n) && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

/* The common checks: initialised, our handle, the figure supported. */
static int check(const void *dev, const char *figure)
{
    pthread_mutex_lock(&lock);
    int up = inits > 0;
    pthread_mutex_unlock(&lock);
    if (!up) return UNINITIALIZED;
    if (dev != &the_device) return INVALID_ARGUMENT;
    return figure[0] && unsupported(figure) ? NOT_SUPPORTED : SUCCESS;
}

EXPORT int nvmlInit_v2(void)
{
    if (env_set("MLPF_FAKE_NVML_INIT_FAIL")) return DRIVER_NOT_LOADED;
    pthread_mutex_lock(&lock);
    if (inits++ == 0) t_init = now_s();
    pthread_mutex_unlock(&lock);
    return SUCCESS;
}

EXPORT int nvmlShutdown(void)
{
    pthread_mutex_lock(&lock);
    int rc = inits > 0 ? (inits--, SUCCESS) : UNINITIALIZED;
    pthread_mutex_unlock(&lock);
    return rc;
}

EXPORT const char *nvmlErrorString(int rc)
{
    switch (rc) {
    case SUCCESS: return "Success";
    case UNINITIALIZED: return "Uninitialized";
    case INVALID_ARGUMENT: return "Invalid Argument";
    case NOT_SUPPORTED: return "Not Supported";
    case NOT_FOUND: return "Not Found";
    case DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

static int lookup(const char *id, void **dev, int by_bus)
{
    int rc = check(&the_device, "");
    if (rc != SUCCESS) return rc;
    if (!id || !dev) return INVALID_ARGUMENT;
    if (env_set("MLPF_FAKE_NVML_UNKNOWN") || (by_bus && env_set("MLPF_FAKE_NVML_BUS_UNKNOWN"))) return NOT_FOUND;
    *dev = &the_device;
    return SUCCESS;
}

EXPORT int nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, void **dev) { return lookup(bus_id, dev, 1); }
EXPORT int nvmlDeviceGetHandleByUUID(const char *uuid, void **dev) { return lookup(uuid, dev, 0); }

EXPORT int nvmlDeviceGetTotalEnergyConsumption(void *dev, unsigned long long *mj)
{
    int rc = check(dev, "energy");
    if (rc == SUCCESS && env_set("MLPF_FAKE_NVML_NO_ENERGY")) rc = NOT_SUPPORTED;
    if (rc != SUCCESS) return rc;
    pthread_mutex_lock(&lock);
    double t0 = t_init;
    pthread_mutex_unlock(&lock);
    *mj = (unsigned long long)(env_num("MLPF_FAKE_NVML_POWER_W", 300) * (now_s() - t0) * 1000.0);
    return SUCCESS;
}

EXPORT int nvmlDeviceGetPowerUsage(void *dev, unsigned int *mw)
{
    int rc = check(dev, "power");
    if (rc == SUCCESS) *mw = (unsigned int)(env_num("MLPF_FAKE_NVML_POWER_W", 300) * 1000.0 + 0.5);
    return rc;
}

EXPORT int nvmlDeviceGetEnforcedPowerLimit(void *dev, unsigned int *mw)
{
    int rc = check(dev, "limit");
    if (rc == SUCCESS) *mw = (unsigned int)(env_num("MLPF_FAKE_NVML_POWER_LIMIT_W", 700) * 1000.0 + 0.5);
    return rc;
}

EXPORT int nvmlDeviceGetClockInfo(void *dev, int type, unsigned int *mhz)
{
    int rc = check(dev, "clocks");
    if (rc != SUCCESS) return rc;
    if (type == 1) *mhz = (unsigned int)env_num("MLPF_FAKE_NVML_SM_MHZ", 1980);        /* NVML_CLOCK_SM */
    else if (type == 2) *mhz = (unsigned int)env_num("MLPF_FAKE_NVML_MEM_MHZ", 2619);  /* NVML_CLOCK_MEM */
    else return INVALID_ARGUMENT; /* graphics and video clocks: not asked for by mlpfbench */
    return SUCCESS;
}

EXPORT int nvmlDeviceGetTemperature(void *dev, int sensor, unsigned int *c)
{
    int rc = check(dev, "temperature");
    if (rc != SUCCESS) return rc;
    if (sensor != 0) return INVALID_ARGUMENT; /* NVML_TEMPERATURE_GPU */
    *c = (unsigned int)env_num("MLPF_FAKE_NVML_TEMPERATURE_C", 61);
    return SUCCESS;
}

EXPORT int nvmlDeviceGetUtilizationRates(void *dev, utilization *u)
{
    int rc = check(dev, "utilization");
    if (rc != SUCCESS) return rc;
    u->gpu = (unsigned int)env_num("MLPF_FAKE_NVML_UTIL_GPU", 97);
    u->memory = (unsigned int)env_num("MLPF_FAKE_NVML_UTIL_MEM", 41);
    return SUCCESS;
}

static int reasons(void *dev, unsigned long long *r)
{
    int rc = check(dev, "reasons");
    if (rc != SUCCESS) return rc;
    const char *v = getenv("MLPF_FAKE_NVML_REASONS");
    *r = v && v[0] ? strtoull(v, NULL, 0) : 0x4ULL;
    return SUCCESS;
}
EXPORT int nvmlDeviceGetCurrentClocksEventReasons(void *dev, unsigned long long *r) { return reasons(dev, r); }
EXPORT int nvmlDeviceGetCurrentClocksThrottleReasons(void *dev, unsigned long long *r) { return reasons(dev, r); }

EXPORT int nvmlDeviceGetMemoryInfo(void *dev, memory_info *m)
{
    int rc = check(dev, "memory");
    if (rc != SUCCESS) return rc;
    m->total = 144ULL << 30;
    m->used = (unsigned long long)(env_num("MLPF_FAKE_NVML_MEMORY_USED_MIB", 12345) * 1048576.0);
    m->free = m->total - m->used;
    return SUCCESS;
}
