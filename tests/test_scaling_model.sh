#!/usr/bin/env bash
# scripts/scaling_model.py on round numbers checked by hand (from its --json
# output), on a real summary of a 2-rank tiny CPU run of build/mlpfbench and on
# a real allreduce-bench table, and its refusals of bad inputs.
#
# Round numbers: 8 GPUs per node, a gradient of 1e6 floats (4e6 bytes) in
# buckets of 1e6 bytes (0.95367431640625 MiB exactly) = 4 buckets; latencies 0
# unless a case sets them; intra-node busbw 1.75 GB/s, so one bucket on one
# node takes 2 x 7/8 x 1e6 / 1.75e9 = 1 ms; forward 4 ms, backward 8 ms; every
# rank equally fast (--event-cv 0) unless a case sets a spread.
#
#   tests/test_scaling_model.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: tests/test_scaling_model.sh BUILD_DIR}
bin="$(cd "$build" && pwd)/mlpfbench"
here=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
model="$here/scripts/scaling_model.py"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

round=(--params 1000000 --bucket-mib 0.95367431640625 --gpus-per-node 8 --batch-size 4
       --forward-ms 4 --backward-ms 8 --intra-busbw 1.75 --inter-busbw 0.9375
       --base-latency-us 0 --intra-step-us 0 --inter-step-us 0 --step-reductions 0 --event-cv 0)

# run NAME ARGS...: the model with --json $tmp/NAME.json; output in $tmp/NAME.out
run() {
    local name=$1; shift
    "$py" "$model" "$@" --json "$tmp/$name.json" >"$tmp/$name.out" 2>&1
}
# check NAME 'EXPR' ...: each Python expression over j (the JSON) and
# row(n) (the row for n nodes) must be true (numbers compared with near()).
check() {
    "$py" - "$@" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
def row(n):
    return next(r for r in j["rows"] if r["nodes"] == n)
def near(x, y):
    return abs(x - y) <= 1e-9 * max(1.0, abs(y))
bad = [e for e in sys.argv[2:] if not eval(e)]
if bad:
    sys.exit("false: " + "; ".join(bad) + "\nrows: " + json.dumps(
        [{k: v for k, v in r.items() if k != "buckets"} for r in j["rows"]]))
PY
}
J() { echo "$tmp/$1.json"; }

# --- one node: no inter-node term ---------------------------------------------
# buckets ready at 2, 4, 6, 8 ms (backward makes 1e6 bytes every 2 ms), each
# all-reduced in 1 ms: done at 3, 5, 7, 9 ms -> exposed 9 - 8 = 1 ms (the last
# bucket can only start when backward ends); all-reduce 4 ms per step;
# step 4 + 8 + 1 = 13 ms against 12 ms on one GPU: efficiency 12/13;
# events/s = 8 GPUs x 4 / 0.013 = 2461.538...
if run r1 "${round[@]}" --nodes 1 && err=$(check "$(J r1)" \
        'near(j["one_gpu_step_s"], 0.012)' 'row(1)["gpus"] == 8' \
        'all(near(b["time_s"], 1e-3) and b["bytes"] == 1000000 for b in row(1)["buckets"])' \
        '[round(b["ready_s"], 12) for b in row(1)["buckets"]] == [0.002, 0.004, 0.006, 0.008]' \
        '[round(b["done_s"], 12) for b in row(1)["buckets"]] == [0.003, 0.005, 0.007, 0.009]' \
        'near(row(1)["allreduce_per_step_s"], 0.004)' 'near(row(1)["exposed_s"], 0.001)' \
        'near(row(1)["step_s"], 0.013)' 'near(row(1)["efficiency"], 12 / 13)' \
        'near(row(1)["events_per_s"], 32 / 0.013)' 2>&1); then
    ok "1 node x 8: 4 buckets of 1 ms ready at 2/4/6/8 ms, exposed 1 ms, efficiency 12/13, 2461.5 events/s"
