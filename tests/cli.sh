#!/usr/bin/env bash
# Command-line behaviour of mlpfbench: help, bad input, and a short training run.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
bin=${1:?usage: tests/cli.sh path/to/mlpfbench}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# expect RC PATTERN -- command...: exit status RC and PATTERN in stdout+stderr
expect() {
    local rc=$1 pat=$2; shift 3
    out=$("$@" 2>&1); got=$?
    if [[ $got -ne $rc ]]; then bad "'$*' exited $got, expected $rc: $out"; return; fi
    if ! grep -qE -- "$pat" <<<"$out"; then bad "'$*' output lacks /$pat/: $out"; return; fi
    ok
}

expect 0 "usage: mlpfbench <command>" -- "$bin" --help
expect 2 "usage: mlpfbench" -- "$bin"
expect 2 "unknown command 'frobnicate'" -- "$bin" frobnicate
expect 0 "--batch-size B" -- "$bin" train --help
expect 2 "unknown option '--bogus'" -- "$bin" train --bogus 1
expect 2 "--batch-size needs a whole number from 1" -- "$bin" train --batch-size 0
expect 2 "--batch-size needs a whole number" -- "$bin" train --batch-size -3
expect 2 "--batch-size needs a whole number" -- "$bin" train --batch-size 4x
expect 2 "--max-steps needs a whole number" -- "$bin" train --max-steps 99999999999999999999
expect 2 "--epochs needs a whole number" -- "$bin" train --epochs
expect 2 "--lr needs a number" -- "$bin" train --lr nan
expect 2 "--preset must be one of" -- "$bin" train --preset huge

"$bin" generate --out "$tmp/ds" --train-events 8 --valid-events 4 --shards 2 --elements 100 --seed 3 \
    >/dev/null || bad "generate failed"
expect 2 "generate needs --out DIR" -- "$bin" generate
expect 2 "--shards needs a whole number" -- "$bin" generate --out "$tmp/x" --shards 0
expect 0 "--train-events N" -- "$bin" generate --help

# hepscore22 reports the reference parameter count (one short step)
expect 0 "preset hepscore22, 6786861 trainable parameters" -- \
    "$bin" train --data "$tmp/ds" --batch-size 1 --max-steps 2 --threads 2 --results "$tmp/r0"

# A test-sized run: the loss clearly falls (last epoch's mean below 60% of the
# first's) and validation accuracy rises.
"$bin" train --preset tiny --data "$tmp/ds" --batch-size 4 --epochs 30 --log-every 0 --results "$tmp/r1" \
    --threads 2 --seed 3 >"$tmp/train.log" 2>&1 || bad "tiny training run failed: $(tail -5 "$tmp/train.log")"
if awk '/^epoch /{ e=$2; s[e]+=$6; n[e]++; last=e } END {
        first = s[1]/n[1]; final = s[last]/n[last];
        printf "tiny run: mean loss epoch 1 %.4f, epoch %d %.4f\n", first, last, final;
        exit !(final < 0.6 * first) }' "$tmp/train.log"; then ok
else bad "loss did not fall enough: $(grep -E '^epoch (1|30) ' "$tmp/train.log" | head -3)"; fi
grep -q "loss .* \[cls .* charge .* pt .* eta .* sin_phi .* cos_phi .* energy" "$tmp/train.log" \
    && ok || bad "step lines lack the seven loss components"
if awk '/^validation epoch/{ for (i = 1; i <= NF; i++) if ($i == "acc") a[++n] = $(i+1) } END {
        printf "tiny run: validation accuracy epoch 1 %.4f, epoch %d %.4f\n", a[1], n, a[n];
        exit !(n == 30 && a[n] > a[1] + 0.1) }' "$tmp/train.log"; then ok
else bad "validation accuracy did not rise: $(grep '^validation' "$tmp/train.log" | sed -n '1p;$p')"; fi

# --warmup-steps: the step figures leave the first steps out, the epoch does not
"$bin" train --preset tiny --data "$tmp/ds" --batch-size 2 --max-steps 3 --warmup-steps 1 --threads 1 \
    --results "$tmp/rw" >"$tmp/w.log" 2>&1 || bad "train --warmup-steps 1 failed: $(tail -3 "$tmp/w.log")"
