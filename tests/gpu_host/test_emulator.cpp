// Tests of the CUDA host execution path (cuda/host/): small CUDA kernels and
// runtime / cuBLAS calls, compiled through the host path as the backend's
// kernels are, each asserting something that would fail if the emulation of
// the CUDA model were wrong. One line per check, then "N passed, N failed".
// Built and run by tests/gpu_host/build_emulator_test.sh.
#ifndef MLPF_CUDA_HOST
#error "compile with -DMLPF_CUDA_HOST -include cuda/host/cuda_host.h"
#endif
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <random>
#include <set>
#include <string>
#include <vector>

// ---- harness -------------------------------------------------------------------
static int n_pass, n_fail;
static std::string fmt(const char *f, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}
static void check(bool ok, const std::string &name, const std::string &detail = "")
{
    if (ok)
        n_pass++, printf("ok   %s\n", name.c_str());
    else
        n_fail++, printf("FAIL %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
    fflush(stdout);
}
static const char *kOrders[] = {"forward", "reverse", "shuffle"};
static void set_order(const char *o) { setenv("MLPF_HOST_ORDER", o, 1); }

template <class T>
static T *dev(size_t n)
{
    void *p = nullptr;
    cudaMalloc(&p, n * sizeof(T));
    return static_cast<T *>(p);
}
template <class T>
static void put(T *d, const std::vector<T> &h)
{
    cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
}
template <class T>
static std::vector<T> get(const T *d, size_t n)
{
    std::vector<T> h(n);
    cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
}
static bool has(const std::string &s, const char *needle) { return s.find(needle) != std::string::npos; }

// Runs `launch` on a fresh device, expects the next synchronisation to report
// a launch failure whose message holds every needle.
static void expect_fault(const std::string &name, const std::function<void()> &launch,
                         std::initializer_list<const char *> needles)
{
    cudaDeviceReset();
    launch();
    const cudaError_t e = cudaDeviceSynchronize();
    const std::string msg = mlpf_host::last_fault();
    bool ok = e == cudaErrorLaunchFailure;
    for (const char *n : needles) ok = ok && has(msg, n);
    check(ok, name, fmt("synchronize returned %s, message '%s'", cudaGetErrorName(e), msg.c_str()));
    cudaDeviceReset();
}

// Blocks 0 and 1 wait (up to 5 s) until a second block has started: they can
// only go on if two blocks run at the same time, on two OS threads.
static void meet_another_block(int *started)
{
    atomicAdd(started, 1);
    if (blockIdx.x >= 2) return;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (atomicAdd(started, 0) < 2 && std::chrono::steady_clock::now() < until) {
    }
}

// ---- kernels -----------------------------------------------------------------
// Tree reduction in dynamic shared memory; without Barrier the barrier between
// the loads and the first step is missing.
template <bool Barrier>
__global__ void block_sum(const int *in, int *out)
{
    MLPF_DYN_SHARED(int, s);
    const unsigned t = threadIdx.x;
    s[t] = in[blockIdx.x * blockDim.x + t];
    if (Barrier) __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h) s[t] += s[t + h];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}
__global__ void exits_before_barrier(int *flag)
{
    if (threadIdx.x > 5) return;
    __syncthreads();
    flag[0] = 1;
}
__global__ void set_flag(int *flag) { flag[0] = 1; }
__global__ void lane0_at_barrier(float *x)
{
    if ((threadIdx.x & 31) == 0)
        __syncthreads();
    else
        x[threadIdx.x] = __shfl_sync(0xffffffffu, x[threadIdx.x], 0);
}
template <class T>
__global__ void shuffles(const T *in, T *out, int width, int delta, int src)
{
    const int t = threadIdx.x, n = blockDim.x;
    const T v = in[t];
    out[t] = __shfl_sync(0xffffffffu, v, src, width);
    out[n + t] = __shfl_up_sync(0xffffffffu, v, delta, width);
    out[2 * n + t] = __shfl_down_sync(0xffffffffu, v, delta, width);
    out[3 * n + t] = __shfl_xor_sync(0xffffffffu, v, delta, width);
}
__global__ void warp_sum(const float *in, float *out)
{
    float v = in[blockIdx.x * blockDim.x + threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) out[(blockIdx.x * blockDim.x + threadIdx.x) / 32] = v;
}
__global__ void votes(const int *pred, const int *key, unsigned *out)
{
    const int t = threadIdx.x, n = blockDim.x, p = pred[t];
    out[t] = __ballot_sync(0xffffffffu, p);
    out[n + t] = __any_sync(0xffffffffu, p);
    out[2 * n + t] = __all_sync(0xffffffffu, p);
    out[3 * n + t] = __match_any_sync(0xffffffffu, key[t]);
    int all = -1;
    out[4 * n + t] = __match_all_sync(0xffffffffu, (long long)(key[t] / 100), &all);
    out[5 * n + t] = all;
    out[6 * n + t] = __syncthreads_count(p);
    out[7 * n + t] = __syncthreads_or(p);
    out[8 * n + t] = __syncthreads_and(p);
    out[9 * n + t] = (__activemask() >> (t & 31)) & 1u;
}
__global__ void shfl_after_exit(float *x)
{
    if (threadIdx.x == 3) return;
    x[threadIdx.x] = __shfl_sync(0xffffffffu, x[threadIdx.x], 0);
}
__global__ void shfl_mask_without_self(float *x) { x[threadIdx.x] = __shfl_sync(0xfffffffeu, x[threadIdx.x], 1); }
__global__ void mixed_votes(int *x)
{
    const int t = threadIdx.x;
    x[t] = (t & 1) ? __any_sync(0xffffffffu, t) : (int)__ballot_sync(0xffffffffu, t);
}
__global__ void shfl_bad_width(float *x) { x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 1, 12); }
__global__ void shfl_full_mask(float *x) { x[threadIdx.x] = __shfl_down_sync(0xffffffffu, x[threadIdx.x], 1); }
static const int kHammer = 1 << 19;
__global__ void atomics(int *isum, unsigned long long *usum, float *fsum, double *dsum, int *imax, unsigned *umin,
                        int *cas_count, int *started, int *os_thread)
{
    if (threadIdx.x == 0) {
        meet_another_block(started);
        os_thread[blockIdx.x] = omp_get_thread_num();
        if (blockIdx.x < 2)  // long enough for the two OS threads to overlap on a busy machine
            for (int r = 0; r < kHammer; r++) atomicAdd(isum, 1), atomicAdd(fsum, 1.0f);
    }
    __syncthreads();
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    for (int r = 0; r < 16; r++) {
        atomicAdd(isum, 1);
        atomicAdd(usum, 3ull);
        atomicAdd(fsum, 1.0f);
        atomicAdd(dsum, 0.25);
    }
    atomicMax(imax, g);
    atomicMin(umin, (unsigned)g + 5);
    int old = atomicAdd(cas_count, 0);
    for (;;) {  // an increment built from compare-and-swap
        const int prev = atomicCAS(cas_count, old, old + 1);
        if (prev == old) break;
        old = prev;
    }
}
__global__ void shared_private(int *bad, int *started, int rounds)
{
    __shared__ int owner;
    __shared__ int slot[128];
    const int t = threadIdx.x, n = blockDim.x, b = blockIdx.x;
    if (t == 0) meet_another_block(started);
    for (int r = 0; r < rounds; r++) {
        if (t == 0) owner = b * 1000 + r;
        slot[t] = b * 100000 + r * 128 + t;
        __syncthreads();
        if (owner != b * 1000 + r || slot[(t + 1) % n] != b * 100000 + r * 128 + (t + 1) % n) atomicAdd(bad, 1);
        __syncthreads();
    }
}
__global__ void dyn_poison(unsigned *before, float *after)
{
    MLPF_DYN_SHARED(float, s);
    const int t = threadIdx.x, n = blockDim.x, b = blockIdx.x;
    before[b * n + t] = __float_as_uint(s[t]);
    s[t] = (float)(b * n + t);
    __syncthreads();
    after[b * n + t] = s[n - 1 - t];
}
__global__ void write_at(float *p, int i)
{
    if (threadIdx.x == 0) p[i] = 1.0f;
}
__global__ void read_dyn_at(float *out, int i)
{
    MLPF_DYN_SHARED(float, s);
    if (threadIdx.x == 0) out[0] = s[i];
}
__global__ void scale2(const float *in, float *out, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = 2.0f * in[i];
}
__global__ void sleepy(int ms)
{
    if (threadIdx.x == 0) usleep(ms * 1000);
}
__global__ void arrival(int *counter, int *seq) { seq[atomicAdd(counter, 1)] = threadIdx.x; }
__global__ void coverage(int *hits, unsigned *ballots)
{
    const unsigned tpb = blockDim.x * blockDim.y * blockDim.z;
    const unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const unsigned b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    atomicAdd(&hits[b * tpb + t], 1);
    const unsigned v = __ballot_sync(0xffffffffu, threadIdx.y & 1);
    if (t % 32 == 0) ballots[b * (tpb / 32) + t / 32] = v;
}
__global__ void touch(int *flag)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) flag[0] += 1;
}
__global__ void big_smem(float *out, int n)
{
    MLPF_DYN_SHARED(float, s);
    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = (float)i;
    __syncthreads();
    if (threadIdx.x == 0) out[0] = s[n - 1];
}
__global__ void axpy(float *y, const float *x, float a, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += a * x[i];
}

