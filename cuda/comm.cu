// The gradient all-reduce on the GPU: see comm.cuh.
#include "comm.cuh"

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#ifndef MLPF_CUDA_HOST
#include <dlfcn.h>
#endif

#include <sched.h>

namespace {

double now_s()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------- NCCL, loaded on first use

struct nccl_api {
    decltype(&ncclGetUniqueId) get_unique_id = nullptr;
    decltype(&ncclCommInitRankConfig) init = nullptr;
    decltype(&ncclCommGetAsyncError) async_error = nullptr;
    decltype(&ncclAllReduce) all_reduce = nullptr;
    decltype(&ncclCommAbort) abort = nullptr;
    decltype(&ncclCommFinalize) finalize = nullptr;
    decltype(&ncclCommDestroy) destroy = nullptr;
    decltype(&ncclGetErrorString) error_string = nullptr;
    decltype(&ncclGetVersion) version = nullptr;
    std::string why; // why it is not there
};

nccl_api load_nccl()
{
    nccl_api a;
#ifdef MLPF_CUDA_HOST
    // the tests' stand-in over MPI (cuda/host/stand_ins.cpp), linked in
    a.get_unique_id = &ncclGetUniqueId, a.init = &ncclCommInitRankConfig, a.async_error = &ncclCommGetAsyncError;
    a.all_reduce = &ncclAllReduce, a.abort = &ncclCommAbort, a.finalize = &ncclCommFinalize;
    a.destroy = &ncclCommDestroy, a.error_string = &ncclGetErrorString, a.version = &ncclGetVersion;
#else
    const char *env = getenv("MLPF_NCCL_LIBRARY");
    const char *name = env && *env ? env : "libnccl.so.2";
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        a.why = std::string("cannot load NCCL (") + name + "): " + dlerror() +
                "; set MLPF_NCCL_LIBRARY to its path, or use --allreduce mpi";
        return a;
    }
    auto sym = [&](auto &f, const char *s) { *(void **)&f = dlsym(h, s); };
    sym(a.get_unique_id, "ncclGetUniqueId"), sym(a.init, "ncclCommInitRankConfig");
    sym(a.async_error, "ncclCommGetAsyncError"), sym(a.all_reduce, "ncclAllReduce");
    sym(a.abort, "ncclCommAbort"), sym(a.finalize, "ncclCommFinalize"), sym(a.destroy, "ncclCommDestroy");
    sym(a.error_string, "ncclGetErrorString"), sym(a.version, "ncclGetVersion");
    if (!a.get_unique_id || !a.init || !a.async_error || !a.all_reduce || !a.abort || !a.finalize || !a.destroy ||
        !a.error_string || !a.version) {
        a.why = std::string(name) + " lacks the NCCL functions this build needs (NCCL 2.14 or later: "
                                    "non-blocking communicators)";
        a.get_unique_id = nullptr;
    }
#endif
    return a;
}

const nccl_api &nccl()
{
    static std::once_flag once;
    static nccl_api api;
    std::call_once(once, [] { api = load_nccl(); });
    if (!api.get_unique_id) mlpf_cuda_throw("loading NCCL", __FILE__, __LINE__, api.why.c_str());
    return api;
}

#define NCCL_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)
void nccl_check(ncclResult_t r, const char *call, const char *file, int line)
{
    if (r == ncclSuccess || r == ncclInProgress) return;
    char d[300];
    snprintf(d, sizeof d, "NCCL error %d: %s", (int)r, nccl().error_string(r));
    mlpf_cuda_throw(call, file, line, d);
}

} // namespace

// ---------------------------------------------------------------- the communicator

struct dev_comm {
    bool use_nccl = true;
    MPI_Comm mpi = MPI_COMM_NULL;
    float *G = nullptr;
    size_t n = 0, bucket = 1;
    int n_buckets = 0, next = 0;
    cudaStream_t cs = nullptr, s = nullptr; // compute, communication
    // device timing: the first bucket's start (communication stream), the end
    // of backward (compute stream, at comm_finish), the end of the last
    // bucket (communication stream, its sums back in G)
    cudaEvent_t first = nullptr, fin = nullptr, done = nullptr;
    bool timing_pending = false;
    int timed = 0; // buckets of the step whose figures are pending
    // nccl
    ncclComm_t nc = nullptr;
    std::atomic<bool> aborted{false};
    std::mutex abort_mu;
    // mpi staging
    float *pin = nullptr;
    size_t cap = 0; // floats of pin
    std::vector<cudaEvent_t> staged;
    std::vector<cudaEvent_t> b0, b1; // nccl: each bucket's start and end on the communication stream
    std::vector<MPI_Request> req;
    int n_started = 0; // buckets whose MPI_Iallreduce is started (in bucket order)
    allreduce_stats st{};
};

