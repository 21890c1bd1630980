#!/usr/bin/env bash
# The hep-workloads entry point scripts/mlpf-bmk.sh run directly, as hep-score
# runs the image: 2 copies with --extra-args holding several options, three
# repetitions laid out as hep-score lays them out and scored by its rule from
# the shipped hepscore/mlpf-cpu.yaml; every bad argument; run failures.
#   tests/hepscore.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/hepscore.sh BUILD_DIR}
root=$lib_root
bin=$root/$build/mlpfbench
[[ $build == /* ]] && bin=$build/mlpfbench
entry=$root/scripts/mlpf-bmk.sh
export MLPF_BIN=$bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3

# a small dataset (the generator's files are the same for a seed)
"$bin" generate --out "$tmp/ds" --train-events 12 --valid-events 4 --shards 3 --elements 300 --seed 11 >/dev/null \
    || { bad "generate failed"; finish hepscore; exit 1; }
ds=$tmp/ds
xa="--data $ds --preset tiny --epochs 3 --batch-size 2 --seed 7 --log-every 0 --lr 0.002"

# ---------------------------------------------------------------- good runs
# Everything the runs may touch outside their results directory stays as it
# was: the dataset, the working directory, TMPDIR, the source tree.
mkdir -p "$tmp/cwd" "$tmp/tmpdir" "$tmp/out/mlpf-bmk"
touch "$tmp/marker"
sleep 1
t0=$(date +%s)
for r in 0 1 2; do
    (cd "$tmp/cwd" && TMPDIR=$tmp/tmpdir timeout 300 "$entry" -W --threads 1 --copies 2 --events 6 \
        --resultsdir "$tmp/out/mlpf-bmk/run$r" --extra-args "$xa") >"$tmp/run$r.log" 2>&1
    rc=$?
    [[ $rc -eq 0 ]] && ok "run$r: 2 copies x 1 thread, exit 0" || bad "run$r exited $rc: $(tail -5 "$tmp/run$r.log")"
done
echo "three runs of 2 copies: $(($(date +%s) - t0)) s"
changed=$(find "$ds" "$tmp/cwd" "$tmp/tmpdir" "$root" -newer "$tmp/marker" \
    -not -path "$root/.git*" -not -path "$root/$build/*" -not -path "$root/build*" -not -path "$root/tests/fuzz/*" \
    -not -path "$root/data/*" -not -path "$root/results/*" 2>/dev/null | head -5)
[[ -z $changed ]] && ok "nothing written outside the results directories (dataset, cwd, TMPDIR, source tree unchanged)" \
    || bad "files written outside the results directory: $changed"
run0=$tmp/out/mlpf-bmk/run0
left=$(cd "$run0" && find . -mindepth 1 | sort | tr '\n' ' ')
[[ $left == ". ./mlpf-bmk.log ./mlpf_summary.json ./proc_1 ./proc_1/mlpf_summary.json ./proc_1/train.log ./proc_2 ./proc_2/mlpf_summary.json ./proc_2/train.log " ||
   $left == "./mlpf-bmk.log ./mlpf_summary.json ./proc_1 ./proc_1/mlpf_summary.json ./proc_1/train.log ./proc_2 ./proc_2/mlpf_summary.json ./proc_2/train.log " ]] \
    && ok "the results directory holds the summary, the entry point's log and each copy's summary and log (the dataset view and MPI's session files are gone)" \
    || bad "results directory content: $left"
check_summaries "$tmp/out"

# the summary: copies summed and reported per copy, the extra arguments applied
if $py - "$run0" "$xa" <<'EOF'; then ok "run0 summary: run_info, scores = sum/mean of the 2 copies, per-copy figures, extra-args applied"; else bad "run0 summary (above)"; fi
import json, sys
d, xa = sys.argv[1], sys.argv[2]
s = json.load(open(d + "/mlpf_summary.json"))
c = [json.load(open("%s/proc_%d/mlpf_summary.json" % (d, k))) for k in (1, 2)]
ri, rep, st = s["run_info"], s["report"], s["report"]["wl-stats"]
assert ri["copies"] == 2 and ri["threads_per_copy"] == 1 and ri["events_per_thread"] == 6, ri
assert ri["events_per_copy"] == 6 and ri["extra_arguments"] == xa, ri
assert rep["log"] == "ok", rep["log"]
mt = [x["report"]["wl-scores"]["mean_throughput"] for x in c]
et = [x["report"]["wl-scores"]["mean_epoch_time"] for x in c]
assert abs(rep["wl-scores"]["mean_throughput"] - sum(mt)) <= 1e-9 * sum(mt), (rep["wl-scores"], mt)
assert abs(rep["wl-scores"]["mean_epoch_time"] - sum(et) / 2) <= 1e-9 * sum(et), (rep["wl-scores"], et)
assert st["mean_throughput"]["count"] == 2 and abs(st["mean_throughput"]["sum"] - sum(mt)) <= 1e-9 * sum(mt)
assert abs(st["mean_throughput"]["min"] - min(mt)) < 1e-12 and abs(st["mean_throughput"]["max"] - max(mt)) < 1e-12
# per epoch: throughputs summed over the copies, so the score is their mean over epochs 2..n too
tp = st["throughput_per_epoch"]
assert len(tp) == 3 and abs(sum(tp[1:]) / 2 - sum(mt)) <= 1e-9 * sum(mt), tp
for e in range(3):
    assert abs(tp[e] - sum(x["report"]["wl-stats"]["throughput_per_epoch"][e] for x in c)) <= 1e-9 * tp[e]
# each copy: its own cores, 6 training events per epoch, the extra arguments applied
cps = st["copies"]
assert [x["copy"] for x in cps] == [1, 2] and len({x["cpus"] for x in cps}) == 2, cps
for x, full in zip(cps, c):
    w = full["report"]["wl-stats"]
    assert x["log"] == "ok" and x["exit_status"] == 0 and x["wl-scores"] == full["report"]["wl-scores"]
    assert w["train_set_size"] == 6 and w["validation_set_size"] == 2, (w["train_set_size"], w["validation_set_size"])
    assert w["preset"] == "tiny" and w["seed"] == 7 and w["batch_size_per_device"] == 2 and w["num_epochs"] == 3
    assert w["per_rank"][0]["cpus"] == x["cpus"] and w["per_rank"][0]["threads"] == 1
    assert w["per_rank"][0]["events"] == 18, w["per_rank"][0]["events"]
    assert "--lr 0.002" in w["command_line"] and "--bind none" in w["command_line"]
# the copies did the same work: same data, same seed, same validation results
v = [x["report"]["wl-stats"]["validation_accuracy"] for x in c]
assert v[0] == v[1] and st["validation_accuracy"] == v[0], v
assert st["world_size"] == 2 and sorted(r["rank"] for r in st["per_rank"]) == [0, 1]
assert sorted(r["copy"] for r in st["per_rank"]) == [1, 2] and st["events_per_epoch"] == 12
assert sum(n["events"] for n in st["per_node"]) == 36
# the dataset's checksums in app
a = s["app"]["dataset"]
assert a["train_events"] == 12 and a["used_train_events"] == 6 and a["used_valid_events"] == 2
man = json.load(open(a["path"] + "/manifest.json"))
assert [x["crc32"] for x in a["shards"]] == [x["crc32"] for sp in ("train", "valid") for x in man[sp]["shards"]]
assert s["app"]["containment"] in ("none", "docker", "podman"), s["app"]
EOF

# ranks within a copy (mpirun), without -W (a new subdirectory), --debug (the commands, the view kept)
"$entry" -d "$tmp/nw" --debug --threads 2 --copies 1 --events 6 --extra-args "$xa --ranks 2 --batch-size 1" >"$tmp/nw.log" 2>&1
rc=$?
sub=$(cd "$tmp/nw" 2>/dev/null && ls -d mlpf-bmk-c1-e6-*_* 2>/dev/null)
if [[ $rc -eq 0 && $(wc -w <<<"$sub") -eq 1 ]] && $py - "$tmp/nw/$sub" <<'EOF'; then ok "1 copy of 2 ranks (mpirun) in $sub (no -W), --debug: commands printed, dataset view kept"; else bad "ranks/no -W/debug: exit $rc, '$sub': $(tail -5 "$tmp/nw.log")"; fi
import json, os, sys
d = sys.argv[1]
s = json.load(open(d + "/mlpf_summary.json")); st = s["report"]["wl-stats"]
assert s["report"]["log"] == "ok" and s["report"]["wl-scores"]["mean_throughput"] > 0
assert s["run_info"]["ranks_per_copy"] == 2 and st["world_size"] == 2, (s["run_info"], st["world_size"])
assert sorted((r["copy"], r["copy_rank"], r["rank"], r["threads"]) for r in st["per_rank"]) == [(1, 0, 0, 1), (1, 1, 1, 1)]
assert sum(r["events"] for r in st["per_rank"]) == 6 * 3, [r["events"] for r in st["per_rank"]]
assert st["copies"][0]["wl-stats"]["horovod_enabled"] is True
assert os.path.isfile(d + "/dataset-view/manifest.json")  # --debug keeps it
log = open(d + "/mlpf-bmk.log").read()
import re
assert "mpirun --bind-to none --oversubscribe -np 2" in log and re.search(r"taskset -c 0\\?,1 ", log), log
EOF

# the shipped configurations name the image tag make image builds (v + MLPF_VERSION)
ver=v$(sed -n 's/^#define MLPF_VERSION "\(.*\)"/\1/p' "$root/include/report.h")
if grep -q "^ *version: $ver\$" "$root/hepscore/mlpf-cpu.yaml" && grep -q "^ *version: $ver-cuda\$" "$root/hepscore/mlpf-gpu.yaml"
then ok "hepscore/*.yaml name the image version $ver"; else bad "hepscore yaml versions are not $ver / $ver-cuda"; fi
# the score hep-score computes from the shipped yaml, recomputed by its rule
conf=$root/hepscore/mlpf-cpu.yaml
if out=$($py "$root/scripts/hepscore_score.py" "$conf" "$tmp/out" 2>&1) && $py - "$conf" "$tmp/out" "$out" <<'EOF'; then ok "score by hep-score's rule from hepscore/mlpf-cpu.yaml: $(tail -1 <<<"$out")"; else bad "score: $out"; fi
import json, sys, yaml
conf, outdir, printed = sys.argv[1], sys.argv[2], sys.argv[3]
b = yaml.safe_load(open(conf))["hepscore"]["benchmarks"]["mlpf-bmk"]
ref = b["ref_scores"]["mean_throughput"]
assert list(b["ref_scores"]) == ["mean_throughput"] and b["results_file"] == "mlpf_summary.json"
runs = sorted(round(json.load(open("%s/mlpf-bmk/run%d/mlpf_summary.json" % (outdir, r)))
                    ["report"]["wl-scores"]["mean_throughput"] / ref, 4) for r in range(3))
want = runs[1]  # one sub-score: the run's score is its ratio; the median of three
assert printed.strip().splitlines()[-1].endswith("%.4f" % want), (printed, runs)
EOF
# a run without its summary makes the configuration fail, as in hep-score
mv "$tmp/out/mlpf-bmk/run2/mlpf_summary.json" "$tmp/run2-summary.json"
out=$($py "$root/scripts/hepscore_score.py" "$conf" "$tmp/out" 2>&1) \
    && bad "score of 2 of 3 runs accepted: $out" || ok "2 good runs of 3: no score ($(tail -1 <<<"$out"))"
mv "$tmp/run2-summary.json" "$tmp/out/mlpf-bmk/run2/mlpf_summary.json"

# hep-score itself, where it is installed, replays the same directory
hs=${HEPSCORE_BIN:-$(command -v hep-score || true)}
if [[ -n $hs ]]; then
    cp -r "$tmp/out" "$tmp/replay"
    hconf=$conf note=""
    "$hs" -r -f "$hconf" -o "$tmp/hs.json" "$tmp/replay" >"$tmp/hs.log" 2>&1
    if grep -q "KeyError: 'hepscore_benchmark'" "$tmp/hs.log"; then # hep-score before the 'hepscore' key
        sed 's/^hepscore:/hepscore_benchmark:/' "$conf" >"$tmp/old-key.yaml"
        hconf=$tmp/old-key.yaml note=" (an older hep-score: top key renamed hepscore_benchmark)"
        rm -rf "$tmp/replay" && cp -r "$tmp/out" "$tmp/replay"
    fi
    if "$hs" -r -f "$hconf" -o "$tmp/hs.json" "$tmp/replay" >"$tmp/hs.log" 2>&1 &&
        $py -c "
import json,sys; h=json.load(open('$tmp/hs.json')); p=open('$tmp/hs.log').read()
s=h.get('score'); mine='''$($py "$root/scripts/hepscore_score.py" "$conf" "$tmp/out" | tail -1)'''
assert h.get('status')=='success' and mine.endswith('%.4f' % s), (s, mine, h.get('status'))"; then
        ok "hep-score ($hs) replays the results directory$note: $(grep -o 'Final result: .*' "$tmp/hs.log" | tail -1)"
    else bad "hep-score replay: $(tail -5 "$tmp/hs.log")"; fi
else
    echo "SKIPPED hep-score replay: hep-score is not installed (set HEPSCORE_BIN to its hep-score command)"
fi

# ---------------------------------------------------------------- bad arguments
# exit 2, one line on stderr naming the argument, nothing on stdout, no
# results directory (so no summary), no training started
nbad=0
refuse() { # PATTERN ARGS...
    local pat=$1 d=$tmp/bad.$nbad
    shift
    nbad=$((nbad + 1))
    out=$(timeout 60 "$entry" -W -d "$d" "$@" 2>"$tmp/err")
    rc=$?
    err=$(cat "$tmp/err")
    if [[ $rc -ne 2 ]]; then bad "'$*' exited $rc, expected 2: $err"
    elif [[ -n $out || $(wc -l <<<"$err") -ne 1 ]]; then bad "'$*': not one line on stderr: [$out] [$err]"
    elif ! grep -qE -- "$pat" <<<"$err"; then bad "'$*': message lacks /$pat/: $err"
    elif [[ -e $d ]]; then bad "'$*': wrote $d"
    else ok "refused: $* -> $err"
    fi
}
refuse "unknown option '--frobnicate'" --frobnicate
refuse "unknown option 'extra'" --threads 1 extra
refuse "--threads needs a whole number .* got 'abc'" --threads abc
refuse "--threads needs a whole number .* got '0'" --threads 0
refuse "-t needs a whole number .* got '-1'" -t -1
refuse "--copies needs a whole number .* got '0'" --copies 0
refuse "-c needs a whole number .* got '2x'" -c 2x
refuse "--events needs a whole number .* got ''" --events ''
refuse "--events needs a whole number .* got '1e3'" --events=1e3
refuse "--events needs a value" --events
refuse "--mop must be none, all or custom" --mop everything
refuse "--events 13: the dataset .* has only 12 training events" --events 13 --extra-args "--data $ds"
refuse "--batch-size needs a whole number from 1 .* got '0'" --extra-args "--data $ds --batch-size 0"
refuse "--preset must be one of .* got 'huge'" --extra-args "--data $ds --preset huge"
refuse "--device must be cpu or cuda, got 'tpu'" --extra-args "--data $ds --device tpu"
refuse "unknown option '--bogus' for train" --extra-args "--data $ds --epochs 2 --bogus 1"
refuse "--epochs needs a whole number" --extra-args "--data $ds --epochs"
refuse "--lr needs a number .* got 'nan'" --extra-args "--data $ds --lr nan"
refuse "unbalanced quotes" --extra-args "--data $ds --preset 'tiny"
refuse "--results is the entry point's to set" --extra-args "--data $ds --results /elsewhere"
refuse "--threads is the entry point's to set" --extra-args "--data $ds --threads 4"
refuse "--checkpoint is not available" --extra-args "--data $ds --checkpoint /tmp/x.bin"
refuse "--timeline needs a plain file name" --extra-args "--data $ds --timeline /tmp/t.json"
refuse "--gpus 2 needs --device cuda" --extra-args "--data $ds --gpus 2"
refuse "--gpus needs a whole number .* got '0'" --extra-args "--data $ds --device cuda --gpus 0"
refuse "--ranks is for CPU copies" --extra-args "--data $ds --device cuda --ranks 2"
refuse "--valid-events 5: the dataset .* has only 4 validation events" --extra-args "--data $ds --valid-events 5"
refuse "--data $tmp/nowhere: .* is not a directory" --extra-args "--data $tmp/nowhere"
refuse "--data $tmp/cwd: no dataset in" --extra-args "--data $tmp/cwd"
"$entry" --help | grep -q -- "--extra-args 'OPTIONS'" && ok "--help" || bad "--help lacks --extra-args"

# ---------------------------------------------------------------- run failures
# a failed summary that says why (schema-valid, no scores) and exit 1
failed() { # NAME DIR PATTERN
    if [[ ! -f $2/mlpf_summary.json ]]; then bad "$1: no summary"; return; fi
    /usr/bin/python3 "$root/tests/check_summary.py" "$2/mlpf_summary.json" --failed "$3" >"$tmp/chk" 2>&1 \
        && ok "$1: failed summary: $(grep -o '"log": "[^"]*' "$2/mlpf_summary.json" | tail -1 | cut -c9-200)" \
        || bad "$1: $(cat "$tmp/chk")"
}
# a shard damaged after the image was made: the copy that reads it fails, the run fails
cp -r "$ds" "$tmp/ds-bad"
printf '\x55' | dd of="$tmp/ds-bad/train/shard-0000.h5" bs=1 seek=3000 conv=notrunc status=none
"$entry" -W -d "$tmp/f1" --threads 1 --copies 2 --events 6 --extra-args "--data $tmp/ds-bad --preset tiny" >"$tmp/f1.log" 2>&1
rc=$?
[[ $rc -eq 1 ]] && ok "damaged shard: exit 1" || bad "damaged shard: exit $rc: $(tail -3 "$tmp/f1.log")"
failed "damaged shard" "$tmp/f1" "copy [12] failed: .*shard-0000.h5.*\(2 of the 2 copies failed"
# a damaged shard cut in two by --events: refused before its copy is made
"$entry" -W -d "$tmp/f1b" --threads 1 --copies 1 --events 2 --extra-args "--data $tmp/ds-bad --preset tiny" >"$tmp/f1b.log" 2>&1
rc=$?
[[ $rc -eq 1 ]] && ok "damaged partial shard: exit 1" || bad "damaged partial shard: exit $rc"
failed "damaged partial shard" "$tmp/f1b" "cannot prepare the dataset: shard .*shard-0000.h5 is damaged"

# --device cuda where no GPU is visible: a failed summary saying so (a GPU
# machine trains instead, or, while the GPU backend is not written, refuses)
if "$bin" info 2>/dev/null | grep -q "^GPUs: none usable"; then
    "$entry" -W -d "$tmp/f2" --threads 1 --extra-args "--data $ds --preset tiny --device cuda" >"$tmp/f2.log" 2>&1
    rc=$?
    [[ $rc -eq 1 ]] && ok "--device cuda without a GPU: exit 1" || bad "--device cuda without a GPU: exit $rc: $(cat "$tmp/f2.log")"
    failed "--device cuda without a GPU" "$tmp/f2" "no GPU is visible"
    [[ ! -d $tmp/f2/proc_1 ]] && ok "--device cuda without a GPU: no copy started" || bad "a copy started without a GPU"
else
    echo "SKIPPED --device cuda without a GPU: this machine has a GPU"
fi

# one epoch: the copies' score after their warm-up, or a failed run naming the
# missing score; never success with an empty wl-scores
"$entry" -W -d "$tmp/f3" --threads 1 --copies 1 --events 6 --extra-args "--data $ds --preset tiny --epochs 1 --batch-size 1" >"$tmp/f3.log" 2>&1
rc=$?
if $py -c "
import json, sys; s = json.load(open('$tmp/f3/mlpf_summary.json'))['report']
ok = $rc == 0 and s['log'] == 'ok' and s['wl-scores'].get('mean_throughput', 0) > 0
refused = $rc == 1 and 'reported no mean_throughput' in s['log'] and s['wl-scores'] == {}
print('scored' if ok else 'failed: ' + s['log']); sys.exit(not (ok or refused))" >"$tmp/f3.chk"; then
    ok "--epochs 1: $(cat "$tmp/f3.chk") (exit $rc)"
else bad "--epochs 1: exit $rc, $(cat "$tmp/f3.chk")"; fi

# a copy killed outright (SIGKILL): the run ends at once, the other copy is
# stopped, the failed summary names the killed copy
"$entry" -W -d "$tmp/f5" --threads 1 --copies 2 --events 12 --extra-args "--data $ds --preset tiny --epochs 100000" >"$tmp/f5.log" 2>&1 &
epid=$!
for _ in $(seq 100); do [[ -f $tmp/f5/proc_2/train.log ]] && grep -q "^epoch 2" "$tmp/f5/proc_2/train.log" && break; sleep 0.2; done
t0=$(date +%s)
for p in $(pgrep -P $epid); do # the entry point's own child that runs copy 2, by its id
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--results $tmp/f5/proc_2 " && kill -KILL "$p"
done
wait $epid
rc=$?
[[ $rc -eq 1 ]] && ok "copy 2 killed: exit 1 after $(($(date +%s) - t0)) s" || bad "copy 2 killed: exit $rc: $(tail -3 "$tmp/f5.log")"
failed "copy 2 killed" "$tmp/f5" "^copy 2 wrote no summary \(exit status 137.*\(2 of the 2 copies failed or were stopped after it\)"
grep -q "copy 2 failed: stopping the other copies" "$tmp/f5/mlpf-bmk.log" && ok "copy 1 stopped after copy 2 failed" || bad "copy 1 not stopped: $(cat "$tmp/f5/mlpf-bmk.log")"

# SIGTERM (docker stop) mid-run: the copies are stopped, a failed summary, no process left
"$entry" -W -d "$tmp/f4" --threads 1 --copies 2 --events 12 --extra-args "--data $ds --preset tiny --epochs 100000" >"$tmp/f4.log" 2>&1 &
epid=$!
for _ in $(seq 100); do [[ -f $tmp/f4/proc_2/train.log ]] && grep -q "^epoch 2" "$tmp/f4/proc_2/train.log" && break; sleep 0.2; done
kill -TERM $epid
wait $epid
rc=$?
[[ $rc -eq 1 ]] && ok "SIGTERM: exit 1" || bad "SIGTERM: exit $rc: $(tail -3 "$tmp/f4.log")"
failed "SIGTERM" "$tmp/f4" "interrupted by SIGTERM"
sleep 1
pgrep -f "results $tmp/f4/proc_" >/dev/null && bad "copies still running after SIGTERM" || ok "SIGTERM: no copy left running"

finish hepscore
