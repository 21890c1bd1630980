#!/usr/bin/env bash
# make bench: the CPU benchmark (docs/benchmarks.md), in one go on the same
# events: the BLAS limit at the model's shapes, mlpfbench training (batch 1
# and 4, with the time by kind of work), the PyTorch version of the model
# (padded batches, autograd, torch.optim.Adam) with the same threads, on
# every PyTorch found (the peers: Debian's python3-torch, the current release
# that `make bench-peers` installs into .venv-peers), eager and, where the
# torch has it, torch.compile'd (batch 1 twice for each, alternating with
# mlpfbench, the faster run of each shown; every run's first step checked
# against torch_twin, and a peer whose check fails left out), inference for
# all, and 1 vs 2 ranks of one core each. PyTorch runs with the BLAS core
# mlpfbench chose (OPENBLAS_CORETYPE) where mlpfbench corrected OpenBLAS's
# fallback. Prints the table and appends it,
# with the machine and this command, to docs/benchmarks.md.
#
# Environment: BUILD (default build), BENCH_DATA (default data/bench: 24
# training events of ~5,000 elements, generated on first use), BENCH_OUT
# (default results/bench-<time>), BENCH_DOC (default docs/benchmarks.md; empty:
# do not append), BENCH_STEPS (timed training steps at batch 1, default 6),
# BENCH_PRESET (default hepscore22; tiny for a quick check of the pipeline),
# BENCH_ELEMENTS (mean elements per generated event, default 5000),
# BENCH_PEERS (default "debian pip": which PyTorch peers to look for; a word
# may also be the path of another python with torch, numpy and h5py),
# BENCH_MODES (default "eager compiled"), PEERS_VENV (default .venv-peers).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
bin=$build/mlpfbench
data=${BENCH_DATA:-data/bench}
out=${BENCH_OUT:-results/bench-$(date +%Y%m%d-%H%M%S)}
doc=${BENCH_DOC-docs/benchmarks.md}
steps=${BENCH_STEPS:-6}
preset=${BENCH_PRESET:-hepscore22}
elements=${BENCH_ELEMENTS:-5000}
threads=$(nproc)
[[ $steps =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_STEPS must be a whole number >= 1, got '$steps'" >&2; exit 2; }
py=/usr/bin/python3
venv=${PEERS_VENV:-.venv-peers}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$out"
log() { echo "bench: $*" >&2; }

# The PyTorch peers: each python that has torch (torch_bench.py --describe
# answers), and its modes. What is missing is said here and in the table
# (out/peers.tsv: "missing" or "unavailable" lines for bench_table.py).
peers=() peer_py=() runs=()
: >"$out/peers.tsv"
for want in ${BENCH_PEERS-debian pip}; do
    case $want in
        debian) id=debian pyp=/usr/bin/python3 what="Debian's python3-torch"
                how="scripts/install-deps.sh --test (apt-get install python3-torch)" ;;
        pip) id=pip pyp=$venv/bin/python what="the current PyTorch release in $venv"
             how="make bench-peers" ;;
        *) id=py$((${#peers[@]} + 1)) pyp=$want what="the PyTorch of $want" how="" ;;
    esac
    if [[ -x $pyp ]] && "$pyp" scripts/torch_bench.py --describe >"$out/peer-$id.json" 2>"$out/peer-$id.err"; then
        peers+=("$id") peer_py+=("$pyp")
        label=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["peer"])' "$out/peer-$id.json")
        has_compile=$("$py" -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["compile"]))' "$out/peer-$id.json")
        log "peer $id: $label"
        for mode in ${BENCH_MODES-eager compiled}; do
            if [[ $mode == compiled && $has_compile != 1 ]]; then
                log "peer $id: no torch.compile in this torch: compiled mode left out"
                printf 'unavailable\t%s\t%s\t%s\n' "$label" "$mode" "this torch has no torch.compile" >>"$out/peers.tsv"
                continue
            fi
            runs+=("$id:$mode")
        done
    else
        rm -f "$out/peer-$id.json"
        log "peer $id ($what) not found${how:+; add it with: $how}"
        printf 'missing\t%s\t%s\n' "$what" "${how:+add it with: $how}" >>"$out/peers.tsv"
    fi
done

if [[ ! -f $data/manifest.json ]]; then
    log "generating $data (24 + 2 events of ~$elements elements)"
    "$bin" generate --out "$data" --train-events 24 --valid-events 2 --shards 2 --seed 42 \
        --elements "$elements" >/dev/null
fi

log "1/5 BLAS limit at the model's shapes ($threads threads)"
"$bin" gemm-bench --preset "$preset" --threads "$threads" --json "$out/gemm.json" >&2
# PyTorch runs with the kernels mlpfbench runs: where mlpfbench corrected
# OpenBLAS's choice (it fell back to older kernels than this CPU runs), the
# same OPENBLAS_CORETYPE for every PyTorch run (an OPENBLAS_CORETYPE of the
# user's reaches both anyway). Only OpenBLAS-based torches read it.
torch_env=()
read -r blas_core blas_by < <("$py" -c 'import json, sys; b = json.load(open(sys.argv[1])).get("blas", {})
print(b.get("core", "?"), b.get("chosen_by", "?"))' "$out/gemm.json")
if [[ $blas_by == mlpfbench ]]; then
    torch_env=("OPENBLAS_CORETYPE=$blas_core")
    log "PyTorch runs with OPENBLAS_CORETYPE=$blas_core, the core mlpfbench chose for its BLAS"
fi

log "2/5 mlpfbench training, batch 1 and 4"
# one untimed warm-up step first, as for PyTorch below (--warmup-steps: the
# step figures that bench_table.py reads leave it out)
train() { # name batch timed-steps ranks threads
    mpirun --bind-to none -np "$4" "$bin" train --preset "$preset" --data "$data" --batch-size "$2" \
        --max-steps $(($3 + 1)) --warmup-steps 1 --epochs 1 \
        --threads "$5" --log-every 0 --results "$out/$1" >"$out/$1.log" 2>&1 \
        || { log "training $1 failed:"; tail -5 "$out/$1.log" >&2; exit 1; }
}
# One PyTorch run: peer:mode, file stem, batch, timed steps, other options.
# Two warm-up steps for every peer and mode (torch.compile compiles in the
# first and may specialise once more in the second), so that all of them time
# the same events. A run whose check fails writes its JSON and exits 1
# (bench_table.py leaves it out, saying why); one that fails otherwise leaves
# OUT/NAME.failed with its last lines.
torch_run() { # peer:mode name batch timed-steps [options]
    local id=${1%%:*} mode=${1#*:} name=$2 b=$3 n=$4 i p
    shift 4
    for i in "${!peers[@]}"; do [[ ${peers[$i]} == "$id" ]] && p=${peer_py[$i]}; done
    local stem="torch-$id-$mode-$name" rc=0
    env "${torch_env[@]}" "$p" scripts/torch_bench.py --preset "$preset" --data "$data" --batch-size "$b" --threads "$threads" \
        --steps "$n" --warmup 2 $([[ $mode == compiled ]] && echo --compile) "$@" \
        --json "$out/$stem.json" >"$out/$stem.log" 2>&1 || rc=$?
    grep -v '^[WI][0-9]' "$out/$stem.log" | grep "^torch_bench.py:" >&2 || true
    if [[ $rc -ne 0 && ! -f $out/$stem.json ]] || [[ $rc -gt 1 ]]; then
        log "PyTorch $id $mode $name failed (exit $rc); left out:"
        tail -3 "$out/$stem.log" | tee "$out/$stem.failed" >&2
        rm -f "$out/$stem.json"
    fi
}
# batch 1, the headline comparison, alternates mlpfbench with every PyTorch
# peer and mode (mlpfbench, each PyTorch, mlpfbench, each PyTorch): on a
# machine whose speed drifts, bench_table.py then compares the best run of
# each
train train-b1 1 "$steps" 1 "$threads"
log "3/5 PyTorch (${#runs[@]} peer and mode$([[ ${#runs[@]} -ne 1 ]] && echo s): ${runs[*]:-none}), batch 1 and 4 (batch 1 alternating with mlpfbench)"
for r in "${runs[@]}"; do torch_run "$r" b1 1 "$steps"; done
train train-b1-2 1 "$steps" 1 "$threads"
for r in "${runs[@]}"; do torch_run "$r" b1-2 1 "$steps"; done
train train-b4 4 $(((steps + 3) / 4)) 1 "$threads"
for r in "${runs[@]}"; do torch_run "$r" b4 4 2; done

log "4/5 inference, batch 1"
"$bin" infer --preset "$preset" --data "$data" --batch-size 1 --steps "$steps" --warmup 1 --threads "$threads" --json "$out/infer.json" >&2
for r in "${runs[@]}"; do torch_run "$r" infer 1 "$steps" --inference; done

log "5/5 1 vs 2 ranks, one core each, batch 1 per rank"
# 1 rank before and after the 2-rank run: a machine whose speed drifts (a
# shared VM) then biases the efficiency less
train ranks-1 1 4 1 1
train ranks-2 1 4 2 1
train ranks-1b 1 4 1 1

log "the BLAS limit again (a drifting machine: the table takes the higher rate of the two runs)"
"$bin" gemm-bench --preset "$preset" --threads "$threads" --json "$out/gemm-2.json" >&2

"$py" scripts/bench_table.py "$out" --command "make bench" ${doc:+--append "$doc"}
