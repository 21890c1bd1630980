#!/usr/bin/env bash
# make bench: the CPU benchmark (docs/benchmarks.md), in one go on the same
# events: the BLAS limit at the model's shapes, mlpfbench training (batch 1
# and 4, with the time by kind of work), the PyTorch version of the model
# (padded batches, autograd, torch.optim.Adam) with the same threads (batch 1
# twice for each, alternating, the faster run of each shown),
# inference for both, and 1 vs 2 ranks of one core each. Prints the table and
# appends it, with the machine and this command, to docs/benchmarks.md.
#
# Environment: BUILD (default build), BENCH_DATA (default data/bench: 24
# training events of ~5,000 elements, generated on first use), BENCH_OUT
# (default results/bench-<time>), BENCH_DOC (default docs/benchmarks.md; empty:
# do not append), BENCH_STEPS (timed training steps at batch 1, default 6),
# BENCH_PRESET (default hepscore22; tiny for a quick check of the pipeline),
# BENCH_ELEMENTS (mean elements per generated event, default 5000).
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
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$out"
log() { echo "bench: $*" >&2; }

if [[ ! -f $data/manifest.json ]]; then
    log "generating $data (24 + 2 events of ~$elements elements)"
    "$bin" generate --out "$data" --train-events 24 --valid-events 2 --shards 2 --seed 42 \
        --elements "$elements" >/dev/null
fi

log "1/5 BLAS limit at the model's shapes ($threads threads)"
"$bin" gemm-bench --preset "$preset" --threads "$threads" --json "$out/gemm.json" >&2

log "2/5 mlpfbench training, batch 1 and 4"
# one untimed warm-up step first, as for PyTorch below (--warmup-steps: the
# step figures that bench_table.py reads leave it out)
train() { # name batch timed-steps ranks threads
    mpirun --bind-to none -np "$4" "$bin" train --preset "$preset" --data "$data" --batch-size "$2" \
        --max-steps $(($3 + 1)) --warmup-steps 1 --epochs 1 \
        --threads "$5" --log-every 0 --results "$out/$1" >"$out/$1.log" 2>&1 \
        || { log "training $1 failed:"; tail -5 "$out/$1.log" >&2; exit 1; }
}
torch_train() { # name batch timed-steps
    "$py" scripts/torch_bench.py --preset "$preset" --data "$data" --batch-size "$2" --threads "$threads" \
        --steps "$3" --warmup 1 --json "$out/$1.json" >&2
}
# batch 1, the headline comparison, alternates the two implementations
# (mlpfbench, PyTorch, mlpfbench, PyTorch): on a machine whose speed drifts,
# bench_table.py then compares the best run of each
train train-b1 1 "$steps" 1 "$threads"
log "3/5 PyTorch, batch 1 and 4 (batch 1 alternating with mlpfbench)"
torch_train torch-b1 1 "$steps"
train train-b1-2 1 "$steps" 1 "$threads"
torch_train torch-b1-2 1 "$steps"
train train-b4 4 $(((steps + 3) / 4)) 1 "$threads"
torch_train torch-b4 4 2

log "4/5 inference, batch 1"
"$bin" infer --preset "$preset" --data "$data" --batch-size 1 --steps "$steps" --warmup 1 --threads "$threads" --json "$out/infer.json" >&2
"$py" scripts/torch_bench.py --preset "$preset" --data "$data" --batch-size 1 --threads "$threads" --steps "$steps" --warmup 1 \
    --inference --json "$out/torch-infer.json" >&2

log "5/5 1 vs 2 ranks, one core each, batch 1 per rank"
# 1 rank before and after the 2-rank run: a machine whose speed drifts (a
# shared VM) then biases the efficiency less
train ranks-1 1 4 1 1
train ranks-2 1 4 2 1
train ranks-1b 1 4 1 1

log "the BLAS limit again (a drifting machine: the table takes the higher rate of the two runs)"
"$bin" gemm-bench --preset "$preset" --threads "$threads" --json "$out/gemm-2.json" >&2

"$py" scripts/bench_table.py "$out" --command "make bench" ${doc:+--append "$doc"}
