// Host stand-ins for the CUDA runtime and cuBLAS calls the backend makes, and
// the block scheduler behind cuda_host.h: each CUDA thread of a block is a
// fiber on one OS thread; independent blocks run on OpenMP threads. For tests
// only; nothing computed here is a GPU result. See cuda/host/README.md.
#include <boost/context/fiber.hpp>
#include <cblas.h>
#include <omp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_host.h"

namespace ctx = boost::context;

// ---- the opaque handles -------------------------------------------------
namespace mlpf_host {
struct Op {  // one queued operation of a stream
    uint64_t seq;
    std::vector<std::pair<CUstream_st *, uint64_t>> deps;  // stream, position to drain first
    std::function<void()> run;
};
struct EventState {
    bool recorded = false, done = false;
    double t = 0;               // host clock when its marker executed
    uint64_t gen = 0, seq = 0;  // which record, and its position in stream s
    CUstream_st *s = nullptr;
};
}  // namespace mlpf_host

struct CUstream_st {
    std::deque<mlpf_host::Op> q;
    uint64_t issued = 0, done = 0;  // sequence numbers: last enqueued, last executed
    unsigned flags = 0;
    bool destroyed = false;  // kept, so that dependencies on it stay valid
};
struct CUevent_st {
    std::shared_ptr<mlpf_host::EventState> st = std::make_shared<mlpf_host::EventState>();
    unsigned flags = 0;
};
struct cublasContext {
    cudaStream_t stream = nullptr;
    cublasMath_t mode = CUBLAS_DEFAULT_MATH;
};

namespace mlpf_host {

__thread ThreadState *tl_thread;
__thread BlockState *tl_block;

static const size_t kDynSmemDefault = 48 << 10, kDynSmemOptin = 227 << 10;
static const size_t kFiberStack = 128 << 10;

static size_t page()
{
    static const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return pg;
}
static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
static double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- guarded memory: the bytes end exactly where a PROT_NONE page begins,
// so the first access past the end faults; a second guard page precedes.
struct Mapping {
    char *base = nullptr, *user = nullptr;
    size_t len = 0, size = 0;
    int opened = 0;  // device memory made accessible for the operations now running
};
static bool map_guarded(size_t n, size_t align, Mapping &m)
{
    const size_t pg = page(), data = round_up(n ? n : 1, pg), len = data + 2 * pg;
    void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    char *base = static_cast<char *>(p), *end = base + pg + data;
    mprotect(base, pg, PROT_NONE);
    mprotect(end, pg, PROT_NONE);
    m.base = base;
    m.len = len;
    m.size = n;
    m.user = reinterpret_cast<char *>(((uintptr_t)end - n) & ~(uintptr_t)(align - 1));
    return true;
}
static void unmap(Mapping &m)
{
    if (m.base) munmap(m.base, m.len);
    m = Mapping{};
}
// cudaMalloc aligns to 256 bytes; ending at the guard page allows only the
// largest power of two dividing the size (never less than its element's).
static size_t natural_align(size_t n)
{
    size_t a = n & (~n + 1);
    return (n == 0 || a > 256) ? 256 : a;
}
static size_t meminfo(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t kb = 0, klen = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, klen)) kb = strtoull(line + klen, nullptr, 10);
    if (f) fclose(f);
    return kb << 10;
}

// ---- the runtime's state ---------------------------------------------------
struct Runtime {
    std::recursive_mutex mu;
    CUstream_st legacy, per_thread;
    std::vector<CUstream_st *> streams;           // created with cudaStreamCreate*, destroyed ones too
    std::map<uintptr_t, Mapping> device, pinned;  // by start address
    std::deque<Mapping> freed;                    // recently freed buffers, kept inaccessible
    std::map<const void *, size_t> dyn_limit;     // cudaFuncAttributeMaxDynamicSharedMemorySize
    cudaError_t sticky = cudaSuccess, last = cudaSuccess;
    std::atomic<int> running{0};  // nested drains: only then may device memory be touched
    bool protect = false;         // device memory is PROT_NONE outside operations
    std::mutex fault_mu;
    std::string fault;
};
static Runtime &R()
{
    static Runtime *r = new Runtime;  // never destroyed: stand-ins may run from atexit handlers
    return *r;
}
#define LOCK std::lock_guard<std::recursive_mutex> lock_(R().mu)
#define STICKY \
    if (R().sticky != cudaSuccess) return R().sticky

static cudaError_t fail(cudaError_t e)
{
    R().last = e;
    return e;
}
static cudaError_t invalid(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mlpf-host: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (cudaErrorInvalidValue)\n");
    va_end(ap);
    return fail(cudaErrorInvalidValue);
}
// Device memory is PROT_NONE except while queued operations run, so that
// host code dereferencing a device pointer faults as it would with a GPU. An
// operation's first access to a buffer faults, and the handler opens that
// buffer (open_device); the outermost drain closes what was opened.
static char *data_start(const Mapping &m) { return m.base + page(); }
static size_t data_len(const Mapping &m) { return m.len - 2 * page(); }
static bool open_device(uintptr_t a)  // from the fault handler: the maps do not change while operations run
{
    if (!R().protect || R().running.load() == 0) return false;
    auto it = R().device.upper_bound(a);
    if (it == R().device.begin()) return false;
    Mapping &m = (--it)->second;
    if (a < (uintptr_t)data_start(m) || a >= (uintptr_t)data_start(m) + data_len(m)) return false;
    __atomic_store_n(&m.opened, 1, __ATOMIC_RELAXED);
    return mprotect(data_start(m), data_len(m), PROT_READ | PROT_WRITE) == 0;
}
struct Draining {
    Draining() { R().running++; }
    ~Draining()
    {
        if (--R().running == 0)
            for (auto &kv : R().device)
                if (kv.second.opened)
                    kv.second.opened = 0, mprotect(data_start(kv.second), data_len(kv.second), PROT_NONE);
    }
};
static bool env_flag(const char *name)
{
    const char *s = getenv(name);
    return s && *s && strcmp(s, "0");
}

// ---- streams: queued, executed as late as allowed ---------------------------
static CUstream_st *resolve(cudaStream_t s)
{
    if (s == nullptr || s == cudaStreamLegacy) return &R().legacy;
    if (s == cudaStreamPerThread) return &R().per_thread;
    return s;
}
static bool blocking(const CUstream_st *s) { return !(s->flags & cudaStreamNonBlocking); }
static void drop_all()
{
    auto drop = [](CUstream_st *s) { s->q.clear(), s->done = s->issued; };
    drop(&R().legacy), drop(&R().per_thread);
    for (CUstream_st *s : R().streams) drop(s);
}
// Runs the operations of s up to sequence number upto, each after whatever it
// depends on (an event waited for, or the legacy default stream's implicit
// synchronisation). After a kernel fault nothing more runs.
static void drain(CUstream_st *s, uint64_t upto)
{
    Draining open_while_running;
    while (s->done < upto && !s->q.empty()) {
        if (R().sticky != cudaSuccess) return drop_all();
        auto deps = s->q.front().deps;
        for (auto &d : deps) drain(d.first, d.second);
        if (R().sticky != cudaSuccess) return drop_all();
        Op op = std::move(s->q.front());
        s->q.pop_front();
        op.run();
        if (R().sticky != cudaSuccess) return drop_all();
        s->done = std::max(s->done, op.seq);
    }
}
static void drain_all()
{
    drain(&R().legacy, R().legacy.issued);
    drain(&R().per_thread, R().per_thread.issued);
    for (size_t i = 0; i < R().streams.size(); i++) drain(R().streams[i], R().streams[i]->issued);
}
static uint64_t enqueue(CUstream_st *s, std::function<void()> fn,
                        std::vector<std::pair<CUstream_st *, uint64_t>> deps = {})
{
    // Legacy default stream: its work waits for all earlier work of the
    // blocking streams, and theirs waits for its earlier work.
    auto pending = [](CUstream_st *t) { return t->done < t->issued; };
    if (s == &R().legacy) {
        if (pending(&R().per_thread)) deps.push_back({&R().per_thread, R().per_thread.issued});
        for (CUstream_st *t : R().streams)
            if (blocking(t) && pending(t)) deps.push_back({t, t->issued});
    } else if (blocking(s) && pending(&R().legacy)) {
        deps.push_back({&R().legacy, R().legacy.issued});
    }
    Op op{++s->issued, std::move(deps), std::move(fn)};
    s->q.push_back(std::move(op));
    if (env_flag("MLPF_HOST_EAGER")) drain(s, s->issued);
    return s->issued;
}