else bad "1 node: $err $(cat "$tmp/r1.out")"; fi
# the inter-node figures do not touch one node
if run r1b "${round[@]}" --nodes 1 --inter-busbw 0.001 --inter-step-us 1000 --mpi-inter-us 1000 \
   && err=$(check "$(J r1b)" 'near(row(1)["step_s"], 0.013)' 'near(row(1)["exposed_s"], 0.001)' 2>&1); then
    ok "1 node: inter-node busbw 1000x lower and latencies of 1 ms change nothing"
else bad "1 node, inter-node inputs: $err"; fi

# --- more nodes: bytes x 2(P-1)/P over the slower of the two bandwidths --------
# 2 nodes, P = 16: 2 x 15/16 x 1e6 / 0.9375e9 = 2 ms per bucket: done at 4, 6,
# 8, 10 -> exposed 2 ms, efficiency 12/14.
# 4 nodes, P = 32: 2 x 31/32 x 1e6 / 0.9375e9 = 2.0667 ms: done at 4.0667,
# 6.1333, 8.2, 10.2667 -> exposed 2.2667 ms, efficiency 12/14.2667.
if run r2 "${round[@]}" --nodes 1,2,4 --algo ring && err=$(check "$(J r2)" \
        'near(row(2)["buckets"][0]["time_s"], 2 * 15 / 16 * 1e6 / 0.9375e9)' \
        'near(row(2)["exposed_s"], 0.002)' 'near(row(2)["efficiency"], 12 / 14)' \
        'near(row(4)["buckets"][0]["time_s"], 2 * 31 / 32 * 1e6 / 0.9375e9)' \
        'near(row(4)["exposed_s"], 4 * (2 * 31 / 32 * 1e6 / 0.9375e9) - 0.006)' \
        'near(row(4)["step_s"], 0.012 + 4 * (2 * 31 / 32 * 1e6 / 0.9375e9) - 0.006)' \
        'row(1)["efficiency"] > row(2)["efficiency"] > row(4)["efficiency"]' 2>&1); then
    ok "2 and 4 nodes: bucket time x 2(P-1)/P (15/8, 31/16), exposed 2 and 2.267 ms, efficiency falls with nodes"
else bad "2/4 nodes: $err $(cat "$tmp/r2.out")"; fi
# the intra-node bandwidth counts when it is the slower one
if run r2b "${round[@]}" --nodes 2 --algo ring --inter-busbw 100 --intra-busbw 0.9375 \
   && err=$(check "$(J r2b)" 'near(row(2)["exposed_s"], 0.002)' 2>&1); then
    ok "2 nodes: the slower of intra (0.9375) and inter (100 GB/s) bandwidth sets the bucket time"
else bad "slower bandwidth: $err"; fi

# --- what fits behind backward stays hidden: only the last bucket is exposed ---
# 1.1e6 floats: buckets of 1e6, 1e6, 1e6, 1e6, 4e5 bytes; backward 17.6 ms makes
# 1e6 bytes every 4 ms: ready at 4, 8, 12, 16, 17.6; done at 5, 9, 13, 17, 18
# -> exposed 0.4 ms = the last (remainder) bucket alone.
if run r3 "${round[@]}" --params 1100000 --backward-ms 17.6 --nodes 1 && err=$(check "$(J r3)" \
        '[b["bytes"] for b in row(1)["buckets"]] == [1000000] * 4 + [400000]' \
        'near(row(1)["exposed_s"], 0.0004)' 'near(row(1)["exposed_s"], row(1)["buckets"][-1]["time_s"])' 2>&1); then
    ok "buckets cut from the end (the last holds the remainder); exposed = that last bucket only (0.4 ms)"
else bad "hidden buckets: $err $(cat "$tmp/r3.out")"; fi
# nothing to all-reduce on one GPU
if run r4 "${round[@]}" --gpus-per-node 1 --nodes 1 --step-reductions 2 --mpi-intra-us 5 \
   && err=$(check "$(J r4)" 'row(1)["exposed_s"] == 0' 'row(1)["allreduce_per_step_s"] == 0' \
                            'row(1)["reductions_s"] == 0' 'near(row(1)["efficiency"], 1)' 2>&1); then
    ok "1 GPU: no all-reduce, exposed 0, efficiency 1"
