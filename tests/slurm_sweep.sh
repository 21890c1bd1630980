#!/usr/bin/env bash
# A node-count sweep on a real Slurm: brings up slurmctld, four emulated
# slurmd nodes and munge on this machine (scripts/slurm-local-up.sh, no
# systemd), runs slurm/sweep.sh over 1, 2 and 4 nodes with the tiny preset,
# waits, checks every summary (node count, ranks, no failure) and the scaling
# report (Markdown, CSV, PNG), and tears everything down even when it fails.
# The emulated nodes advertise 2 GPUs each (a gpu GRES with no GPU behind it,
# SLURM_EMU_GPUS): a sweep with --gpus-per-node 2 over 1 and 2 nodes checks
# Slurm's GPU allocation, mlpf.sbatch's GPU plan and the real mpirun launch (2
# ranks per node, --device cuda), with a script in place of mlpfbench that
# records where each rank runs (there is no GPU to train on here).
# Where it cannot run (not root) it says so loudly and fails.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/slurm_sweep.sh BUILD_DIR}
bin="$(cd "$build" && pwd)/mlpfbench"
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
cleanup() { slurm_down; rm -rf "$tmp"; }
trap cleanup EXIT

SLURM_EMU_GPUS=2 slurm_up slurm_sweep 4 "$tmp"
"$bin" generate --out "$tmp/ds" --train-events 16 --valid-events 4 --shards 4 --elements 60 --seed 3 >/dev/null
cd "$tmp" || exit 1
if MLPF_BIN="$bin" timeout 300 "$here/slurm/sweep.sh" --nodes 1,2,4 --sweep-id t --results "$tmp/results" --wait \
       -- --preset tiny --data "$tmp/ds" --epochs 2 --threads 1 --bind none >"$tmp/sweep.log" 2>&1; then
    ok "sweep over 1, 2, 4 nodes submitted, finished and reported"
else bad "sweep: $(tail -15 "$tmp/sweep.log")"; fi
for n in 1 2 4; do
    s="$tmp/results/t/nodes-$n/mlpf_summary.json"
    if /usr/bin/python3 "$here/tests/check_summary.py" "$s" --ok --ranks $n --epochs 2 \
       && /usr/bin/python3 -c "import json,sys; st=json.load(open('$s'))['report']['wl-stats']; sys.exit(0 if st['nodes']==$n and st['ranks_per_node']==1 else 1)"; then
        ok "$n node(s): valid summary, $n node(s) x 1 rank, scores, no failure"
    else bad "$n node(s): $(cat "$tmp"/results/t/nodes-$n/slurm-*.out 2>/dev/null | tail -5)"; fi
done
for f in scaling.md scaling.csv scaling.png; do
    [[ -s "$tmp/results/t/$f" ]] && ok "report $f written" || bad "no $f"
done
[[ $(grep -c '^| *[124] ' "$tmp/results/t/scaling.md") -eq 3 ]] && ok "the table has a row per node count" \
    || bad "scaling table: $(cat "$tmp/results/t/scaling.md")"

# --- GPU nodes ------------------------------------------------------------------
# stands in for mlpfbench: each rank writes its placement and arguments
cat >"$tmp/placement" <<'EOF'
#!/bin/sh
out="" prev=""
for a in "$@"; do [ "$prev" = --results ] && out=$a; prev=$a; done
echo "local=$OMPI_COMM_WORLD_LOCAL_RANK node=$SLURMD_NODENAME gpus=${SLURM_GPUS_ON_NODE:-} cvd=${CUDA_VISIBLE_DEVICES:-} args=$*" \
    >"$out/rank-$OMPI_COMM_WORLD_RANK.txt"
EOF
chmod +x "$tmp/placement"
if MLPF_BIN="$tmp/placement" timeout 120 "$here/slurm/sweep.sh" --nodes 1,2 --gpus-per-node 2 --sweep-id g \
       --results "$tmp/results" -- --data "$tmp/ds" --epochs 2 >"$tmp/gsweep.log" 2>&1 \
   && grep -q '^sweep.sh: 2 node(s), 4 GPU(s) (2 per node), batch 4 per rank: job' "$tmp/gsweep.log" \
   && [[ $(cat "$tmp/results/g/gpus_per_node.txt") == 2 ]]; then
    ok "GPU sweep over 1, 2 nodes x 2 GPUs submitted"
else bad "GPU sweep: $(tail -5 "$tmp/gsweep.log")"; fi
for job in $(awk '{print $2}' "$tmp/results/g/jobs.txt" 2>/dev/null); do
    for _ in $(seq 120); do squeue -h -j "$job" 2>/dev/null | grep -q . || break; sleep 1; done
done
for n in 1 2; do
    d="$tmp/results/g/nodes-$n"
    np=$((2 * n))
    args="args=train --device cuda --results $d --batch-size 4 --data $tmp/ds --epochs 2"
    # rank r: local rank r % 2, on the node of rank r - r % 2, n distinct nodes,
    # both GPUs of its node visible (the rank picks its own by local rank)
    err="" nodes_seen=()
    files=("$d"/rank-*.txt)
    [[ -e "${files[0]}" ]] || files=()
    [[ ${#files[@]} -eq $np ]] || err+=" ${#files[@]} rank files, not $np;"
    for r in $(seq 0 $((np - 1))); do
        line=$(cat "$d/rank-$r.txt" 2>/dev/null)
        node=$(sed -n 's/.* node=\([^ ]*\) .*/\1/p' <<<"$line")
        [[ "$line" == "local=$((r % 2)) node=$node gpus=2 cvd=0,1 $args" ]] || err+=" rank $r: '$line';"
        if (( r % 2 )); then [[ "$node" == "${nodes_seen[-1]}" ]] || err+=" rank $r not on rank $((r - 1))'s node;"
        else nodes_seen+=("$node"); fi
    done
    [[ $(printf '%s\n' "${nodes_seen[@]}" | sort -u | wc -l) -eq $n ]] || err+=" nodes: ${nodes_seen[*]};"
    if grep -q "^mlpf.sbatch: job [0-9]* on $n node(s) (.*), 2 GPU(s) per node (from SLURM_GPUS_ON_NODE), one rank per GPU, $np rank(s)\$" "$d"/slurm-*.out \
       && [[ -z "$err" ]]; then
        ok "$n node(s) x 2 GPUs: the plan, $np ranks, 2 per node (local ranks 0, 1), each sees its node's 2 GPUs, --device cuda"
    else bad "$n node(s) with GPUs:$err $(cat "$d"/slurm-*.out 2>/dev/null | tail -5)"; fi
done
finish slurm_sweep