// ---- the block scheduler -----------------------------------------------------
struct Launch {
    const char *name;
    dim3 grid, block;
    size_t smem;
    std::function<void()> body;
    int order;    // 0 forward, 1 reverse, 2 shuffle
    int threads;  // OS threads
    std::atomic<bool> failed{false};
};

enum LaneState : unsigned char { NOT_STARTED, RUNNABLE, AT_BARRIER, AT_WARP, DONE };
// A fiber that carries CUDA threads: it runs the threads of a pass one after
// the other for as long as each ends without waiting (a barrier-free kernel
// costs a function call per thread); a thread that waits keeps its fiber.
struct Worker {
    ctx::fiber fib, sched;  // its own context, and the scheduler's while it runs
};
struct Lane : ThreadState {
    Worker *w;
    LaneState state;
    unsigned char kind;  // BarrierKind it waits in
    int lin, pred, result;
    unsigned long long out;  // warp collective result
};
struct Warp {
    unsigned exists, exited, waiting;  // lane masks
    unsigned mask[32];
    unsigned char op[32];
    int arg[32];  // shuffles: the source lane, already resolved
    unsigned long long val[32];
};

// Fiber stacks, reused, each with a guard page below it so an overflow faults.
struct StackPool {
    std::vector<char *> free;
    ~StackPool()
    {
        for (char *p : free) munmap(p, kFiberStack + page());
    }
};
struct PoolStack {  // Boost.Context's StackAllocator
    StackPool *pool;
    ctx::stack_context allocate()
    {
        char *base;
        if (!pool->free.empty()) {
            base = pool->free.back();
            pool->free.pop_back();
        } else {
            void *p = mmap(nullptr, kFiberStack + page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                fprintf(stderr, "mlpf-host: out of memory for fiber stacks\n");
                abort();
            }
            base = static_cast<char *>(p);
            mprotect(base, page(), PROT_NONE);
        }
        ctx::stack_context sc;
        sc.size = kFiberStack;
        sc.sp = base + page() + kFiberStack;
        return sc;
    }
    void deallocate(ctx::stack_context &sc) noexcept
    {
        pool->free.push_back(static_cast<char *>(sc.sp) - kFiberStack - page());
    }
};

struct Runner {  // one per OS thread: runs one block at a time
    BlockState bs{};
    Launch *L = nullptr;
    std::unique_ptr<Lane[]> lanes{new Lane[1024]};
    Warp warps[32];
    unsigned n = 0, done = 0, at_barrier = 0;
    unsigned k = 0;  // position in the current pass
    int first_exit = -1;
    bool failed = false;
    std::vector<unsigned> perm;  // the pass order when shuffled
    StackPool pool;
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<Worker *> idle;
    Mapping dyn;
    size_t dyn_bytes = ~(size_t)0;
    std::vector<char> altstack;
    unsigned lane_at(unsigned pos) const { return L->order == 0 ? pos : L->order == 1 ? n - 1 - pos : perm[pos]; }
    Runner()
    {
        // The fault handler needs a stack of its own when a fiber stack overflows.
        stack_t old;
        if (sigaltstack(nullptr, &old) == 0 && (old.ss_flags & SS_DISABLE)) {
            altstack.resize(64 << 10);
            stack_t ss{};
            ss.ss_sp = altstack.data();
            ss.ss_size = altstack.size();
            sigaltstack(&ss, nullptr);
        }
    }
    ~Runner()
    {
        workers.clear();  // unwinds the idle workers' stacks
        if (!altstack.empty()) {
            stack_t ss{};
            ss.ss_flags = SS_DISABLE;
            sigaltstack(&ss, nullptr);
        }
        unmap(dyn);
    }
};
static __thread Runner *tl_runner;  // set while this OS thread runs a block
static Runner &this_runner()
{
    thread_local Runner r;
    return r;
}
static Lane &cur_lane() { return *static_cast<Lane *>(tl_thread); }

static const char *op_name(int op)
{
    static const char *names[] = {"__shfl_sync",      "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                  "__ballot_sync",    "__any_sync",     "__all_sync",       "__match_any_sync",
                                  "__match_all_sync", "__syncwarp"};
    return names[op];
}

// The first fault of a launch is printed and kept; the launch stops.
static void record_fault(Runner &r, const ThreadState &t, const char *fmt, va_list ap)
{
    r.failed = true;
    bool expected = false;
    if (!r.L->failed.compare_exchange_strong(expected, true)) return;
    char why[512], msg[768];
    vsnprintf(why, sizeof why, fmt, ap);
    snprintf(msg, sizeof msg, "mlpf-host: kernel '%s' block (%u,%u,%u) thread (%u,%u,%u): %s", r.L->name, r.bs.idx.x,
             r.bs.idx.y, r.bs.idx.z, t.idx.x, t.idx.y, t.idx.z, why);
    fprintf(stderr, "%s\n", msg);
    std::lock_guard<std::mutex> g(R().fault_mu);
    R().fault = msg;
}
static void scheduler_fault(Runner &r, const ThreadState &t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_fault(r, t, fmt, ap);
    va_end(ap);
}
static void yield(Lane &l) { l.w->sched = std::move(l.w->sched).resume(); }
// A fault inside a thread: the scheduler tears the block down, unwinding this
// fiber from inside yield(); it never returns.
[[noreturn]] static void lane_fault(Lane &l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_fault(*tl_runner, l, fmt, ap);
    va_end(ap);
    yield(l);
    abort();
}
static void lane_exit(Lane &l)
{
    Runner &r = *tl_runner;
    l.state = DONE;
    r.done++;
    if (r.first_exit < 0) r.first_exit = l.lin;
    Warp &w = r.warps[l.lin >> 5];
    const unsigned bit = 1u << (l.lin & 31);
    w.exited |= bit;
    if (r.at_barrier)
        lane_fault(l, "exited while %u thread(s) of the block wait at __syncthreads (barrier divergence)",
                   r.at_barrier);
    for (unsigned m = w.waiting; m; m &= m - 1) {
        int j = __builtin_ctz(m);
        if (w.mask[j] & bit)
            lane_fault(l, "exited while lane %d of its warp waits for it in %s (mask 0x%08x)", j, op_name(w.op[j]),
                       w.mask[j]);
    }
}

int block_barrier(BarrierKind kind, int pred)
{
    Runner &r = *tl_runner;
    Lane &l = cur_lane();
    if (r.done) {
        const Lane &e = r.lanes[r.first_exit];
        lane_fault(l, "reached __syncthreads after thread (%u,%u,%u) of the block exited (barrier divergence)", e.idx.x,
                   e.idx.y, e.idx.z);
    }
    l.state = AT_BARRIER;
    l.kind = (unsigned char)kind;
    l.pred = pred != 0;
    r.at_barrier++;
    yield(l);
    return l.result;
}
static void release_barrier(Runner &r)
{
    int count = 0;
    for (unsigned i = 0; i < r.n; i++) count += r.lanes[i].pred;
    for (unsigned i = 0; i < r.n; i++) {
        Lane &l = r.lanes[i];
        l.result = l.kind == BAR_COUNT ? count
                   : l.kind == BAR_OR  ? count > 0
                   : l.kind == BAR_AND ? count == (int)r.n
                                       : 0;
        l.state = RUNNABLE;
    }
    r.at_barrier = 0;
}

unsigned active_mask() { return 1u << (cur_lane().lin & 31); }

