#!/usr/bin/env bash
# Data-parallel equivalence and the gradient all-reduce:
# - 1 rank x batch 4, 2 ranks x batch 2 and 4 ranks x batch 1 (same seed, same
#   global batches) give the same per-step losses and final weights within 1e-5
#   relative after 8 steps, with fusion buckets that split parameter tensors;
# - allreduce-bench checks every element of odd-sized all-reduces on 1-3 ranks.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/distributed.sh BUILD_DIR}
bin="$build/mlpfbench"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$bin" generate --out "$tmp/ds" --train-events 16 --valid-events 4 --shards 3 --elements 80 --seed 8 >/dev/null
run() { # np batch bucket_mb -> losses in $tmp/l.np, weights in $tmp/w.np
    timeout 120 mpirun --oversubscribe -np "$1" "$bin" train --preset tiny --data "$tmp/ds" --batch-size "$2" --log-every 0 --results "$tmp/r.$1" \
        --epochs 2 --threads 1 --seed 4 --bucket-mb "$3" --save-weights "$tmp/w.$1" >"$tmp/o.$1" 2>&1 \
        && awk '/^epoch /{ print $6 }' "$tmp/o.$1" >"$tmp/l.$1"
}
if run 1 4 4 && run 2 2 0.0037 && run 4 1 0.011; then
    /usr/bin/python3 - "$tmp" <<'PY' && ok "1x4, 2x2, 4x1 ranks x batch: same losses and weights (1e-5) after 8 steps" || bad "data-parallel results differ"
import sys, numpy as np
t = sys.argv[1]
l = {n: np.loadtxt(f"{t}/l.{n}") for n in (1, 2, 4)}
w = {n: np.fromfile(f"{t}/w.{n}", dtype=np.float32).astype(np.float64) for n in (1, 2, 4)}
w0 = np.fromfile(f"{t}/w.1", dtype=np.float32)
assert len(l[1]) == 8, l[1]
ok = True
for n in (2, 4):
    el = np.max(np.abs(l[n] - l[1]) / np.abs(l[1]))
    ew = np.linalg.norm(w[n] - w[1]) / np.linalg.norm(w[1])
    print(f"  {n} ranks: loss rel diff {el:.2e}, weights rel diff {ew:.2e}")
    ok &= bool(el < 1e-5 and ew < 1e-5 and len(l[n]) == 8)
sys.exit(0 if ok else 1)
PY
    # the comparison is not vacuous: another seed gives other weights
    timeout 120 "$bin" train --preset tiny --data "$tmp/ds" --batch-size 4 --epochs 2 --threads 1 --seed 5 --results "$tmp/r.o" \
        --save-weights "$tmp/w.other" >/dev/null 2>&1
    cmp -s "$tmp/w.1" "$tmp/w.other" && bad "weights do not depend on the seed" || ok "another seed gives other weights"
    grep -q "gradient all-reduce (rank 0, mpi): 8 steps" "$tmp/o.4" && ok "all-reduce figures reported" \
        || bad "no all-reduce figures: $(tail -2 "$tmp/o.4")"
else
    bad "a training run failed: $(tail -3 "$tmp"/o.* | head -20)"
fi

for np in 1 2 3; do
    if timeout 120 mpirun --oversubscribe -np $np "$bin" allreduce-bench --min-bytes 4 --max-bytes 1048576 \
           --factor 16 --extra-floats 3 --bucket-mb 0.0123 --iters 3 >"$tmp/ar" 2>&1 \
       && grep -q "^# total wrong: 0" "$tmp/ar" && [[ $(grep -c "float *sum" "$tmp/ar") -eq 5 ]]; then
        ok "allreduce-bench, $np rank(s): odd sizes and buckets, every element right"
    else bad "allreduce-bench $np ranks: $(tail -3 "$tmp/ar")"; fi
done

# placement: cores split among the ranks of a node; oversubscribed runs work
out=$(timeout 60 mpirun --oversubscribe -np 2 "$bin" train --preset tiny --data "$tmp/ds" --batch-size 1 --max-steps 2 --results "$tmp/r.b" 2>&1)
ncores=$(grep -c ^processor /proc/cpuinfo)
if [[ $ncores -ge 2 ]]; then
    grep -qE "binding \(auto\): rank 0 [^:]+:0, rank 1 [^:]+:1" <<<"$out" && grep -q "1 threads/rank" <<<"$out" \
        && ok "2 ranks bound to one core each, 1 thread each" || bad "binding: $(grep binding <<<"$out")"
fi
timeout 60 mpirun --oversubscribe -np $((ncores + 1)) "$bin" train --preset tiny --data "$tmp/ds" --batch-size 1 --results "$tmp/r.x" \
    --max-steps 2 >"$tmp/over" 2>&1 && grep -q "binding (auto)" "$tmp/over" \
    && ok "oversubscribed: $((ncores + 1)) ranks on $ncores cores train" || bad "oversubscribed run: $(tail -3 "$tmp/over")"
"$bin" info --ranks-per-node 2 | grep -q "local rank 1: cores" && ok "info prints the binding plan" || bad "info"

# --timeline: a Chrome trace with every kind of span for every rank
timeout 60 mpirun --oversubscribe -np 2 "$bin" train --preset tiny --data "$tmp/ds" --batch-size 1 --epochs 1 --results "$tmp/r.t" \
    --bucket-mb 0.01 --timeline "$tmp/trace.json" >/dev/null 2>&1
/usr/bin/python3 - "$tmp/trace.json" <<'PY' && ok "timeline: forward, backward, all-reduce buckets, reads, waits, optimizer for both ranks" || bad "timeline incomplete"
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
need = {"forward", "backward", "allreduce bucket 0", "read batch", "data wait", "optimizer"}
for pid in (0, 1):
    got = {e["name"] for e in ev if e.get("ph") == "X" and e["pid"] == pid}
    assert need <= got, (pid, need - got)
    assert all(e["dur"] >= 0 for e in ev if e.get("ph") == "X")
PY

check_summaries "$tmp"
finish distributed