// ---- child processes for the crash checks -----------------------------------
static int crash_child(const char *what)
{
    float *p = dev<float>(100);
    if (!strcmp(what, "overrun"))
        MLPF_LAUNCH(write_at, 1, 32, 0, 0, p, 100);
    else if (!strcmp(what, "inbounds"))
        MLPF_LAUNCH(write_at, 1, 32, 0, 0, p, 99);
    else if (!strcmp(what, "freed")) {
        cudaFree(p);
        MLPF_LAUNCH(write_at, 1, 32, 0, 0, p, 0);
    } else if (!strcmp(what, "dynsmem")) {
        MLPF_LAUNCH(read_dyn_at, 1, 32, 64 * sizeof(float), 0, p, 64);
    } else if (!strcmp(what, "hostread")) {
        cudaDeviceSynchronize();
        return (int)*(volatile float *)p;  // host code reading device memory
    }
    return cudaDeviceSynchronize() == cudaSuccess ? 0 : 3;
}
// Runs this program as "--crash WHAT"; its wait status and stderr.
static int run_child(const char *what, std::string &err)
{
    int fd[2];
    if (pipe(fd)) return -1;
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        execl("/proc/self/exe", "test_emulator", "--crash", what, (char *)nullptr);
        _exit(127);
    }
    close(fd[1]);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd[0], buf, sizeof buf)) > 0) err.append(buf, (size_t)n);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

// ---- execution model -----------------------------------------------------------
static void test_reductions()
{
    const int blocks = 8, threads = 256;
    std::mt19937 rng(1);
    std::vector<int> in(blocks * threads), want(blocks, 0);
    for (int i = 0; i < blocks * threads; i++) in[i] = (int)(rng() % 2001) - 1000, want[i / threads] += in[i];
    std::vector<const char *> caught;
    for (const char *o : kOrders) {
        cudaDeviceReset();
        set_order(o);
        int *d_in = dev<int>(in.size()), *d_out = dev<int>(blocks);
        put(d_in, in);
        MLPF_LAUNCH(block_sum<true>, blocks, threads, threads * sizeof(int), 0, d_in, d_out);
        check(get(d_out, blocks) == want, fmt("tree reduction with __syncthreads is exact (%s order)", o));
        MLPF_LAUNCH(block_sum<false>, blocks, threads, threads * sizeof(int), 0, d_in, d_out);
        const bool wrong = get(d_out, blocks) != want;
        if (cudaDeviceSynchronize() == cudaSuccess && wrong) caught.push_back(o);
    }
    std::string which;
    for (const char *o : caught) which += std::string(which.empty() ? "" : ", ") + o;
    check(!caught.empty(),
          fmt("the same reduction missing one __syncthreads is wrong in at least one order (wrong in: %s)",
              which.empty() ? "none" : which.c_str()));
    set_order("forward");
}

static void test_barrier_faults()
{
    for (const char *o : kOrders) {
        set_order(o);
        expect_fault(fmt("'if (threadIdx.x > 5) return; __syncthreads();' is barrier divergence (%s order)", o),
                     [] { MLPF_LAUNCH(exits_before_barrier, 1, 64, 0, 0, dev<int>(1)); },
                     {"kernel 'exits_before_barrier'", "block (0,0,0)", "thread (", "barrier divergence"});
    }
    set_order("forward");

    // Sticky, as an asynchronous fault is on a GPU: every later call reports it, nothing more runs.
    cudaDeviceReset();
    int *flag = nullptr;
    cudaMallocHost((void **)&flag, sizeof(int));
    *flag = 0;
    int *d = dev<int>(1);
    const cudaError_t launch_e = (MLPF_LAUNCH(exits_before_barrier, 1, 64, 0, 0, d), cudaGetLastError());
    const cudaError_t sync_e = cudaDeviceSynchronize();
    const cudaError_t last1 = cudaGetLastError(), last2 = cudaGetLastError(), peek = cudaPeekAtLastError();
    int host = 0;
    const cudaError_t copy_e = cudaMemcpy(&host, d, sizeof host, cudaMemcpyDeviceToHost);
    MLPF_LAUNCH(set_flag, 1, 1, 0, 0, flag);
    const cudaError_t sync2 = cudaStreamSynchronize(0);
    check(launch_e == cudaSuccess && sync_e == cudaErrorLaunchFailure && last1 == cudaErrorLaunchFailure &&
              last2 == cudaErrorLaunchFailure && peek == cudaErrorLaunchFailure && copy_e == cudaErrorLaunchFailure &&
              sync2 == cudaErrorLaunchFailure && *flag == 0,
          "the fault is sticky: launch succeeds, every later call returns cudaErrorLaunchFailure, later work does not "
          "run",
          fmt("launch %s sync %s last %s/%s peek %s memcpy %s sync %s flag %d", cudaGetErrorName(launch_e),
              cudaGetErrorName(sync_e), cudaGetErrorName(last1), cudaGetErrorName(last2), cudaGetErrorName(peek),
              cudaGetErrorName(copy_e), cudaGetErrorName(sync2), *flag));
    cudaDeviceReset();
    check(cudaGetLastError() == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess,
          "cudaDeviceReset clears the sticky error");

    expect_fault("a lane waiting in __shfl_sync for a lane at __syncthreads is reported as a deadlock",
                 [] { MLPF_LAUNCH(lane0_at_barrier, 1, 32, 0, 0, dev<float>(32)); },
                 {"kernel 'lane0_at_barrier'", "deadlock", "waits at __syncthreads"});
}