// The last lane to arrive computes every participant's result, before any of
// them runs on, so the slots can be reused by the next collective at once.
static void complete(Runner &r, int wi, unsigned mask)
{
    Warp &w = r.warps[wi];
    unsigned ballot = 0;
    for (unsigned m = mask; m; m &= m - 1)
        if (w.val[__builtin_ctz(m)]) ballot |= 1u << __builtin_ctz(m);
    for (unsigned m = mask; m; m &= m - 1) {
        const int i = __builtin_ctz(m);
        unsigned long long out = 0;
        switch (w.op[i]) {
        case SHFL_IDX:
        case SHFL_UP:
        case SHFL_DOWN:
        case SHFL_XOR:
            // A source lane outside the mask gives an undefined value on a GPU: here all ones (NaN as a float).
            out = (mask >> w.arg[i] & 1) ? w.val[w.arg[i]] : ~0ull;
            break;
        case BALLOT: out = ballot; break;
        case ANY: out = ballot != 0; break;
        case ALL: out = ballot == mask; break;
        case MATCH_ANY:
        case MATCH_ALL: {
            unsigned same = 0;
            for (unsigned k = mask; k; k &= k - 1)
                if (w.val[__builtin_ctz(k)] == w.val[i]) same |= 1u << __builtin_ctz(k);
            out = w.op[i] == MATCH_ANY ? same : (same == mask ? mask : 0);
            break;
        }
        default: break;
        }
        Lane &l = r.lanes[wi * 32 + i];
        l.out = out;
        l.state = RUNNABLE;
    }
    w.waiting &= ~mask;
}

unsigned long long warp_collective(WarpOp op, unsigned mask, unsigned long long value, int arg, int width)
{
    Runner &r = *tl_runner;
    Lane &l = cur_lane();
    const int wi = l.lin >> 5, lane = l.lin & 31;
    const unsigned bit = 1u << lane;
    Warp &w = r.warps[wi];
    const char *name = op_name(op);
    if (!(mask & bit)) lane_fault(l, "%s with mask 0x%08x, which does not name the calling lane %d", name, mask, lane);
    if (mask & ~w.exists)
        lane_fault(l, "%s mask 0x%08x names lane %d, which does not exist (the block has %u threads)", name, mask,
                   __builtin_ctz(mask & ~w.exists), r.n);
    if (mask & w.exited)
        lane_fault(l, "%s mask 0x%08x names lane %d, which has exited", name, mask, __builtin_ctz(mask & w.exited));
    for (unsigned m = w.waiting; m; m &= m - 1) {
        const int j = __builtin_ctz(m);
        if (((w.mask[j] & bit) || (mask & (1u << j))) && (w.mask[j] != mask || w.op[j] != op))
            lane_fault(l, "%s with mask 0x%08x while lane %d waits in %s with mask 0x%08x (mismatched warp collective)",
                       name, mask, j, op_name(w.op[j]), w.mask[j]);
    }
    int src = lane;
    if (op <= SHFL_XOR) {
        if (width < 1 || width > 32 || (width & (width - 1)))
            lane_fault(l, "%s width %d is not a power of two from 1 to 32", name, width);
        // PTX shfl.sync: a segment of width lanes; idx wraps inside it, up/down/xor
        // out of it (xor: only past its end) return the caller's own value.
        const int first = lane & ~(width - 1), last = first + width - 1;
        switch (op) {
        case SHFL_IDX: src = first | (arg & (width - 1)); break;
        case SHFL_UP: src = lane - arg >= first ? lane - arg : lane; break;
        case SHFL_DOWN: src = lane + arg <= last ? lane + arg : lane; break;
        default: src = (lane ^ arg) <= last ? lane ^ arg : lane; break;
        }
    }
    w.op[lane] = (unsigned char)op;
    w.mask[lane] = mask;
    w.val[lane] = value;
    w.arg[lane] = src;
    w.waiting |= bit;
    l.state = AT_WARP;
    if ((w.waiting & mask) == mask) complete(r, wi, mask);
    yield(l);  // the order threads run in stays the scheduler's choice
    return l.out;
}

