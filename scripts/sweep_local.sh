#!/bin/bash
# Single-node scaling over rank counts with mpirun (several GPUs, or CPU core
# groups, in one machine): one run per rank count, each writing its summary
# under RESULTS/<sweep-id>/ranks-<r>/, then the scaling table and plot.
#
#   scripts/sweep_local.sh --ranks 1,2,4 -- --data data/default --epochs 3
#
# Weak scaling (default): --batch-size per rank fixed. Strong: --global-batch G
# divided among the ranks. Arguments after -- go to 'mlpfbench train'.
set -euo pipefail
ranks="" mode=weak batch=4 global="" id="" root=results
while [[ $# -gt 0 ]]; do
    case $1 in
        --ranks) ranks=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --batch-size) batch=$2; shift 2 ;;
        --global-batch) global=$2; shift 2 ;;
        --sweep-id) id=$2; shift 2 ;;
        --results) root=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
                   echo "options: --ranks LIST (required), --mode weak|strong, --batch-size B, --global-batch G, --sweep-id ID, --results DIR"
                   exit 0 ;;
        --) shift; break ;;
        *) echo "sweep_local.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${MLPF_BIN:-$here/build/mlpfbench}
[[ -n "$ranks" && "$ranks" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "sweep_local.sh: --ranks needs a list like 1,2,4" >&2; exit 2; }
[[ "$mode" == weak || ( "$mode" == strong && "$global" =~ ^[1-9][0-9]*$ ) ]] \
    || { echo "sweep_local.sh: --mode weak, or --mode strong with --global-batch G" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
id=${id:-sweep-$(date +%Y%m%d-%H%M%S)}
dir="$root/$id"
mkdir -p "$dir"
status=0
for r in ${ranks//,/ }; do
    b=$batch
    if [[ "$mode" == strong ]]; then
        (( global % r == 0 )) || { echo "sweep_local.sh: global batch $global does not divide among $r ranks" >&2; exit 2; }
        b=$((global / r))
    fi
    echo "sweep_local.sh: $r rank(s), batch $b per rank -> $dir/ranks-$r"
    mpirun --oversubscribe -np "$r" "$bin" train --results "$dir/ranks-$r" --batch-size "$b" "$@" \
        >"$dir/ranks-$r.log" 2>&1 || { echo "sweep_local.sh: the $r-rank run failed (see $dir/ranks-$r.log)"; status=1; }
done
/usr/bin/python3 "$here/scripts/scaling_report.py" "$dir" || status=1
exit $status
