/* The GPU side (issue 7), as far as it is built: device discovery and the
 * cuBLAS matrix-product rate at the model's shapes. Compiled from cuda/ when
 * the Makefile finds nvcc (MLPF_HAVE_CUDA); without it every call says that
 * this build has no CUDA backend. The training backend on the GPU is not
 * written yet: `train --device cuda` refuses clearly. */
#ifndef MLPF_GPU_H
#define MLPF_GPU_H

#include <stddef.h>

#include "backend.h"

typedef struct {
    char name[256];
    int cc_major, cc_minor, multiprocessors;
    double total_mib, free_mib;
    int driver_version, runtime_version; /* e.g. 13000 for 13.0 */
    char uuid[64];                       /* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi -L writes it */
    char pci_bus_id[32];                 /* "0000:17:00.0" (cudaDeviceGetPCIBusId); empty when unknown */
} gpu_info;

/* Devices visible to this process (CUDA_VISIBLE_DEVICES applies); -1 with the
 * reason in err when none can be used (no driver, no device, no CUDA build). */
int gpu_device_count(char *err, size_t errlen);
/* Describe device `dev`; 0, or -1 with the reason in err. */
int gpu_describe(int dev, gpu_info *out, char *err, size_t errlen);
/* Best cuBLAS rate (FLOP/s) of C = A B, row-major M x N x K, in `precision`
 * (fp32, tf32: fp32 data with TF32 tensor cores, bf16: bf16 data with fp32
 * accumulation), timed for `seconds`; -1 with the reason in err. */
double gpu_gemm_rate(int dev, const char *precision, int M, int N, int K, double seconds, char *err,
                     size_t errlen);

/* allreduce-bench --device cuda: rank 0 makes NCCL's unique id (its length,
 * or -1 with the reason), then every rank times the GPU gradient all-reduce
 * (cuda/comm.cu, transport o->transport, o->bucket_bytes buckets) at each of
 * n_sizes counts of floats: seconds per all-reduce (mean of `iters`, after 2
 * warm-up ones) and the elements that differ from the exact sum. Collective.
 * 0, or -1 with the reason in err. */
int gpu_nccl_id(int dev, void *id, size_t cap, char *err, size_t n);
int gpu_allreduce_bench(int dev, const comm_opts *o, const size_t *counts, int n_sizes, int iters, double *seconds,
                        long long *wrong, char *err, size_t n);

#endif