static uint64_t splitmix(uint64_t &s)
{
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void worker_loop(Worker &w)
{
    for (;;) {
        Runner &r = *tl_runner;
        Lane &l = r.lanes[r.lane_at(r.k)];  // the scheduler stands at a thread that has not started
        l.w = &w;
        l.state = RUNNABLE;
        tl_thread = &l;
        r.L->body();
        lane_exit(l);
        if (r.k + 1 < r.n && r.lanes[r.lane_at(r.k + 1)].state == NOT_STARTED) {
            r.k++;  // the next thread of the pass, on the same fiber
            continue;
        }
        r.idle.push_back(&w);
        w.sched = std::move(w.sched).resume();
    }
}
static void start_lane(Runner &r)
{
    Worker *w;
    if (!r.idle.empty()) {
        w = r.idle.back();
        r.idle.pop_back();
    } else {
        r.workers.emplace_back(new Worker);
        w = r.workers.back().get();
        w->fib = ctx::fiber(std::allocator_arg, PoolStack{&r.pool}, [w](ctx::fiber &&s) {
            w->sched = std::move(s);
            worker_loop(*w);
            return std::move(w->sched);
        });
    }
    w->fib = std::move(w->fib).resume();
}
static void resume_lane(Lane &l)
{
    tl_thread = &l;
    l.w->fib = std::move(l.w->fib).resume();
}

static void deadlock(Runner &r)
{
    for (unsigned i = 0; i < r.n; i++) {
        Lane &l = r.lanes[i];
        if (l.state != AT_WARP) continue;
        Warp &w = r.warps[i >> 5];
        const int j = i & 31, m = __builtin_ctz(w.mask[j] & ~w.waiting);
        const Lane &o = r.lanes[(i & ~31u) + m];
        return scheduler_fault(r, l, "deadlock: waits in %s (mask 0x%08x) for lane %d, which %s", op_name(w.op[j]),
                               w.mask[j], m, o.state == AT_BARRIER ? "waits at __syncthreads" : "never arrives");
    }
    scheduler_fault(r, r.lanes[0], "deadlock: no thread of the block can run");
}

static void run_block(Launch &L, unsigned long long b)
{
    Runner &r = this_runner();
    tl_runner = &r;
    r.L = &L;
    r.bs.idx = make_uint3((unsigned)(b % L.grid.x), (unsigned)(b / L.grid.x % L.grid.y),
                          (unsigned)(b / ((unsigned long long)L.grid.x * L.grid.y)));
    r.bs.dim = L.block;
    r.bs.grid = L.grid;
    // Dynamic shared memory ends at a guard page and is poisoned for each block.
    const size_t dyn = round_up(L.smem, 16);
    if (r.dyn_bytes != dyn) {
        unmap(r.dyn);
        if (!map_guarded(dyn, 16, r.dyn)) {
            fprintf(stderr, "mlpf-host: out of memory for dynamic shared memory\n");
            abort();
        }
        r.dyn_bytes = dyn;
    }
    memset(r.dyn.user, 0xFF, dyn);
    r.bs.dyn_smem = reinterpret_cast<unsigned char *>(r.dyn.user);
    tl_block = &r.bs;

    const unsigned n = L.block.x * L.block.y * L.block.z;
    r.n = n, r.done = 0, r.at_barrier = 0, r.first_exit = -1, r.failed = false;
    uint3 t = make_uint3(0, 0, 0);  // x fastest, as the linear thread id that makes the warps
    for (unsigned i = 0; i < n; i++) {
        Lane &l = r.lanes[i];
        l.idx = t;
        l.lin = (int)i;
        l.state = NOT_STARTED;
        l.pred = 0;
        if (++t.x == L.block.x) {
            t.x = 0;
            if (++t.y == L.block.y) t.y = 0, t.z++;
        }
    }
    for (unsigned wi = 0; wi < (n + 31) / 32; wi++) {
        Warp &w = r.warps[wi];
        const unsigned lanes = std::min(32u, n - wi * 32);
        w.exists = lanes == 32 ? ~0u : (1u << lanes) - 1;
        w.exited = w.waiting = 0;
    }
    if (L.order == 2) r.perm.resize(n);
    uint64_t seed = 0x5eed0000ull ^ (b * 0x100000001B3ull);
    for (unsigned pass = 0;; pass++) {
        if (L.order == 2) {  // a fresh fixed-seed permutation for every pass
            for (unsigned i = 0; i < n; i++) r.perm[i] = i;
            for (unsigned i = n - 1; i > 0; i--) std::swap(r.perm[i], r.perm[splitmix(seed) % (i + 1)]);
        }
        for (r.k = 0; r.k < n && !r.failed; r.k++) {
            Lane &l = r.lanes[r.lane_at(r.k)];
            if (l.state == NOT_STARTED)
                start_lane(r);
            else if (l.state == RUNNABLE)
                resume_lane(l);
        }
        if (r.failed || r.done == n) break;
        bool runnable = false;
        for (unsigned i = 0; i < n && !runnable; i++) runnable = r.lanes[i].state == RUNNABLE;
        if (runnable) continue;
        if (r.at_barrier == n) {
            release_barrier(r);
            continue;
        }
        deadlock(r);
        break;
    }
    if (r.failed) {  // destroying a suspended fiber unwinds its stack
        r.idle.clear();
        r.workers.clear();
    }
    tl_runner = nullptr;
    tl_thread = nullptr;
    tl_block = nullptr;
}

// Where a faulting address lies, for the message. Best effort: it reads the
// allocation maps without their lock, as the process is about to end anyway.
static void describe(uintptr_t a, char *buf, size_t n)
{
    const Runtime &rt = R();
    auto it = rt.device.upper_bound(a);
    if (it != rt.device.end() && a >= (uintptr_t)it->second.base)
        return (void)snprintf(buf, n, "%zu bytes before the start of the %zu-byte cudaMalloc buffer at %p",
                              (size_t)(it->first - a), it->second.size, (void *)it->first);
    if (it != rt.device.begin()) {
        --it;
        const uintptr_t start = it->first, end = start + it->second.size;
        if (a < end)
            return (void)snprintf(buf, n,
                                  "byte %zu of the %zu-byte cudaMalloc buffer at %p: device memory, which host "
                                  "code cannot touch (cudaMemcpy it)",
                                  (size_t)(a - start), it->second.size, (void *)start);
        if (a < (uintptr_t)it->second.base + it->second.len)
            return (void)snprintf(buf, n, "byte %zu of the %zu-byte cudaMalloc buffer at %p, past its end",
                                  (size_t)(a - start), it->second.size, (void *)start);
    }
    for (const Mapping &f : rt.freed)
        if (a >= (uintptr_t)f.base && a < (uintptr_t)f.base + f.len)
            return (void)snprintf(buf, n, "inside the freed %zu-byte buffer that was at %p", f.size, (void *)f.user);
    if (tl_runner && a >= (uintptr_t)tl_runner->dyn.base && a < (uintptr_t)tl_runner->dyn.base + tl_runner->dyn.len)
        return (void)snprintf(buf, n, "byte %td of the launch's %zu bytes of dynamic shared memory",
                              (ptrdiff_t)(a - (uintptr_t)tl_runner->dyn.user), tl_runner->L ? tl_runner->L->smem : 0);
    snprintf(buf, n, "not in or next to any device buffer (a host pointer, a fiber stack overflow, or a wild address)");
}
// A memory fault (guard page, device memory touched by host code, freed
// buffer, stack overflow) names the kernel, block and thread and what the
// address is, then ends the process as the fault would.
static void on_fault_signal(int sig, siginfo_t *si, void *context)
{
    if (sig == SIGSEGV && open_device((uintptr_t)si->si_addr)) return;  // retried, now accessible
    char where[256], buf[768];
    int len;
    describe((uintptr_t)si->si_addr, where, sizeof where);
#if defined(__x86_64__)
    const uintptr_t sp = (uintptr_t) static_cast<ucontext_t *>(context)->uc_mcontext.gregs[REG_RSP];
    if ((uintptr_t)si->si_addr < sp + page() && (uintptr_t)si->si_addr + (64 << 10) > sp)
        snprintf(where, sizeof where, "next to the stack pointer: a stack overflow (a CUDA thread has %zu KiB here)",
                 kFiberStack >> 10);
#endif
    const char *what = sig == SIGSEGV ? "memory fault (SIGSEGV)" : "bus error (SIGBUS)";
    if (tl_runner && tl_runner->L && tl_thread)
        len = snprintf(buf, sizeof buf,
                       "mlpf-host: %s at address %p in kernel '%s' block (%u,%u,%u) thread (%u,%u,%u): %s\n", what,
                       si->si_addr, tl_runner->L->name, tl_runner->bs.idx.x, tl_runner->bs.idx.y, tl_runner->bs.idx.z,
                       tl_thread->idx.x, tl_thread->idx.y, tl_thread->idx.z, where);
    else
        len = snprintf(buf, sizeof buf, "mlpf-host: %s at address %p in host code (outside any kernel): %s\n", what,
                       si->si_addr, where);
    if (write(2, buf, (size_t)std::max(len, 0)) < 0) {
    }
    signal(sig, SIG_DFL);  // returning repeats the access, which now ends the process
}
// Only where nothing else (a debugger's or a sanitizer's handler) handles
// SIGSEGV; device memory is protected only with this handler in place.
static void install_fault_handler()
{
    static std::once_flag once;
    std::call_once(once, [] {
        bool all = true;
        for (int sig : {SIGSEGV, SIGBUS}) {
            struct sigaction old, sa;
            if (sigaction(sig, nullptr, &old) || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO)) {
                all = false;
                continue;
            }
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_fault_signal;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
            sigemptyset(&sa.sa_mask);
            sigaction(sig, &sa, nullptr);
        }
        const char *env = getenv("MLPF_HOST_PROTECT");
        R().protect = all && !(env && !strcmp(env, "0"));
    });
}

static void run_grid(Launch &L)
{
    const unsigned long long blocks = (unsigned long long)L.grid.x * L.grid.y * L.grid.z;
    const int threads = (int)std::min<unsigned long long>(L.threads, blocks);
    install_fault_handler();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (long long b = 0; b < (long long)blocks; b++)
        if (!L.failed.load(std::memory_order_relaxed)) run_block(L, (unsigned long long)b);
    if (L.failed) {
        R().sticky = cudaErrorLaunchFailure;
        drop_all();
    }
}

void launch(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            std::function<void()> body)
{
    LOCK;
    if (R().sticky != cudaSuccess) return;
    auto refuse = [&](cudaError_t e, const char *why) {
        fprintf(stderr, "mlpf-host: launch of kernel '%s' grid (%u,%u,%u) block (%u,%u,%u) smem %zu refused: %s (%s)\n",
                name, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, why, cudaGetErrorName(e));
        fail(e);
    };
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !block.x || !block.y || !block.z)
        return refuse(cudaErrorInvalidConfiguration, "a dimension is zero");
    if (block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024)
        return refuse(cudaErrorInvalidConfiguration, "more than 1024 threads per block (or x, y > 1024, z > 64)");
    if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
        return refuse(cudaErrorInvalidConfiguration, "grid beyond (2^31-1, 65535, 65535)");
    auto lim = R().dyn_limit.find(kernel);
    if (smem > (lim == R().dyn_limit.end() ? kDynSmemDefault : lim->second))
        return refuse(cudaErrorInvalidValue,
                      "more dynamic shared memory than allowed (48 KiB, or what cudaFuncSetAttribute set)");
    CUstream_st *s = resolve(stream);
    if (s->destroyed) return refuse(cudaErrorInvalidResourceHandle, "the stream was destroyed");
    auto L = std::make_shared<Launch>();
    L->name = name, L->grid = grid, L->block = block, L->smem = smem, L->body = std::move(body);
    const char *order = getenv("MLPF_HOST_ORDER");
    L->order = !order || !*order || !strcmp(order, "forward") ? 0
               : !strcmp(order, "reverse")                    ? 1
               : !strcmp(order, "shuffle")                    ? 2
                                                              : -1;
    if (L->order < 0) {
        fprintf(stderr, "mlpf-host: MLPF_HOST_ORDER=%s is not forward, reverse or shuffle; using forward\n", order);
        L->order = 0;
    }
    const char *t = getenv("MLPF_HOST_THREADS");
    L->threads = t && atoi(t) > 0 ? atoi(t) : omp_get_max_threads();
    enqueue(s, [L] { run_grid(*L); });
}

const char *last_fault()
{
    std::lock_guard<std::mutex> g(R().fault_mu);
    static thread_local std::string copy;
    copy = R().fault;
    return copy.c_str();
}