namespace {

// Every call on the communicator holds abort_mu: the run guard's thread asks
// for its asynchronous error and may abort it (which frees it) while the
// main thread works with it; NCCL wants one thread at a time on it.
template <class F> ncclResult_t on_comm(dev_comm &c, const char *what, F &&f)
{
    std::lock_guard<std::mutex> lk(c.abort_mu);
    if (c.aborted) mlpf_cuda_throw(what, __FILE__, __LINE__, "the NCCL communicator was aborted");
    return f();
}

// Wait until a non-blocking NCCL call has completed (the communicator's state
// leaves ncclInProgress); `limit` seconds at most (0: none; the run guard
// watches the step anyway).
void nccl_settle(dev_comm &c, const char *what, double limit)
{
    const double t0 = now_s();
    for (;;) {
        ncclResult_t st = ncclSuccess;
        NCCL_CHECK(on_comm(c, what, [&] { return nccl().async_error(c.nc, &st); }));
        if (st == ncclSuccess) return;
        if (st != ncclInProgress) {
            char d[300];
            snprintf(d, sizeof d, "NCCL error %d: %s", (int)st, nccl().error_string(st));
            mlpf_cuda_throw(what, __FILE__, __LINE__, d);
        }
        if (limit > 0 && now_s() - t0 > limit) {
            comm_abort(c);
            char d[200];
            snprintf(d, sizeof d, "not complete after %.0f s: a rank did not join (the communicator was aborted)", limit);
            mlpf_cuda_throw(what, __FILE__, __LINE__, d);
        }
        sched_yield();
    }
}

void launch_bucket(dev_comm &c, int j)
{
    const size_t a = bucket_start(c.n, c.bucket, j), e = bucket_end(c.n, c.bucket, j);
    if (c.use_nccl) {
        CUDA_CHECK(cudaEventRecord(c.b0[j], c.s));
        NCCL_CHECK(on_comm(c, "ncclAllReduce",
                           [&] { return nccl().all_reduce(c.G + a, c.G + a, e - a, ncclFloat, ncclSum, c.nc, c.s); }));
        nccl_settle(c, "ncclAllReduce", 0);
        CUDA_CHECK(cudaEventRecord(c.b1[j], c.s));
    } else {
        CUDA_CHECK(cudaMemcpyAsync(c.pin + a, c.G + a, sizeof(float) * (e - a), cudaMemcpyDeviceToHost, c.s));
        CUDA_CHECK(cudaEventRecord(c.staged[j], c.s));
    }
}

// mpi: start, in bucket order, the reductions whose copies are done (wait:
// block for them), and progress the ones in flight.
void mpi_progress(dev_comm &c, bool wait)
{
    while (c.n_started < c.next) {
        const int j = c.n_started;
        cudaError_t e = wait ? cudaEventSynchronize(c.staged[j]) : cudaEventQuery(c.staged[j]);
        if (e == cudaErrorNotReady) break;
        CUDA_CHECK(e);
        const size_t a = bucket_start(c.n, c.bucket, j), end = bucket_end(c.n, c.bucket, j);
        MPI_Iallreduce(MPI_IN_PLACE, c.pin + a, (int)(end - a), MPI_FLOAT, MPI_SUM, c.mpi, &c.req[j]);
        c.n_started++;
    }
    if (c.n_started > 0) {
        int flag = 0;
        MPI_Testall(c.n_started, c.req.data(), &flag, MPI_STATUSES_IGNORE);
    }
}

void launch_upto(dev_comm &c, size_t watermark, cudaEvent_t ev)
{
    if (c.next >= c.n_buckets || bucket_start(c.n, c.bucket, c.next) < watermark) return;
    CUDA_CHECK(cudaStreamWaitEvent(c.s, ev, 0)); // the stretch is final on the device
    if (c.next == 0) CUDA_CHECK(cudaEventRecord(c.first, c.s));
    while (c.next < c.n_buckets && bucket_start(c.n, c.bucket, c.next) >= watermark) launch_bucket(c, c.next++);
}

} // namespace

