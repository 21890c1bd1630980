#!/usr/bin/env bash
# Re-run inputs the shard fuzzer flagged through a fresh mlpfbench process
# (BUILD/mlpfbench, the sanitizer build under make fuzz), as a forged dataset:
# each must be refused cleanly (exit 1, our message naming the shard, no
# sanitizer report from the MPI process). The fuzzer's process keeps HDF5
# state from thousands of earlier inputs, and HDF5 1.10 has use-after-free
# bugs that only show in such states (tests/fuzz/README.md); a fresh run is
# what a user gets.
# usage: tests/fuzz/triage.sh BUILD INPUT...
set -uo pipefail
source "$(dirname "$0")/../lib.sh"
build=${1:?usage: tests/fuzz/triage.sh BUILD INPUT...}; shift
export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for input in "$@"; do
    [[ -f $input ]] || continue
    rm -rf "$tmp/case"; "$(dirname "$0")/make_case.py" "$input" "$tmp/case"
    timeout 120 "$build/mlpfbench" train --preset tiny --threads 1 --data "$tmp/case" --results "$tmp/r" >"$tmp/log" 2>&1
    rc=$?
    # exit 1 with our refusal: the MPI process reached its own check (a
    # sanitizer report there would have ended it first)
    if [[ $rc -eq 0 ]] || { [[ $rc -eq 1 ]] && grep -qE "^mlpfbench: (rank [0-9]+( \(.*\))?: )?(shard|dataset|reading)" "$tmp/log"; }; then
        ok "$(basename "$input"): a fresh run handles it (exit $rc): $(grep -m1 "^mlpfbench:" "$tmp/log" | cut -c1-120)"
    else bad "$(basename "$input"): exit $rc: $(grep -m3 -E "ERROR|mlpfbench:" "$tmp/log")"; fi
done
finish triage
