// Matrix products of the CUDA backend through cuBLAS, called with the CPU
// backend's row-major conventions (layers.h's gemm): C (M x N, ldc) =
// alpha op(A) op(B) + beta C. Row-major C = op(A) op(B) is column-major
// C^T = op(B)^T op(A)^T, so cuBLAS gets the operands swapped.
//
// Precision: fp32 (fp32 products), tf32 (fp32 data, TF32 tensor cores), bf16
// (bf16 operands, fp32 accumulation and output: the parameters' bf16 copy for
// weights, activations converted into scratch just before the product).
#pragma once

#include "common.cuh"

enum gemm_precision { PREC_FP32, PREC_TF32, PREC_BF16 };

struct blas_ctx {
    cublasHandle_t h = nullptr;
    cudaStream_t s = nullptr;
    gemm_precision prec = PREC_TF32;
    // bf16: operand scratch (two buffers of scratch_n values) and the
    // parameters' bf16 copy, found by address
    __nv_bfloat16 *scratch[2] = {nullptr, nullptr};
    int64_t scratch_n = 0;
    const float *params = nullptr;
    const __nv_bfloat16 *params_bf16 = nullptr;
    int64_t n_params = 0;
};

void blas_init(blas_ctx &b, cudaStream_t s, gemm_precision p, void *workspace, size_t workspace_bytes);
void blas_destroy(blas_ctx &b);
void gemm(blas_ctx &b, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
          const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
// the same for `count` products of A + i sA, B + i sB, C + i sC (elements),
// each operand's batch contiguous (sA = rows x lda, ...)
void gemm_batched(blas_ctx &b, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc,
                  int64_t sC, int64_t count);
// float64 products (the kernel distances), whatever the precision
void dgemm_batched(blas_ctx &b, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
                   int64_t lda, int64_t sA, const double *B, int64_t ldb, int64_t sB, double beta, double *C,
                   int64_t ldc, int64_t sC, int64_t count);
