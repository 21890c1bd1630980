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
# several GPUs' machinery on this one GPU (issue 15): NCCL with one rank, the
# nccl-tests table of each transport, the staging transport with 2 ranks
# sharing the GPU (where mpirun exists), the NVML figures and energy per event
nccl_lib=$(/usr/bin/python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null \
    || python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null)
[[ -z ${MLPF_NCCL_LIBRARY:-} && -n $nccl_lib && -f $nccl_lib ]] && export MLPF_NCCL_LIBRARY=$nccl_lib
echo "gpu: NCCL: ${MLPF_NCCL_LIBRARY:-libnccl.so.2 from the library path}"
timeout 60 "$bin" allreduce-bench --device cuda --max-bytes $((64 << 20)) --factor 4 --iters 10 2>&1 | tee "$out/arb.txt" | grep -E "^#|^ +[0-9]+ +[0-9]+ .* (65536|1048576|16777216|67108864) "
grep -q "total wrong (nccl): 0" "$out/arb.txt" && grep -q "total wrong (mpi): 0" "$out/arb.txt" \
    && ok "allreduce-bench --device cuda: NCCL and staging, #wrong 0" || bad "allreduce-bench --device cuda: $(tail -2 "$out/arb.txt")"
timeout 150 "$bin" train --device cuda --allreduce nccl --data "$out/ev" --batch-size 16 --epochs 1 --warmup-steps 1 \
    --max-steps 6 --results "$out/r_nccl" --log-every 30 >"$out/train_nccl.txt" 2>&1 \
    && /usr/bin/python3 - "$out/r_nccl/mlpf_summary.json" <<'PY' && ok "train --allreduce nccl, 1 rank, NVML figures" || bad "train --allreduce nccl: $(tail -2 "$out/train_nccl.txt")"
import json, sys
st = json.load(open(sys.argv[1]))["report"]["wl-stats"]
g = st["per_rank"][0].get("gpu", {})
nv = g.get("nvml", {})
print(f"gpu: nccl 1 rank: {g.get('name')} {g.get('pci_bus_id')}: energy {nv.get('energy_j', 0):.0f} J, "
      f"{nv.get('energy_per_event_j', 0):.2f} J/event, power mean {nv.get('power_mean_w', 0):.0f} W max "
      f"{nv.get('power_max_w', 0):.0f} W, SM {nv.get('sm_clock_mean_mhz', 0):.0f} MHz, "
      f"{nv.get('temperature_max_c', 0):.0f} C, util {nv.get('utilization_gpu_mean', 0):.0f}%, "
      f"throttle {nv.get('throttle_reasons')}; total {st.get('gpu_energy')}")
assert nv.get("sampled") and nv.get("energy_j", 0) > 0, nv
PY
if command -v mpirun >/dev/null; then
    timeout 150 mpirun -np 2 "$bin" train --device cuda --allow-shared-gpu --data "$out/ev" --batch-size 8 --epochs 1 \
        --warmup-steps 1 --max-steps 6 --results "$out/r_shared" --log-every 30 >"$out/train_shared.txt" 2>&1 \
        && grep -q "gradient all-reduce (rank 0, mpi" "$out/train_shared.txt" \
        && ok "2 ranks sharing the GPU, staging transport: $(grep -o "gradient all-reduce.*" "$out/train_shared.txt")" \
        || bad "2 ranks sharing the GPU: $(tail -2 "$out/train_shared.txt")"
else echo "gpu: no mpirun here: the 2-rank staging run is left out"; fi
# PyTorch on the same events (eager and compiled, fp32 and bf16 autocast), within the run's budget
GPU_PEERS_DATA="$out/ev" timeout 150 tests/gpu/torch_peers.sh "$build" || bad "PyTorch peers on the GPU (tests/gpu/torch_peers.sh)"
finish gpu
