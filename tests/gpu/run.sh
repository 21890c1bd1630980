#!/usr/bin/env bash
# The GPU checks, on a machine with an NVIDIA GPU (issue 7). What exists so far:
# device discovery (`mlpfbench info`) and the cuBLAS matrix-product rate at the
# model's shapes in fp32, tf32 and bf16 (`mlpfbench gemm-bench --device
# cuda`), the rate GPU training will be measured against. Not written yet, and
# therefore reported as NOT BUILT, not as passed: the model's layers on the
# GPU, gradient parity against the CPU backend, the multi-rank NCCL
# equivalence test and the GPU training benchmark.
#
# usage: tests/gpu/run.sh [BUILD]    (BUILD defaults to build; run `make` first)
# Outside this project's own machines the usual packages are there. On the
# lent device machine (no MPI, HDF5 or hwloc packages, no network), unpack the
# Debian packages' libraries into a carried folder first, as the device
# README describes, and put it on LD_LIBRARY_PATH.
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
build=${1:-build}
bin="$build/mlpfbench"
[[ -x $bin ]] || { echo "gpu: $bin not built (run make)"; exit 1; }
echo "gpu: $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: nvidia-smi: /'

out=$("$bin" info 2>&1)
echo "$out" | grep "^GPU"
grep -q "^GPU 0: .*MiB" <<<"$out" && ok "info: GPU 0 described" || bad "info finds no GPU: $(grep GPUs <<<"$out")"
for p in fp32 tf32 bf16; do
    if out=$("$bin" gemm-bench --device cuda --precision "$p" --seconds 1 2>&1) && [[ $(grep -c TFLOP/s <<<"$out") -eq 3 ]]; then
        echo "$out"
        ok "cuBLAS $p rates at the model's shapes"
    else bad "gemm-bench --device cuda --precision $p: $out"; fi
done
for missing in "GPU layers and gradient parity against the CPU backend" \
               "multi-rank NCCL equivalence" "GPU training benchmark (events/s, TFLOP/s)"; do
    echo "NOT BUILT $missing"
done
finish gpu
