#!/usr/bin/env bash
# slurm/mlpf.sbatch's plan without a GPU and without Slurm: with
# MLPF_SBATCH_DRY_RUN=1 it prints the exact mpirun command instead of running
# it. Each case sets the variables Slurm sets in a batch job (SLURM_JOB_NUM_NODES,
# SLURM_GPUS_ON_NODE, SLURM_GPUS_PER_NODE, SLURM_JOB_GPUS) in an otherwise empty
# environment, or puts an nvidia-smi first on PATH that prints the 'nvidia-smi
# -L' lines of N GPUs, and checks the command (one rank per GPU, --bind-to none,
# --device cuda added unless the arguments choose a device; CPU mode as before)
# and that wrong values end with a message. Also slurm/sweep.sh's checks of
# --gpus-per-node. The real launch under Slurm is in tests/slurm_sweep.sh.
#
#   tests/test_sbatch_gpu.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: tests/test_sbatch_gpu.sh BUILD_DIR}
bin="$(cd "$build" && pwd)/mlpfbench"
here=$(cd "$(dirname "$0")/.." && pwd)
sbatch_script="$here/slurm/mlpf.sbatch"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# nvidia-smi that lists $FAKE_GPUS GPUs (0: none, as on a node without GPUs)
mkdir -p "$tmp/bin"
cat >"$tmp/bin/nvidia-smi" <<'EOF'
#!/bin/sh
[ "$1" = -L ] || { echo "fake nvidia-smi: only -L" >&2; exit 2; }
i=0
while [ "$i" -lt "${FAKE_GPUS:-0}" ]; do
    echo "GPU $i: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-00000000000$i)"
    i=$((i + 1))
done
EOF
chmod +x "$tmp/bin/nvidia-smi"

# plan [VAR=VALUE...] -- ARGS...: run the script in dry-run mode in a clean
# environment; stdout+stderr in $out, exit status in $rc.
plan() {
    local vars=()
    while [[ $1 != -- ]]; do vars+=("$1"); shift; done
    shift
    out=$(cd "$tmp" && env -i PATH="$tmp/bin:/usr/bin:/bin" HOME="$tmp" MLPF_BIN="$bin" \
          MLPF_SBATCH_DRY_RUN=1 "${vars[@]}" "$sbatch_script" "$@" 2>&1)
    rc=$?
}
# cmd_is EXPECTED: the dry-run line is exactly 'mlpf.sbatch: dry run: EXPECTED'
cmd_is() { [[ $rc -eq 0 && $(grep '^mlpf.sbatch: dry run: ' <<<"$out") == "mlpf.sbatch: dry run: $1" ]]; }

# --- CPU mode (as before GPU support) -------------------------------------------
plan FAKE_GPUS=0 -- --data d --epochs 1
if cmd_is "mpirun -np 1 --map-by ppr:1:node $bin train --data d --epochs 1" \
   && grep -q '1 rank(s) per node, 1 rank(s), CPU$' <<<"$out"; then
    ok "no GPU anywhere (nvidia-smi lists none): CPU mode, 1 rank per node, nothing added"
else bad "CPU default: rc=$rc $out"; fi
plan SLURM_JOB_NUM_NODES=3 MLPF_RANKS_PER_NODE=2 -- --data d
if cmd_is "mpirun -np 6 --map-by ppr:2:node $bin train --data d"; then
    ok "CPU mode: 3 nodes x MLPF_RANKS_PER_NODE=2 = 6 ranks"
else bad "CPU 3x2: rc=$rc $out"; fi
plan SLURM_GPUS_ON_NODE=0 SLURM_JOB_NUM_NODES=2 -- --data d
if cmd_is "mpirun -np 2 --map-by ppr:1:node $bin train --data d"; then
    ok "SLURM_GPUS_ON_NODE=0: CPU mode"
else bad "GPUS_ON_NODE=0: rc=$rc $out"; fi

# --- GPU mode ---------------------------------------------------------------------
plan SLURM_JOB_NUM_NODES=4 SLURM_GPUS_PER_NODE=h100:8 -- --data 'a b' --results r
if cmd_is "mpirun -np 32 --map-by ppr:8:node --bind-to none $bin train --device cuda --data a\\ b --results r" \
   && grep -q '^mlpf.sbatch: job ? on 4 node(s) (local), 8 GPU(s) per node (from SLURM_GPUS_PER_NODE), one rank per GPU, 32 rank(s)$' <<<"$out"
then ok "SLURM_GPUS_PER_NODE=h100:8 on 4 nodes: 32 ranks, 8 per node, --bind-to none, --device cuda, arguments kept"
else bad "h100:8 x 4: rc=$rc $out"; fi
plan SLURM_JOB_NUM_NODES=2 SLURM_GPUS_ON_NODE=4 SLURM_GPUS_PER_NODE=8 SLURM_JOB_GPUS=0,1 FAKE_GPUS=2 -- --data d
if cmd_is "mpirun -np 8 --map-by ppr:4:node --bind-to none $bin train --device cuda --data d" \
   && grep -q '(from SLURM_GPUS_ON_NODE)' <<<"$out"; then
    ok "SLURM_GPUS_ON_NODE comes first (4 GPUs beside SLURM_GPUS_PER_NODE=8, SLURM_JOB_GPUS, nvidia-smi)"
else bad "GPUS_ON_NODE precedence: rc=$rc $out"; fi
plan SLURM_GPUS_PER_NODE=gpu:a100:2,v100:1 -- --data d
if cmd_is "mpirun -np 3 --map-by ppr:3:node --bind-to none $bin train --device cuda --data d"; then
    ok "SLURM_GPUS_PER_NODE=gpu:a100:2,v100:1: 3 GPUs (types dropped, counts summed)"