if /usr/bin/python3 -c "
import json, sys; s = json.load(open('$tmp/rw/mlpf_summary.json'))['report']['wl-stats']
r = s['per_rank'][0]
sys.exit(not (r['warmup_steps'] == 1 and r['steps'] == 2 and r['events'] == 4 and s['events_per_epoch'] == 8
              and 0 < r['step_time'] < s['epoch_times'][0]))"; then
    ok "train --warmup-steps 1 --max-steps 3: 2 measured steps of 2 events, 1 warm-up step"
else bad "warm-up figures: $(grep -o '"per_rank".*' "$tmp/rw/mlpf_summary.json" | head -c 400)"; fi
expect 1 "--warmup-steps 3 leaves none of the 3 steps of this run to measure" -- \
    "$bin" train --preset tiny --data "$tmp/ds" --max-steps 3 --batch-size 1 --warmup-steps 3 --results "$tmp/rw2"

# every numeric flag: zero/negative/huge/garbage/empty values are refused with
# the flag named and exit 2, never a crash (exit >= 128) or a hang
sweep_flags() { # command flag...
    local cmd=$1; shift
    local flag v out rc
    for flag in "$@"; do
        for v in -1 99999999999999999999999 abc 1e400 '' 0x10 '3 4' nan; do
            out=$(timeout 20 "$bin" $cmd "$flag" "$v" 2>&1); rc=$?
            if [[ $rc -ne 2 ]] || ! grep -q -- "$flag" <<<"$out"; then
                bad "$cmd $flag '$v': exit $rc: $(head -c 200 <<<"$out")"; return
            fi
        done
    done
    ok "$cmd: every numeric flag refuses bad values with the flag named"
}
sweep_flags train --batch-size --epochs --max-steps --warmup-steps --seed --threads --lr --bucket-mb --log-every \
    --timeout --data-timeout --collective-timeout --checkpoint-every
sweep_flags infer --batch-size --steps --warmup --threads --seed
sweep_flags gemm-bench --rows --threads --seconds
sweep_flags generate --train-events --valid-events --shards --seed --elements
sweep_flags allreduce-bench --min-bytes --max-bytes --factor --extra-floats --iters --bucket-mb
sweep_flags info --ranks-per-node
# the GPU side: without a usable GPU a clear reason and exit 1; with one, rates
out=$("$bin" gemm-bench --device cuda --seconds 0.2 2>&1); rc=$?
if [[ $rc -eq 1 ]] && grep -qE "^mlpfbench: gemm-bench --device cuda: (no usable CUDA device|no CUDA device is visible|this mlpfbench was built without CUDA)" <<<"$out"; then
    ok "gemm-bench --device cuda without a GPU: $(head -c 120 <<<"$out")"
elif [[ $rc -eq 0 ]] && [[ $(grep -c "TFLOP/s" <<<"$out") -eq 3 ]]; then ok "gemm-bench --device cuda: three cuBLAS rates"
else bad "gemm-bench --device cuda: exit $rc: $out"; fi
out=$("$bin" info 2>&1)
grep -qE "^(GPUs: none usable: .+|GPU 0: .+ MiB .+ driver [0-9.]+, runtime [0-9.]+)$" <<<"$out" \
    && ok "info: GPUs listed or the reason there are none" || bad "info: no GPU line: $out"
grep -qE "^GPU binding plan( for [0-9]+ rank\(s\) per node on [0-9]+ GPU\(s\), .+|: no GPU .+)$" <<<"$out" \
    && ok "info: the GPU binding plan, or that there is no GPU" || bad "info: no GPU plan line: $out"
expect 2 "--precision must be fp32, tf32 or bf16" -- "$bin" gemm-bench --device cuda --precision fp16

# info --topology: the GPU-to-cores plan of another machine, the 8-GPU node of
# tests/fixtures/gpu_topology.py (2 packages x 16 cores, GPUs 0-3 under package 0)
fx=$lib_root/tests/fixtures/gpu-node-2x16-8gpu.xml
bus=(1b 43 52 61 9d c3 d1 df)
/usr/bin/python3 "$lib_root/tests/fixtures/gpu_topology.py" | cmp -s - "$fx" \
    && ok "tests/fixtures/gpu_topology.py writes the committed $(basename "$fx")" \
    || bad "$fx differs from what tests/fixtures/gpu_topology.py writes: regenerate it"
