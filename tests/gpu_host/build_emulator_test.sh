#!/usr/bin/env bash
# Builds the CUDA host execution path (cuda/host/) and its tests with g++ and
# runs them: no GPU or CUDA driver needed, only the CUDA toolkit's headers.
# Checks: the emulator's own tests (tests/gpu_host/test_emulator.cpp), every
# cuda/*.cu compiling unchanged through the host path, and cuda/gpu.cu's entry
# points running on it. One line per check, then "gpu-host emulator: N passed,
# N failed"; exit status 1 on any failure.
#
# usage: tests/gpu_host/build_emulator_test.sh [BUILD_DIR]   (default build/gpu_host)
# Environment: CUDA_HOME (default /usr/local/cuda), CXX (default g++).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/gpu_host}
cuda=${CUDA_HOME:-/usr/local/cuda}
cxx=${CXX:-g++}
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
mkdir -p "$out"
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
    echo "gpu-host emulator: $pass passed, $fail failed"
    [[ $fail -eq 0 ]]
    exit
}
# NAME LOG: one check line for a finished build step (status in $?); the log on failure.
report() {
    local rc=$? name=$1 log=$2
    if [[ $rc -eq 0 ]] && ! grep -q 'warning:' "$log"; then ok "$name"; return 0; fi
    bad "$name:"
    sed 's/^/    /' "$log" | head -30
    return 1
}

# Exactly what the backend's host-path build uses.
flags=(-std=c++17 -O2 -fopenmp -DMLPF_CUDA_HOST -I"$cuda/include" -include "$root/cuda/host/cuda_host.h")
libs=(-lboost_context "$blas/libopenblas.so" "-Wl,-rpath,$blas")

# Compile in parallel (the test file dominates), then report in order.
"$cxx" "${flags[@]}" -I/usr/include/x86_64-linux-gnu/openblas-openmp -Wall -Wextra \
    -c "$root/cuda/host/stand_ins.cpp" -o "$out/stand_ins.o" >"$out/stand_ins.log" 2>&1 &
p_stand=$!
"$cxx" "${flags[@]}" -Wall -c -x c++ "$root/tests/gpu_host/test_emulator.cpp" \
    -o "$out/test_emulator.o" >"$out/test.log" 2>&1 &
p_test=$!
cus=()
for cu in "$root"/cuda/*.cu; do
    [[ -e $cu ]] || continue
    name=$(basename "$cu" .cu)
    cus+=("$name")
    "$cxx" "${flags[@]}" -I"$root/include" -c -x c++ "$cu" -o "$out/cu_$name.o" >"$out/cu_$name.log" 2>&1 &
    eval "p_cu_$name=\$!"
done

wait $p_stand
report "cuda/host/stand_ins.cpp compiles with -Wall -Wextra, no warnings" "$out/stand_ins.log" || finish
wait $p_test && "$cxx" -fopenmp "$out/test_emulator.o" "$out/stand_ins.o" "${libs[@]}" -o "$out/test_emulator" \
    >>"$out/test.log" 2>&1
report "tests/gpu_host/test_emulator.cpp compiles and links through the host path" "$out/test.log" || finish

# The backend's own sources, unchanged, through the host path.
for name in "${cus[@]}"; do
    eval "wait \$p_cu_$name"
    report "cuda/$name.cu compiles through the host path" "$out/cu_$name.log"
done
if [[ -s $out/cu_gpu.o && $out/cu_gpu.o -nt $root/cuda/gpu.cu ]]; then
    cat >"$out/gpu_driver.cpp" <<'CPP'
// Calls cuda/gpu.cu's entry points (device description, cuBLAS rate) on the host path.
#include <cstdio>
#include <cstring>
#include <initializer_list>
extern "C" {
#include "gpu.h"
int mlpf_cuda_device_count(char *err, size_t n);
int mlpf_cuda_describe(int dev, gpu_info *out, char *err, size_t n);
double mlpf_cuda_gemm_rate(int dev, const char *precision, int M, int N, int K, double seconds, char *err, size_t n);
}
int main()
{
    char err[512] = "";
    gpu_info g;
    const int count = mlpf_cuda_device_count(err, sizeof err), d = mlpf_cuda_describe(0, &g, err, sizeof err);
    int ok = count == 1 && d == 0 && strstr(g.name, "host execution path") && g.cc_major == 9;
    for (const char *p : {"fp32", "tf32", "bf16"}) {
        const double r = mlpf_cuda_gemm_rate(0, p, 96, 64, 48, 0.02, err, sizeof err);
        if (r <= 0) printf("%s: %s\n", p, err);
        ok = ok && r > 0;
    }
    return ok ? 0 : 1;
}
CPP
    "$cxx" -std=c++17 -O2 -fopenmp -I"$root/include" "$out/gpu_driver.cpp" "$out/cu_gpu.o" "$out/stand_ins.o" \
        "${libs[@]}" -o "$out/gpu_driver" >"$out/gpu_driver.log" 2>&1 && "$out/gpu_driver" >>"$out/gpu_driver.log" 2>&1
    report "cuda/gpu.cu runs on the host path (mlpf_cuda_describe; mlpf_cuda_gemm_rate in fp32, tf32, bf16)" \
        "$out/gpu_driver.log"
fi

# The emulator's tests. They provoke kernel faults on purpose, which the host
# path reports on stderr: those messages go to a log, shown on failure.
"$out/test_emulator" 2>"$out/stderr.log" | tee "$out/test.out"
rc=${PIPESTATUS[0]}
if counts=$(grep -o '^test_emulator: [0-9]* passed, [0-9]* failed' "$out/test.out"); then
    read -r _ p _ f _ <<<"$counts"
    pass=$((pass + p)) fail=$((fail + f))
fi
if [[ $rc -ne 0 ]]; then
    [[ -n ${counts:-} ]] || bad "test_emulator ended with status $rc before its closing line"
    echo "(the test's stderr, $out/stderr.log:)"
    tail -40 "$out/stderr.log"
fi
finish