else bad "typed list: rc=$rc $out"; fi
plan SLURM_JOB_GPUS=0,1,3 FAKE_GPUS=8 -- --data d
if cmd_is "mpirun -np 3 --map-by ppr:3:node --bind-to none $bin train --device cuda --data d" \
   && grep -q '(from SLURM_JOB_GPUS)' <<<"$out"; then
    ok "SLURM_JOB_GPUS=0,1,3: 3 GPUs (before nvidia-smi)"
else bad "JOB_GPUS: rc=$rc $out"; fi
plan FAKE_GPUS=4 SLURM_JOB_NUM_NODES=2 -- --data d
if cmd_is "mpirun -np 8 --map-by ppr:4:node --bind-to none $bin train --device cuda --data d" \
   && grep -q '(from nvidia-smi -L)' <<<"$out"; then
    ok "no Slurm GPU variable: nvidia-smi -L lists 4 GPUs, 8 ranks on 2 nodes"
else bad "nvidia-smi: rc=$rc $out"; fi

# --- the user's --device wins -----------------------------------------------------
plan SLURM_GPUS_ON_NODE=4 -- --device cuda --data d
if cmd_is "mpirun -np 4 --map-by ppr:4:node --bind-to none $bin train --device cuda --data d"; then
    ok "--device cuda given: not added a second time"
else bad "--device cuda: rc=$rc $out"; fi
plan SLURM_GPUS_ON_NODE=4 -- --data d --device=cuda
if cmd_is "mpirun -np 4 --map-by ppr:4:node --bind-to none $bin train --data d --device=cuda"; then
    ok "--device=cuda given: not added"
else bad "--device=cuda: rc=$rc $out"; fi
plan SLURM_GPUS_ON_NODE=4 MLPF_RANKS_PER_NODE=2 -- --device cpu --data d
if cmd_is "mpirun -np 2 --map-by ppr:2:node $bin train --device cpu --data d" && grep -q ', CPU$' <<<"$out"; then
    ok "--device cpu on a GPU node: CPU mode, MLPF_RANKS_PER_NODE ranks, no --bind-to none"
else bad "--device cpu on GPU node: rc=$rc $out"; fi

# --- wrong values: exit non-zero with a message, nothing started ------------------
# expect_error MESSAGE VARS... -- ARGS...
expect_error() {
    local msg=$1; shift
    plan "$@"
    if [[ $rc -ne 0 ]] && grep -qF -- "$msg" <<<"$out" && ! grep -q 'dry run' <<<"$out"; then
        ok "error: $msg"
    else bad "expected '$msg': rc=$rc $out"; fi
}
expect_error "--device cuda, but the job has no GPUs" FAKE_GPUS=0 -- --device cuda --data d
expect_error "SLURM_GPUS_PER_NODE='h100:x' is not a GPU count" SLURM_GPUS_PER_NODE=h100:x -- --data d
expect_error "SLURM_GPUS_ON_NODE='four' is not a GPU count" SLURM_GPUS_ON_NODE=four -- --data d
expect_error "SLURM_JOB_GPUS='0,,1' is not a list of GPU indices" SLURM_JOB_GPUS=0,,1 -- --data d
expect_error "MLPF_RANKS_PER_NODE='0' is not a positive number" MLPF_RANKS_PER_NODE=0 -- --data d
expect_error "--device 'tpu': expected cpu or cuda" SLURM_GPUS_ON_NODE=1 -- --device tpu
expect_error "--device needs a value" SLURM_GPUS_ON_NODE=1 -- --data d --device
expect_error "SLURM_JOB_NUM_NODES='x' is not a node count" SLURM_JOB_NUM_NODES=x -- --data d
expect_error "$tmp/none not found or not executable" MLPF_BIN="$tmp/none" -- --data d

# --- slurm/sweep.sh --gpus-per-node checks (before anything is submitted) ---------
out=$("$here/slurm/sweep.sh" --nodes 1,2 --gpus-per-node 0 2>&1); rc=$?
if [[ $rc -eq 2 ]] && grep -q -- '--gpus-per-node must be a positive number' <<<"$out"; then
    ok "sweep.sh --gpus-per-node 0: exit 2 and a message"
else bad "sweep.sh --gpus-per-node 0: rc=$rc $out"; fi
out=$("$here/slurm/sweep.sh" --nodes 1,2 --gpus-per-node 4 --ranks-per-node 2 2>&1); rc=$?
if [[ $rc -eq 2 ]] && grep -q -- 'with --gpus-per-node there is one rank per GPU' <<<"$out"; then
    ok "sweep.sh --gpus-per-node with --ranks-per-node: exit 2 and a message"
else bad "sweep.sh gpus+ranks: rc=$rc $out"; fi
out=$(cd "$tmp" && "$here/slurm/sweep.sh" --nodes 1,2 --gpus-per-node 4 --mode strong --global-batch 12 \
      --results "$tmp/sweeps" 2>&1); rc=$?
# 12 events divide among 1 node x 4 GPUs, not among 2 x 4 = 8: refused before any job
if [[ $rc -eq 2 ]] && grep -q 'global batch 12 does not divide among 8 ranks' <<<"$out" && [[ ! -e "$tmp/sweeps" ]]; then
    ok "sweep.sh strong scaling counts GPUs as ranks: 12 over 8 refused before anything is submitted"
else bad "sweep.sh strong with GPUs: rc=$rc $out"; fi
if "$here/slurm/sweep.sh" --help | grep -q -- '--gpus-per-node G .*--gpus-per-node=G --ntasks-per-node=G'; then
    ok "sweep.sh --help names --gpus-per-node and what it asks sbatch for"
else bad "sweep.sh --help: $("$here/slurm/sweep.sh" --help)"; fi

echo "sbatch_gpu: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
