#!/usr/bin/env bash
# The benchmark run and its report: every summary is validated against
# docs/mlpf_summary.schema.json and its numbers must add up (tests/check_summary.py);
# same seed gives the same validation results; failed runs leave a failed summary
# and no scores; progress is a bar on a terminal and lines otherwise.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/report.sh BUILD_DIR}
bin="$build/mlpfbench"
here=$(cd "$(dirname "$0")/.." && pwd)
check=("/usr/bin/python3" "$here/tests/check_summary.py")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
summ() { echo "$tmp/$1/mlpf_summary.json"; }

"$bin" generate --out "$tmp/ds" --train-events 6 --valid-events 3 --shards 2 --elements 70 --seed 4 >/dev/null
train() { local np=$1 res=$2; shift 2
    timeout 120 mpirun --oversubscribe -np "$np" "$bin" train --preset tiny --data "$tmp/ds" --threads 1 \
        --results "$tmp/$res" "$@"; }

for np in 1 2; do
    if train $np r$np --batch-size 2 --epochs 3 >"$tmp/o$np" 2>&1 && "${check[@]}" "$(summ r$np)" --ok --ranks $np --epochs 3; then
        ok "$np rank(s): summary valid, per-rank and per-node figures add up to the training set"
    else bad "$np rank(s): $(tail -3 "$tmp/o$np")"; fi
done
grep -q "^mean throughput .*epochs 2..3" "$tmp/o1" && grep -q "^mlpfbench result  *ok" "$tmp/o1" \
    && ok "a table of the key figures closes the run" || bad "no closing table: $(tail -8 "$tmp/o1")"
compgen -G "$tmp/r1/*.tmp" >/dev/null && bad "temporary file left in results" || ok "no temporary file left"

# same seed, same ranks: identical validation accuracy and losses
train 1 r1b --batch-size 2 --epochs 3 >/dev/null 2>&1
/usr/bin/python3 - "$(summ r1)" "$(summ r1b)" <<'PY' && ok "same seed twice: identical validation accuracy and losses" || bad "runs differ"
import json, sys
a, b = (json.load(open(p))["report"]["wl-stats"] for p in sys.argv[1:3])
assert a["validation_accuracy"] == b["validation_accuracy"], (a["validation_accuracy"], b["validation_accuracy"])
assert a["validation_loss"] == b["validation_loss"]
PY

# one epoch: scored on the steps after a stated warm-up (hep-score needs a score)
train 1 r1e --batch-size 2 --epochs 1 >/dev/null 2>&1
/usr/bin/python3 - "$(summ r1e)" <<'PY' && ok "one epoch: scored after 1 warm-up step, the summary says so" || bad "one-epoch summary"
import json, sys
s = json.load(open(sys.argv[1]))["report"]
sc, st = s["wl-scores"], s["wl-stats"]
assert set(sc) == {"mean_throughput", "mean_epoch_time"}, sc
assert "after the first 1 warm-up step" in st["score_basis"] and "(4 events in" in st["score_basis"], st["score_basis"]
# 6 events, batch 2: steps 2 and 3 count; their rate is faster than the whole epoch's
assert sc["mean_throughput"] >= st["throughput_per_epoch"][0] * 0.8, (sc, st["throughput_per_epoch"])
assert abs(sc["mean_epoch_time"] * sc["mean_throughput"] - 6) < 1e-6, sc
PY
train 1 r1few --batch-size 6 --epochs 1 >"$tmp/few" 2>&1; rc=$?
[[ $rc -eq 1 ]] && grep -q "ends within epoch 1 is scored on the steps after its first 1 warm-up step(s), and this run has 1 step(s): give it at least 2 steps" "$tmp/few" \
    && ! grep -q "^epoch 1 step" "$tmp/few" && grep -q '"log": "a run that ends within epoch 1 is scored' "$(summ r1few)" \
    && ok "one epoch of one step: refused before training, naming the minimum" || bad "one-step epoch: rc $rc $(tail -2 "$tmp/few")"

# failed runs leave a failed summary (no scores), exit non-zero
if train 1 rmiss --data "$tmp/none" >/dev/null 2>&1; then bad "missing data accepted"
elif "${check[@]}" "$(summ rmiss)" --failed "dataset directory .*none does not exist"; then
    ok "missing dataset: failed summary naming the directory"; else bad "missing dataset summary"; fi
