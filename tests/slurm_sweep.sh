#!/usr/bin/env bash
# A node-count sweep on a real Slurm: brings up slurmctld, four emulated
# slurmd nodes and munge on this machine (scripts/slurm-local-up.sh, no
# systemd), runs slurm/sweep.sh over 1, 2 and 4 nodes with the tiny preset,
# waits, checks every summary (node count, ranks, no failure) and the scaling
# report (Markdown, CSV, PNG), and tears everything down even when it fails.
# Where it cannot run (not root) it says so loudly and fails.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/slurm_sweep.sh BUILD_DIR}
bin="$(cd "$build" && pwd)/mlpfbench"
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
cleanup() { slurm_down; rm -rf "$tmp"; }
trap cleanup EXIT

slurm_up slurm_sweep 4 "$tmp"
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
finish slurm_sweep
