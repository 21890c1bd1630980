// The entry points of libmlpf_cuda.so, which cuda/gpu.c loads on first use:
// device discovery (include/gpu.h), the cuBLAS rate at the model's shapes
// (gemm-bench --device cuda), and the CUDA backend behind include/backend.h
// (cuda/model.cuh does the work; this file turns its exceptions into the
// contract's error reports).
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include "comm.cuh"
#include "model.cuh"

extern "C" {
#include "gpu.h"
}

int mlpf_cuda_device = 0;
char mlpf_cuda_device_name[256] = "";

void mlpf_cuda_throw(const char *what, const char *file, int line, const char *detail)
{
    char m[900];
    const char *base = strrchr(file, '/');
    snprintf(m, sizeof m, "CUDA: %s failed at %s:%d on GPU %d (%s): %s", what, base ? base + 1 : file, line,
             mlpf_cuda_device, mlpf_cuda_device_name, detail);
    throw cuda_error(m);
}

void mlpf_after_launch(const char *kernel, const char *file, int line, cudaStream_t s)
{
    static const bool sync = getenv("MLPF_CUDA_SYNC") && strcmp(getenv("MLPF_CUDA_SYNC"), "0");
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && sync) e = cudaStreamSynchronize(s);
    if (e == cudaSuccess) return;
    char d[300];
    snprintf(d, sizeof d, "%s (%s)%s", cudaGetErrorString(e), cudaGetErrorName(e),
             sync ? "" : "; run with MLPF_CUDA_SYNC=1 to name the kernel that faulted, if an earlier one did");
    mlpf_cuda_throw(kernel, file, line, d);
}

// ------------------------------------------------------------ discovery

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
    const unsigned char *u = (const unsigned char *)p.uuid.bytes;
    snprintf(out->uuid, sizeof out->uuid,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4],
             u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    if (cudaDeviceGetPCIBusId(out->pci_bus_id, (int)sizeof out->pci_bus_id, dev) != cudaSuccess) {
        out->pci_bus_id[0] = '\0';
        (void)cudaGetLastError(); /* not an error of anything that follows */
    }
    cudaDriverGetVersion(&out->driver_version);
    cudaRuntimeGetVersion(&out->runtime_version);
    size_t fr = 0, tot = 0;
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaMemGetInfo(&fr, &tot)) != cudaSuccess)
        return cuda_fail(e, "cudaMemGetInfo", err, n);
    out->free_mib = fr / 1048576.0;
    return 0;
}