template <class T>
static bool shuffle_case(int width, int delta, int src, std::mt19937 &rng, std::string &why)
{
    const int n = 64;
    std::vector<T> in(n);
    for (auto &v : in) v = (T)(int)(rng() % 100000) - (T)50000 + (T)0.25 * (T)(rng() % 4);
    T *d_in = dev<T>(n), *d_out = dev<T>(4 * n);
    put(d_in, in);
    MLPF_LAUNCH(shuffles<T>, 1, n, 0, 0, d_in, d_out, width, delta, src);
    const std::vector<T> got = get(d_out, 4 * n);
    cudaFree(d_in), cudaFree(d_out);
    for (int t = 0; t < n; t++) {
        const int lane = t % 32, warp0 = t - lane, seg = lane / width * width, off = lane - seg;
        const T want[4] = {in[warp0 + seg + ((src % width) + width) % width], off >= delta ? in[t - delta] : in[t],
                           off + delta < width ? in[t + delta] : in[t],
                           (lane ^ delta) < seg + width ? in[warp0 + (lane ^ delta)] : in[t]};
        for (int k = 0; k < 4; k++)
            if (memcmp(&got[k * n + t], &want[k], sizeof(T))) {
                static const char *names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
                why = fmt("width %d delta %d src %d: %s of thread %d", width, delta, src, names[k], t);
                return false;
            }
    }
    return true;
}
template <class T>
static void test_shuffle_type(const char *type)
{
    std::mt19937 rng(7);
    std::string why;
    bool ok = true;
    for (int width : {32, 16, 8, 4, 1})
        for (int delta : {1, 3, 8, 16})
            for (int src : {0, 5, -1, 37})
                if (ok) ok = shuffle_case<T>(width, delta, src, rng, why);
    check(ok, fmt("__shfl_sync, _up, _down, _xor (widths 32..1) on %s match plain loops", type), why);
}

static void test_warp()
{
    cudaDeviceReset();
    test_shuffle_type<int>("int");
    test_shuffle_type<unsigned>("unsigned");
    test_shuffle_type<long long>("long long");
    test_shuffle_type<unsigned long long>("unsigned long long");
    test_shuffle_type<float>("float");
    test_shuffle_type<double>("double");

    {  // a warp reduction with __shfl_down_sync
        std::vector<float> in(256);
        for (int i = 0; i < 256; i++) in[i] = (float)(i % 17) - 8.0f;
        float *d_in = dev<float>(256), *d_out = dev<float>(8);
        put(d_in, in);
        MLPF_LAUNCH(warp_sum, 2, 128, 0, 0, d_in, d_out);
        std::vector<float> got = get(d_out, 8);
        bool ok = true;
        for (int w = 0; w < 8; w++) {
            float s = 0;
            for (int l = 0; l < 32; l++) s += in[w * 32 + l];
            ok = ok && got[w] == s;
        }
        check(ok, "a __shfl_down_sync warp reduction gives each warp's sum");
    }

    std::mt19937 rng(3);
    for (int pattern = 0; pattern < 2; pattern++) {
        const int n = 64;
        std::vector<int> pred(n), key(n);
        for (int t = 0; t < n; t++) {
            pred[t] = pattern == 1 || t >= 32 ? 1 : (int)(rng() % 3 == 0) * (int)(rng() % 5 + 1);
            key[t] = t < 32 ? (int)(rng() % 3) : (t * 37) % 300;
        }
        int *d_pred = dev<int>(n), *d_key = dev<int>(n);
        unsigned *d_out = dev<unsigned>(10 * n);
        put(d_pred, pred);
        put(d_key, key);
        MLPF_LAUNCH(votes, 1, n, 0, 0, d_pred, d_key, d_out);
        const std::vector<unsigned> got = get(d_out, 10 * n);
        bool ok = true;
        std::string why;
        int count = 0;
        for (int t = 0; t < n; t++) count += pred[t] != 0;
        for (int t = 0; t < n && ok; t++) {
            const int w0 = t / 32 * 32;
            unsigned ballot = 0, same = 0;
            bool all_same = true;
            for (int l = 0; l < 32; l++) {
                if (pred[w0 + l]) ballot |= 1u << l;
                if (key[w0 + l] == key[t]) same |= 1u << l;
                if (key[w0 + l] / 100 != key[w0] / 100) all_same = false;
            }
            const unsigned want[10] = {ballot,
                                       ballot != 0,
                                       ballot == 0xffffffffu,
                                       same,
                                       all_same ? 0xffffffffu : 0u,
                                       all_same,
                                       (unsigned)count,
                                       count > 0,
                                       count == n,
                                       1u};
            for (int k = 0; k < 10 && ok; k++)
                if (got[k * n + t] != want[k])
                    ok = false, why = fmt("result %d of thread %d: %u, want %u", k, t, got[k * n + t], want[k]);
        }
        check(ok,
              fmt("ballot, any, all, match_any, match_all, __syncthreads_count/or/and match plain loops (pattern %d)",
                  pattern),
              why);
    }

    expect_fault("a shuffle whose mask names an exited lane is an error",
                 [] { MLPF_LAUNCH(shfl_after_exit, 1, 32, 0, 0, dev<float>(32)); },
                 {"kernel 'shfl_after_exit'", "__shfl_sync", "exited"});
    expect_fault("a shuffle whose mask leaves out the calling lane is an error",
                 [] { MLPF_LAUNCH(shfl_mask_without_self, 1, 32, 0, 0, dev<float>(32)); },
                 {"thread (0,0,0)", "does not name the calling lane 0"});
    for (const char *o : {"forward", "reverse"}) {
        set_order(o);
        expect_fault(fmt("lanes meeting in different warp collectives are an error (%s order)", o),
                     [] { MLPF_LAUNCH(mixed_votes, 1, 32, 0, 0, dev<int>(32)); }, {"mismatched warp collective"});
    }
    set_order("forward");
    expect_fault("a shuffle width that is not a power of two is an error",
                 [] { MLPF_LAUNCH(shfl_bad_width, 1, 32, 0, 0, dev<float>(32)); }, {"width 12"});
    expect_fault("a full mask in the partial last warp of a 48-thread block names lanes that do not exist",
                 [] { MLPF_LAUNCH(shfl_full_mask, 1, 48, 0, 0, dev<float>(48)); },
                 {"block (0,0,0) thread (32,0,0)", "does not exist"});
}