// ---- memory helpers ---------------------------------------------------------
static const Mapping *find(const std::map<uintptr_t, Mapping> &m, const void *p, size_t n)
{
    auto it = m.upper_bound((uintptr_t)p);
    if (it == m.begin()) return nullptr;
    --it;
    const uintptr_t a = (uintptr_t)p, start = it->first;
    return a >= start && a + std::max<size_t>(n, 1) <= start + std::max<size_t>(it->second.size, 1) ? &it->second
                                                                                                    : nullptr;
}
static bool device_side(const void *p, size_t n) { return find(R().device, p, n) || find(R().pinned, p, n); }
static bool pinned(const void *p, size_t n) { return find(R().pinned, p, n) != nullptr; }
static cudaError_t alloc(std::map<uintptr_t, Mapping> &m, void **p, size_t n)
{
    if (!p) return fail(cudaErrorInvalidValue);
    *p = nullptr;
    if (n == 0) return cudaSuccess;
    Mapping mp;
    if (n > meminfo("MemAvailable:") || !map_guarded(n, natural_align(n), mp)) return fail(cudaErrorMemoryAllocation);
    memset(mp.user, 0xFF, n);  // not zeroed, as on a GPU: a read before any write shows
    m[(uintptr_t)mp.user] = mp;
    install_fault_handler();
    if (&m == &R().device && R().protect) mprotect(data_start(mp), data_len(mp), PROT_NONE);
    *p = mp.user;
    return cudaSuccess;
}
static cudaError_t release(std::map<uintptr_t, Mapping> &m, void *p, const char *what)
{
    if (!p) return cudaSuccess;
    drain_all();  // as on a GPU, freeing waits for the work that may still use it
    STICKY;
    auto it = m.find((uintptr_t)p);
    if (it == m.end()) return invalid("%s(%p): not a pointer it allocated", what, p);
    // Not unmapped at once, where the next mmap could reuse the addresses: the
    // pages are dropped and made inaccessible, so a use after free faults.
    Mapping &f = it->second;
    madvise(f.base, f.len, MADV_DONTNEED);
    mprotect(f.base, f.len, PROT_NONE);
    R().freed.push_back(f);
    m.erase(it);
    if (R().freed.size() > 1024) unmap(R().freed.front()), R().freed.pop_front();
    return cudaSuccess;
}
static cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind &kind, const char *what)
{
    if (kind == cudaMemcpyDefault) {
        const bool d = device_side(dst, 1) && !pinned(dst, 1), s = device_side(src, 1) && !pinned(src, 1);
        kind = d ? (s ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                 : (s ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    }
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice) return fail(cudaErrorInvalidMemcpyDirection);
    if (n == 0) return cudaSuccess;
    if ((kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) && !device_side(dst, n))
        return invalid("%s: destination [%p, +%zu bytes) is not inside one device buffer", what, dst, n);
    if ((kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) && !device_side(src, n))
        return invalid("%s: source [%p, +%zu bytes) is not inside one device buffer", what, src, n);
    return cudaSuccess;
}
// CUDA's rules: pageable host memory is staged (host to device) or copied
// before the call returns (device to host); pinned memory is read and written
// when the copy executes in stream order, so host code racing it shows.
static cudaError_t copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind, CUstream_st *s, bool sync_call)
{
    if (n == 0) return cudaSuccess;
    uint64_t seq;
    if (kind == cudaMemcpyHostToDevice && !pinned(src, n)) {
        auto staged = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        seq = enqueue(s, [dst, staged, n] { memcpy(dst, staged->data(), n); });
    } else {
        seq = enqueue(s, [dst, src, n] { memcpy(dst, src, n); });
    }
    const bool waits = kind == cudaMemcpyHostToHost || (kind == cudaMemcpyDeviceToHost && !pinned(dst, n)) ||
                       (sync_call && kind != cudaMemcpyDeviceToDevice);
    if (waits) drain(s, seq);
    return R().sticky;
}

}  // namespace mlpf_host

using namespace mlpf_host;

// ---- device and versions ----------------------------------------------------
template <class T>
static cudaError_t give(T *out, T v)  // the answer of a getter
{
    if (!out) return fail(cudaErrorInvalidValue);
    *out = v;
    return cudaSuccess;
}
static int per_rank_gpu()  // the local rank, with MLPF_HOST_GPU_PER_RANK=1; else -1
{
    if (!env_flag("MLPF_HOST_GPU_PER_RANK")) return -1;
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!lr) lr = getenv("SLURM_LOCALID");
    return lr ? atoi(lr) % 200 : 0;
}
cudaError_t cudaGetDeviceCount(int *count) { return give(count, 1); }
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int *device) { return give(device, 0); }
cudaError_t cudaDriverGetVersion(int *v) { return give(v, CUDART_VERSION); }
cudaError_t cudaRuntimeGetVersion(int *v) { return give(v, CUDART_VERSION); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device)
{
    if (!p) return fail(cudaErrorInvalidValue);
    if (device != 0) return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA host execution path (CPU; tests only, not a GPU)");
    p->totalGlobalMem = meminfo("MemTotal:");
    p->sharedMemPerBlock = kDynSmemDefault, p->sharedMemPerBlockOptin = kDynSmemOptin;
    p->sharedMemPerMultiprocessor = 228 << 10;
    p->regsPerBlock = p->regsPerMultiprocessor = 65536;
    p->warpSize = 32, p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->major = 9, p->minor = 0, p->multiProcessorCount = 132;  // an H100's
    p->maxThreadsPerMultiProcessor = 2048, p->maxBlocksPerMultiProcessor = 32;
    p->totalConstMem = 64 << 10, p->memPitch = 2147483647, p->textureAlignment = 512;
    p->concurrentKernels = p->unifiedAddressing = p->canMapHostMemory = 1, p->asyncEngineCount = 2;
    // MLPF_HOST_GPU_PER_RANK=1: every local rank sees a GPU of its own (as
    // with Slurm's --gpus-per-task 1): its UUID and PCI bus id (0000:1N:00.0)
    // come from the local rank; otherwise all share one (UUID of zeros, bus 0)
    if (const int lr = per_rank_gpu(); lr >= 0) {
        p->uuid.bytes[0] = (char)0x4d, p->uuid.bytes[15] = (char)(lr + 1);
        p->pciBusID = 0x10 + lr;
    }
    return cudaSuccess;  // otherwise pciBusID, pciDeviceID, pciDomainID: 0, no PCI device behind it
}
cudaError_t cudaDeviceGetPCIBusId(char *id, int len, int device)
{
    if (device != 0) return fail(cudaErrorInvalidDevice);
    if (!id || len < 13) return fail(cudaErrorInvalidValue);
    const int lr = per_rank_gpu();
    snprintf(id, (size_t)len, "0000:%02x:00.0", lr >= 0 ? 0x10 + lr : 0);  // fake
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
    LOCK;
    STICKY;
    if (!free_bytes || !total) return fail(cudaErrorInvalidValue);
    *free_bytes = meminfo("MemAvailable:"), *total = meminfo("MemTotal:");
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value)
{
    LOCK;
    STICKY;
    if (!func) return fail(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > kDynSmemOptin)
            return invalid("cudaFuncSetAttribute: %d bytes of dynamic shared memory, more than 227 KiB", value);
        R().dyn_limit[func] = (size_t)value;
    }
    return cudaSuccess;  // other attributes change nothing here
}

// ---- errors: a launch's configuration error is reported once; a kernel
// fault is sticky until cudaDeviceReset, as on a GPU ---------------------------
cudaError_t cudaPeekAtLastError()
{
    LOCK;
    return R().sticky != cudaSuccess ? R().sticky : R().last;
}
cudaError_t cudaGetLastError()
{
    LOCK;
    const cudaError_t e = cudaPeekAtLastError();
    R().last = cudaSuccess;
    return e;
}
static const struct {
    cudaError_t e;
    const char *name, *text;
} kErrors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorInvalidDeviceFunction, "cudaErrorInvalidDeviceFunction", "invalid device function"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
};
const char *cudaGetErrorString(cudaError_t e)
{
    for (auto &k : kErrors)
        if (k.e == e) return k.text;
    return "unrecognized error code";
}
const char *cudaGetErrorName(cudaError_t e)
{
    for (auto &k : kErrors)
        if (k.e == e) return k.name;
    return "cudaErrorUnknown";
}

