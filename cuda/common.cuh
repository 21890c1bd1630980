// What every file of the CUDA backend includes: the CUDA headers (or, with
// MLPF_CUDA_HOST, the host execution path that runs the same source on the
// CPU for the tests: cuda/host/README.md), the launch macro, and checked
// calls. Every CUDA and cuBLAS call goes through CUDA_CHECK / BLAS_CHECK: a
// failure throws cuda_error naming the call, file:line and the device; the
// backend's entry points catch it and report it (rank and host are added by
// the caller's fatal error). An asynchronous kernel fault surfaces at the
// next checked call, which names itself and says that the fault came from
// earlier work; MLPF_CUDA_SYNC=1 synchronises after every launch to name the
// kernel itself.
#pragma once

#ifdef MLPF_CUDA_HOST
#include "host/cuda_host.h"
#else
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define MLPF_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define MLPF_DYN_SHARED(T, name) extern __shared__ T name[]
#endif

// A kernel launch of the backend, checked (see mlpf_after_launch).
#define KLAUNCH(kernel, grid, block, smem, stream, ...)                                       \
    do {                                                                                    \
        MLPF_LAUNCH(kernel, grid, block, smem, stream, __VA_ARGS__);                        \
        mlpf_after_launch(#kernel, __FILE__, __LINE__, (stream));                           \
    } while (0)

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

struct cuda_error : std::runtime_error {
    explicit cuda_error(const std::string &m) : std::runtime_error(m) {}
};

// The device this process works on, for messages.
extern int mlpf_cuda_device;
extern char mlpf_cuda_device_name[256];

[[noreturn]] void mlpf_cuda_throw(const char *what, const char *file, int line, const char *detail);

static inline void mlpf_cuda_check(cudaError_t e, const char *call, const char *file, int line)
{
    if (e == cudaSuccess) return;
    char d[256];
    snprintf(d, sizeof d, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    mlpf_cuda_throw(call, file, line, d);
}

static inline void mlpf_blas_check(cublasStatus_t s, const char *call, const char *file, int line)
{
    if (s == CUBLAS_STATUS_SUCCESS) return;
    char d[128];
    snprintf(d, sizeof d, "cuBLAS status %d (%s)", (int)s, cublasGetStatusString(s));
    mlpf_cuda_throw(call, file, line, d);
}

#define CUDA_CHECK(call) mlpf_cuda_check((call), #call, __FILE__, __LINE__)
#define BLAS_CHECK(call) mlpf_blas_check((call), #call, __FILE__, __LINE__)

// After a launch: a bad configuration is an error at once; with
// MLPF_CUDA_SYNC set, a fault of this kernel is caught and named here.
void mlpf_after_launch(const char *kernel, const char *file, int line, cudaStream_t s);

static inline unsigned blocks_for(int64_t n, int per_block) { return (unsigned)((n + per_block - 1) / per_block); }