static void test_atomics_and_shared()
{
    cudaDeviceReset();
    setenv("MLPF_HOST_THREADS", "4", 1);
    const int blocks = 64, threads = 128;
    int *isum = dev<int>(1), *imax = dev<int>(1), *cas = dev<int>(1), *started = dev<int>(1), *who = dev<int>(blocks);
    unsigned long long *usum = dev<unsigned long long>(1);
    float *fsum = dev<float>(1);
    double *dsum = dev<double>(1);
    unsigned *umin = dev<unsigned>(1);
    for (int *p : {isum, cas, started}) cudaMemset(p, 0, sizeof(int));
    cudaMemset(usum, 0, sizeof *usum);
    cudaMemset(fsum, 0, sizeof *fsum);
    cudaMemset(dsum, 0, sizeof *dsum);
    put(imax, std::vector<int>{-1});
    put(umin, std::vector<unsigned>{~0u});
    MLPF_LAUNCH(atomics, blocks, threads, 0, 0, isum, usum, fsum, dsum, imax, umin, cas, started, who);
    const int total = blocks * threads;
    const int gi = get(isum, 1)[0], gm = get(imax, 1)[0], gc = get(cas, 1)[0];
    const unsigned long long gu = get(usum, 1)[0];
    const float gf = get(fsum, 1)[0];
    const double gd = get(dsum, 1)[0];
    const unsigned gmin = get(umin, 1)[0];
    const std::vector<int> w = get(who, blocks);
    const std::set<int> os(w.begin(), w.end());
    check(os.size() >= 2, "blocks run at the same time on several OS threads",
          fmt("%zu distinct OS threads", os.size()));
    check(gi == 16 * total + 2 * kHammer && gu == 48ull * total && gc == total,
          "atomicAdd (int, unsigned long long) and an atomicCAS loop from 64 blocks on 4 OS threads are exact",
          fmt("int %d, ull %llu, cas %d", gi, gu, gc));
    check(gf == 16.0f * total + 2.0f * kHammer && gd == 4.0 * total,
          "atomicAdd of floats and doubles from every block is exact", fmt("float %.1f double %.2f", gf, gd));
    check(gm == total - 1 && gmin == 5, "atomicMax and atomicMin", fmt("max %d min %u", gm, gmin));

    int *bad = dev<int>(1), *started2 = dev<int>(1);
    cudaMemset(bad, 0, 4);
    cudaMemset(started2, 0, 4);
    MLPF_LAUNCH(shared_private, 32, 128, 0, 0, bad, started2, 200);
    const int gb = get(bad, 1)[0];
    check(gb == 0, "two blocks running at once never see each other's __shared__ variables", fmt("%d bad reads", gb));
    unsetenv("MLPF_HOST_THREADS");
}

static void test_poison_and_guards()
{
    cudaDeviceReset();
    setenv("MLPF_HOST_THREADS", "1", 1);  // the blocks follow one another on one OS thread
    const int n = 64, blocks = 3;
    unsigned *before = dev<unsigned>(n * blocks);
    float *after = dev<float>(n * blocks);
    MLPF_LAUNCH(dyn_poison, blocks, n, n * sizeof(float), 0, before, after);
    const std::vector<unsigned> b = get(before, n * blocks);
    const std::vector<float> a = get(after, n * blocks);
    bool poisoned = true, right = true;
    for (int i = 0; i < n * blocks; i++) {
        poisoned = poisoned && b[i] == 0xffffffffu && std::isnan(__uint_as_float(b[i]));
        right = right && a[i] == (float)(i / n * n + (n - 1 - i % n));
    }
    check(poisoned,
          "dynamic shared memory reads NaN before it is written, in every block (poisoned at each block start)");
    check(right, "dynamic shared memory holds what the block wrote after __syncthreads");
    unsetenv("MLPF_HOST_THREADS");

    float *fresh = dev<float>(1000);
    const std::vector<float> f = get(fresh, 1000);
    bool nan = true;
    for (float v : f) nan = nan && std::isnan(v) && __float_as_uint(v) == 0xffffffffu;
    check(nan, "cudaMalloc memory is not zeroed: all 0xFF bytes (NaN) before the first write");

    struct {
        const char *what, *name, *says;
    } crashes[] = {{"overrun", "a kernel writing one element past a cudaMalloc'd buffer faults at once",
                    "in kernel 'write_at' block (0,0,0) thread (0,0,0): byte 400 of the 400-byte cudaMalloc buffer"},
                   {"freed", "a kernel writing a cudaFree'd buffer faults at once", "inside the freed 400-byte buffer"},
                   {"dynsmem", "reading one element past the launch's dynamic shared memory faults at once",
                    "byte 256 of the launch's 256 bytes of dynamic shared memory"},
                   {"hostread", "host code reading device memory through a device pointer faults",
                    "in host code (outside any kernel): byte 0 of the 400-byte cudaMalloc buffer"}};
    for (auto &c : crashes) {
        std::string err;
        const int st = run_child(c.what, err);
        check(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV && has(err, "memory fault") && has(err, c.says), c.name,
              fmt("status 0x%x, stderr '%s'", st, err.c_str()));
    }
    std::string err;
    const int st = run_child("inbounds", err);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the same kernel writing the last element runs normally (control)",
          fmt("status 0x%x, stderr '%s'", st, err.c_str()));
}

