#!/usr/bin/env bash
# The MPI side under AddressSanitizer and UBSan (make sanitize): generate with
# 2 writing ranks, the parallel reader under 1 and 3 ranks, and training under
# 2 ranks with checkpoints, resume, timeline and report. Any sanitizer report
# ends the process with a non-zero status, which fails the check.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/sanitize_mpi.sh SANITIZER_BUILD_DIR}
bin="$build/mlpfbench"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() { # name, command...
    local name=$1; shift
    if timeout 300 "$@" >"$tmp/log" 2>&1 && ! grep -qE "ERROR: AddressSanitizer|runtime error:" "$tmp/log"; then
        ok "$name"
    else bad "$name: $(grep -E -m3 "ERROR|runtime error" "$tmp/log") $(tail -3 "$tmp/log")"; fi
}
run "generate, 2 writing ranks" mpirun -np 2 "$bin" generate --out "$tmp/ds" --train-events 7 --valid-events 3 \
    --shards 2 --elements 50 --seed 5
run "parallel reader, 1 rank" "$build/reader_check" "$tmp/ds" 3 9 2 5 50
run "parallel reader, 3 ranks" mpirun -np 3 "$build/reader_check" "$tmp/ds" 1 9 2 5 50
common=(train --preset tiny --data "$tmp/ds" --batch-size 2 --threads 1 --epochs 2 --log-every 0)
run "train, 2 ranks, checkpoints and timeline" mpirun -np 2 "$bin" "${common[@]}" --results "$tmp/r1" \
    --checkpoint-every 2 --checkpoint "$tmp/ck" --timeline "$tmp/t.json" --max-steps 3
run "train, 2 ranks, resumed" mpirun -np 2 "$bin" "${common[@]}" --results "$tmp/r2" --resume "$tmp/ck"
run "allreduce-bench, 3 ranks" mpirun -np 3 "$bin" allreduce-bench --max-bytes 65536 --factor 16 --extra-floats 3 \
    --iters 2 --bucket-mb 0.01
finish sanitize_mpi