else bad "1 GPU: $err"; fi
# --overlap none: every bucket after backward: exposed 4 ms, efficiency 12/16
if run r5 "${round[@]}" --nodes 1 --overlap none \
   && err=$(check "$(J r5)" 'near(row(1)["exposed_s"], 0.004)' 'near(row(1)["efficiency"], 0.75)' 2>&1); then
    ok "--overlap none: all 4 ms exposed, efficiency 0.75"
else bad "--overlap none: $err"; fi

# --- latency terms ----------------------------------------------------------------
# base 10 us, 1 us per step inside a node, 5 us per network step; 2 nodes x 8:
#   ring 10 + 2 (16 - 2) 1 + 2 (2 - 1) 5 = 48 us; tree 10 + 2 (7 x 1 + 1 x 5) = 34 us
# 4 nodes x 8: ring 10 + 2 x 28 + 2 x 3 x 5 = 96 us; tree 10 + 2 (7 + 2 x 5) = 44 us
# tiny buckets (params 1: 4 bytes) make the bandwidth part negligible
lat=(--params 1 --base-latency-us 10 --intra-step-us 1 --inter-step-us 5)
if run r6 "${round[@]}" "${lat[@]}" --nodes 1,2,4 --algo ring && run r7 "${round[@]}" "${lat[@]}" --nodes 1,2,4 --algo tree \
   && run r8 "${round[@]}" "${lat[@]}" --nodes 1,2,4 \
   && err=$(check "$(J r6)" 'near(row(2)["buckets"][0]["latency_s"], 48e-6)' \
                 'near(row(4)["buckets"][0]["latency_s"], 96e-6)' 'near(row(1)["buckets"][0]["latency_s"], 24e-6)' 2>&1) \
   && err=$(check "$(J r7)" 'near(row(2)["buckets"][0]["latency_s"], 34e-6)' \
                 'near(row(4)["buckets"][0]["latency_s"], 44e-6)' 2>&1) \
   && err=$(check "$(J r8)" 'row(1)["algorithm"] == "ring"' 'row(4)["algorithm"] == "tree"' \
                 'near(row(4)["buckets"][0]["latency_s"], 44e-6)' 2>&1); then
    ok "latency: ring 2(P-N) intra + 2(N-1) network steps (24/48/96 us), tree 44 us at 4 nodes; best picks each"
else bad "latency terms: $err"; fi
# the small MPI reductions: 2 x (log2 8 x 0.5 + log2 4 x 2) us = 2 x 5.5 = 11 us
if run r9 "${round[@]}" --nodes 4 --step-reductions 2 --mpi-intra-us 0.5 --mpi-inter-us 2 \
   && err=$(check "$(J r9)" 'near(row(4)["reductions_s"], 11e-6)' \
                  'near(row(4)["step_s"], 0.012 + row(4)["exposed_s"] + 11e-6)' 2>&1); then
    ok "2 small reductions per step at 4 x 8: 2 x (3 x 0.5 + 2 x 2) us = 11 us, added to the step"
else bad "small reductions: $err"; fi

# --- the slowest rank -------------------------------------------------------------
# no communication to speak of (1 parameter, 1e6 GB/s); event spread 0.1:
# 2 GPUs, batch 1: the slower of 2 is 1 + 0.1 x E[max of 2 normals] = 1 + 0.1/sqrt(pi)
#   = 1.0564190 times the mean: efficiency 1/1.0564190 = 0.946594
# 8 GPUs, batch 4: per step 0.1/2 = 0.05; E[max of 8] = 1.4236003: 1.0711800
free=(--params 1 --intra-busbw 1e6 --inter-busbw 1e6 --forward-ms 4 --backward-ms 8 --nodes 1
      --base-latency-us 0 --intra-step-us 0 --inter-step-us 0 --step-reductions 0 --event-cv 0.1)
