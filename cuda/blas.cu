// cuda/blas.cuh
#include "blas.cuh"
#include "kernels.cuh"

void blas_init(blas_ctx &b, cudaStream_t s, gemm_precision p, void *workspace, size_t workspace_bytes)
{
    BLAS_CHECK(cublasCreate(&b.h));
    BLAS_CHECK(cublasSetStream(b.h, s));
    // a workspace of our own: cuBLAS allocates nothing inside a step
    BLAS_CHECK(cublasSetWorkspace(b.h, workspace, workspace_bytes));
    b.s = s;
    b.prec = p;
}

void blas_destroy(blas_ctx &b)
{
    if (b.h) cublasDestroy(b.h);
    b.h = nullptr;
}

static cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

// A bf16 operand for the product: the parameters' bf16 copy where the operand
// is a parameter, else a packed conversion into scratch `slot` (rows x cols
// of row stride ld, `count` of them `stride` apart; returns the new ld).
static const __nv_bfloat16 *as_bf16(blas_ctx &b, int slot, const float *x, int64_t rows, int64_t cols, int64_t &ld,
                                    int64_t &stride, int64_t count)
{
    if (x >= b.params && x < b.params + b.n_params) return b.params_bf16 + (x - b.params);
    const int64_t n = count == 1 ? rows * cols : count * stride;
    if (n > b.scratch_n) mlpf_cuda_throw("as_bf16", __FILE__, __LINE__, "bf16 operand larger than its scratch");
    if (count == 1) {
        launch_to_bf16(b.s, x, ld, rows, cols, b.scratch[slot]);
        ld = cols;
        stride = rows * cols;
    } else { /* batches are contiguous: convert them as one flat array, strides kept */
        launch_to_bf16(b.s, x, n, 1, n, b.scratch[slot]);
    }
    return b.scratch[slot];
}

static void gemm_any(blas_ctx &b, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C,
                     int64_t ldc, int64_t sC, int64_t count)
{
    if (M <= 0 || N <= 0 || count <= 0) return;
    const void *a = A, *bb = B;
    cudaDataType_t dt = CUDA_R_32F;
    cublasComputeType_t ct = b.prec == PREC_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    if (b.prec == PREC_BF16) {
        dt = CUDA_R_16BF;
        /* stored shapes: A is M x K (K x M when transposed), B is K x N (N x K) */
        a = as_bf16(b, 0, A, ta ? K : M, ta ? M : K, lda, sA, count);
        bb = as_bf16(b, 1, B, tb ? N : K, tb ? K : N, ldb, sB, count);
    }
    if (count == 1)
        BLAS_CHECK(cublasGemmEx(b.h, op(tb), op(ta), (int)N, (int)M, (int)K, &alpha, bb, dt, (int)ldb, a, dt,
                                (int)lda, &beta, C, CUDA_R_32F, (int)ldc, ct, CUBLAS_GEMM_DEFAULT));
    else
        BLAS_CHECK(cublasGemmStridedBatchedEx(b.h, op(tb), op(ta), (int)N, (int)M, (int)K, &alpha, bb, dt, (int)ldb,
                                              sB, a, dt, (int)lda, sA, &beta, C, CUDA_R_32F, (int)ldc, sC, (int)count,
                                              ct, CUBLAS_GEMM_DEFAULT));
}

void gemm(blas_ctx &b, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
          const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    gemm_any(b, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

void gemm_batched(blas_ctx &b, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc,
                  int64_t sC, int64_t count)
{
    gemm_any(b, ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, count);
}

void dgemm_batched(blas_ctx &b, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
                   int64_t lda, int64_t sA, const double *B, int64_t ldb, int64_t sB, double beta, double *C,
                   int64_t ldc, int64_t sC, int64_t count)
{
    if (M <= 0 || N <= 0 || count <= 0) return;
    BLAS_CHECK(cublasDgemmStridedBatched(b.h, op(tb), op(ta), (int)N, (int)M, (int)K, &alpha, B, (int)ldb, sB, A,
                                         (int)lda, sA, &beta, C, (int)ldc, sC, (int)count));
}
