#!/usr/bin/env bash
# make test-gpu-host: the CUDA backend on the host execution path (the real
# kernel source on the CPU, cuda/host/README.md), in CI without a GPU. Nothing
# here is a GPU figure.
#   1. the execution path's own tests (tests/gpu_host/test_emulator.cpp)
#   2. tests/gpu_host/test_backend.cpp: every kernel against its CPU
#      counterpart, the matrix products, one step and three Adam steps of tiny
#      and of a small hepscore22 batch per precision against the CPU backend,
#      checkpoints across the backends, the self-check, faults
#   3. the kernels again with the threads of each block in reverse and in
#      shuffled order (a missing barrier shows in one order or another)
#   4. the command line: train and infer --device cuda through the product's
#      mlpfbench, loading the host path's libmlpf_cuda.so as it loads the real one
# usage: tests/gpu_host/run.sh [GPUHOST_BUILD_DIR] (default build-gpuhost)
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
dir=${1:-build-gpuhost}
for f in test_emulator test_backend mlpfbench libmlpf_cuda.so; do
    [[ -e $dir/$f ]] || { echo "gpu-host: $dir/$f is not built (make gpu-host)"; exit 1; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# count NAME LOG: the "N passed, M failed" line of a test program into ours
count() {
    local line
    if line=$(grep -oE "[0-9]+ passed, [0-9]+ failed" "$2" | tail -1); then
        read -r p _ f _ <<<"$line"
        pass=$((pass + p)) fail=$((fail + f))
        echo "$1: $line"
    else
        bad "$1 ended without its closing line: $(tail -5 "$2")"
    fi
}

"$dir/test_emulator" >"$tmp/emu.out" 2>"$tmp/emu.err"
grep -v "^ok" "$tmp/emu.out"
count "execution path" "$tmp/emu.out"
"$dir/test_backend" 2>"$tmp/backend.err" | tee "$tmp/backend.out"
count "backend" "$tmp/backend.out"
for order in reverse shuffle; do
    MLPF_HOST_ORDER=$order "$dir/test_backend" kernels >"$tmp/k$order.out" 2>&1
    grep "^FAIL" "$tmp/k$order.out"
    count "kernels, thread order $order" "$tmp/k$order.out"
done
[[ $fail -eq 0 ]] || { echo "(stderr of the failing programs:)"; tail -n 20 "$tmp"/*.err; }

source "$(dirname "$0")/cli.sh"
finish gpu-host