if run i1 "${free[@]}" --gpus-per-node 2 --batch-size 1 && run i8 "${free[@]}" --gpus-per-node 8 --batch-size 4 \
   && run i0 "${free[@]}" --gpus-per-node 1 --batch-size 1 \
   && err=$(check "$(J i1)" 'abs(row(1)["imbalance"] - 0.1 / 3.141592653589793 ** 0.5) < 1e-9' \
                  'abs(row(1)["efficiency"] - 1 / 1.0564189584) < 1e-9' 2>&1) \
   && err=$(check "$(J i8)" 'abs(row(1)["imbalance"] - 0.05 * 1.4236003060) < 1e-9' \
                  'abs(row(1)["step_s"] - 0.012 * 1.0711800153) < 1e-10' 2>&1) \
   && err=$(check "$(J i0)" 'row(1)["imbalance"] == 0' 'near(row(1)["efficiency"], 1)' 2>&1); then
    ok "slowest rank: +5.64% for 2 GPUs (batch 1, spread 0.1), +7.12% for 8 (batch 4), none for 1 GPU"
else bad "slowest rank: $err"; fi

# --- the default table (assumed H200 + NDR figures) ---------------------------
if run d "${round[@]:0:8}" --forward-ms 4 --backward-ms 8 \
   && err=$(check "$(J d)" '[r["nodes"] for r in j["rows"]] == [1, 2, 4, 8, 16, 32, 64]' \
                  '[r["gpus"] for r in j["rows"]] == [8, 16, 32, 64, 128, 256, 512]' \
                  'all(a["efficiency"] >= b["efficiency"] for a, b in zip(j["rows"], j["rows"][1:]))' \
                  'j["inputs"]["intra_busbw"]["source"].startswith("assumed")' 2>&1) \
   && grep -q '^| 16 | 128 | ' "$tmp/d.out" && grep -q '^Goal (90% weak-scaling efficiency up to 16 nodes): ' "$tmp/d.out" \
   && grep -q '^Dominant input at 16 node(s): ' "$tmp/d.out" && grep -q '^| nodes | GPUs | slowest rank | all-reduce per step (ms) | exposed (ms) |' "$tmp/d.out"
then ok "default: 8 GPUs x 1..64 nodes, efficiency never rises, the goal verdict and the dominant input printed"
else bad "default table: ${err:-} $(cat "$tmp/d.out")"; fi
# a goal that fails says so
# (1 node: 92.3% passes; 2 nodes: 12/14 = 85.7% fails)
if run f "${round[@]}" --nodes 1,2,4,16 \
   && grep -q '^Goal (90% weak-scaling efficiency up to 16 nodes): FAILS from 2 node(s) (85.7%)\.$' "$tmp/f.out"; then
    ok "goal verdict: fails from 2 nodes (85.7%) with the round numbers"
else bad "goal verdict: $(cat "$tmp/f.out")"; fi

# --- a real summary: 2 ranks of the tiny preset on this machine ------------------
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$bin" generate --out "$tmp/ds" --train-events 16 --valid-events 4 --shards 2 --elements 60 --seed 5 >/dev/null 2>&1
if timeout 120 mpirun --oversubscribe -np 2 "$bin" train --preset tiny --data "$tmp/ds" --epochs 2 --threads 1 \
       --bind none --results "$tmp/run" >"$tmp/train.log" 2>&1 \
   && run s --summary "$tmp/run/mlpf_summary.json" --nodes 1,2 \
   && "$py" - "$tmp/run/mlpf_summary.json" "$(J s)" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))["report"]["wl-stats"]
m = json.load(open(sys.argv[2]))
ranks = st["per_rank"]
steps = sum(r["steps"] for r in ranks)
per = lambda k: sum(r[k] for r in ranks) / steps
want = {"forward": per("forward_time"), "backward": per("backward_time"), "optimizer": per("optimizer_time"),
        "other": max(0.0, per("step_time") - per("forward_time") - per("backward_time") - per("optimizer_time")
                     - per("allreduce_exposed_time")),
        "params": st["trainable_parameters"], "bucket_mib": st["allreduce_bucket_mib"],
        "batch": st["batch_size_per_device"]}
for k, v in want.items():
    got = m["inputs"][k]
    assert abs(got["value"] - v) <= 1e-12 * max(1, abs(v)), (k, got, v)
    assert got["source"].startswith("measured: "), (k, got)
