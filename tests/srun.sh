#!/usr/bin/env bash
# srun launch: a real local Slurm (scripts/slurm-local-up.sh: slurmctld, two
# emulated nodes, munge; no systemd) runs 'srun -N2 -n2 --mpi=pmix mlpfbench
# train', which must train with 2 ranks and end with the same weights as
# 'mpirun -np 2'. Torn down whatever happens. Without root it says so loudly
# and fails, rather than passing silently.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/srun.sh BUILD_DIR}
bin="$(cd "$build" && pwd)/mlpfbench"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
cleanup() { slurm_down; rm -rf "$tmp"; }
trap cleanup EXIT

slurm_up srun 2 "$tmp"
"$bin" generate --out "$tmp/ds" --train-events 8 --valid-events 2 --shards 2 --elements 60 --seed 2 >/dev/null
args=(train --preset tiny --data "$tmp/ds" --batch-size 1 --epochs 2 --threads 1 --seed 7 --results "$tmp/res")
if timeout 120 srun -N2 -n2 --mpi=pmix "$bin" "${args[@]}" --save-weights "$tmp/w.srun" >"$tmp/srun.log" 2>&1 \
   && grep -q "2 rank(s) x batch 1" "$tmp/srun.log" && grep -q "^done: 8 steps" "$tmp/srun.log"; then
    ok "srun -N2 -n2 --mpi=pmix: 2 ranks on 2 nodes train"
else bad "srun launch: $(tail -5 "$tmp/srun.log")"; fi
timeout 120 mpirun --oversubscribe -np 2 "$bin" "${args[@]}" --save-weights "$tmp/w.mpirun" >"$tmp/mpirun.log" 2>&1
if /usr/bin/python3 -c "
import numpy as np, sys
a = np.fromfile('$tmp/w.srun', np.float32); b = np.fromfile('$tmp/w.mpirun', np.float32)
sys.exit(0 if a.size == b.size > 0 and np.allclose(a, b, rtol=1e-6, atol=0) else 1)"; then
    ok "srun and mpirun give the same weights"
else bad "srun and mpirun weights differ"; fi
check_summaries "$tmp"
finish srun