size_t comm_make_id(void *id, size_t cap)
{
    ncclUniqueId u;
    if (cap < sizeof u) mlpf_cuda_throw("ncclGetUniqueId", __FILE__, __LINE__, "id buffer too small");
    NCCL_CHECK(nccl().get_unique_id(&u));
    memcpy(id, &u, sizeof u);
    return sizeof u;
}

dev_comm *comm_create(const comm_opts &o, float *G, size_t n, cudaStream_t compute)
{
    dev_comm *c = new dev_comm();
    try {
        c->use_nccl = !strcmp(o.transport, "nccl");
        MPI_Comm_dup(*static_cast<const MPI_Comm *>(o.mpi_comm), &c->mpi); // its own: no mix with the step's collectives
        c->G = G, c->n = n, c->cs = compute;
        c->bucket = bucket_floats(o.bucket_bytes);
        c->n_buckets = bucket_count(n, c->bucket);
        CUDA_CHECK(cudaStreamCreateWithFlags(&c->s, cudaStreamNonBlocking));
        for (cudaEvent_t *e : {&c->first, &c->fin, &c->done}) CUDA_CHECK(cudaEventCreate(e));
        if (c->use_nccl) {
            ncclUniqueId id;
            memcpy(&id, o.nccl_id, sizeof id);
            ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
            cfg.blocking = 0; // a dead peer must not hang a call: ncclCommGetAsyncError tells
            NCCL_CHECK(on_comm(*c, "ncclCommInitRankConfig", [&] { return nccl().init(&c->nc, o.size, id, o.rank, &cfg); }));
            nccl_settle(*c, "ncclCommInitRankConfig", o.init_timeout_s);
        } else {
            CUDA_CHECK(cudaMallocHost((void **)&c->pin, sizeof(float) * (n ? n : 1)));
            c->cap = n;
        }
        comm_set_buffer(*c, G, n);
    } catch (...) {
        comm_destroy(c);
        throw;
    }
    return c;
}

void comm_set_buffer(dev_comm &c, float *G, size_t n)
{
    if (!c.use_nccl && n > c.cap) mlpf_cuda_throw("comm_set_buffer", __FILE__, __LINE__, "larger than the staging buffer");
    c.G = G, c.n = n;
    c.n_buckets = bucket_count(n, c.bucket);
    c.next = c.n_started = 0;
    if (c.use_nccl) {
        while ((int)c.b0.size() < c.n_buckets) {
            cudaEvent_t e0, e1;
            CUDA_CHECK(cudaEventCreate(&e0));
            CUDA_CHECK(cudaEventCreate(&e1));
            c.b0.push_back(e0), c.b1.push_back(e1);
        }
        return;
    }
    while ((int)c.staged.size() < c.n_buckets) {
        cudaEvent_t e;
        CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        c.staged.push_back(e);
    }
    c.req.assign(c.n_buckets > 0 ? c.n_buckets : 1, MPI_REQUEST_NULL);
}

void comm_destroy(dev_comm *c)
{
    if (!c) return;
    char why[300];
    if (comm_failed(*c, why, sizeof why)) comm_abort(*c); // a failed communicator's kernels never end
    if (c->s) { // the communication stream's work, 10 s at most: then a peer is gone
        const double t0 = now_s();
        while (cudaStreamQuery(c->s) == cudaErrorNotReady && now_s() - t0 < 10) sched_yield();
        if (cudaStreamQuery(c->s) == cudaErrorNotReady) comm_abort(*c);
        cudaStreamSynchronize(c->s);
    }
    if (c->nc) {
        std::unique_lock<std::mutex> lk(c->abort_mu);
        if (!c->aborted) {
            const nccl_api &a = nccl();
            a.finalize(c->nc); // non-blocking: settles in the background, 10 s at most here
            ncclResult_t st = ncclInProgress;
            const double t0 = now_s();
            while (a.async_error(c->nc, &st) == ncclSuccess && st == ncclInProgress && now_s() - t0 < 10) sched_yield();
            if (st == ncclSuccess) a.destroy(c->nc);
            else a.abort(c->nc);
            c->aborted = true;
        }
        c->nc = nullptr;
    }
    for (auto &e : c->staged) cudaEventDestroy(e);
    for (auto *v : {&c->b0, &c->b1})
        for (auto &e : *v) cudaEventDestroy(e);
    for (cudaEvent_t e : {c->fin, c->first, c->done})
        if (e) cudaEventDestroy(e);
    if (c->pin) cudaFreeHost(c->pin);
    if (c->mpi != MPI_COMM_NULL) MPI_Comm_free(&c->mpi);
    if (c->s) cudaStreamDestroy(c->s);
    delete c;
}

