// The CUDA execution model on the CPU, for tests only: the kernel source of
// cuda/*.cu compiled by g++ and run with one fiber per CUDA thread, so that
// barriers, shared memory, warp collectives and atomics behave as on a GPU
// closely enough to catch indexing, synchronisation and reduction mistakes.
// Nothing run through this header is a GPU result. See cuda/host/README.md.
//
//   g++ -std=c++17 -O2 -fopenmp -DMLPF_CUDA_HOST -I/usr/local/cuda/include
//       -include cuda/host/cuda_host.h -x c++ file.cu ...
//
// The runtime and cuBLAS functions themselves are in stand_ins.cpp.
#pragma once
#ifndef MLPF_CUDA_HOST
#define MLPF_CUDA_HOST 1
#endif

// Standard headers before the attribute macros below: libstdc++ spells
// __attribute__((__noinline__)) itself, which the macro would break.
// <math.h> is libstdc++'s wrapper: it puts the float overloads (sqrt(float),
// ...) in the global namespace, where CUDA has them.
#include <math.h>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// Execution-space keywords for g++, defined before the CUDA headers: without
// __CUDACC__, crt/host_defines.h keeps a definition that already exists.
// A __shared__ variable is one per OS thread, and an OS thread runs one block
// at a time, so it is shared by exactly that block's threads (fibers).
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__

#include <cuda_runtime_api.h>
#include <cuda_runtime.h>
#include <vector_types.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

namespace mlpf_host {

// What the built-in variables read: the running fiber's thread and its block.
struct ThreadState {
    uint3 idx;
};
struct BlockState {
    uint3 idx;
    dim3 dim, grid;
    unsigned char *dyn_smem;  // this launch's dynamic shared memory, poisoned at block start
};
extern __thread ThreadState *tl_thread;
extern __thread BlockState *tl_block;

// Warp collectives. Every lane named in the mask must arrive with the same
// operation and mask; the last one to arrive computes every lane's result.
enum WarpOp { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, BALLOT, ANY, ALL, MATCH_ANY, MATCH_ALL, SYNCWARP };
unsigned long long warp_collective(WarpOp op, unsigned mask, unsigned long long value, int arg, int width);
enum BarrierKind { BAR_SYNC, BAR_COUNT, BAR_OR, BAR_AND };
int block_barrier(BarrierKind kind, int pred);
unsigned active_mask();

// Queues one launch on its stream (checks the configuration first, as the
// launch itself does on a GPU); body runs the kernel for the current thread.
void launch(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            std::function<void()> body);

// For tests: the message of the last kernel fault ("" if none since the last
// cudaDeviceReset), exactly as printed on stderr.
const char *last_fault();

template <class T>
inline unsigned long long to_bits(T v)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp collectives move at most 8 bytes");
    unsigned long long u = 0;
    std::memcpy(&u, &v, sizeof v);
    return u;
}
template <class T>
inline T from_bits(unsigned long long u)
{
    T v;
    std::memcpy(&v, &u, sizeof v);
    return v;
}

// The arguments are converted to the kernel's parameter types and copied once
// at launch, as CUDA does; every thread then gets its own copy of them.
template <class... P, class... A>
inline void launch_kernel(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, A &&...args)
{
    static_assert(sizeof...(P) == sizeof...(A), "MLPF_LAUNCH: the kernel takes a different number of arguments");
    auto held = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
    launch(name, reinterpret_cast<const void *>(kernel), grid, block, smem, stream,
           [kernel, held] { std::apply(kernel, *held); });
}

}  // namespace mlpf_host

// The built-in variables of the running CUDA thread (read-only, as on a GPU).
#define threadIdx (static_cast<const uint3 &>(::mlpf_host::tl_thread->idx))
#define blockIdx (static_cast<const uint3 &>(::mlpf_host::tl_block->idx))
#define blockDim (static_cast<const dim3 &>(::mlpf_host::tl_block->dim))
#define gridDim (static_cast<const dim3 &>(::mlpf_host::tl_block->grid))
static constexpr int warpSize = 32;

