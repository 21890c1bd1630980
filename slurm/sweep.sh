#!/bin/bash
# Node-count scaling sweep: one Slurm job per node count, each writing its
# summary under RESULTS/<sweep-id>/nodes-<n>/, then (with --wait) the scaling
# table and plot (scripts/scaling_report.py).
#
#   slurm/sweep.sh --nodes 1,2,4,8 --wait -- --data /shared/mlpf-data --epochs 3
#   slurm/sweep.sh --nodes 1,2,4 --mode strong --global-batch 32 -- --data ...
#   slurm/sweep.sh --nodes 1,2,4,8 --gpus-per-node 8 --wait -- --data /shared/mlpf-data
#
# Weak scaling (default): the batch per rank is fixed (--batch-size, default 4).
# Strong scaling: the global batch is fixed (--global-batch G) and divided among
# the ranks (G must divide evenly). GPU nodes (--gpus-per-node G): each job asks
# for G GPUs and G tasks per node and runs one rank per GPU (--device cuda).
# Arguments after -- go to 'mlpfbench train'.
set -euo pipefail
usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    cat <<'U'
options:
  --nodes LIST          node counts, comma-separated (required)
  --mode weak|strong    scaling mode (default weak)
  --batch-size B        weak scaling: events per rank per step (default 4)
  --global-batch G      strong scaling: events per step over all ranks
  --ranks-per-node R    ranks per node on CPU-only nodes (default 1)
  --gpus-per-node G     GPU nodes: sbatch --gpus-per-node=G --ntasks-per-node=G, one
                        rank per GPU, G ranks per node (not with --ranks-per-node)
  --sweep-id ID         results sub-directory (default sweep-<date>-<time>)
  --results DIR         results root (default results)
  --sbatch-args "..."   extra sbatch arguments (partition, time, account, ...)
  --wait                wait for the jobs, then write the scaling report
U
}
nodes="" mode=weak batch=4 global="" rpn=${MLPF_RANKS_PER_NODE:-1} rpn_given=0 gpn="" id="" root=results extra="" wait=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --nodes) nodes=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --batch-size) batch=$2; shift 2 ;;
        --global-batch) global=$2; shift 2 ;;
        --ranks-per-node) rpn=$2; rpn_given=1; shift 2 ;;
        --gpus-per-node) gpn=$2; shift 2 ;;
        --sweep-id) id=$2; shift 2 ;;
        --results) root=$2; shift 2 ;;
        --sbatch-args) extra=$2; shift 2 ;;
        --wait) wait=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) echo "sweep.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
[[ -n "$nodes" && "$nodes" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "sweep.sh: --nodes needs a list like 1,2,4" >&2; exit 2; }
[[ "$mode" == weak || "$mode" == strong ]] || { echo "sweep.sh: --mode must be weak or strong" >&2; exit 2; }
[[ "$rpn" =~ ^[1-9][0-9]*$ ]] || { echo "sweep.sh: --ranks-per-node must be a positive number" >&2; exit 2; }
if [[ -n "$gpn" ]]; then
    [[ "$gpn" =~ ^[1-9][0-9]*$ ]] || { echo "sweep.sh: --gpus-per-node must be a positive number" >&2; exit 2; }
    [[ $rpn_given -eq 0 ]] || { echo "sweep.sh: --ranks-per-node is for CPU nodes; with --gpus-per-node there is one rank per GPU" >&2; exit 2; }
    rpn=$gpn
fi
if [[ "$mode" == strong ]]; then
    [[ "$global" =~ ^[1-9][0-9]*$ ]] || { echo "sweep.sh: strong scaling needs --global-batch G" >&2; exit 2; }
else
    [[ "$batch" =~ ^[1-9][0-9]*$ ]] || { echo "sweep.sh: --batch-size must be a positive number" >&2; exit 2; }
fi
if [[ "$mode" == strong ]]; then   # every node count, before anything is submitted
    for n in ${nodes//,/ }; do
        if (( global % (n * rpn) )); then
            echo "sweep.sh: global batch $global does not divide among $((n * rpn)) ranks" >&2; exit 2
        fi
    done
fi
command -v sbatch >/dev/null || { echo "sweep.sh: sbatch not found: run this on a Slurm login node" >&2; exit 1; }
id=${id:-sweep-$(date +%Y%m%d-%H%M%S)}
dir="$root/$id"
mkdir -p "$dir"
: >"$dir/jobs.txt"
for n in ${nodes//,/ }; do
    ranks=$((n * rpn))
    b=$batch
    [[ "$mode" == strong ]] && b=$((global / ranks))
    out="$dir/nodes-$n"
    mkdir -p "$out"
    if [[ -n "$gpn" ]]; then
        res=(--gpus-per-node="$gpn" --ntasks-per-node="$gpn") what="$ranks GPU(s) ($gpn per node)"
    else
        res=() what="$ranks rank(s)"
    fi
    # shellcheck disable=SC2086
    job=$(MLPF_RANKS_PER_NODE=$rpn sbatch --parsable -N "$n" "${res[@]}" --job-name "mlpf-$id-$n" \
          --output "$out/slurm-%j.out" $extra "$here/slurm/mlpf.sbatch" \
          --results "$out" --batch-size "$b" "$@")
    echo "$n $job" >>"$dir/jobs.txt"
    echo "sweep.sh: $n node(s), $what, batch $b per rank: job $job -> $out"
done
echo "$mode" >"$dir/mode.txt"
[[ -n "$gpn" ]] && echo "$gpn" >"$dir/gpus_per_node.txt"
[[ $wait -eq 1 ]] || { echo "sweep.sh: submitted; afterwards run: scripts/scaling_report.py $dir"; exit 0; }
for job in $(awk '{print $2}' "$dir/jobs.txt"); do
    while squeue -h -j "$job" 2>/dev/null | grep -q .; do sleep 2; done
done
echo "sweep.sh: all jobs finished"
/usr/bin/python3 "$here/scripts/scaling_report.py" "$dir"
