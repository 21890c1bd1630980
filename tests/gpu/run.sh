#!/usr/bin/env bash
# The GPU checks, on a machine with an NVIDIA GPU (tests/gpu/prepare.sh builds
# and collects here what it needs; on the project's device tool carry build/).
# In one run of a few minutes:
#   1. every kernel against its CPU counterpart, the products, one step and
#      three Adam steps of tiny and hepscore22 per precision against the CPU
#      backend, checkpoints across backends, the self-check (test_backend_gpu:
#      the host path's checks, on the device)
#   2. compute-sanitizer memcheck over a tiny training step, racecheck over
#      the kernels' shared-memory reductions
#   3. the training benchmark: self-check in each precision, events/s at
#      batch 1, 4, 16 and 48 on ~5,000-element events, TFLOP/s by the spec's cost
#      model, against gemm-bench --device cuda (cuBLAS at the model's shapes)
#   4. PyTorch on the same events, where tests/gpu/torch_peers.sh exists
# Prints what it measured; docs/benchmarks.md records it with date and device.
# usage: tests/gpu/run.sh [BUILD]   (default build)
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
build=${1:-build}
bin="$build/mlpfbench"
[[ -x $bin && -x $build/test_backend_gpu ]] || { echo "gpu: $bin or $build/test_backend_gpu not built (tests/gpu/prepare.sh)"; exit 1; }
[[ -d $build/gpulibs ]] && export LD_LIBRARY_PATH="$PWD/$build/gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=${OUT:-$(mktemp -d)}
echo "gpu: $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null | sed 's/^/gpu: nvidia-smi: /'

"$bin" info 2>&1 | grep "^GPU"
timeout 240 "$build/test_backend_gpu" >"$out/backend.txt" 2>&1
grep -v "^ok   \(bias\|gelu\|elu\|colsum\|LSH\|kernel\|degree\|gemm\|strided\|layernorm\)" "$out/backend.txt"
line=$(grep -oE "[0-9]+ passed, [0-9]+ failed" "$out/backend.txt" | tail -1)
[[ $line == *" 0 failed" ]] && ok "backend on the GPU: $line" || bad "backend on the GPU: ${line:-no closing line}"

"$bin" generate --out "$out/tiny" --train-events 4 --valid-events 2 --shards 1 --elements 60 --seed 2 >/dev/null
"$bin" generate --out "$out/ev" --train-events 96 --valid-events 4 --shards 2 --seed 9 >/dev/null
if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        timeout 120 compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin" train --device cuda --precision fp32 \
            --preset tiny --data "$out/tiny" --batch-size 2 --epochs 1 --skip-self-check --results "$out/san" \
            >"$out/$tool.txt" 2>&1 && ok "compute-sanitizer $tool: clean" \
            || bad "compute-sanitizer $tool: $(grep -m3 -E "ERROR|Error|error" "$out/$tool.txt")"
    done
else bad "compute-sanitizer not found"; fi

"$bin" gemm-bench --device cuda --precision tf32 --seconds 1 2>&1 | tee "$out/gemm_tf32.txt" | grep -i "tflop"
"$bin" gemm-bench --device cuda --precision bf16 --seconds 1 2>&1 | tee "$out/gemm_bf16.txt" | grep -i "tflop"
for prec in fp32 tf32 bf16; do
    for b in 1 4 16 48; do
        [[ $prec == fp32 && $b != 4 ]] && continue
        steps=$((96 / b < 12 ? 96 / b : 12)) warm=$((96 / b < 12 ? 1 : 2))
        timeout 150 "$bin" train --device cuda --precision "$prec" --data "$out/ev" --batch-size $b --epochs 1 \
            --warmup-steps $warm --max-steps $steps --results "$out/r_${prec}_$b" --log-every 30 \
            >"$out/train_${prec}_$b.txt" 2>&1 || { bad "train $prec batch $b: $(tail -2 "$out/train_${prec}_$b.txt")"; continue; }
        /usr/bin/python3 - "$out/r_${prec}_$b/mlpf_summary.json" "$prec" "$b" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["report"]
st, r0 = s["wl-stats"], s["wl-stats"]["per_rank"][0]
sc = st["self_check"]
print(f"gpu: {sys.argv[2]} batch {sys.argv[3]}: {r0['events'] / r0['step_time']:.1f} events/s steady, "
      f"{st['flops_per_element'] * r0['elements'] / r0['step_time'] / 1e12:.1f} TFLOP/s, "
      f"self-check {'passed' if sc['passed'] else 'FAILED'}: {sc['message']}")
PY
        ok "train --device cuda --precision $prec --batch-size $b"
    done
done
# PyTorch on the same events (eager and compiled, fp32 and bf16 autocast), within the run's budget
GPU_PEERS_DATA="$out/ev" timeout 150 tests/gpu/torch_peers.sh "$build" || bad "PyTorch peers on the GPU (tests/gpu/torch_peers.sh)"
finish gpu