// Launch and dynamic shared memory. On the device the backend defines these as
//   kernel<<<grid, block, smem, stream>>>(args...)   and   extern __shared__ T name[]
// (wrap a template kernel whose arguments hold a comma in parentheses).
#define MLPF_LAUNCH(kernel, grid, block, smem, stream, ...)                                                      \
    ::mlpf_host::launch_kernel(#kernel, kernel, dim3(grid), dim3(block), (size_t)(smem), (cudaStream_t)(stream), \
                               ##__VA_ARGS__)
#define MLPF_DYN_SHARED(T, name) T *name = reinterpret_cast<T *>(::mlpf_host::tl_block->dyn_smem)

// cuda_runtime.h declares its kernel-pointer overload only for nvcc.
template <class T>
inline cudaError_t cudaFuncSetAttribute(T *kernel, cudaFuncAttribute attr, int value)
{
    return ::cudaFuncSetAttribute(reinterpret_cast<const void *>(kernel), attr, value);
}

// ---- block barriers -------------------------------------------------------
inline void __syncthreads() { ::mlpf_host::block_barrier(::mlpf_host::BAR_SYNC, 0); }
inline int __syncthreads_count(int p) { return ::mlpf_host::block_barrier(::mlpf_host::BAR_COUNT, p); }
inline int __syncthreads_or(int p) { return ::mlpf_host::block_barrier(::mlpf_host::BAR_OR, p); }
inline int __syncthreads_and(int p) { return ::mlpf_host::block_barrier(::mlpf_host::BAR_AND, p); }

// ---- warp collectives -----------------------------------------------------
inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    ::mlpf_host::warp_collective(::mlpf_host::SYNCWARP, mask, 0, 0, 32);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = warpSize)
{
    using namespace ::mlpf_host;
    return from_bits<T>(warp_collective(SHFL_IDX, mask, to_bits(v), src, width));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize)
{
    using namespace ::mlpf_host;
    return from_bits<T>(warp_collective(SHFL_UP, mask, to_bits(v), (int)(delta & 31), width));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize)
{
    using namespace ::mlpf_host;
    return from_bits<T>(warp_collective(SHFL_DOWN, mask, to_bits(v), (int)(delta & 31), width));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize)
{
    using namespace ::mlpf_host;
    return from_bits<T>(warp_collective(SHFL_XOR, mask, to_bits(v), lane_mask & 31, width));
}
inline unsigned __ballot_sync(unsigned mask, int p)
{
    return (unsigned)::mlpf_host::warp_collective(::mlpf_host::BALLOT, mask, p != 0, 0, 32);
}
inline int __any_sync(unsigned mask, int p)
{
    return (int)::mlpf_host::warp_collective(::mlpf_host::ANY, mask, p != 0, 0, 32);
}
inline int __all_sync(unsigned mask, int p)
{
    return (int)::mlpf_host::warp_collective(::mlpf_host::ALL, mask, p != 0, 0, 32);
}
template <class T>
inline unsigned __match_any_sync(unsigned mask, T v)
{
    return (unsigned)::mlpf_host::warp_collective(::mlpf_host::MATCH_ANY, mask, ::mlpf_host::to_bits(v), 0, 32);
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T v, int *pred)
{
    unsigned r = (unsigned)::mlpf_host::warp_collective(::mlpf_host::MATCH_ALL, mask, ::mlpf_host::to_bits(v), 0, 32);
    *pred = r != 0;
    return r;
}
// On a GPU the active mask may be any set of lanes that includes the caller
// (independent thread scheduling); the host path answers the smallest one.
inline unsigned __activemask() { return ::mlpf_host::active_mask(); }

// ---- bit operations -------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }

// ---- atomics: real atomic operations, since blocks run on several OS threads
#define MLPF_ATOMIC_FETCH(name, builtin, T) \
    inline T name(T *p, T v) { return builtin(p, v, __ATOMIC_RELAXED); }
MLPF_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, int)
MLPF_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, unsigned)
MLPF_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, unsigned long long)
MLPF_ATOMIC_FETCH(atomicSub, __atomic_fetch_sub, int)
MLPF_ATOMIC_FETCH(atomicSub, __atomic_fetch_sub, unsigned)
MLPF_ATOMIC_FETCH(atomicAnd, __atomic_fetch_and, int)
MLPF_ATOMIC_FETCH(atomicAnd, __atomic_fetch_and, unsigned)
MLPF_ATOMIC_FETCH(atomicOr, __atomic_fetch_or, int)
MLPF_ATOMIC_FETCH(atomicOr, __atomic_fetch_or, unsigned)
MLPF_ATOMIC_FETCH(atomicXor, __atomic_fetch_xor, int)
MLPF_ATOMIC_FETCH(atomicXor, __atomic_fetch_xor, unsigned)
MLPF_ATOMIC_FETCH(atomicExch, __atomic_exchange_n, int)
MLPF_ATOMIC_FETCH(atomicExch, __atomic_exchange_n, unsigned)
MLPF_ATOMIC_FETCH(atomicExch, __atomic_exchange_n, unsigned long long)
#undef MLPF_ATOMIC_FETCH