cp -r "$tmp/ds" "$tmp/dsflip"
"$here/tests/corrupt_shard.py" "$tmp/dsflip" train/shard-0001.h5 flip
if train 2 rflip --data "$tmp/dsflip" >/dev/null 2>&1; then bad "damaged shard accepted"
elif "${check[@]}" "$(summ rflip)" --failed "shard-0001.h5 is damaged"; then
    ok "damaged shard found by rank 1: rank 0's summary names it"; else bad "damaged-shard summary"; fi
cp -r "$tmp/ds" "$tmp/dsnan"
"$here/tests/corrupt_shard.py" "$tmp/dsnan" train/shard-0001.h5 nan
if train 1 rnan --data "$tmp/dsnan" --batch-size 2 >/dev/null 2>&1; then bad "NaN accepted"
elif "${check[@]}" "$(summ rnan)" --failed "rank 0 .*X is not finite"; then
    ok "NaN mid-run: failed summary with rank, file and cause"; else bad "NaN summary"; fi

cp -r "$tmp/ds" "$tmp/dshuge"
"$here/tests/corrupt_shard.py" "$tmp/dshuge" train/shard-0000.h5 huge
if train 1 rhuge --data "$tmp/dshuge" --batch-size 2 >"$tmp/ohuge" 2>&1; then bad "overflowing data trained"
elif "${check[@]}" "$(summ rhuge)" --failed "rank 0 .*step [0-9]+: the charge loss of this rank's events is inf"; then
    ok "non-finite loss: stopped at that step, rank and loss named"; else bad "non-finite loss: $(tail -2 "$tmp/ohuge")"; fi

# too little memory: refused before training, with what is needed and available
"$bin" generate --out "$tmp/big" --train-events 64 --valid-events 1 --shards 1 --seed 2 >/dev/null
if "$bin" train --data "$tmp/big" --batch-size 64 --results "$tmp/rbig" >"$tmp/obig" 2>&1; then bad "an impossible batch was accepted"
elif grep -qE "not enough memory: a batch of 64 events needs [0-9]+ MiB on each rank .* [0-9]+ MiB is available" "$tmp/obig" \
     && "${check[@]}" "$(summ rbig)" --failed "not enough memory"; then
    ok "memory: refused before training, needed and available named"; else bad "memory check: $(tail -3 "$tmp/obig")"; fi

# a rank killed mid-training (as a node failure would): the job ends within
# 30 s and rank 0 leaves a failed summary; a stopped (hung) rank: the watchdog
"$bin" generate --out "$tmp/long" --train-events 400 --valid-events 2 --shards 2 --elements 60 --seed 9 >/dev/null
rank_pid() { # pid of the given rank of a run on $tmp/long
    local p
    for p in $(pgrep -f "mlpfbench train .*$tmp/long"); do
        tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
    done
}
for how in KILL STOP; do
    start=$SECONDS
    timeout 120 mpirun --oversubscribe -np 2 "$bin" train --preset tiny --data "$tmp/long" --threads 1 --batch-size 1 \
        --epochs 50 --timeout 5 --results "$tmp/r$how" >"$tmp/o$how" 2>&1 &
    job=$!
    for _ in $(seq 100); do p=$(rank_pid 1); [[ -n "$p" ]] && grep -q "^epoch 1 step" "$tmp/o$how" && break; sleep 0.2; done
    sleep 1
    [[ -n "$p" ]] && kill -$how "$p"
    wait $job; rc=$?
    took=$((SECONDS - start))
    [[ $how == STOP && -n "$p" ]] && kill -KILL "$p" 2>/dev/null
    if [[ $rc -ne 0 && $rc -ne 124 && $took -le 40 ]] && "${check[@]}" "$(summ r$how)" --failed "."; then
        ok "rank 1 SIG$how mid-training: job ended (exit $rc) in ${took} s, rank 0 left a failed summary: $(/usr/bin/python3 -c "import json;print(json.load(open('$(summ r$how)'))['report']['log'][:90])")"
    else bad "rank 1 SIG$how: exit $rc after ${took} s: $(tail -3 "$tmp/o$how")"; fi
done