// ---- memory -----------------------------------------------------------------
cudaError_t cudaMalloc(void **p, size_t n)
{
    LOCK;
    STICKY;
    return alloc(R().device, p, n);
}
cudaError_t cudaMallocHost(void **p, size_t n)
{
    LOCK;
    STICKY;
    return alloc(R().pinned, p, n);
}
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned int)
{
    LOCK;
    STICKY;
    return alloc(R().pinned, p, n);
}
cudaError_t cudaFree(void *p)
{
    LOCK;
    STICKY;
    return release(R().device, p, "cudaFree");
}
cudaError_t cudaFreeHost(void *p)
{
    LOCK;
    STICKY;
    return release(R().pinned, p, "cudaFreeHost");
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    LOCK;
    STICKY;
    if (cudaError_t e = check_copy(dst, src, n, kind, "cudaMemcpy")) return e;
    return copy(dst, src, n, kind, &R().legacy, true);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t stream)
{
    LOCK;
    STICKY;
    if (cudaError_t e = check_copy(dst, src, n, kind, "cudaMemcpyAsync")) return e;
    CUstream_st *s = resolve(stream);
    return s->destroyed ? fail(cudaErrorInvalidResourceHandle) : copy(dst, src, n, kind, s, false);
}
static cudaError_t memset_on(void *p, int v, size_t n, CUstream_st *s)
{
    if (n == 0) return cudaSuccess;
    if (!device_side(p, n)) return invalid("cudaMemset: [%p, +%zu bytes) is not inside one device buffer", p, n);
    if (s->destroyed) return fail(cudaErrorInvalidResourceHandle);
    enqueue(s, [p, v, n] { memset(p, v, n); });
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n)
{
    LOCK;
    STICKY;
    return memset_on(p, v, n, &R().legacy);
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s)
{
    LOCK;
    STICKY;
    return memset_on(p, v, n, resolve(s));
}

// ---- streams and events -------------------------------------------------------
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
    LOCK;
    STICKY;
    if (!s) return fail(cudaErrorInvalidValue);
    *s = new CUstream_st;
    (*s)->flags = flags;
    R().streams.push_back(*s);
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    LOCK;
    STICKY;
    CUstream_st *s = resolve(stream);
    if (s == &R().legacy || s == &R().per_thread || s->destroyed) return fail(cudaErrorInvalidResourceHandle);
    s->destroyed = true;  // its queued work still runs, as on a GPU
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    LOCK;
    STICKY;
    CUstream_st *s = resolve(stream);
    drain(s, s->issued);
    return R().sticky;
}
cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    return cudaStreamSynchronize(stream);
}  // runs it: never "not ready"
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t e, unsigned int)
{
    LOCK;
    STICKY;
    if (!e) return fail(cudaErrorInvalidResourceHandle);
    CUstream_st *s = resolve(stream);
    auto st = e->st;
    if (st->recorded && st->s != s) enqueue(s, [] {}, {{st->s, st->seq}});  // the record as of now
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags)
{
    LOCK;
    STICKY;
    if (!e) return fail(cudaErrorInvalidValue);
    *e = new CUevent_st;
    (*e)->flags = flags;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    LOCK;
    if (!e) return fail(cudaErrorInvalidResourceHandle);
    delete e;  // a marker still queued keeps the shared state alive
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream)
{
    LOCK;
    STICKY;
    if (!e) return fail(cudaErrorInvalidResourceHandle);
    CUstream_st *s = resolve(stream);
    auto st = e->st;
    const uint64_t gen = ++st->gen;
    st->recorded = true, st->done = false, st->s = s, st->seq = s->issued + 1;
    enqueue(s, [st, gen] {
        if (st->gen == gen) st->t = now(), st->done = true;
    });
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    LOCK;
    STICKY;
    if (!e) return fail(cudaErrorInvalidResourceHandle);
    if (e->st->recorded) drain(e->st->s, e->st->seq);
    return R().sticky;
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }  // runs it: never "not ready"
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    LOCK;
    STICKY;
    if (!ms) return fail(cudaErrorInvalidValue);
    if (!a || !b || !a->st->recorded || !b->st->recorded || ((a->flags | b->flags) & cudaEventDisableTiming))
        return fail(cudaErrorInvalidResourceHandle);
    if (!a->st->done || !b->st->done) return fail(cudaErrorNotReady);
    *ms = (float)((b->st->t - a->st->t) * 1e3);
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize()
{
    LOCK;
    STICKY;
    drain_all();
    return R().sticky;
}
// Drops queued work and frees every buffer; clears the sticky error.
cudaError_t cudaDeviceReset()
{
    LOCK;
    drop_all();
    for (auto *m : {&R().device, &R().pinned}) {
        for (auto &kv : *m) unmap(kv.second);
        m->clear();
    }
    for (Mapping &f : R().freed) unmap(f);
    R().freed.clear();
    R().dyn_limit.clear();
    R().sticky = R().last = cudaSuccess;
    std::lock_guard<std::mutex> g(R().fault_mu);
    R().fault.clear();
    return cudaSuccess;
}

// ---- cuBLAS -------------------------------------------------------------------
namespace {
enum Round { NONE, TF32, BF16 };
struct Gemm {
    cublasOperation_t ta, tb;
    int m, n, k, lda, ldb, ldc, batch;
    long long sa, sb, sc;  // strides in elements
    double alpha, beta;
    const void *A, *B;
    void *C;
    cudaDataType at, ct;
    Round round;
    bool f64;
};

// cvt.rna.tf32.f32: 10 explicit mantissa bits, round to nearest, ties away from zero.
float to_tf32(float x)
{
    uint32_t u = to_bits(x) & 0xffffffffu;
    if ((u & 0x7f800000u) == 0x7f800000u) return x;  // Inf, NaN unchanged
    return from_bits<float>((u + 0x1000u) & 0xffffe000u);
}
float load(const void *p, cudaDataType t, size_t i)
{
    return t == CUDA_R_16BF ? __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i])
                            : static_cast<const float *>(p)[i];
}
float rounded(float x, Round r)
{
    return r == TF32 ? to_tf32(x) : r == BF16 ? __bfloat162float(__float2bfloat16(x)) : x;
}

// The stored rows x cols of an operand as fp32, rounded, without the padding.
const float *operand(const void *p, cudaDataType t, int ld, int rows, int cols, Round r, std::vector<float> &buf,
                     int &ld_out)
{
    if (t == CUDA_R_32F && r == NONE) {
        ld_out = ld;
        return static_cast<const float *>(p);
    }
    buf.resize((size_t)rows * cols);
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++) buf[(size_t)j * rows + i] = rounded(load(p, t, (size_t)j * ld + i), r);
    ld_out = std::max(1, rows);
    return buf.data();
}