#define MLPF_ATOMIC_CAS(T)                                                                             \
    inline T atomicCAS(T *p, T expected, T desired)                                                    \
    {                                                                                                  \
        __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
        return expected; /* the old value, whether or not it was replaced */                           \
    }
MLPF_ATOMIC_CAS(int)
MLPF_ATOMIC_CAS(unsigned)
MLPF_ATOMIC_CAS(unsigned long long)
#undef MLPF_ATOMIC_CAS
namespace mlpf_host {
// Read-modify-write of any 4- or 8-byte type through a compare-and-swap loop
// on its bits (float and double addition, min and max).
template <class T, class F>
inline T atomic_update(T *p, F f)
{
    using U = std::conditional_t<sizeof(T) == 4, unsigned, unsigned long long>;
    U *q = reinterpret_cast<U *>(p);
    U old = __atomic_load_n(q, __ATOMIC_RELAXED), want;
    do {
        want = to_bits<T>(f(from_bits<T>(old)));
    } while (!__atomic_compare_exchange_n(q, &old, want, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return from_bits<T>(old);
}
}  // namespace mlpf_host
inline float atomicAdd(float *p, float v)
{
    return ::mlpf_host::atomic_update(p, [v](float x) { return x + v; });
}
inline double atomicAdd(double *p, double v)
{
    return ::mlpf_host::atomic_update(p, [v](double x) { return x + v; });
}
inline float atomicExch(float *p, float v)
{
    return ::mlpf_host::atomic_update(p, [v](float) { return v; });
}
#define MLPF_ATOMIC_MINMAX(T)                                                     \
    inline T atomicMin(T *p, T v)                                                 \
    {                                                                             \
        return ::mlpf_host::atomic_update(p, [v](T x) { return v < x ? v : x; }); \
    }                                                                             \
    inline T atomicMax(T *p, T v)                                                 \
    {                                                                             \
        return ::mlpf_host::atomic_update(p, [v](T x) { return v > x ? v : x; }); \
    }
MLPF_ATOMIC_MINMAX(int)
MLPF_ATOMIC_MINMAX(unsigned)
MLPF_ATOMIC_MINMAX(long long)
MLPF_ATOMIC_MINMAX(unsigned long long)
#undef MLPF_ATOMIC_MINMAX

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <class T>
inline T __ldg(const T *p)
{
    return *p;
}

// ---- math that CUDA has and <cmath> lacks. The fast intrinsics are the
// accurate functions here: the host path does not reproduce their error.
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline int __float_as_int(float x) { return ::mlpf_host::from_bits<int>(::mlpf_host::to_bits(x)); }
inline unsigned __float_as_uint(float x) { return ::mlpf_host::from_bits<unsigned>(::mlpf_host::to_bits(x)); }
inline float __int_as_float(int x) { return ::mlpf_host::from_bits<float>(::mlpf_host::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return ::mlpf_host::from_bits<float>(::mlpf_host::to_bits(x)); }
inline long long __double_as_longlong(double x) { return ::mlpf_host::from_bits<long long>(::mlpf_host::to_bits(x)); }
inline double __longlong_as_double(long long x) { return ::mlpf_host::from_bits<double>(::mlpf_host::to_bits(x)); }

// CUDA's global min and max overloads (device code calls them unqualified).
#define MLPF_MINMAX(R, A, B)                                     \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
    inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
MLPF_MINMAX(int, int, int)
MLPF_MINMAX(unsigned, unsigned, unsigned)
MLPF_MINMAX(unsigned, int, unsigned)
MLPF_MINMAX(unsigned, unsigned, int)
MLPF_MINMAX(long long, long long, long long)
MLPF_MINMAX(unsigned long long, unsigned long long, unsigned long long)
MLPF_MINMAX(double, double, double)
MLPF_MINMAX(double, float, double)
MLPF_MINMAX(double, double, float)
#undef MLPF_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
