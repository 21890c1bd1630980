#!/usr/bin/env bash
# The PyTorch peers on the GPU (issue 19), for tests/gpu/run.sh: the device's
# PyTorch runs scripts/torch_bench.py --device cuda, eager and
# torch.compile'd, in float32 and in bf16 autocast (the PyTorch MLPF trains
# in bf16), training and inference; every run's first step is checked
# against torch_twin (float64, CPU) with the precision's tolerance
# (torch_bench.py CHECK_RTOL: fp32 1e-3, bf16 0.15), and the compiled model's
# forward and backward against torch_twin on the GPU in float64
# (--compile --check, tiny preset). Prints a table of what it measured
# (events/s, peak GPU memory per event, compile time, recompiles, check);
# a figure whose check failed is marked FAILED and counts as a failure.
#
# usage: tests/gpu/torch_peers.sh [BUILD]   (BUILD defaults to build: its
#        mlpfbench generates the events unless GPU_PEERS_DATA names a dataset)
# Environment (defaults in brackets):
#   TORCH_PY             the pythons to measure, space-separated [python3]
#   GPU_PEERS_DEVICE     torch device [cuda]; cpu runs the same script here
#   GPU_PEERS_PRESET     hepscore22 or tiny [hepscore22]
#   GPU_PEERS_BATCH      events per training step [4]
#   GPU_PEERS_STEPS      timed steps [5], after 2 warm-up steps (compiling)
#   GPU_PEERS_MODES      [eager compiled]
#   GPU_PEERS_PRECISIONS [fp32 bf16]
#   GPU_PEERS_INFER      1: inference runs too [1]
#   GPU_PEERS_DATA       an mlpfbench dataset with >= (2 + steps) x batch
#                        training events [generated: 32 events of ~5,000]
#   GPU_PEERS_OUT        where the JSONs and logs stay [a temporary folder]
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
pys=${TORCH_PY:-python3}
device=${GPU_PEERS_DEVICE:-cuda}
preset=${GPU_PEERS_PRESET:-hepscore22}
batch=${GPU_PEERS_BATCH:-4}
steps=${GPU_PEERS_STEPS:-5}
modes=${GPU_PEERS_MODES:-eager compiled}
precisions=${GPU_PEERS_PRECISIONS:-fp32 bf16}
infer=${GPU_PEERS_INFER:-1}
tb=$here/scripts/torch_bench.py
out=${GPU_PEERS_OUT:-}
if [[ -z $out ]]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
mkdir -p "$out"
for v in batch steps; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "torch_peers: GPU_PEERS_${v^^} must be a whole number >= 1"; exit 2; }
done

data=${GPU_PEERS_DATA:-}
if [[ -z $data ]]; then
    data=$out/data
    need=$(((2 + steps) * batch))
    elements=5000; [[ $preset == tiny ]] && elements=60
    if ! "$build/mlpfbench" generate --out "$data" --train-events $((need > 8 ? need : 8)) --valid-events 2 \
            --shards 2 --seed 42 --elements "$elements" >"$out/generate.log" 2>&1; then
        bad "generate the events with $build/mlpfbench: $(tail -3 "$out/generate.log")"
        finish torch_peers; exit
    fi
fi

rows=()
# measure PY TAG [options]: one torch_bench.py run; ok/bad from its check
measure() {
    local p=$1 tag=$2 rc=0
    shift 2
    PYTHONUNBUFFERED=1 "$p" "$tb" --device "$device" --preset "$preset" --data "$data" --steps "$steps" \
        --warmup 2 --json "$out/$tag.json" "$@" >"$out/$tag.log" 2>&1 || rc=$?
    if [[ ! -f $out/$tag.json ]]; then
        bad "$tag: torch_bench.py $* failed (exit $rc): $(grep -v '^[WI][0-9]' "$out/$tag.log" | tail -3)"
        rows+=("| $tag | run failed (exit $rc) | | | | | |")
        return
    fi
    local line
    line=$("$p" - "$out/$tag.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["check"]
comp = ("%.0f s, %s recompiles in the timed steps" % (d["compile_seconds"], d["compiles_in_timed_steps"])
        if d["execution"] == "compiled" else "")
mem = d.get("peak_gpu_mib_per_event", d["peak_rss_mib_per_event"])
print("%s\t| %s, %s, %s | %s batch %d | %.3f events/s | %.0f MiB/event | %s | %s %.1e (tolerance %.2g) |"
      % ("PASS" if c["passed"] else "FAIL", d["peer"], d["execution"], d["precision"], d["mode"],
         d["batch_size"], d["events_per_s"], mem, comp, "passed" if c["passed"] else "**FAILED**",
         c["max_rel"], c["tolerance"]))
EOF
    )
    rows+=("| $tag ${line#*$'\t'}")
    if [[ $rc -eq 0 && $line == PASS* ]]; then
        ok "$tag: $(grep '^torch_bench.py: check' "$out/$tag.log" | sed 's/^torch_bench.py: //')"
    else
        bad "$tag (exit $rc): $(grep -v '^[WI][0-9]' "$out/$tag.log" | grep '^torch_bench.py' | tail -2)"
    fi
}

i=0
for p in $pys; do
    i=$((i + 1))
    if ! desc=$("$p" "$tb" --describe --device "$device" 2>&1); then
        bad "peer $p: $desc"
        continue
    fi
    echo "torch_peers: peer $i: $p: $(tr -d '\n' <<<"$desc" | sed 's/  */ /g')"
    compile=$("$p" -c 'import json, sys; print(int(json.loads(sys.stdin.read())["compile"]))' <<<"$desc")
    for mode in $modes; do
        opt=()
        if [[ $mode == compiled ]]; then
            if [[ $compile != 1 ]]; then echo "SKIPPED peer $i compiled: this torch has no torch.compile"; continue; fi
            opt=(--compile)
        fi
        for prec in $precisions; do
            measure "$p" "peer$i-$mode-$prec-train" "${opt[@]}" --precision "$prec" --batch-size "$batch"
            [[ $infer == 1 ]] && measure "$p" "peer$i-$mode-$prec-infer" "${opt[@]}" --precision "$prec" \
                --batch-size 1 --inference
        done
    done
    # the compiled model's forward and backward on the device, float64,
    # against torch_twin (loss, every gradient, every LSH bucket)
    if [[ $compile == 1 && " $modes " == *" compiled "* ]]; then
        if PYTHONUNBUFFERED=1 "$p" "$tb" --check --compile --device "$device" >"$out/peer$i-check.log" 2>&1; then
            ok "peer $i: --compile --check on $device: $(grep '^CHECK' "$out/peer$i-check.log")"
        else bad "peer $i: --compile --check on $device: $(grep -v '^[WI][0-9]' "$out/peer$i-check.log" | tail -3)"; fi
    fi
done

echo
echo "| run | peer, mode, precision | what | throughput | peak memory ($device) | compiling | first-step check |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "torch_peers: preset $preset, $device, batch $batch (inference: 1), $steps timed steps after 2 warm-up; files in $out"
finish torch_peers