// ---- streams --------------------------------------------------------------------
static void test_streams()
{
    cudaDeviceReset();
    const int n = 1000;
    float *in = dev<float>(n), *out = dev<float>(n), *pin = nullptr;
    cudaMallocHost((void **)&pin, n * sizeof(float));
    cudaStream_t copy_s, comp_s;
    cudaStreamCreate(&copy_s);
    cudaStreamCreate(&comp_s);
    cudaEvent_t ev;
    cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    auto expect = [&](float k) {
        std::vector<float> o = get(out, n);
        for (int i = 0; i < n; i++)
            if (o[i] != 2.0f * (i + k)) return false;
        return true;
    };
    for (int round = 0; round < 2; round++) {
        cudaMemset(in, 0, n * sizeof(float));
        cudaDeviceSynchronize();
        for (int i = 0; i < n; i++) pin[i] = (float)(i + 1);
        cudaMemcpyAsync(in, pin, n * sizeof(float), cudaMemcpyHostToDevice, copy_s);
        if (round == 1) {
            cudaEventRecord(ev, copy_s);
            cudaStreamWaitEvent(comp_s, ev, 0);
        }
        MLPF_LAUNCH(scale2, (n + 255) / 256, 256, 0, comp_s, in, out, n);
        cudaStreamSynchronize(comp_s);
        std::vector<float> o = get(out, n);
        bool stale = true;
        for (float v : o) stale = stale && v == 0.0f;
        if (round == 0)
            check(stale,
                  "a kernel on a compute stream without cudaStreamWaitEvent on the copy stream reads stale data");
        else
            check(expect(1), "with cudaEventRecord + cudaStreamWaitEvent it reads the copied data");
    }

    setenv("MLPF_HOST_EAGER", "1", 1);
    cudaMemset(in, 0, n * sizeof(float));
    cudaMemcpyAsync(in, pin, n * sizeof(float), cudaMemcpyHostToDevice, copy_s);
    MLPF_LAUNCH(scale2, (n + 255) / 256, 256, 0, comp_s, in, out, n);
    cudaStreamSynchronize(comp_s);
    check(expect(1), "MLPF_HOST_EAGER=1 runs every operation at once (the missing wait goes unnoticed)");
    unsetenv("MLPF_HOST_EAGER");

    // Host code overwriting the source of an asynchronous copy before waiting for it.
    for (int i = 0; i < n; i++) pin[i] = (float)(i + 1);
    cudaMemcpyAsync(in, pin, n * sizeof(float), cudaMemcpyHostToDevice, copy_s);
    for (int i = 0; i < n; i++) pin[i] = (float)(i + 5);
    MLPF_LAUNCH(scale2, (n + 255) / 256, 256, 0, copy_s, in, out, n);
    cudaStreamSynchronize(copy_s);
    check(expect(5), "overwriting a pinned buffer before its async copy was waited for changes what the device gets");
    std::vector<float> pageable(n);
    for (int i = 0; i < n; i++) pageable[i] = (float)(i + 1);
    cudaMemcpyAsync(in, pageable.data(), n * sizeof(float), cudaMemcpyHostToDevice, copy_s);
    for (int i = 0; i < n; i++) pageable[i] = (float)(i + 5);
    MLPF_LAUNCH(scale2, (n + 255) / 256, 256, 0, copy_s, in, out, n);
    cudaStreamSynchronize(copy_s);
    check(expect(1), "from pageable memory the async copy takes the data as it was at the call (staged), as CUDA does");
    std::vector<float> back(n, -1.0f);
    cudaMemcpyAsync(back.data(), out, n * sizeof(float), cudaMemcpyDeviceToHost, copy_s);
    check(back[10] == 22.0f, "a device-to-pageable cudaMemcpyAsync has copied when it returns");
    float *pin_back = nullptr;
    cudaMallocHost((void **)&pin_back, n * sizeof(float));
    pin_back[10] = -1.0f;
    cudaMemcpyAsync(pin_back, out, n * sizeof(float), cudaMemcpyDeviceToHost, copy_s);
    const float before_sync = pin_back[10];
    cudaStreamSynchronize(copy_s);
    check(before_sync == -1.0f && pin_back[10] == 22.0f,
          "a device-to-pinned cudaMemcpyAsync lands only once the stream is synchronised",
          fmt("%g before, %g after", before_sync, pin_back[10]));

    // Legacy default stream: it waits for blocking streams, not for non-blocking ones.
    cudaStream_t nb;
    cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking);
    put(in, std::vector<float>(n, 3.0f));
    cudaMemset(out, 0, n * sizeof(float));
    MLPF_LAUNCH(scale2, (n + 255) / 256, 256, 0, comp_s, in, out, n);
    const float legacy_sees = get(out, n)[7];
    cudaMemset(out, 0, n * sizeof(float));
    cudaDeviceSynchronize();
    MLPF_LAUNCH(scale2, (n + 255) / 256, 256, 0, nb, in, out, n);
    const float nb_unseen = get(out, n)[7];
    cudaStreamSynchronize(nb);
    const float nb_after = get(out, n)[7];
    check(legacy_sees == 6.0f && nb_unseen == 0.0f && nb_after == 6.0f,
          "cudaMemcpy on the legacy stream waits for a blocking stream's kernel but not for a non-blocking stream's",
          fmt("blocking %g, non-blocking %g then %g", legacy_sees, nb_unseen, nb_after));

    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a, comp_s);
    MLPF_LAUNCH(sleepy, 1, 32, 0, comp_s, 30);
    cudaEventRecord(b, comp_s);
    float ms = -1;
    const cudaError_t early = cudaEventElapsedTime(&ms, a, b);
    cudaEventSynchronize(b);
    const cudaError_t late = cudaEventElapsedTime(&ms, a, b);
    check(early == cudaErrorNotReady && late == cudaSuccess && ms >= 25.0f && ms < 2000.0f,
          "cudaEventElapsedTime: not ready before the events ran, then the host time between the markers",
          fmt("before sync %s, after %s, %.2f ms", cudaGetErrorName(early), cudaGetErrorName(late), ms));
    check(cudaEventElapsedTime(&ms, a, ev) == cudaErrorInvalidResourceHandle,
          "cudaEventElapsedTime with a cudaEventDisableTiming event is an error");
    cudaGetLastError();
    cudaEventDestroy(a), cudaEventDestroy(b), cudaEventDestroy(ev);
    cudaStreamDestroy(copy_s), cudaStreamDestroy(comp_s), cudaStreamDestroy(nb);
    cudaDeviceReset();
}

// ---- launch configuration, orders, indices, speed, properties -----------------------
static void test_launch()
{
    cudaDeviceReset();
    int *flag = dev<int>(1);
    cudaMemset(flag, 0, 4);
    struct {
        dim3 grid, block;
        size_t smem;
        cudaError_t want;
        const char *name;
    } bad[] = {{dim3(1), dim3(1025), 0, cudaErrorInvalidConfiguration, "a block of 1025 threads"},
               {dim3(1), dim3(16, 16, 8), 0, cudaErrorInvalidConfiguration, "a block of 16x16x8 threads"},
               {dim3(1), dim3(1, 1, 65), 0, cudaErrorInvalidConfiguration, "blockDim.z of 65"},
               {dim3(1, 65536), dim3(32), 0, cudaErrorInvalidConfiguration, "gridDim.y of 65536"},
               {dim3(0), dim3(32), 0, cudaErrorInvalidConfiguration, "an empty grid"},
               {dim3(1), dim3(32), (48 << 10) + 4, cudaErrorInvalidValue, "48 KiB + 4 bytes of dynamic shared memory"}};
    for (auto &c : bad) {
        MLPF_LAUNCH(touch, c.grid, c.block, c.smem, 0, flag);
        const cudaError_t e = cudaGetLastError(), again = cudaGetLastError();
        check(e == c.want && again == cudaSuccess,
              fmt("%s is refused at launch with %s (not sticky)", c.name, cudaGetErrorName(c.want)),
              fmt("got %s then %s", cudaGetErrorName(e), cudaGetErrorName(again)));
    }
    check(get(flag, 1)[0] == 0 && cudaDeviceSynchronize() == cudaSuccess, "refused launches run nothing");

    const int big = 64 << 10;
    float *out = dev<float>(1);
    const cudaError_t attr = cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, big);
    MLPF_LAUNCH(big_smem, 1, 256, big, 0, out, big / 4);
    const cudaError_t le = cudaGetLastError();
    check(attr == cudaSuccess && le == cudaSuccess && get(out, 1)[0] == (float)(big / 4 - 1),
          "64 KiB of dynamic shared memory after cudaFuncSetAttribute(MaxDynamicSharedMemorySize)",
          fmt("attribute %s, launch %s", cudaGetErrorName(attr), cudaGetErrorName(le)));
    check(
        cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 << 10) == cudaErrorInvalidValue,
        "asking for more than 227 KiB of dynamic shared memory is refused");
    cudaGetLastError();

    int *counter = dev<int>(1), *seq = dev<int>(32);
    std::vector<std::vector<int>> seen;
    for (const char *o : kOrders) {
        set_order(o);
        cudaMemset(counter, 0, 4);
        MLPF_LAUNCH(arrival, 1, 32, 0, 0, counter, seq);
        seen.push_back(get(seq, 32));
    }
    set_order("forward");
    std::vector<int> fwd(32), rev(32);
    for (int i = 0; i < 32; i++) fwd[i] = i, rev[i] = 31 - i;
    std::vector<int> sorted = seen[2];
    std::sort(sorted.begin(), sorted.end());
    check(seen[0] == fwd && seen[1] == rev && seen[2] != fwd && seen[2] != rev && sorted == fwd,
          "MLPF_HOST_ORDER runs threads forward, in reverse, or shuffled");

    const dim3 grid(3, 2, 2), block(8, 4, 2);
    const int tpb = 64, nb = 12;
    int *hits = dev<int>(tpb * nb);
    unsigned *ballots = dev<unsigned>(2 * nb);
    cudaMemset(hits, 0, tpb * nb * sizeof(int));
    MLPF_LAUNCH(coverage, grid, block, 0, 0, hits, ballots);
    const std::vector<int> h = get(hits, tpb * nb);
    const std::vector<unsigned> bl = get(ballots, 2 * nb);
    bool once = true, warps = true;
    for (int v : h) once = once && v == 1;
    for (unsigned v : bl) warps = warps && v == 0xff00ff00u;
    check(once, "a 3-D grid of 3-D blocks: every (blockIdx, threadIdx) runs exactly once");
    check(warps, "warps are 32 consecutive linear thread ids, x fastest (ballot of threadIdx.y & 1 is 0xff00ff00)");

    const int n = 1 << 22;
    float *x = dev<float>(n), *y = dev<float>(n);
    cudaMemset(x, 0, n * sizeof(float));
    cudaMemset(y, 0, n * sizeof(float));
    cudaDeviceSynchronize();
    const auto t0 = std::chrono::steady_clock::now();
    MLPF_LAUNCH(axpy, n / 256, 256, 0, 0, y, x, 2.0f, n);
    cudaDeviceSynchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    check(s < 1.0, fmt("a barrier-free element-wise kernel over 4M threads takes %.3f s (under 1 s)", s));

    cudaDeviceProp p;
    int count = 0;
    char bus[32] = "";
    const bool props = cudaGetDeviceProperties(&p, 0) == cudaSuccess && cudaGetDeviceCount(&count) == cudaSuccess &&
                       cudaDeviceGetPCIBusId(bus, sizeof bus, 0) == cudaSuccess;
    check(props && count == 1 && has(p.name, "host execution path") && has(p.name, "not a GPU") && p.major == 9 &&
              p.minor == 0 && p.multiProcessorCount == 132 && p.sharedMemPerBlock == 49152 &&
              p.sharedMemPerBlockOptin == 232448 && p.maxThreadsPerBlock == 1024 && p.warpSize == 32 && bus[0],
          "one device, named as the host execution path, compute capability 9.0, 132 SMs, 48/227 KiB shared memory",
          fmt("name '%s'", p.name));
    size_t fr = 0, tot = 0;
    check(cudaMemGetInfo(&fr, &tot) == cudaSuccess && fr > 0 && fr <= tot && cudaSetDevice(1) == cudaErrorInvalidDevice,
          "cudaMemGetInfo from /proc/meminfo; cudaSetDevice(1) is an invalid device");
    cudaGetLastError();
    cudaDeviceReset();
}