void blas(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, const Gemm &g, const float *a, int lda, const float *b, int ldb,
          float *c, int ldc)
{
    cblas_sgemm(CblasColMajor, ta, tb, g.m, g.n, g.k, (float)g.alpha, a, lda, b, ldb, (float)g.beta, c, ldc);
}
void blas(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, const Gemm &g, const double *a, int lda, const double *b, int ldb,
          double *c, int ldc)
{
    cblas_dgemm(CblasColMajor, ta, tb, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, c, ldc);
}
// C = alpha op(A) op(B) + beta C on the operands as they are, column-major.
template <class T>
void product(const Gemm &g, const T *a, int lda, const T *b, int ldb, T *c, int ldc)
{
    if (g.beta == 0 || g.k == 0)
        for (int j = 0; j < g.n; j++)
            for (int i = 0; i < g.m; i++) {
                T &x = c[(size_t)j * ldc + i];
                x = g.beta == 0 ? T(0) : T(g.beta) * x;  // beta 0: C is not read, so NaN in it does not propagate
            }
    const CBLAS_TRANSPOSE ta = g.ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                          tb = g.tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;
    if (g.k) blas(ta, tb, g, a, lda, b, ldb, c, ldc);
}
void gemm_one(const Gemm &g, int b)
{
    const long long es_in = g.f64 ? 8 : g.at == CUDA_R_16BF ? 2 : 4, es_out = g.f64 ? 8 : g.ct == CUDA_R_16BF ? 2 : 4;
    const char *A = static_cast<const char *>(g.A) + b * g.sa * es_in,
               *B = static_cast<const char *>(g.B) + b * g.sb * es_in;
    char *C = static_cast<char *>(g.C) + b * g.sc * es_out;
    if (g.f64)
        return product(g, reinterpret_cast<const double *>(A), g.lda, reinterpret_cast<const double *>(B), g.ldb,
                       reinterpret_cast<double *>(C), g.ldc);
    const bool na = g.ta == CUBLAS_OP_N, nb = g.tb == CUBLAS_OP_N;
    std::vector<float> abuf, bbuf, cbuf;
    int lda = 1, ldb = 1;
    const float *a = g.k ? operand(A, g.at, g.lda, na ? g.m : g.k, na ? g.k : g.m, g.round, abuf, lda) : nullptr;
    const float *bm = g.k ? operand(B, g.at, g.ldb, nb ? g.k : g.n, nb ? g.n : g.k, g.round, bbuf, ldb) : nullptr;
    if (g.ct == CUDA_R_32F) return product(g, a, lda, bm, ldb, reinterpret_cast<float *>(C), g.ldc);
    // bf16 C: accumulated in fp32, rounded once on the way out
    cbuf.assign((size_t)g.m * g.n, 0.0f);
    for (int j = 0; j < g.n && g.beta != 0; j++)
        for (int i = 0; i < g.m; i++) cbuf[(size_t)j * g.m + i] = load(C, CUDA_R_16BF, (size_t)j * g.ldc + i);
    product(g, a, lda, bm, ldb, cbuf.data(), g.m);
    __nv_bfloat16 *out = reinterpret_cast<__nv_bfloat16 *>(C);
    for (int j = 0; j < g.n; j++)
        for (int i = 0; i < g.m; i++) out[(size_t)j * g.ldc + i] = __float2bfloat16(cbuf[(size_t)j * g.m + i]);
}
// Small products run on one thread: waking OpenBLAS's OpenMP team costs more
// than they take (milliseconds on a busy machine). OpenBLAS's OpenMP build
// follows omp_get_max_threads(); both settings are restored.
struct OneBlasThread {
    int omp = omp_get_max_threads(), blas = openblas_get_num_threads();
    OneBlasThread() { openblas_set_num_threads(1); }
    ~OneBlasThread() { openblas_set_num_threads(blas), omp_set_num_threads(omp); }
};
void gemm_run(const Gemm &g)
{
    if (g.m == 0 || g.n == 0 || g.batch == 0) return;
    const double work = (double)g.m * g.n * std::max(g.k, 1);
    const bool disjoint = std::llabs(g.sc) >= (long long)g.ldc * g.n;
    if (g.batch > 1 && work < (1 << 18) && work * g.batch >= (1 << 22) && disjoint) {
#pragma omp parallel for schedule(static)  // many small products: one per thread
        for (int b = 0; b < g.batch; b++) gemm_one(g, b);
    } else if (work * g.batch < (1 << 22)) {
        OneBlasThread one;
        for (int b = 0; b < g.batch; b++) gemm_one(g, b);
    } else {
        for (int b = 0; b < g.batch; b++) gemm_one(g, b);  // large ones: OpenBLAS's own threads
    }
}

// cuBLAS's argument checks, then the product is queued on the handle's stream.
cublasStatus_t gemm_submit(cublasHandle_t h, Gemm g, const void *alpha, const void *beta)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    auto op_ok = [](cublasOperation_t o) { return o == CUBLAS_OP_N || o == CUBLAS_OP_T || o == CUBLAS_OP_C; };
    if (!op_ok(g.ta) || !op_ok(g.tb) || g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const int rows_a = g.ta == CUBLAS_OP_N ? g.m : g.k, rows_b = g.tb == CUBLAS_OP_N ? g.k : g.n;
    if (g.lda < std::max(1, rows_a) || g.ldb < std::max(1, rows_b) || g.ldc < std::max(1, g.m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    // Real types: conjugate transpose is the transpose.
    if (g.ta == CUBLAS_OP_C) g.ta = CUBLAS_OP_T;
    if (g.tb == CUBLAS_OP_C) g.tb = CUBLAS_OP_T;
    g.alpha = g.f64 ? *static_cast<const double *>(alpha) : *static_cast<const float *>(alpha);
    g.beta = g.f64 ? *static_cast<const double *>(beta) : *static_cast<const float *>(beta);
    LOCK;
    if (R().sticky != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    enqueue(resolve(h->stream), [g] { gemm_run(g); });
    return CUBLAS_STATUS_SUCCESS;
}

// The type combinations of cuBLAS's cublasGemmEx table that the backend can use.
cublasStatus_t resolve_types(cublasHandle_t h, cudaDataType at, cudaDataType bt, cudaDataType ct,
                             cublasComputeType_t cp, Gemm &g)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    g.at = at, g.ct = ct, g.f64 = false, g.round = NONE;
    if (at != bt) return CUBLAS_STATUS_NOT_SUPPORTED;
    switch (cp) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
        if (at == CUDA_R_32F && ct == CUDA_R_32F) {
            // The TF32 math mode lets the default fp32 compute type use TF32 too.
            if (cp == CUBLAS_COMPUTE_32F && (h->mode & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH) g.round = TF32;
            return CUBLAS_STATUS_SUCCESS;
        }
        return at == CUDA_R_16BF && (ct == CUDA_R_16BF || ct == CUDA_R_32F) ? CUBLAS_STATUS_SUCCESS
                                                                            : CUBLAS_STATUS_NOT_SUPPORTED;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
        g.round = cp == CUBLAS_COMPUTE_32F_FAST_TF32 ? TF32 : BF16;
        return at == CUDA_R_32F && ct == CUDA_R_32F ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
        g.f64 = true;
        return at == CUDA_R_64F && ct == CUDA_R_64F ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}
Gemm shape(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A, int lda, long long sa,
           const void *B, int ldb, long long sb, void *C, int ldc, long long sc, int batch)
{
    Gemm g{};
    g.ta = ta, g.tb = tb, g.m = m, g.n = n, g.k = k, g.A = A, g.lda = lda, g.sa = sa, g.B = B, g.ldb = ldb, g.sb = sb;
    g.C = C, g.ldc = ldc, g.sc = sc, g.batch = batch;
    return g;
}
}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    LOCK;
    if (R().sticky != cudaSuccess) return CUBLAS_STATUS_NOT_INITIALIZED;
    *h = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    LOCK;
    drain_all();  // cublasDestroy synchronises the device
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
#define HANDLE \
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    HANDLE;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t h, cudaStream_t *s)
{
    HANDLE;
    return s ? (*s = h->stream, CUBLAS_STATUS_SUCCESS) : CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *, size_t)
{
    HANDLE;
    return CUBLAS_STATUS_SUCCESS;
}  // none needed
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
    HANDLE;
    h->mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *mode)
{
    HANDLE;
    return mode ? (*mode = h->mode, CUBLAS_STATUS_SUCCESS) : CUBLAS_STATUS_INVALID_VALUE;
}
const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "<unknown>";
    }
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t cp,
                            cublasGemmAlgo_t)
{
    Gemm g = shape(ta, tb, m, n, k, A, lda, 0, B, ldb, 0, C, ldc, 0, 1);
    if (cublasStatus_t s = resolve_types(h, at, bt, ct, cp, g)) return s;
    return gemm_submit(h, g, alpha, beta);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sa, const void *B, cudaDataType bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t cp, cublasGemmAlgo_t)
{
    Gemm g = shape(ta, tb, m, n, k, A, lda, sa, B, ldb, sb, C, ldc, sc, batch);
    if (cublasStatus_t s = resolve_types(h, at, bt, ct, cp, g)) return s;
    return gemm_submit(h, g, alpha, beta);
}
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    return cublasGemmEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, beta, C, CUDA_R_32F, ldc,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long sa,
                                         const float *B, int ldb, long long sb, const float *beta, float *C, int ldc,
                                         long long sc, int batch)
{
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb, sb, beta,
                                      C, CUDA_R_32F, ldc, sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t cublasDgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const double *alpha, const double *A, int lda, const double *B, int ldb, const double *beta,
                           double *C, int ldc)
{
    return cublasGemmEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_64F, lda, B, CUDA_R_64F, ldb, beta, C, CUDA_R_64F, ldc,
                        CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double *alpha, const double *A, int lda, long long sa,
                                         const double *B, int ldb, long long sb, const double *beta, double *C, int ldc,
                                         long long sc, int batch)
{
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_64F, lda, sa, B, CUDA_R_64F, ldb, sb, beta,
                                      C, CUDA_R_64F, ldc, sc, batch, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT);
}