assert st["trainable_parameters"] == 28071 and len(m["rows"][0]["buckets"]) == 1, m["rows"][0]["buckets"]
assert m["rows"][0]["buckets"][0]["bytes"] == 4 * 28071
PY
then ok "real 2-rank tiny summary: per-step forward/backward/optimizer/other, 28071 parameters in 1 bucket, batch, read as measured"
else bad "real summary: $(tail -3 "$tmp/train.log") $(cat "$tmp/s.out" 2>/dev/null)"; fi

# --- allreduce-bench tables -------------------------------------------------------
# hand-written, 8 ranks on a node: a first line of 60 us (a warm-up outlier: the
# fastest of the three smallest sizes counts), 24 us at 8 bytes with base 10 -> (24-10)/(2x7)
# = 1 us per step; 1e8 bytes in 1024 us -> 1e8 x 2 x 7/8 / (1024-24) us = 175 GB/s.
# 2 nodes x 8: 48 us -> (48 - 10 - 2 x 14 x 1) / 2 = 5 us per network step;
# 1e8 bytes in 3798 us -> 1e8 x 2 x 15/16 / 3750 us = 50 GB/s.
cat >"$tmp/intra.txt" <<'EOF'
# mlpfbench allreduce-bench: 8 rank(s), bucket 4 MiB, 20 iterations
#         size        count   type  redop     time(us)      algbw      busbw   #wrong
             4            1  float    sum        60.00      0.000      0.000        0
             8            2  float    sum        24.00      0.000      0.000        0
       1048576       262144  float    sum        34.00     30.840     53.970        0
     100000000     25000000  float    sum      1024.00     97.656    170.898        0
EOF
cat >"$tmp/inter.txt" <<'EOF'
# nccl-tests style: one line per rank, then the table with a root column
#  Rank  0 Group  0 Pid 1 on node1 device  0 [0x18] NVIDIA H200
#  Rank  1 Group  0 Pid 1 on node1 device  1 [0x19] NVIDIA H200
#  Rank  2 Group  0 Pid 1 on node1 device  2 [0x1a] NVIDIA H200
#  Rank  3 Group  0 Pid 1 on node1 device  3 [0x1b] NVIDIA H200
#  Rank  4 Group  0 Pid 1 on node1 device  4 [0x1c] NVIDIA H200
#  Rank  5 Group  0 Pid 1 on node1 device  5 [0x1d] NVIDIA H200
#  Rank  6 Group  0 Pid 1 on node1 device  6 [0x1e] NVIDIA H200
#  Rank  7 Group  0 Pid 1 on node1 device  7 [0x1f] NVIDIA H200
#  Rank  8 Group  0 Pid 1 on node2 device  0 [0x18] NVIDIA H200
#  Rank  9 Group  0 Pid 1 on node2 device  1 [0x19] NVIDIA H200
#  Rank 10 Group  0 Pid 1 on node2 device  2 [0x1a] NVIDIA H200
#  Rank 11 Group  0 Pid 1 on node2 device  3 [0x1b] NVIDIA H200
#  Rank 12 Group  0 Pid 1 on node2 device  4 [0x1c] NVIDIA H200
#  Rank 13 Group  0 Pid 1 on node2 device  5 [0x1d] NVIDIA H200
#  Rank 14 Group  0 Pid 1 on node2 device  6 [0x1e] NVIDIA H200
#  Rank 15 Group  0 Pid 1 on node2 device  7 [0x1f] NVIDIA H200
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
           8             2     float     sum      -1    48.00    0.00    0.00      0    47.00    0.00    0.00      0
   100000000      25000000     float     sum      -1  3798.00   26.33   49.36      0  3790.00   26.39   49.47      0
EOF
if run b --forward-ms 4 --backward-ms 8 --params 1000000 --base-latency-us 10 \
       --intra-bench "$tmp/intra.txt" --inter-bench "$tmp/inter.txt" --inter-bench-nodes 2 --nodes 1,2 \
   && err=$(check "$(J b)" 'near(j["inputs"]["intra_busbw"]["value"], 175)' \
                  'near(j["inputs"]["intra_step_us"]["value"], 1)' 'near(j["inputs"]["inter_busbw"]["value"], 50)' \
                  'near(j["inputs"]["inter_step_us"]["value"], 5)' \
                  'j["inputs"]["inter_busbw"]["source"].startswith("measured: ")' 2>&1); then
    ok "bench tables (allreduce-bench with a slow first line; nccl-tests with 16 rank lines and a root column): 175 and 50 GB/s, 1 and 5 us per step"
