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
# forged shards known to make HDF5 1.10 use freed memory (in some process
# states): refused with the shard named, exit 1, no sanitizer report from the
# MPI processes (a report would end them before our message)
for input in "$(dirname "$0")"/fuzz/hdf5-known/*; do
    rm -rf "$tmp/forged"; "$(dirname "$0")/fuzz/make_case.py" "$input" "$tmp/forged"
    for np in 1 2; do
        timeout 120 mpirun -np $np "$bin" train --preset tiny --data "$tmp/forged" --threads 1 --results "$tmp/rf" >"$tmp/log" 2>&1
        rc=$?
        if [[ $rc -eq 1 ]] && grep -qE "mlpfbench: (rank [0-9]: )?shard .*shard-0000.h5 (is damaged or forged|has no version|is not an)" "$tmp/log"; then
            ok "forged shard $(basename "$input"), $np rank(s): refused: $(grep -m1 -oE "shard-0000.h5 [a-z ]+" "$tmp/log")"
        else bad "forged shard $(basename "$input"), $np rank(s): exit $rc: $(grep -E -m3 "mlpfbench:|ERROR" "$tmp/log")"; fi
    done
done
finish sanitize_mpi