// The device time of the last step's all-reduce: with NCCL the buckets' own
// time (each one's start to end on the communication stream, without the
// gaps where the stream waits for backward), with staging the span from the
// first bucket's copy to the last one's sums back in G (an upper bound: it
// holds the waits for backward too); and the part after backward ended,
// which the optimizer step waited for (exposed). So "hidden" = 1 - exposed /
// that time is the share of the all-reduce's work done during backward.
// Once the events are done (after the step's finish).
static void collect(dev_comm &c)
{
    if (!c.timing_pending || cudaEventQuery(c.done) != cudaSuccess || cudaEventQuery(c.fin) != cudaSuccess) return;
    float total = 0, exposed = 0;
    if (c.use_nccl) {
        for (int j = 0; j < c.timed; j++) {
            float ms = 0;
            CUDA_CHECK(cudaEventElapsedTime(&ms, c.b0[j], c.b1[j]));
            total += ms > 0 ? ms : 0;
        }
    } else {
        CUDA_CHECK(cudaEventElapsedTime(&total, c.first, c.done));
    }
    CUDA_CHECK(cudaEventElapsedTime(&exposed, c.fin, c.done));
    c.st.total_s += (total > 0 ? total : 0) * 1e-3;
    c.st.exposed_s += (exposed > 0 ? exposed : 0) * 1e-3;
    c.timing_pending = false;
}

void comm_begin(dev_comm &c)
{
    collect(c);
    c.next = 0;
    c.n_started = 0;
}

void comm_ready(dev_comm &c, size_t watermark, cudaEvent_t ev)
{
    launch_upto(c, watermark, ev);
    if (!c.use_nccl) mpi_progress(c, false);
}

void comm_finish(dev_comm &c)
{
    CUDA_CHECK(cudaEventRecord(c.fin, c.cs));
    launch_upto(c, 0, c.fin);
    if (!c.use_nccl) { // the host waits for the reductions, then the sums go back
        mpi_progress(c, true);
        MPI_Waitall(c.n_started, c.req.data(), MPI_STATUSES_IGNORE);
        for (int j = 0; j < c.n_buckets; j++) {
            const size_t a = bucket_start(c.n, c.bucket, j), e = bucket_end(c.n, c.bucket, j);
            CUDA_CHECK(cudaMemcpyAsync(c.G + a, c.pin + a, sizeof(float) * (e - a), cudaMemcpyHostToDevice, c.s));
        }
    }
    CUDA_CHECK(cudaEventRecord(c.done, c.s));
    CUDA_CHECK(cudaStreamWaitEvent(c.cs, c.done, 0)); // the optimizer waits for the last bucket
    c.timing_pending = c.n_buckets > 0;
    c.timed = c.n_buckets;
    c.st.bytes += (int64_t)(c.n * sizeof(float));
    c.st.buckets += c.n_buckets;
    c.st.steps++;
}

void comm_get_stats(dev_comm &c, allreduce_stats *out)
{
    collect(c);
    *out = c.st;
}

int comm_failed(dev_comm &c, char *why, size_t n)
{
    std::lock_guard<std::mutex> lk(c.abort_mu);
    if (!c.use_nccl || !c.nc) return 0;
    if (c.aborted) {
        snprintf(why, n, "the NCCL communicator was aborted");
        return 1;
    }
    ncclResult_t st = ncclSuccess;
    ncclResult_t r = nccl().async_error(c.nc, &st);
    if (r != ncclSuccess) st = r;
    if (st == ncclSuccess || st == ncclInProgress) return 0;
    snprintf(why, n, "NCCL reports error %d (%s) on the gradient all-reduce's communicator", (int)st,
             nccl().error_string(st));
    return 1;
}

void comm_abort(dev_comm &c)
{
    std::lock_guard<std::mutex> lk(c.abort_mu);
    if (!c.use_nccl || !c.nc || c.aborted.exchange(true)) return;
    nccl().abort(c.nc); // frees the kernels waiting for a peer; the communicator is gone
}