else bad "bench tables: ${err:-} $(cat "$tmp/b.out")"; fi
# a real table from this machine's allreduce-bench (2 CPU ranks, MPI)
if timeout 120 mpirun --oversubscribe -np 2 "$bin" allreduce-bench --max-bytes 1048576 --iters 3 >"$tmp/real.txt" 2>&1 \
   && run rb --forward-ms 4 --backward-ms 8 --params 1000000 --gpus-per-node 2 --intra-bench "$tmp/real.txt" --nodes 1 \
   && err=$(check "$(J rb)" 'j["inputs"]["intra_busbw"]["value"] > 0' \
                  '"2 ranks on one node" in j["inputs"]["intra_busbw"]["source"]' 2>&1); then
    ok "a real allreduce-bench table (2 ranks) gives a positive bandwidth, named as measured"
else bad "real bench: ${err:-} $(tail -3 "$tmp/real.txt") $(cat "$tmp/rb.out" 2>/dev/null)"; fi

# --- bad inputs: non-zero exit with a message -------------------------------------
# refuse CODE 'MESSAGE' ARGS...
refuse() {
    local code=$1 msg=$2; shift 2
    "$py" "$model" "$@" >"$tmp/err.out" 2>&1
    local rc=$?
    if [[ $rc -eq $code ]] && grep -qF -- "$msg" "$tmp/err.out"; then ok "refused ($rc): $msg"
    else bad "expected exit $code and '$msg', got $rc: $(cat "$tmp/err.out")"; fi
}
refuse 2 "--nodes needs a list like 1,2,4,8" "${round[@]}" --nodes 1,,2
refuse 2 "--nodes: node counts start at 1" "${round[@]}" --nodes 0,2
refuse 2 "--intra-busbw must be a positive number" "${round[@]}" --intra-busbw 0
refuse 2 "--inter-step-us must be a non-negative number" "${round[@]}" --inter-step-us -1
refuse 2 "--gpus-per-node must be at least 1" "${round[@]}" --gpus-per-node 0
refuse 2 "--bucket-mib must be a positive number" "${round[@]}" --bucket-mib 0
refuse 2 "no per-step compute: give --summary FILE, or --forward-ms and --backward-ms (missing: backward)" \
    --params 10 --forward-ms 1
refuse 2 "no gradient size: give --summary FILE" --forward-ms 1 --backward-ms 2
refuse 2 "--achieved-tflops needs the FLOP per event" "${round[@]}" --achieved-tflops 100
refuse 2 "--inter-bench needs --inter-bench-nodes N" "${round[@]}" --inter-bench "$tmp/inter.txt"
refuse 1 "$tmp/none.json: No such file or directory" --summary "$tmp/none.json"
printf '{"report": ' >"$tmp/trunc.json"
refuse 1 "$tmp/trunc.json: not readable JSON" --summary "$tmp/trunc.json"
echo '{"report": {"log": "ok"}}' >"$tmp/notsummary.json"
refuse 1 "not an mlpfbench summary" --summary "$tmp/notsummary.json"
echo 'hello' >"$tmp/notbench.txt"
refuse 1 "fewer than two size lines" "${round[@]}" --intra-bench "$tmp/notbench.txt"
grep -v 'mlpfbench allreduce-bench' "$tmp/intra.txt" >"$tmp/noranks.txt"
refuse 2 "does not say how many ranks ran it: give --intra-bench-ranks" "${round[@]}" --intra-bench "$tmp/noranks.txt"
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["report"]["log"]="rank 1: out of memory"; json.dump(d,open(sys.argv[2],"w"))' \
    "$tmp/run/mlpf_summary.json" "$tmp/failed.json" 2>/dev/null
refuse 2 "the run failed (rank 1: out of memory)" --summary "$tmp/failed.json"

echo "scaling_model: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