gpu_plan() { # OUT RANKS CORES-PER-RANK: the expected line of each rank r on GPU r % 8
    local out=$1 n=$2 per=$3 r g p place first line missing=""
    for ((r = 0; r < n; r++)); do
        g=$((r % 8)); p=$((g / 4)); place=$(( (r / 8) * 4 + g % 4 )); first=$((16 * p + per * place))
        line="  GPU $g \\(0000:${bus[g]}:00\\.0, NVIDIA [^)]+\\) -> local rank $r: cores $first-$((first + per - 1)) \\(package $p\\), $per thread\\(s\\)"
        grep -qE "^$line( \\(GPU shared: --allow-shared-gpu\\))?$" <<<"$out" || missing+=" rank $r"
    done
    [[ -z $missing && $(grep -c "^  GPU [0-9]* (.*) -> local rank" <<<"$out") -eq $n ]] || { echo "missing:$missing"; return 1; }
}
out=$("$bin" info --topology "$fx" --ranks-per-node 8 2>&1); rc=$?
if [[ $rc -eq 0 ]] && gpu_plan "$out" 8 4 && grep -q "^topology: 2 package(s), 2 NUMA node(s), 32 core(s), 32 hardware thread(s), from " <<<"$out" \
    && grep -q "^  local rank 7: cores 28-31, 4 thread(s)$" <<<"$out" && ! grep -q "^BLAS" <<<"$out"; then
    ok "info --topology (2x16 cores, 8 GPUs) --ranks-per-node 8: each GPU's rank on 4 cores of its package"
else bad "info --topology $fx --ranks-per-node 8: exit $rc: $out"; fi
out=$("$bin" info --topology "$fx" 2>&1); rc=$?
[[ $rc -eq 0 ]] && gpu_plan "$out" 8 4 && ok "info --topology: one rank per GPU by default" \
    || bad "info --topology $fx: exit $rc: $out"
out=$("$bin" info --topology "$fx" --ranks-per-node 16 2>&1); rc=$?
if [[ $rc -eq 0 ]] && gpu_plan "$out" 16 2 && [[ $(grep -c "(GPU shared: --allow-shared-gpu)$" <<<"$out") -eq 16 ]]; then
    ok "info --topology --ranks-per-node 16: two ranks per GPU, 2 cores each, shared GPUs said"
else bad "info --topology $fx --ranks-per-node 16: exit $rc: $out"; fi
expect 1 "^mlpfbench: info: cannot open the topology .*no-such-topology.xml: No such file or directory" -- \
    "$bin" info --topology "$tmp/no-such-topology.xml"
head -c 3000 "$fx" >"$tmp/cut.xml"
expect 1 "^mlpfbench: info: .*cut.xml is not a valid hwloc XML topology" -- "$bin" info --topology "$tmp/cut.xml"
printf 'GPU 0 -> cores 0-3\n' >"$tmp/text.xml"
expect 1 "^mlpfbench: info: .*text.xml is not a valid hwloc XML topology" -- "$bin" info --topology "$tmp/text.xml"
expect 2 "--topology needs an hwloc XML file" -- "$bin" info --topology

# unreadable paths
chmod 000 "$tmp/ds/manifest.json" 2>/dev/null
if [[ $(id -u) -ne 0 ]]; then
    expect 1 "cannot read the manifest" -- "$bin" train --preset tiny --data "$tmp/ds" --results "$tmp/r2"
fi
chmod 644 "$tmp/ds/manifest.json"
expect 1 "cannot read the checkpoint .*no-such-file" -- "$bin" train --preset tiny --data "$tmp/ds" \
    --resume "$tmp/no-such-file" --results "$tmp/r3"
expect 1 "cannot create the results directory|cannot write" -- "$bin" train --preset tiny --data "$tmp/ds" \
    --max-steps 2 --results /proc/mlpf-results

check_summaries "$tmp"
finish cli