// ---- NCCL over MPI (tests only) ---------------------------------------------
// The few NCCL calls of cuda/comm.cu, on top of MPI, so that the GPU backend's
// multi-rank training runs in CI: a communicator is a duplicate of
// MPI_COMM_WORLD (its ranks must be the world's), ncclAllReduce is queued on
// its stream like a kernel and runs MPI_Allreduce when the stream runs (every
// rank runs its buckets in the same order, as NCCL requires). Non-blocking
// communicators answer ncclInProgress once, so the caller's polling runs.
// MLPF_HOST_NCCL_ERROR_AT=K (with MLPF_HOST_NCCL_ERROR_RANK=R, default 0):
// when the K-th all-reduce of rank R runs, the communicator fails
// asynchronously (ncclRemoteError, as when a peer dies) and the operation
// waits, as a kernel waiting for that peer does, until ncclCommAbort frees
// it; MLPF_HOST_NCCL_STALL_AT=K: it waits so without an error (a stuck peer).
#include <mpi.h>
#include <nccl.h>

struct ncclComm {
    MPI_Comm mpi = MPI_COMM_NULL;
    int rank = 0, size = 1;
    bool blocking = true;
    std::atomic<int> state{ncclSuccess};
    std::atomic<bool> aborted{false};
    long calls = 0, fail_at = 0, stall_at = 0;
};

extern "C" {
ncclResult_t ncclGetVersion(int *v)
{
    if (!v) return ncclInvalidArgument;
    *v = NCCL_VERSION_CODE;
    return ncclSuccess;
}
const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (host stand-in)";
    case ncclSystemError: return "unhandled system error (host stand-in)";
    case ncclInternalError: return "internal error (host stand-in)";
    case ncclInvalidArgument: return "invalid argument (host stand-in)";
    case ncclInvalidUsage: return "invalid usage (host stand-in)";
    case ncclRemoteError: return "remote process exited or there was a network error (host stand-in)";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code (host stand-in)";
    }
}
ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    if (!id) return ncclInvalidArgument;
    memset(id, 0, sizeof *id);
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
    snprintf(id->internal, sizeof id->internal, "mlpf-host-nccl %016llx", (unsigned long long)seed);
    return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *config)
{
    if (!comm) return ncclInvalidArgument;
    *comm = nullptr;
    int init = 0, wr = 0, ws = 0;
    MPI_Initialized(&init);
    if (!init) return ncclInvalidUsage;
    MPI_Comm_rank(MPI_COMM_WORLD, &wr);
    MPI_Comm_size(MPI_COMM_WORLD, &ws);
    if (nranks != ws || rank != wr || strncmp(id.internal, "mlpf-host-nccl ", 15)) {
        fprintf(stderr, "mlpf-host: ncclCommInitRankConfig(%d ranks, rank %d): the stand-in needs the MPI world's "
                "ranks (%d, rank %d) and an id from its ncclGetUniqueId\n", nranks, rank, ws, wr);
        return ncclInvalidArgument;
    }
    ncclComm *c = new ncclComm();
    MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    // every rank must hold the id rank 0 made: a broadcast that went wrong shows here
    char lo[NCCL_UNIQUE_ID_BYTES], hi[NCCL_UNIQUE_ID_BYTES];
    memcpy(lo, id.internal, sizeof lo);
    MPI_Allreduce(id.internal, lo, NCCL_UNIQUE_ID_BYTES, MPI_CHAR, MPI_MIN, c->mpi);
    MPI_Allreduce(id.internal, hi, NCCL_UNIQUE_ID_BYTES, MPI_CHAR, MPI_MAX, c->mpi);
    if (memcmp(lo, hi, sizeof lo)) {
        fprintf(stderr, "mlpf-host: ncclCommInitRankConfig: the ranks hold different unique ids\n");
        MPI_Comm_free(&c->mpi);
        delete c;
        return ncclInvalidUsage;
    }
    c->rank = rank, c->size = nranks;
    c->blocking = !config || config->blocking != 0;
    const char *at = getenv("MLPF_HOST_NCCL_ERROR_AT"), *who = getenv("MLPF_HOST_NCCL_ERROR_RANK");
    const char *st = getenv("MLPF_HOST_NCCL_STALL_AT");
    if (rank == (who ? atoi(who) : 0)) {
        if (at && atol(at) > 0) c->fail_at = atol(at);
        if (st && atol(st) > 0) c->stall_at = atol(st);
    }
    *comm = c;
    if (c->blocking) return ncclSuccess;
    c->state = ncclInProgress;
    return ncclInProgress;
}
// No lock: the run guard's thread polls it while a stream may be in MPI.
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *err)
{
    if (!comm || !err) return ncclInvalidArgument;
    int s = comm->state.load();
    *err = (ncclResult_t)s;
    if (s == ncclInProgress) comm->state.compare_exchange_strong(s, ncclSuccess); // done by the next poll
    return ncclSuccess;
}
ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream)
{
    LOCK;
    if (!comm || comm->aborted) return ncclInvalidUsage;
    if (type != ncclFloat || op != ncclSum) return ncclInvalidArgument; // all the benchmark needs
    if (count && (!device_side(send, count * 4) || !device_side(recv, count * 4))) {
        fprintf(stderr, "mlpf-host: ncclAllReduce: buffers %p, %p are not device memory\n", send, recv);
        return ncclInvalidArgument;
    }
    if (comm->state.load() != ncclSuccess && comm->state.load() != ncclInProgress) return (ncclResult_t)comm->state.load();
    ++comm->calls;
    const bool stall = comm->stall_at > 0 && comm->calls == comm->stall_at;
    const bool fail = comm->fail_at > 0 && comm->calls == comm->fail_at;
    // through a host copy: MPI's shared-memory transport may read a peer's
    // buffer from the kernel, which the device memory's protection would refuse
    enqueue(resolve(stream), [=] {
        if (stall || fail) {
            fprintf(stderr, "mlpf-host: ncclAllReduce %ld of rank %d: %s as asked (MLPF_HOST_NCCL_%s_AT)\n",
                    stall ? comm->stall_at : comm->fail_at, comm->rank, stall ? "stalling" : "failing",
                    stall ? "STALL" : "ERROR");
            if (fail) comm->state = ncclRemoteError;
            while (!comm->aborted) usleep(1000);
        }
        if (comm->aborted) return;
        std::vector<float> buf(count);
        memcpy(buf.data(), send, sizeof(float) * count);
        MPI_Allreduce(MPI_IN_PLACE, buf.data(), (int)count, MPI_FLOAT, MPI_SUM, comm->mpi);
        memcpy(recv, buf.data(), sizeof(float) * count);
    });
    if (comm->blocking) return ncclSuccess;
    int s = ncclSuccess;
    comm->state.compare_exchange_strong(s, ncclInProgress);
    return ncclInProgress;
}
ncclResult_t ncclCommAbort(ncclComm_t comm)
{
    if (!comm) return ncclSuccess;
    comm->aborted = true; // what is queued is dropped; the communicator stays (a stream may be in MPI)
    return ncclSuccess;
}
ncclResult_t ncclCommFinalize(ncclComm_t comm)
{
    if (!comm) return ncclInvalidArgument;
    if (comm->blocking) return ncclSuccess;
    int s = ncclSuccess;
    comm->state.compare_exchange_strong(s, ncclInProgress);
    return ncclInProgress;
}
ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    if (!comm) return ncclSuccess;
    cudaDeviceSynchronize();
    MPI_Comm_free(&comm->mpi);
    delete comm;
    return ncclSuccess;
}
}
