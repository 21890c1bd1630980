/* What a GPU did during the run, measured through NVML (the NVIDIA
 * Management Library, which comes with the driver): a thread samples power,
 * the energy counter, clocks, temperature, utilisation, clock event
 * (throttle) reasons and memory use about 10 times a second. NVML is loaded
 * with dlopen on the first gpumon_start only: CPU runs never load it, and a
 * machine without it only loses these figures.
 *
 * Figures that no sample could read (NVML_ERROR_NOT_SUPPORTED, or a function
 * this NVML lacks) are NAN and named in `note`; throttle_reasons then has
 * GPUMON_REASONS_UNKNOWN set. */
#ifndef MLPF_GPUMON_H
#define MLPF_GPUMON_H

#include <stddef.h>
#include <stdint.h>

/* throttle_reasons: no sample could read the clock event reasons */
#define GPUMON_REASONS_UNKNOWN (1ULL << 63)

typedef struct {
    int sampled;              /* 1 when NVML answered for this GPU */
    char note[160];           /* why not, or caveats ("energy integrated from power: no energy counter") */
    int64_t samples;
    double seconds;           /* the sampled window */
    double energy_j;          /* in the window */
    int energy_counter;       /* 1: from nvmlDeviceGetTotalEnergyConsumption, 0: power integrated over the samples */
    double power_mean_w, power_max_w, power_limit_w;
    double sm_clock_mean_mhz, sm_clock_min_mhz, sm_clock_max_mhz, mem_clock_mean_mhz;
    double temperature_max_c;
    double util_gpu_mean, util_mem_mean; /* percent */
    unsigned long long throttle_reasons; /* OR of every sample's clock event reasons */
    double memory_used_max_mib;
} gpu_figures;

typedef struct gpumon gpumon;

/* Start sampling the GPU with this PCI bus id (as cudaDeviceGetPCIBusId
 * writes it, e.g. "0000:17:00.0"; fall back to the UUID when the bus id is
 * not found) at `hz` per second (<= 0: 10) in a thread. Loads NVML
 * (libnvidia-ml.so.1, or the file named by MLPF_NVML_LIBRARY) with dlopen on
 * this first use only. NULL with the reason in err when NVML is missing or
 * does not know the GPU (the run goes on without the figures). */
gpumon *gpumon_start(const char *pci_bus_id, const char *uuid, double hz, char *err, size_t n);
/* The window starts again now: what was sampled so far is dropped (call it
 * where the step figures start, after --warmup-steps, so that the energy and
 * the events counted cover the same steps). */
void gpumon_mark(gpumon *m);
/* Stop, join, fill out, free. */
void gpumon_stop(gpumon *m, gpu_figures *out);
/* Names of the set bits of throttle_reasons ("sw_power_cap", "hw_slowdown",
 * "sw_thermal", "hw_thermal", "hw_power_brake", "gpu_idle",
 * "applications_clocks", "sync_boost", "display_clocks", "0x..." for a bit
 * without a name), comma-separated, into buf; "none" when no bit is set,
 * "unknown" for GPUMON_REASONS_UNKNOWN alone. */
void gpumon_reason_names(unsigned long long reasons, char *buf, size_t n);

#endif
