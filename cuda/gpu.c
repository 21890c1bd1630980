/* include/gpu.h: the CUDA code lives in a shared library (libmlpf_cuda.so,
 * built from cuda/ when nvcc is found) next to the mlpfbench executable, and
 * is loaded only when a GPU function is first called, so that the CPU
 * commands (and the shard probe processes) never load the CUDA runtime and
 * cuBLAS (~0.1 s per process start). */
#include "gpu.h"

#include "backend.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct {
    int (*count)(char *, size_t);
    int (*describe)(int, gpu_info *, char *, size_t);
    double (*gemm_rate)(int, const char *, int, int, int, double, char *, size_t);
    int (*backend_init)(backend *, const backend_opts *, const float *, const float *, char *, size_t);
    int (*nccl_id)(int, void *, size_t, char *, size_t);
    int (*allreduce_bench)(int, const comm_opts *, const size_t *, int, int, double *, long long *, char *, size_t);
    char why[4400];
} lib;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    char path[4200], self[4000];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(path, sizeof path, "%s/libmlpf_cuda.so", n > 0 ? self : ".");
    if (access(path, R_OK) != 0) {
        snprintf(lib.why, sizeof lib.why, "this mlpfbench was built without CUDA (no nvcc found at build "
                 "time: %.3000s is missing)", path);
        return;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(lib.why, sizeof lib.why, "cannot load the CUDA part %.3000s: %.1000s", path, dlerror());
        return;
    }
    *(void **)&lib.count = dlsym(h, "mlpf_cuda_device_count");
    *(void **)&lib.describe = dlsym(h, "mlpf_cuda_describe");
    *(void **)&lib.gemm_rate = dlsym(h, "mlpf_cuda_gemm_rate");
    *(void **)&lib.backend_init = dlsym(h, "mlpf_cuda_backend_init");
    *(void **)&lib.nccl_id = dlsym(h, "mlpf_cuda_nccl_id");
    *(void **)&lib.allreduce_bench = dlsym(h, "mlpf_cuda_allreduce_bench");
    if (!lib.count || !lib.describe || !lib.gemm_rate || !lib.backend_init || !lib.nccl_id || !lib.allreduce_bench) {
        snprintf(lib.why, sizeof lib.why, "%.3000s lacks the mlpf_cuda_* functions (stale build?)", path);
        lib.count = NULL;
    }
}

static int loaded(char *err, size_t n)
{
    pthread_once(&once, load);
    if (lib.count) return 1;
    snprintf(err, n, "%.4000s", lib.why);
    return 0;
}

int gpu_device_count(char *err, size_t n) { return loaded(err, n) ? lib.count(err, n) : -1; }

int gpu_describe(int dev, gpu_info *out, char *err, size_t n)
{
    return loaded(err, n) ? lib.describe(dev, out, err, n) : -1;
}

double gpu_gemm_rate(int dev, const char *precision, int M, int N, int K, double seconds, char *err, size_t n)
{
    return loaded(err, n) ? lib.gemm_rate(dev, precision, M, N, K, seconds, err, n) : -1.0;
}

int cuda_backend_init(backend *be, const backend_opts *o, const float *params, const float *lsh, char *err,
                      size_t n)
{
    return loaded(err, n) ? lib.backend_init(be, o, params, lsh, err, n) : -1;
}

int gpu_nccl_id(int dev, void *id, size_t cap, char *err, size_t n)
{
    return loaded(err, n) ? lib.nccl_id(dev, id, cap, err, n) : -1;
}

int gpu_allreduce_bench(int dev, const comm_opts *o, const size_t *counts, int n_sizes, int iters, double *seconds,
                        long long *wrong, char *err, size_t n)
{
    return loaded(err, n) ? lib.allreduce_bench(dev, o, counts, n_sizes, iters, seconds, wrong, err, n) : -1;
}
