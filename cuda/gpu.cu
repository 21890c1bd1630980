// Device discovery and the cuBLAS matrix-product rate: the mlpf_cuda_* entry
// points of libmlpf_cuda.so, which src/gpu.c loads on first use (include/gpu.h).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstring>

extern "C" {
#include "gpu.h"
}

static int cuda_fail(cudaError_t e, const char *what, char *err, size_t n)
{
    snprintf(err, n, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return -1;
}

extern "C" int mlpf_cuda_device_count(char *err, size_t n)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return cuda_fail(e, "no usable CUDA device", err, n);
    if (count == 0) {
        snprintf(err, n, "no CUDA device is visible (CUDA_VISIBLE_DEVICES=%s)",
                 getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "(unset)");
        return -1;
    }
    return count;
}

extern "C" int mlpf_cuda_describe(int dev, gpu_info *out, char *err, size_t n)
{
    memset(out, 0, sizeof *out);
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, dev);
    if (e != cudaSuccess) return cuda_fail(e, "cudaGetDeviceProperties", err, n);
    snprintf(out->name, sizeof out->name, "%s", p.name);
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    out->multiprocessors = p.multiProcessorCount;
    out->total_mib = p.totalGlobalMem / 1048576.0;
    cudaDriverGetVersion(&out->driver_version);
    cudaRuntimeGetVersion(&out->runtime_version);
    size_t fr = 0, tot = 0;
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaMemGetInfo(&fr, &tot)) != cudaSuccess)
        return cuda_fail(e, "cudaMemGetInfo", err, n);
    out->free_mib = fr / 1048576.0;
    return 0;
}

extern "C" double mlpf_cuda_gemm_rate(int dev, const char *precision, int M, int N, int K, double seconds,
                                char *err, size_t n)
{
    const bool bf16 = !strcmp(precision, "bf16"), tf32 = !strcmp(precision, "tf32");
    if (!bf16 && !tf32 && strcmp(precision, "fp32")) {
        snprintf(err, n, "precision must be fp32, tf32 or bf16, got '%s'", precision);
        return -1;
    }
    cudaError_t e = cudaSetDevice(dev);
    if (e != cudaSuccess) return cuda_fail(e, "cudaSetDevice", err, n);
    const size_t es = bf16 ? 2 : 4;
    void *A = nullptr, *B = nullptr;
    float *C = nullptr;
    if ((e = cudaMalloc(&A, es * M * K)) != cudaSuccess || (e = cudaMalloc(&B, es * K * N)) != cudaSuccess ||
        (e = cudaMalloc((void **)&C, sizeof(float) * M * N)) != cudaSuccess) {
        cudaFree(A);
        cudaFree(B);
        return cuda_fail(e, "cudaMalloc", err, n);
    }
    cudaMemset(A, 0, es * M * K);
    cudaMemset(B, 0, es * K * N);
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, n, "cublasCreate failed");
        cudaFree(A), cudaFree(B), cudaFree(C);
        return -1;
    }
    const cudaDataType_t dt = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1.0f, zero = 0.0f;
    // row-major C = A B is column-major C^T = B^T A^T: swap the operands
    auto run = [&]() {
        return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, B, dt, N, A, dt, K, &zero, C,
                            CUDA_R_32F, N, ct, CUBLAS_GEMM_DEFAULT);
    };
    double best = -1.0;
    cublasStatus_t st = run();
    if (st == CUBLAS_STATUS_SUCCESS && cudaDeviceSynchronize() == cudaSuccess) {
        auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        best = 0.0;
        while (std::chrono::steady_clock::now() < end) {
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < 10; i++) run();
            cudaDeviceSynchronize();
            double dt_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            double r = 10.0 * 2.0 * M * N * K / dt_s;
            if (r > best) best = r;
        }
    } else {
        snprintf(err, n, "cublasGemmEx (%s) failed: status %d", precision, (int)st);
    }
    cublasDestroy(h);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    return best;
}