extern "C" double mlpf_cuda_gemm_rate(int dev, const char *precision, int M, int N, int K, double seconds, char *err,
                                      size_t n)
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
    if ((e = cudaMemset(A, 0, es * M * K)) != cudaSuccess || (e = cudaMemset(B, 0, es * K * N)) != cudaSuccess) {
        cudaFree(A), cudaFree(B), cudaFree(C);
        return cuda_fail(e, "cudaMemset", err, n);
    }
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
        return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, B, dt, N, A, dt, K, &zero, C, CUDA_R_32F, N,
                            ct, CUBLAS_GEMM_DEFAULT);
    };
    double best = -1.0;
    cublasStatus_t st = run();
    if (st == CUBLAS_STATUS_SUCCESS && cudaDeviceSynchronize() == cudaSuccess) {
        auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        best = 0.0;
        while (std::chrono::steady_clock::now() < end) {
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < 10 && st == CUBLAS_STATUS_SUCCESS; i++) st = run();
            if (st != CUBLAS_STATUS_SUCCESS || (e = cudaDeviceSynchronize()) != cudaSuccess) {
                if (st != CUBLAS_STATUS_SUCCESS) snprintf(err, n, "cublasGemmEx (%s) failed: status %d", precision, (int)st);
                else cuda_fail(e, "cudaDeviceSynchronize after cublasGemmEx", err, n);
                best = -1.0;
                break;
            }
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

// ------------------------------------------------------------ the backend

namespace {

struct cuda_impl {
    dev_model m;
    dev_comm *comm = nullptr; // the gradient all-reduce, once comm_init ran
    std::string error;        // the first failure; the run ends with it at finish()
};

cuda_impl *impl(const backend *be) { return static_cast<cuda_impl *>(be->impl); }

// Run an operation of the model; a failure is kept (sticky, as a CUDA fault
// is) and later work is skipped. Returns 0 or -1.
template <class F> int guarded(backend *be, F &&f)
{
    cuda_impl *c = impl(be);
    if (!c->error.empty()) return -1;
    try {
        CUDA_CHECK(cudaSetDevice(mlpf_cuda_device));
        f(c->m);
        return 0;
    } catch (const std::exception &e) {
        c->error = e.what();
        snprintf(be->error, sizeof be->error, "%s", e.what());
        return -1;
    }
}

void op_destroy(backend *be)
{
    cuda_impl *c = impl(be);
    if (!c) return;
    try {
        c->m.comm = nullptr;
        comm_destroy(c->comm);
        c->comm = nullptr;
        dev_destroy(c->m);
    } catch (...) {
    }
    delete c;
    be->impl = nullptr;
}

double op_bytes_for(const backend *be, int64_t rows, int64_t bins, int64_t events)
{
    return dev_bytes_for(impl(be)->m, rows, bins, events);
}

double op_bytes_free(const backend *be)
{
    (void)be;
    size_t fr = 0, tot = 0;
    return cudaMemGetInfo(&fr, &tot) == cudaSuccess ? (double)fr : -1.0;
}

int op_reserve(backend *be, int64_t rows, int64_t bins, int64_t events)
{
    return guarded(be, [&](dev_model &m) { dev_reserve(m, rows, bins, events); });
}

int op_forward(backend *be, const mlpf_batch *b, int64_t n_global, loss_report *r)
{
    memset(r, 0, sizeof *r);
    r->pending = 1;
    return guarded(be, [&](dev_model &m) { dev_forward(m, *b, n_global); });
}

void op_backward(backend *be)
{
    impl(be)->m.ready = be->grad_ready;
    impl(be)->m.ready_ctx = be->grad_ready_ctx;
    guarded(be, [&](dev_model &m) { dev_backward(m); });
}

void op_zero_grad(backend *be)
{
    guarded(be, [&](dev_model &m) {
        if (impl(be)->comm) comm_begin(*impl(be)->comm);
        dev_zero_grad(m);
    });
}

int op_check_grads(backend *be)
{
    guarded(be, [&](dev_model &m) { dev_check_grads(m); });
    return BACKEND_PENDING;
}

void op_optimizer_step(backend *be) { guarded(be, [&](dev_model &m) { dev_adam(m); }); }

int op_finish(backend *be, loss_report *r, int *bad)
{
    if (guarded(be, [&](dev_model &m) { dev_finish(m, r, bad); }) == 0) return 0;
    snprintf(be->error, sizeof be->error, "%s", impl(be)->error.c_str());
    return -1;
}

// the state, copied after the work in flight, on the compute stream (not
// with cudaMemcpy: the legacy default stream does not order with it)
void copy_state(backend *be, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    guarded(be, [&](dev_model &m) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, m.cs));
        CUDA_CHECK(cudaStreamSynchronize(m.cs));
    });
}

size_t state_bytes(const backend *be) { return be->layout.total * sizeof(float); }

void op_get_params(backend *be, float *out) { copy_state(be, out, impl(be)->m.P, state_bytes(be), cudaMemcpyDeviceToHost); }
void op_get_grads(backend *be, float *out) { copy_state(be, out, impl(be)->m.G, state_bytes(be), cudaMemcpyDeviceToHost); }

void op_set_params(backend *be, const float *in)
{
    copy_state(be, impl(be)->m.P, in, state_bytes(be), cudaMemcpyHostToDevice);
    guarded(be, [&](dev_model &m) { /* and the bf16 copy the products read */
        if (m.Pb) launch_to_bf16(m.cs, m.P, m.n, 1, m.n, m.Pb);
    });
}

void op_get_adam(backend *be, float *mo, float *v, int64_t *step)
{
    copy_state(be, mo, impl(be)->m.M, state_bytes(be), cudaMemcpyDeviceToHost);
    copy_state(be, v, impl(be)->m.V, state_bytes(be), cudaMemcpyDeviceToHost);
    *step = impl(be)->m.adam_step;
}

void op_set_adam(backend *be, const float *mo, const float *v, int64_t step)
{
    copy_state(be, impl(be)->m.M, mo, state_bytes(be), cudaMemcpyHostToDevice);
    copy_state(be, impl(be)->m.V, v, state_bytes(be), cudaMemcpyHostToDevice);
    impl(be)->m.adam_step = step;
}