# each wait has its own limit: rank 1 stops before a step (rank 0 then waits in
# a collective) or its reader stops (both ranks wait for data); the overall
# --timeout is long, so only the wait limits can end these runs
for fp in "stall-step@3:1 collective the-batch-size-reduction" "stall-read@4:1 data the-next-training-batch"; do
    read -r point kind what <<<"$fp"
    start=$SECONDS
    MLPF_FAILPOINT=$point timeout 120 mpirun --oversubscribe -np 2 "$bin" train --preset tiny --data "$tmp/long" \
        --threads 1 --batch-size 1 --timeout 600 --collective-timeout 3 --data-timeout 3 \
        --results "$tmp/r$kind" >"$tmp/o$kind" 2>&1
    rc=$?; took=$((SECONDS - start))
    msg="waited [0-9]+ s (in a collective|for data) \\(${what//-/ }\\) after step [0-9]+: .*--$kind-timeout 3"
    if [[ $rc -ne 0 && $rc -ne 124 && $took -le 30 ]] && grep -qE "rank [01] \\(.*\\): $msg" "$tmp/o$kind" \
        && "${check[@]}" "$(summ r$kind)" --failed "$kind-timeout 3"; then
        ok "$point: --$kind-timeout ended the job (exit $rc) in ${took} s, failed summary names the wait"
    else bad "$point: exit $rc after ${took} s: $(grep mlpfbench: "$tmp/o$kind" | head -3)"; fi
done

# checkpoints: interrupted after 4 of 9 steps, resumed: the same final weights
for np in 1 2; do
    common=(--batch-size 2 --epochs 3 --seed 6)
    [[ $np -eq 2 ]] && common=(--batch-size 1 --epochs 3 --seed 6)
    train $np rfull$np "${common[@]}" --save-weights "$tmp/wfull$np" >/dev/null 2>&1
    train $np rpart$np "${common[@]}" --max-steps 4 --checkpoint-every 2 --checkpoint "$tmp/ck$np" >/dev/null 2>&1
    train $np rres$np "${common[@]}" --resume "$tmp/ck$np" --save-weights "$tmp/wres$np" >"$tmp/ores$np" 2>&1
    if [[ -s "$tmp/wfull$np" ]] && cmp -s "$tmp/wfull$np" "$tmp/wres$np" && grep -q "resuming from .* 4 steps done" "$tmp/ores$np"; then
        ok "$np rank(s): checkpoint at step 4, resume: final weights identical to an uninterrupted run"
    else bad "$np rank(s) resume: $(tail -3 "$tmp/ores$np")"; fi
done
/usr/bin/python3 - "$tmp/ck1" <<'PY'
import sys
d = bytearray(open(sys.argv[1], "rb").read()); d[len(d) // 2] ^= 1; open(sys.argv[1], "wb").write(d)
PY
if train 1 rbadck --batch-size 2 --epochs 3 --seed 6 --resume "$tmp/ck1" >"$tmp/obadck" 2>&1; then bad "damaged checkpoint accepted"
elif grep -q "checkpoint .*ck1 is damaged (CRC-32 mismatch)" "$tmp/obadck"; then ok "damaged checkpoint refused"
else bad "damaged checkpoint: $(tail -2 "$tmp/obadck")"; fi

# bad device/precision
"$bin" train --device cuda --results "$tmp/rcuda" >"$tmp/e" 2>&1; [[ $? -eq 2 ]] && grep -q "device cuda" "$(summ rcuda)" \
    && grep -qE "^mlpfbench: rank 0 \(.*\): --device cuda: (no usable CUDA device|no CUDA device is visible|this mlpfbench was built without CUDA)" "$tmp/e" \
    && ok "--device cuda refused clearly: $(cut -c1-120 "$tmp/e")" || bad "--device cuda: $(cat "$tmp/e")"
"$bin" train --precision bf16 >"$tmp/e" 2>&1; [[ $? -eq 2 ]] && grep -q "needs a GPU" "$tmp/e" \
    && ok "--precision bf16 refused on the CPU backend" || bad "--precision bf16: $(cat "$tmp/e")"

# progress: a bar on a terminal, lines every few seconds otherwise
script -qec "$bin train --preset tiny --data $tmp/ds --threads 1 --batch-size 1 --results $tmp/rtty" /dev/null >"$tmp/tty" 2>&1
grep -q "\[#.*\] step .* ETA" "$tmp/tty" && ok "terminal: progress bar with step, events/s, loss, ETA" \
    || bad "no progress bar: $(head -c 400 "$tmp/tty")"
"$bin" train --preset tiny --data "$tmp/ds" --threads 1 --batch-size 1 --epochs 2 --results "$tmp/rpipe" >"$tmp/pipe" 2>&1
n=$(grep -c "^epoch " "$tmp/pipe")
[[ $n -ge 1 && $n -lt 12 ]] && ! grep -q "\[#" "$tmp/pipe" && ok "not a terminal: $n progress lines for 12 steps, no bar" \
    || bad "pipe progress: $n lines"

check_summaries "$tmp"
finish report