// ---- cuBLAS -------------------------------------------------------------------------
// Rounding as the hardware does it, written independently of stand_ins.cpp.
static float tf32(float x)  // 11 significant bits, nearest, ties away from zero
{
    int e;
    const double m = std::frexp((double)x, &e) * 2048.0;
    return (float)std::ldexp(m >= 0 ? std::floor(m + 0.5) : -std::floor(-m + 0.5), e - 11);
}
static float bf16(float x)  // 8 significant bits, nearest, ties to even
{
    int e;
    const double m = std::frexp((double)x, &e) * 256.0;
    return (float)std::ldexp(std::nearbyint(m), e - 8);
}
static float same(float x) { return x; }

struct GemmCase {
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    int m = 37, n = 23, k = 19, pad_a = 5, pad_b = 3, pad_c = 2, batch = 1;
    long long gap = 0;  // elements between consecutive batches of each operand
    float alpha = 0.7f, beta = -0.3f;
    bool strided = false, nan_c = false, sgemm_api = false;
};
struct GemmResult {
    cublasStatus_t st;
    double err = 0;         // against the product of the inputs as rounded by `rnd`, in units of sum |a||b|
    double plain = 0;       // the same against the product of the unrounded inputs
    bool untouched = true;  // C's padding rows and the gaps between batches
};
static GemmResult gemm_case(cublasHandle_t h, const GemmCase &c, cudaDataType abt, cudaDataType ct,
                            cublasComputeType_t cp, float (*rnd)(float))
{
    GemmResult r;
    const bool na = c.ta == CUBLAS_OP_N, nb = c.tb == CUBLAS_OP_N;
    const int ra = na ? c.m : c.k, ca = na ? c.k : c.m, rb = nb ? c.k : c.n, cb = nb ? c.n : c.k;
    const int lda = ra + c.pad_a, ldb = rb + c.pad_b, ldc = c.m + c.pad_c;
    const long long sa = (long long)lda * ca + c.gap, sb = (long long)ldb * cb + c.gap,
                    sc = (long long)ldc * c.n + c.gap;
    const size_t na_el = sa * c.batch, nb_el = sb * c.batch, nc_el = sc * c.batch;
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const float sentinel = 768.0f;  // exact in bf16
    std::vector<float> A(na_el, sentinel), B(nb_el, sentinel), C(nc_el, sentinel);
    for (int b = 0; b < c.batch; b++) {
        for (int j = 0; j < ca; j++)
            for (int i = 0; i < ra; i++) A[b * sa + (size_t)j * lda + i] = u(rng);
        for (int j = 0; j < cb; j++)
            for (int i = 0; i < rb; i++) B[b * sb + (size_t)j * ldb + i] = u(rng);
        for (int j = 0; j < c.n; j++)
            for (int i = 0; i < c.m; i++) C[b * sc + (size_t)j * ldc + i] = c.nan_c ? NAN : u(rng);
    }
    const bool bf_in = abt == CUDA_R_16BF, bf_out = ct == CUDA_R_16BF;
    if (bf_in)
        for (auto *v : {&A, &B})
            for (float &x : *v) x = bf16(x);
    if (bf_out)
        for (float &x : C) x = bf16(x);
    auto upload = [](const std::vector<float> &v, bool as_bf16) -> void * {
        void *d = nullptr;
        cudaMalloc(&d, v.size() * (as_bf16 ? 2 : 4));
        if (as_bf16) {
            std::vector<__nv_bfloat16> t(v.size());
            for (size_t i = 0; i < v.size(); i++) t[i] = __float2bfloat16(v[i]);
            cudaMemcpy(d, t.data(), t.size() * 2, cudaMemcpyHostToDevice);
        } else {
            cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice);
        }
        return d;
    };
    void *dA = upload(A, bf_in), *dB = upload(B, bf_in), *dC = upload(C, bf_out);
    if (c.sgemm_api)
        r.st = c.strided ? cublasSgemmStridedBatched(h, c.ta, c.tb, c.m, c.n, c.k, &c.alpha, (float *)dA, lda, sa,
                                                     (float *)dB, ldb, sb, &c.beta, (float *)dC, ldc, sc, c.batch)
                         : cublasSgemm(h, c.ta, c.tb, c.m, c.n, c.k, &c.alpha, (float *)dA, lda, (float *)dB, ldb,
                                       &c.beta, (float *)dC, ldc);
    else
        r.st = c.strided
                   ? cublasGemmStridedBatchedEx(h, c.ta, c.tb, c.m, c.n, c.k, &c.alpha, dA, abt, lda, sa, dB, abt, ldb,
                                                sb, &c.beta, dC, ct, ldc, sc, c.batch, cp, CUBLAS_GEMM_DEFAULT)
                   : cublasGemmEx(h, c.ta, c.tb, c.m, c.n, c.k, &c.alpha, dA, abt, lda, dB, abt, ldb, &c.beta, dC, ct,
                                  ldc, cp, CUBLAS_GEMM_DEFAULT);
    std::vector<float> got(nc_el);
    if (bf_out) {
        std::vector<__nv_bfloat16> t(nc_el);
        cudaMemcpy(t.data(), dC, nc_el * 2, cudaMemcpyDeviceToHost);
        for (size_t i = 0; i < nc_el; i++) got[i] = __bfloat162float(t[i]);
    } else {
        cudaMemcpy(got.data(), dC, nc_el * 4, cudaMemcpyDeviceToHost);
    }
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
    if (r.st != CUBLAS_STATUS_SUCCESS) return r;
    for (int b = 0; b < c.batch; b++)
        for (int j = 0; j < c.n; j++)
            for (int i = 0; i < c.m; i++) {
                double ref = 0, plain = 0, scale = 0;
                for (int l = 0; l < c.k; l++) {
                    const float a = A[b * sa + (na ? (size_t)l * lda + i : (size_t)i * lda + l)];
                    const float bv = B[b * sb + (nb ? (size_t)j * ldb + l : (size_t)l * ldb + j)];
                    ref += (double)rnd(a) * rnd(bv);
                    plain += (double)a * bv;
                    scale += std::fabs((double)a * bv);
                }
                const double c0 = c.beta == 0 ? 0 : C[b * sc + (size_t)j * ldc + i];
                ref = c.alpha * ref + c.beta * c0;
                plain = c.alpha * plain + c.beta * c0;
                scale = std::max(1e-30, std::fabs(c.alpha) * scale + std::fabs(c.beta * c0));
                const double g = got[b * sc + (size_t)j * ldc + i];
                const double out_round = bf_out ? std::ldexp(std::fabs(ref), -8) : 0;  // the bf16 store
                const double e = std::max(0.0, std::fabs(g - ref) - out_round) / scale;
                r.err = std::isnan(g) ? INFINITY : std::max(r.err, e);
                r.plain = std::max(r.plain, std::fabs(g - plain) / scale);
            }
    for (int b = 0; b < c.batch; b++)
        for (long long e = 0; e < sc; e++) {
            const long long j = e / ldc, i = e % ldc;
            if ((j >= c.n || i >= c.m) && got[b * sc + e] != sentinel) r.untouched = false;
        }
    return r;
}