void op_get_hashes(backend *be, int layer, int *out)
{
    dev_model &m = impl(be)->m;
    const int64_t rows = m.cur >= 0 ? m.slots[m.cur].rows : 0;
    copy_state(be, out, m.gl[layer].hash, sizeof(int) * rows, cudaMemcpyDeviceToHost);
}

void op_force_hashes(backend *be, const int *const *per_layer) { impl(be)->m.forced = per_layer; }
size_t op_activation_bytes(const backend *be) { return impl(be)->m.arena_bytes; }
void op_time_by_kind(backend *be, double out[PROF_N]) { memcpy(out, impl(be)->m.kind_s, sizeof(double) * PROF_N); }
void op_phase_seconds(backend *be, double out[3]) { memcpy(out, impl(be)->m.phase_s, sizeof(double) * 3); }

int op_set_precision(backend *be, const char *prec)
{
    dev_model &m = impl(be)->m;
    if (!prec) prec = be->precision;
    if (strcmp(prec, "fp32") && strcmp(prec, be->precision)) {
        snprintf(be->error, sizeof be->error, "the backend made for %s can switch to fp32 only", be->precision);
        return -1;
    }
    m.blas.prec = !strcmp(prec, "fp32") ? PREC_FP32 : m.prec;
    return 0;
}

int op_stage(backend *be, const mlpf_batch *b)
{
    return guarded(be, [&](dev_model &m) { dev_stage(m, *b); });
}

int op_comm_id(backend *be, void *id, size_t cap)
{
    size_t len = 0;
    if (guarded(be, [&](dev_model &) { len = comm_make_id(id, cap); }) != 0) return -1;
    return (int)len;
}

int op_comm_init(backend *be, const comm_opts *o)
{
    return guarded(be, [&](dev_model &m) {
        impl(be)->comm = comm_create(*o, m.G, (size_t)m.n, m.cs);
        m.comm = impl(be)->comm;
    });
}

void op_comm_reduce(backend *be)
{
    guarded(be, [&](dev_model &) {
        if (impl(be)->comm) comm_finish(*impl(be)->comm);
    });
}

void op_comm_stats(backend *be, allreduce_stats *out)
{
    *out = allreduce_stats{};
    guarded(be, [&](dev_model &) {
        if (impl(be)->comm) comm_get_stats(*impl(be)->comm, out);
    });
}

// From the run guard's thread: no cudaSetDevice, no sticky error state.
int op_comm_error(backend *be, char *why, size_t n)
{
    cuda_impl *c = impl(be);
    if (!c || !c->comm) return 0;
    try {
        return comm_failed(*c->comm, why, n);
    } catch (const std::exception &e) {
        snprintf(why, n, "%s", e.what());
        return 1;
    }
}

void op_comm_abort(backend *be)
{
    cuda_impl *c = impl(be);
    if (!c || !c->comm) return;
    try {
        comm_abort(*c->comm);
    } catch (...) {
    }
}

const backend_ops CUDA_OPS = {
    op_destroy,     op_bytes_for,     op_bytes_free,       op_reserve,     op_forward,      op_backward,
    op_zero_grad,   op_check_grads,   op_optimizer_step,   op_finish,      op_get_params,   op_set_params,
    op_get_grads,   op_get_adam,      op_set_adam,         op_get_hashes,  op_force_hashes, op_activation_bytes,
    op_time_by_kind, op_phase_seconds, op_stage, op_set_precision, op_comm_id, op_comm_init, op_comm_reduce,
    op_comm_stats, op_comm_error, op_comm_abort,
};

} // namespace

