#!/usr/bin/env bash
# make test-image: build a small mlpf-bmk image with the project's own recipe
# (container/build-image.sh, the Debian 12 base pulled or made here with
# mmdebstrap) and run it exactly as hep-score runs it: bind mounts, argument
# list, three repetitions scored from hepscore/mlpf-cpu.yaml. Then the CUDA
# image, where this machine has a CUDA toolkit: it starts, finds no GPU, writes
# a failed summary and exits non-zero. Where no engine can run containers it
# prints SKIPPED and the reason.
#   tests/image.sh BUILD_DIR
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/image.sh BUILD_DIR}
root=$lib_root
bin=$root/$build/mlpfbench
[[ $build == /* ]] && bin=$build/mlpfbench
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/container/containers.conf}
py=/usr/bin/python3

if ! engine=$("$root/container/engine.sh" --run 2>&1); then
    echo "SKIPPED test-image: $engine"
    exit 0
fi
tag=localhost/mlpf-bmk:test
gtag=localhost/mlpf-bmk:test-cuda
ds_args="--train-events 16 --valid-events 4 --shards 4 --elements 1000"
tmp=$(mktemp -d)
names=()
cleanup() {
    local n
    for n in "${names[@]}"; do "$engine" rm -f "$n" >/dev/null 2>&1; done
    "$engine" rmi -f "$gtag" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT

# ------------------------------------------------------------------ CPU image
t0=$(date +%s)
if "$root/container/build-image.sh" --tag "$tag" --dataset "$ds_args" --default-args "--preset tiny --epochs 2" \
    >"$tmp/build.log" 2>&1; then
    ok "built $tag with $engine in $(($(date +%s) - t0)) s ($(grep -m1 -oE 'using localhost/mlpf-bmk-base[^,]*|making the Debian 12 base[^:]*|base docker.io[^ ]*' "$tmp/build.log" | head -1))"
else
    bad "image build failed: $(tail -15 "$tmp/build.log")"
    finish test-image
    exit 1
fi
# hep-score's own command line (docker mode): the run directory on /results,
# its tmp on /tmp and /var/tmp, -W, then the configuration's args
hs_run() { # NAME RUNDIR ARGS...: the container is kept for 'diff'
    local name=$1 rundir=$2
    shift 2
    mkdir -p "$rundir" "$tmp/hstmp"
    names+=("$name")
    "$engine" run --name "$name" --network=host -v "$rundir:/results" -v "$tmp/hstmp:/tmp" -v "$tmp/hstmp:/var/tmp" \
        "$tag" -W "$@"
}
outdir=$tmp/out
t0=$(date +%s)
for r in 0 1 2; do
    hs_run "mlpf-test-$$-$r" "$outdir/mlpf-bmk/run$r" --threads 1 --copies 2 --events 8 \
        --extra-args '--preset tiny --epochs 3 --batch-size 2 --seed 5' >"$tmp/run$r.log" 2>&1
    rc=$?
    [[ $rc -eq 0 ]] && ok "run$r in the image: exit 0" || bad "run$r in the image: exit $rc: $(tail -8 "$tmp/run$r.log")"
done
echo "three runs in the image: $(($(date +%s) - t0)) s"
check_summaries "$outdir"
# the image's dataset is what the generator makes from the same options here
"$bin" generate --out "$tmp/ds" --seed 42 $ds_args >/dev/null
if $py - "$outdir/mlpf-bmk/run0/mlpf_summary.json" "$tmp/ds/manifest.json" "$engine" <<'EOF'; then ok "summary of a run in the image: 2 copies summed, extra-args applied, containment, dataset checksums = the generator's here, image info"; else bad "summary of the image run (above)"; fi
import json, sys
s = json.load(open(sys.argv[1])); man = json.load(open(sys.argv[2])); engine = sys.argv[3]
rep, st, app = s["report"], s["report"]["wl-stats"], s["app"]
assert rep["log"] == "ok", rep["log"]
assert s["run_info"]["copies"] == 2 and s["run_info"]["events_per_copy"] == 8, s["run_info"]
mt = [c["wl-scores"]["mean_throughput"] for c in st["copies"]]
assert len(mt) == 2 and abs(rep["wl-scores"]["mean_throughput"] - sum(mt)) <= 1e-9 * sum(mt)
for c in st["copies"]:
    w = c["wl-stats"]
    assert w["preset"] == "tiny" and w["seed"] == 5 and w["num_epochs"] == 3 and w["train_set_size"] == 8
assert app["containment"] == engine, app["containment"]
d = app["dataset"]
assert d["path"] == "/opt/mlpfbench/data/bmk" and d["train_events"] == 16 and d["used_train_events"] == 8, d
assert [x["crc32"] for x in d["shards"]] == [x["crc32"] for sp in ("train", "valid") for x in man[sp]["shards"]], d
img = app["image"]
assert img["name"] == "localhost/mlpf-bmk:test" and "--seed 42" in img["dataset"] and img["march"] == "x86-64-v3", img
assert "mmdebstrap" in img["base"] or "debian" in img["base"], img
EOF
out=$($py "$root/scripts/hepscore_score.py" "$root/hepscore/mlpf-cpu.yaml" "$outdir" 2>&1) \
    && ok "score of the three image runs from hepscore/mlpf-cpu.yaml: $(tail -1 <<<"$out")" || bad "score: $out"
# nothing written in the container outside /results (and the engine's own /etc files), nothing left in /tmp
changed=$("$engine" diff "mlpf-test-$$-0" 2>&1 | grep -vE '^[ACD] /(etc|etc/hosts|etc/hostname|etc/resolv.conf|run|run/\.containerenv|\.dockerenv|results|tmp|var/tmp|dev|proc|sys)$' || true)
[[ -z $changed ]] && ok "nothing written in the container outside /results ($engine diff)" || bad "the run wrote into the container: $changed"
[[ -z $(ls -A "$tmp/hstmp") ]] && ok "nothing left in the /tmp mount" || bad "left in /tmp: $(ls -A "$tmp/hstmp")"
# the image's default arguments (MLPF_BMK_DEFAULT_ARGS) apply without --extra-args
hs_run "mlpf-test-$$-d" "$tmp/d" --threads 1 --copies 1 --events 4 >"$tmp/d.log" 2>&1
rc=$?
if [[ $rc -eq 0 ]] && $py -c "
import json; w = json.load(open('$tmp/d/mlpf_summary.json'))['report']['wl-stats']['copies'][0]['wl-stats']
assert w['preset'] == 'tiny' and w['num_epochs'] == 2, w['preset']"; then ok "the image's default train options apply"
else bad "default options: exit $rc: $(tail -3 "$tmp/d.log")"; fi
# a bad argument through the image: exit 2, one line, no summary
hs_run "mlpf-test-$$-b" "$tmp/b" --threads 0 >"$tmp/b.out" 2>"$tmp/b.err"
rc=$?
if [[ $rc -eq 2 && ! -e $tmp/b/mlpf_summary.json ]] && grep -q -- "--threads needs a whole number" "$tmp/b.err" \
    && [[ $(grep -c . "$tmp/b.err") -eq 1 ]]; then ok "bad argument through the image: exit 2, '$(cat "$tmp/b.err")'"
else bad "bad argument through the image: exit $rc, $(cat "$tmp/b.out" "$tmp/b.err")"; fi

# hep-score itself, where it is installed: the real thing, podman standing in for docker
hs=${HEPSCORE_BIN:-$(command -v hep-score || true)}
if [[ -n $hs && $engine == podman ]]; then
    sed -e 's/^\( *version:\).*/\1 test/' -e 's/^\( *threads:\).*/\1 1/' -e 's/^\( *copies:\).*/\1 2/' \
        -e 's/^\( *events:\).*/\1 8/' -e 's/^\( *repetitions:\).*/\1 2/' \
        -e "s/^\( *extra-args:\).*/\1 '--preset tiny --epochs 2'/" "$root/hepscore/mlpf-cpu.yaml" >"$tmp/hs.yaml"
    mkdir -p "$tmp/hs"
    PATH=$root/tests/bin:$PATH "$hs" -m docker -f "$tmp/hs.yaml" -o "$tmp/hs.json" "$tmp/hs" >"$tmp/hs.log" 2>&1
    if grep -q "KeyError: 'hepscore_benchmark'" "$tmp/hs.log"; then # hep-score before the 'hepscore' key
        sed -i 's/^hepscore:/hepscore_benchmark:/' "$tmp/hs.yaml"
        rm -rf "$tmp/hs" && mkdir -p "$tmp/hs"
        PATH=$root/tests/bin:$PATH "$hs" -m docker -f "$tmp/hs.yaml" -o "$tmp/hs.json" "$tmp/hs" >"$tmp/hs.log" 2>&1
    fi
    if $py -c "
import json; h = json.load(open('$tmp/hs.json'))
assert h['status'] == 'success' and h['score'] > 0, h.get('status')" 2>/dev/null; then
        ok "hep-score ($hs) ran the image twice and scored it: $(grep -o 'Final result: .*' "$tmp/hs.log" | tail -1)"
    else bad "hep-score run: $(grep -E 'ERROR|Error' "$tmp/hs.log" | head -5)"; fi
else
    echo "SKIPPED hep-score running the image: ${hs:+the engine is $engine, not podman}${hs:-hep-score is not installed (set HEPSCORE_BIN)}"
fi

# ------------------------------------------------------------------ CUDA image
cuda_home=${CUDA_HOME:-/usr/local/cuda}
if ! command -v nvcc >/dev/null && [[ ! -x $cuda_home/bin/nvcc ]]; then
    echo "SKIPPED the CUDA image: no CUDA toolkit on this machine to take its libraries from"
    finish test-image
    exit
fi
t0=$(date +%s)
if CPU_IMAGE=$tag "$root/container/build-image.sh" --gpu --tag "$gtag" >"$tmp/gbuild.log" 2>&1; then
    ok "built $gtag in $(($(date +%s) - t0)) s: $(grep -oE 'CUDA libraries from .*' "$tmp/gbuild.log")"
else
    bad "CUDA image build failed: $(tail -10 "$tmp/gbuild.log")"
    finish test-image
    exit 1
fi
# the CUDA side loads inside the image: every library it links is there
missing=$("$engine" run --rm --entrypoint ldd "$gtag" /opt/mlpfbench/build/libmlpf_cuda.so 2>&1 | grep "not found")
[[ -z $missing ]] && ok "libmlpf_cuda.so finds every library it links in the image" || bad "missing in the CUDA image: $missing"
gpu_flag=()
"$engine" run --help 2>/dev/null | grep -q -- "--gpus" && gpu_flag=(--gpus all)
mkdir -p "$tmp/g"
names+=("mlpf-test-$$-g")
"$engine" run --name "mlpf-test-$$-g" --network=host -v "$tmp/g:/results" -v "$tmp/hstmp:/tmp" "${gpu_flag[@]}" "$gtag" \
    -W --threads 1 --copies 1 --events 4 >"$tmp/g.log" 2>&1
rc=$?
if "$engine" run --rm --entrypoint /opt/mlpfbench/build/mlpfbench "$gtag" info 2>&1 | grep -q "^GPU 0"; then
    echo "SKIPPED the CUDA image without a GPU: this machine's GPU is visible in the container (exit $rc)"
else
    [[ $rc -ne 0 ]] && ok "CUDA image without a GPU: exit $rc" || bad "CUDA image without a GPU exited 0"
    grep -q "no GPU is visible" "$tmp/g.log" && ok "CUDA image without a GPU says so: $(grep -m1 -o 'no GPU is visible.*' "$tmp/g.log" | cut -c1-150)" \
        || bad "CUDA image without a GPU: $(tail -3 "$tmp/g.log")"
    /usr/bin/python3 "$root/tests/check_summary.py" "$tmp/g/mlpf_summary.json" --failed "no GPU is visible" >"$tmp/g.chk" 2>&1 \
        && ok "CUDA image without a GPU: failed summary (device cuda, no scores)" || bad "CUDA image failed summary: $(cat "$tmp/g.chk")"
    grep -q '"device": "cuda"' "$tmp/g/mlpf_summary.json" || bad "the CUDA image's failed summary does not name device cuda"
fi
finish test-image