static void test_cublas()
{
    cudaDeviceReset();
    cublasHandle_t h;
    check(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    const double tol = 2.0 * 64 * std::ldexp(1.0, -24);  // fp32 summation over k <= 64 terms
    const cublasOperation_t ops[] = {CUBLAS_OP_N, CUBLAS_OP_T};
    for (cublasOperation_t ta : ops)
        for (cublasOperation_t tb : ops) {
            GemmCase c;
            c.ta = ta, c.tb = tb;
            const char *tn = ta == CUBLAS_OP_N ? "N" : "T", *tbn = tb == CUBLAS_OP_N ? "N" : "T";
            GemmResult r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, same);
            check(
                r.st == 0 && r.err < tol && r.untouched,
                fmt("cublasGemmEx fp32 %s%s, 37x23x19, lda/ldb/ldc past the rows: naive triple loop, padding untouched",
                    tn, tbn),
                fmt("status %d err %.3g untouched %d", r.st, r.err, r.untouched));
            c.strided = true, c.batch = 3, c.gap = 7;
            r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, same);
            check(r.st == 0 && r.err < tol && r.untouched,
                  fmt("cublasGemmStridedBatchedEx fp32 %s%s, 3 batches, strides past each matrix: naive loop, gaps "
                      "untouched",
                      tn, tbn),
                  fmt("status %d err %.3g untouched %d", r.st, r.err, r.untouched));
        }
    {
        GemmCase c;
        c.beta = 0, c.nan_c = true, c.ta = CUBLAS_OP_T;
        GemmResult r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, same);
        check(r.st == 0 && r.err < tol, "beta 0 with NaN in C: C is not read", fmt("err %.3g", r.err));
        c.beta = 1, c.nan_c = false, c.strided = true, c.batch = 2;
        r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, same);
        check(r.st == 0 && r.err < tol, "beta 1 accumulates into C", fmt("err %.3g", r.err));
        c = GemmCase();
        c.k = 0, c.beta = 0.5f;
        r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, same);
        check(r.st == 0 && r.err < tol, "k = 0 gives C = beta C", fmt("err %.3g", r.err));
    }
    {
        GemmCase c;
        c.k = 64, c.ta = CUBLAS_OP_T, c.strided = true, c.batch = 2, c.gap = 3;
        struct {
            cublasComputeType_t cp;
            float (*rnd)(float);
            const char *name;
        } fast[] = {
            {CUBLAS_COMPUTE_32F_FAST_TF32, tf32, "CUBLAS_COMPUTE_32F_FAST_TF32 (inputs rounded to TF32, ties away)"},
            {CUBLAS_COMPUTE_32F_FAST_16BF, bf16, "CUBLAS_COMPUTE_32F_FAST_16BF (inputs rounded to bf16)"}};
        for (auto &f : fast) {
            const GemmResult r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, f.cp, f.rnd);
            check(r.st == 0 && r.err < tol && r.plain > 10 * tol,
                  fmt("%s: the naive product of the rounded inputs, not of the unrounded ones", f.name),
                  fmt("status %d, %.3g from the rounded product, %.3g from the unrounded", r.st, r.err, r.plain));
        }
        {  // 1x1x1 products of values halfway between two TF32 or two bf16 numbers
            float *d = dev<float>(10);
            const float one = 1, zero = 0;
            const float in[5] = {1.0f + 0x1p-11f, -(1.0f + 0x1p-11f), 1.0f + 0x1p-8f, 1.0f + 0x1p-7f + 0x1p-8f, 1.0f};
            put(d, std::vector<float>(in, in + 5));
            for (int i = 0; i < 4; i++)
                cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, d + i, CUDA_R_32F, 1, d + 4, CUDA_R_32F, 1,
                             &zero, d + 5 + i, CUDA_R_32F, 1,
                             i < 2 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT);
            const std::vector<float> g = get(d + 5, 4);
            check(g[0] == 1.0f + 0x1p-10f && g[1] == -(1.0f + 0x1p-10f) && g[2] == 1.0f && g[3] == 1.0f + 0x1p-6f,
                  "at a tie, TF32 rounds away from zero (as cvt.rna does) and bf16 to even",
                  fmt("%a %a %a %a", g[0], g[1], g[2], g[3]));
        }
        GemmResult r = gemm_case(h, c, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, same);
        check(r.st == 0 && r.err < tol,
              "bf16 A and B, fp32 C, CUBLAS_COMPUTE_32F: fp32 accumulation of the bf16 values", fmt("err %.3g", r.err));
        r = gemm_case(h, c, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, same);
        check(r.st == 0 && r.err < tol && r.untouched, "bf16 A, B and C: the fp32 result rounded once to bf16",
              fmt("err %.3g untouched %d", r.err, r.untouched));

        c.sgemm_api = true;
        cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH);
        r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, tf32);
        check(r.st == 0 && r.err < tol && r.plain > 10 * tol,
              "cublasSgemmStridedBatched under CUBLAS_TF32_TENSOR_OP_MATH uses TF32",
              fmt("%.3g from the rounded product, %.3g from the unrounded", r.err, r.plain));
        c.sgemm_api = false;
        r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, same);
        check(r.st == 0 && r.err < tol, "CUBLAS_COMPUTE_32F_PEDANTIC stays fp32 under the TF32 math mode",
              fmt("err %.3g", r.err));
        cublasMath_t mode;
        cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
        c.sgemm_api = true, c.strided = false, c.batch = 1;
        r = gemm_case(h, c, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, same);
        check(r.st == 0 && r.err < tol && cublasGetMathMode(h, &mode) == 0 && mode == CUBLAS_DEFAULT_MATH,
              "cublasSgemm in the default math mode is fp32", fmt("err %.3g", r.err));
    }
    {  // double precision
        bool ok = true;
        std::string why;
        for (int strided = 0; strided < 2; strided++)
            for (cublasOperation_t ta : ops)
                for (cublasOperation_t tb : ops) {
                    const int m = 13, n = 11, k = 9, batch = strided ? 2 : 1;
                    const int ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
                    const int rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;
                    const int lda = ra + 2, ldb = rb + 1, ldc = m + 3;
                    const long long sa = lda * ca + 5, sb = ldb * cb, sc = ldc * n + 1;
                    std::vector<double> A(sa * batch), B(sb * batch), C(sc * batch);
                    std::mt19937 rng(5);
                    for (auto *v : {&A, &B, &C})
                        for (double &x : *v) x = (double)rng() / rng.max() - 0.5;
                    double *dA = dev<double>(A.size()), *dB = dev<double>(B.size()), *dC = dev<double>(C.size());
                    put(dA, A), put(dB, B), put(dC, C);
                    const double alpha = 1.25, beta = 0.5;
                    const cublasStatus_t st =
                        strided ? cublasDgemmStridedBatched(h, ta, tb, m, n, k, &alpha, dA, lda, sa, dB, ldb, sb, &beta,
                                                            dC, ldc, sc, batch)
                                : cublasDgemm(h, ta, tb, m, n, k, &alpha, dA, lda, dB, ldb, &beta, dC, ldc);
                    const std::vector<double> got = get(dC, C.size());
                    for (int b = 0; b < batch && ok; b++)
                        for (int j = 0; j < n && ok; j++)
                            for (int i = 0; i < m && ok; i++) {
                                double s = 0;
                                for (int l = 0; l < k; l++)
                                    s += A[b * sa + (ta == CUBLAS_OP_N ? l * lda + i : i * lda + l)] *
                                         B[b * sb + (tb == CUBLAS_OP_N ? j * ldb + l : l * ldb + j)];
                                const double want = alpha * s + beta * C[b * sc + j * ldc + i];
                                if (st != 0 || std::fabs(got[b * sc + j * ldc + i] - want) > 1e-13)
                                    ok = false, why = fmt("status %d, batch %d (%d,%d)", st, b, i, j);
                            }
                    cudaFree(dA), cudaFree(dB), cudaFree(dC);
                }
        check(ok, "cublasDgemm and cublasDgemmStridedBatched, all transposes: the naive product in double", why);
    }
    {  // argument checks, as cuBLAS makes them
        float *d = dev<float>(4096);
        const float one = 1, zero = 0;
        auto call = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc,
                        int batch) {
            return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &one, d, CUDA_R_32F, lda, 0, d, CUDA_R_32F, ldb, 0,
                                              &zero, d + 2048, CUDA_R_32F, ldc, 0, batch, CUBLAS_COMPUTE_32F,
                                              CUBLAS_GEMM_DEFAULT);
        };
        const cublasOperation_t N = CUBLAS_OP_N, T = CUBLAS_OP_T;
        const bool invalid =
            call(N, N, 20, 8, 10, 19, 10, 20, 1) == CUBLAS_STATUS_INVALID_VALUE &&  // lda < m
            call(T, N, 20, 8, 10, 9, 10, 20, 1) == CUBLAS_STATUS_INVALID_VALUE &&   // lda < k
            call(N, N, 20, 8, 10, 20, 9, 20, 1) == CUBLAS_STATUS_INVALID_VALUE &&   // ldb < k
            call(N, T, 20, 8, 10, 20, 7, 20, 1) == CUBLAS_STATUS_INVALID_VALUE &&   // ldb < n
            call(N, N, 20, 8, 10, 20, 10, 19, 1) == CUBLAS_STATUS_INVALID_VALUE &&  // ldc < m
            call(N, N, -1, 8, 10, 20, 10, 20, 1) == CUBLAS_STATUS_INVALID_VALUE &&
            call(N, N, 20, 8, 10, 20, 10, 20, -1) == CUBLAS_STATUS_INVALID_VALUE &&
            call(N, N, 0, 8, 10, 0, 10, 0, 1) == CUBLAS_STATUS_INVALID_VALUE;  // ld >= 1 even for m = 0
        check(invalid,
              "lda < rows of the stored A (m, or k transposed), ldb, ldc < m, negative sizes -> "
              "CUBLAS_STATUS_INVALID_VALUE");
        check(call(T, N, 20, 8, 10, 10, 10, 20, 1) == CUBLAS_STATUS_SUCCESS && call(N, T, 20, 8, 10, 20, 8, 20, 1) == 0,
              "transposed operands need lda >= k and ldb >= n only");
        auto ex = [&](cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t cp) {
            return cublasGemmEx(h, N, N, 4, 4, 4, &one, d, a, 4, d, b, 4, &zero, d + 2048, c, 4, cp,
                                CUBLAS_GEMM_DEFAULT);
        };
        check(ex(CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32) == CUBLAS_STATUS_NOT_SUPPORTED &&
                  ex(CUDA_R_32F, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F) == CUBLAS_STATUS_NOT_SUPPORTED &&
                  ex(CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_16F) == CUBLAS_STATUS_NOT_SUPPORTED &&
                  ex(CUDA_R_32F, CUDA_R_32F, CUDA_R_64F, CUBLAS_COMPUTE_64F) == CUBLAS_STATUS_NOT_SUPPORTED,
              "unsupported type combinations -> CUBLAS_STATUS_NOT_SUPPORTED");
        cudaDeviceSynchronize();
    }
    {  // stream order: the product runs on the handle's stream after the copy queued before it
        const int n = 16;
        float *pin = nullptr, *dA = dev<float>(n * n), *dB = dev<float>(n * n), *dC = dev<float>(n * n);
        cudaMallocHost((void **)&pin, n * n * sizeof(float));
        std::vector<float> bh(n * n);
        for (int i = 0; i < n * n; i++) pin[i] = 1.0f, bh[i] = (float)(i % 7);
        put(dB, bh);
        cudaStream_t s;
        cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
        cublasSetStream(h, s);
        cudaStream_t got_s = nullptr;
        cublasGetStream(h, &got_s);
        cudaMemcpyAsync(dA, pin, n * n * sizeof(float), cudaMemcpyHostToDevice, s);
        const float one = 1, zero = 0;
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, dA, n, dB, n, &zero, dC, n);
        std::vector<float> c(n * n);
        cudaMemcpyAsync(c.data(), dC, n * n * sizeof(float), cudaMemcpyDeviceToHost, s);
        bool ok = got_s == s;
        for (int j = 0; j < n; j++) {
            float col = 0;
            for (int l = 0; l < n; l++) col += bh[j * n + l];
            for (int i = 0; i < n; i++) ok = ok && c[j * n + i] == col;
        }
        check(ok, "cublasSetStream: the product runs in stream order after the copy queued before it");
        cublasSetStream(h, nullptr);
        cudaStreamDestroy(s);
    }
    check(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS &&
              !strcmp(cublasGetStatusString(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE"),
          "cublasDestroy, cublasGetStatusString");
    cudaDeviceReset();
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--crash")) return crash_child(argv[2]);
    unsetenv("MLPF_HOST_EAGER");
    unsetenv("MLPF_HOST_THREADS");
    set_order("forward");
    test_reductions();
    test_barrier_faults();
    test_warp();
    test_atomics_and_shared();
    test_poison_and_guards();
    test_streams();
    test_launch();
    test_cublas();
    printf("test_emulator: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