extern "C" int mlpf_cuda_backend_init(backend *be, const backend_opts *o, const float *params, const float *lsh,
                                      char *err, size_t n)
{
    gemm_precision p = !strcmp(be->precision, "fp32") ? PREC_FP32 : (!strcmp(be->precision, "bf16") ? PREC_BF16 : PREC_TF32);
    cudaDeviceProp prop;
    cudaError_t e;
    if ((e = cudaSetDevice(o->gpu)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, o->gpu)) != cudaSuccess)
        return cuda_fail(e, "the CUDA device", err, n);
    mlpf_cuda_device = o->gpu;
    snprintf(mlpf_cuda_device_name, sizeof mlpf_cuda_device_name, "%s", prop.name);
    snprintf(be->description, sizeof be->description, "%.180s (GPU %d, sm_%d%d, %d SMs, %.0f GiB)", prop.name, o->gpu,
             prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
    const unsigned char *u = (const unsigned char *)prop.uuid.bytes;
    snprintf(be->gpu_uuid, sizeof be->gpu_uuid,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4],
             u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    if (cudaDeviceGetPCIBusId(be->gpu_pci, (int)sizeof be->gpu_pci, o->gpu) != cudaSuccess) be->gpu_pci[0] = '\0';
#ifdef MLPF_CUDA_HOST
    be->emulated = 1;
#endif
    cuda_impl *c = new cuda_impl();
    try {
        dev_create(c->m, be->cfg, params, lsh, p);
    } catch (const std::exception &ex) {
        snprintf(err, n, "%s", ex.what());
        try {
            dev_destroy(c->m);
        } catch (...) {
        }
        delete c;
        return -1;
    }
    be->impl = c;
    be->ops = &CUDA_OPS;
    be->grads_host = nullptr;
    return 0;
}

// ------------------------------------------------------------ allreduce-bench --device cuda

extern "C" int mlpf_cuda_nccl_id(int dev, void *id, size_t cap, char *err, size_t n)
{
    try {
        CUDA_CHECK(cudaSetDevice(dev));
        return (int)comm_make_id(id, cap);
    } catch (const std::exception &e) {
        snprintf(err, n, "%s", e.what());
        return -1;
    }
}

// The values of the check: small integers, whose sum over the ranks is exact in float.
static float bench_value(size_t i, int rank) { return (float)((i % 61) + 3 * rank); }

extern "C" int mlpf_cuda_allreduce_bench(int dev, const comm_opts *o, const size_t *counts, int n_sizes, int iters,
                                         double *seconds, long long *wrong, char *err, size_t n)
{
    float *G = nullptr;
    cudaStream_t cs = nullptr;
    dev_comm *c = nullptr;
    int rc = 0;
    try {
        CUDA_CHECK(cudaSetDevice(dev));
        mlpf_cuda_device = dev;
        size_t max_count = 1;
        for (int k = 0; k < n_sizes; k++) max_count = counts[k] > max_count ? counts[k] : max_count;
        CUDA_CHECK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
        CUDA_CHECK(cudaMalloc((void **)&G, sizeof(float) * max_count));
        std::vector<float> host(max_count), back(max_count);
        for (size_t i = 0; i < max_count; i++) host[i] = bench_value(i, o->rank);
        c = comm_create(*o, G, max_count, cs);
        const MPI_Comm mc = *static_cast<const MPI_Comm *>(o->mpi_comm);
        for (int k = 0; k < n_sizes; k++) {
            const size_t count = counts[k];
            comm_set_buffer(*c, G, count);
            double t = 0;
            wrong[k] = 0;
            for (int it = -2; it < iters; it++) {
                CUDA_CHECK(cudaMemcpyAsync(G, host.data(), sizeof(float) * count, cudaMemcpyHostToDevice, cs));
                CUDA_CHECK(cudaStreamSynchronize(cs));
                MPI_Barrier(mc);
                auto t0 = std::chrono::steady_clock::now();
                comm_begin(*c);
                comm_finish(*c);
                CUDA_CHECK(cudaStreamSynchronize(cs));
                const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                if (it >= 0) t += dt;
                CUDA_CHECK(cudaMemcpyAsync(back.data(), G, sizeof(float) * count, cudaMemcpyDeviceToHost, cs));
                CUDA_CHECK(cudaStreamSynchronize(cs));
                for (size_t i = 0; i < count; i++) {
                    float want = 0.0f;
                    for (int r = 0; r < o->size; r++) want += bench_value(i, r);
                    wrong[k] += back[i] != want;
                }
            }
            seconds[k] = t / iters;
        }
    } catch (const std::exception &e) {
        snprintf(err, n, "%s", e.what());
        rc = -1;
    }
    try {
        comm_destroy(c);
    } catch (...) {
    }
    if (G) cudaFree(G);
    if (cs) cudaStreamDestroy(cs);
    return rc;
}
