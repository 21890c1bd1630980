#!/bin/bash
# mlpf-bmk.sh: the hep-workloads entry point of mlpfbench, and the entrypoint
# of its container image. hep-score starts the image as
#
#   <engine> run ... -v RUNDIR:/results <image> -W --threads T --copies C --events N [--debug] --extra-args 'OPTIONS'
#
# and reads RUNDIR/mlpf_summary.json. C copies train at once, each on its own
# T cores (and GPUs); their throughputs add up in wl-scores. docs/hepscore.md
# describes the options, the summary and the exit codes.
set -uo pipefail

prog=mlpf-bmk
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${MLPF_BIN:-$here/build/mlpfbench}

usage() {
    cat <<EOF
usage: mlpf-bmk.sh [-W] [-t T] [-c C] [-e N] [-d DIR] [--debug] [--extra-args 'OPTIONS']

Trains the MLPF model with C independent copies at once (hep-workloads copies)
and writes DIR/mlpf_summary.json for hep-score: mean_throughput is the sum of
the copies' training throughputs (events/s), mean_epoch_time their mean.

  -W                  write into DIR itself (hep-score passes it); without -W a
                      new subdirectory mlpf-bmk-c<C>-e<N>-<time>_<pid> of DIR
  -t, --threads T     cores (worker threads) of each copy (default: the CPUs
                      available divided by the copies)
  -c, --copies C      trainings run at once (default: the CPUs available / T,
                      or 1 when neither -t nor -c is given)
  -e, --events N      training events per copy and epoch: the first N of the
                      dataset (default: all of them)
  -d, -w, --resultsdir DIR  results directory (default /results)
  -m, --mop none|all|custom  what to remove at the end: all (default) removes
                      the temporary dataset view; none and custom keep it
  --debug             print every command run, and keep the temporary files
  -x, --extra-args 'OPTIONS'  one string of options, split as a shell would
                      (quotes work): 'mlpfbench train' options (--device,
                      --batch-size, --epochs, --preset, --lr, --seed, ...) and
                        --data DIR          the dataset (default: the image's)
                        --gpus G            data-parallel ranks per copy, one per
                                            GPU (mpirun), with --device cuda
                        --ranks R           CPU: data-parallel ranks per copy,
                                            sharing its T cores (mpirun)
                        --valid-events M    validation events per copy (default:
                                            the dataset's share for N events)
  -h, --help          this help

Exit status: 0 success; 2 a bad argument (nothing is written); 1 a failed run
(the summary says failed and why).
EOF
}

# A bad argument: one line naming it, exit 2, nothing written, nothing run.
die() {
    echo "$prog: $*" >&2
    exit 2
}
whole() { # FLAG VALUE
    [[ $2 =~ ^[1-9][0-9]{0,5}$ ]] || die "$1 needs a whole number from 1 to 999999, got '$2'"
}
# Split one string into words as a shell would (quotes, backslashes), without
# evaluating anything: xargs does the splitting.
split_words() { # VAR STRING
    local -n _out=$1
    _out=()
    [[ -z ${2//[[:space:]]/} ]] && return 0
    local err
    err=$(printf '%s' "$2" | xargs printf '%s\0' 2>&1 >/dev/null) || return 1
    mapfile -d '' _out < <(printf '%s' "$2" | xargs printf '%s\0')
    [[ -z $err ]]
}

cmdline="mlpf-bmk.sh$(printf ' %q' "$@")"
direct=0 threads="" copies="" events="" resultsdir=/results debug=0 mop=all extra=""
while [[ $# -gt 0 ]]; do
    opt=$1
    if [[ $opt == --*=* ]]; then # --opt=value
        shift
        set -- "${opt%%=*}" "${opt#*=}" "$@"
        continue
    fi
    case $opt in
        -W) direct=1; shift; continue ;;
        --debug) debug=1; shift; continue ;;
        -h|--help) usage; exit 0 ;;
        -t|--threads|-c|--copies|-e|--events|-d|-w|--resultsdir|-m|--mop|-x|--extra-args)
            [[ $# -ge 2 ]] || die "$opt needs a value" ;;
        *) die "unknown option '$opt' (see --help)" ;;
    esac
    val=$2
    shift 2
    case $opt in
        -t|--threads) whole "$opt" "$val"; threads=$val ;;
        -c|--copies) whole "$opt" "$val"; copies=$val ;;
        -e|--events) whole "$opt" "$val"; events=$val ;;
        -d|-w|--resultsdir) [[ -n $val ]] || die "$opt needs a directory"; resultsdir=$val ;;
        -m|--mop) [[ $val == none || $val == all || $val == custom ]] || die "$opt must be none, all or custom, got '$val'"
                  mop=$val ;;
        -x|--extra-args) extra=$val ;;
    esac
done

# --extra-args (after the image's defaults, MLPF_BMK_DEFAULT_ARGS): train
# options, and the few that are the entry point's own.
split_words defaults "${MLPF_BMK_DEFAULT_ARGS:-}" || die "MLPF_BMK_DEFAULT_ARGS: unbalanced quotes in '${MLPF_BMK_DEFAULT_ARGS:-}'"
split_words words "$extra" || die "--extra-args: unbalanced quotes in '$extra'"
words=("${defaults[@]}" "${words[@]}")
data=${MLPF_BMK_DATA:-}
if [[ -z $data ]]; then
    data=$here/data/bmk
    [[ -f $data/manifest.json ]] || data=$here/data/default
fi
gpus="" ranks="" valid="" device=cpu train=() outputs=()
for ((i = 0; i < ${#words[@]}; i++)); do
    w=${words[i]} v=${words[i + 1]-}
    case $w in
        --gpus|--ranks|--valid-events|--data|--timeline|--save-weights)
            ((i + 1 < ${#words[@]})) || die "--extra-args: $w needs a value" ;;
    esac
    case $w in
        --gpus) whole "--extra-args: --gpus" "$v"; gpus=$v; ((i++)) ;;
        --ranks) whole "--extra-args: --ranks" "$v"; ranks=$v; ((i++)) ;;
        --valid-events) whole "--extra-args: --valid-events" "$v"; valid=$v; ((i++)) ;;
        --data) [[ -n $v ]] || die "--extra-args: --data needs a directory"; data=$v; ((i++)) ;;
        --results|--threads|--bind)
            die "--extra-args: $w is the entry point's to set (-d for the results, -t for the threads; copies are bound to their cores)" ;;
        --checkpoint|--resume)
            die "--extra-args: $w is not available through mlpf-bmk (it names a file outside the results directory)" ;;
        --timeline|--save-weights) # a plain file name, written in each copy's directory
            [[ -n $v && $v != */* && $v != . && $v != .. ]] || die "--extra-args: $w needs a plain file name (it is written in each copy's directory), got '$v'"
            outputs+=("$w" "$v"); ((i++)) ;;
        --device) device=$v; train+=("$w"); ((i + 1 < ${#words[@]})) && train+=("$v"); ((i++)) ;;
        *) train+=("$w") ;;
    esac
done
[[ -n $gpus && $device != cuda ]] && die "--extra-args: --gpus $gpus needs --device cuda"
[[ -n $ranks && $device == cuda ]] && die "--extra-args: --ranks is for CPU copies; with --device cuda, --gpus G gives G ranks"

[[ -x $bin ]] || { echo "$prog: $bin is missing (build it with 'make')" >&2; exit 1; }
# train's own parser judges its options; the check also reports the CPUs we
# may use, the dataset's size and the GPUs visible
check=$("$bin" __bmk-check --data "$data" -- "${train[@]}" 2>&1)
crc=$?
if [[ $crc -eq 2 ]]; then
    msg=$(grep -m1 . <<<"$check")
    msg=${msg#mlpfbench: }
    [[ $msg == --data* ]] && die "$msg"
    die "--extra-args: $msg"
elif [[ $crc -ne 0 && $crc -ne 3 ]]; then
    echo "$prog: $bin __bmk-check failed (exit $crc): $(grep -m1 . <<<"$check")" >&2
    exit 1
fi
no_gpu="" cpus=() train_events=0 valid_events=0 visible=0
if [[ $crc -eq 3 ]]; then
    no_gpu=$(grep -m1 . <<<"$check")
    no_gpu=${no_gpu#mlpfbench: }
    # still the dataset and the CPUs, for the summary
    check=$("$bin" __bmk-check --data "$data" -- 2>&1) || die "${check#mlpfbench: }"
fi
while IFS='=' read -r key value; do
    case $key in
        cpus) read -ra cpus <<<"$value" ;;
        train_events) train_events=$value ;;
        valid_events) valid_events=$value ;;
        gpus) visible=$value ;;
    esac
done <<<"$check"
ncpu=${#cpus[@]}
((ncpu > 0)) || { echo "$prog: cannot tell which CPUs this process may use" >&2; exit 1; }
if [[ -z $copies && -z $threads ]]; then copies=1 threads=$ncpu
elif [[ -z $copies ]]; then copies=$((ncpu / threads)); ((copies >= 1)) || copies=1
elif [[ -z $threads ]]; then threads=$((ncpu / copies)); ((threads >= 1)) || threads=1
fi
events=${events:-$train_events}
((events <= train_events)) || die "--events $events: the dataset $data has only $train_events training events"
if [[ -z $valid ]]; then # the dataset's share of validation events for N training events
    valid=$(((events * valid_events + train_events - 1) / train_events))
    ((valid >= 1)) || valid=1
fi
((valid <= valid_events)) || die "--extra-args: --valid-events $valid: the dataset $data has only $valid_events validation events"
g=0 np=${ranks:-1} # GPUs and ranks per copy
[[ $device == cuda ]] && g=${gpus:-1} np=${gpus:-1}

# ------------------------------------------------------------- the run
if ((direct)); then out=$resultsdir
else out=$resultsdir/mlpf-bmk-c$copies-e$events-$(date +%s)_$$
fi
mkdir -p "$out" 2>/dev/null && [[ -w $out ]] || { echo "$prog: cannot write into the results directory $out" >&2; exit 1; }
out=$(cd "$out" && pwd)
log=$out/mlpf-bmk.log
: >"$log"
say() { echo "$prog: $*" | tee -a "$log"; }
if [[ -n ${APPTAINER_CONTAINER:-} ]]; then containment=apptainer
elif [[ -n ${SINGULARITY_CONTAINER:-} ]]; then containment=singularity
elif [[ -f /run/.containerenv ]]; then containment=podman
elif [[ -f /.dockerenv ]]; then containment=docker
else containment=none
fi
[[ -z ${MLPF_BMK_IMAGE_INFO:-} && -f $here/image.json ]] && export MLPF_BMK_IMAGE_INFO=$here/image.json
view=$out/dataset-view
tmpdir=$out/tmp
cleanup() {
    ((debug)) || [[ $mop != all ]] || rm -rf "$view"
    rm -rf "$tmpdir"
}
# Open MPI's session files go under the results directory too, where the
# path is short enough for its sockets; otherwise under the usual /tmp
((${#tmpdir} <= 64)) && mkdir -p "$tmpdir" && export TMPDIR=$tmpdir

merge() { # [--fail REASON]: the summary of the copies; its exit status
    local copyargs=() k
    for ((k = 1; k <= ${#rcs[@]}; k++)); do
        copyargs+=(--copy "$out/proc_$k" "${rcs[k]}" "${copy_cpus[k]:-}" "${copy_gpus[k]:-none}")
    done
    "$bin" __bmk-merge --out "$out" --copies "$copies" --threads "$threads" --events "$events" \
        --valid-events "$valid" --ranks "$np" --gpus "$g" --extra-args "$extra" --data "$data" --view "$view" --containment "$containment" \
        --command-line "$cmdline" "$@" "${copyargs[@]}" -- "${train[@]}" 2>&1 | tee -a "$log"
    return "${PIPESTATUS[0]}"
}
rcs=() copy_cpus=() copy_gpus=() pids=()
finish() { # REASON: a failed summary, exit 1
    merge --fail "$1"
    cleanup
    exit 1
}
say "$copies cop$( ((copies > 1)) && echo ies || echo y) x $threads thread(s), $events training + $valid validation events each, device $device; results in $out"
((copies * threads > ncpu)) && say "warning: $copies copies x $threads threads oversubscribe the $ncpu CPUs available (cores are shared)"
[[ -n $no_gpu ]] && finish "$no_gpu"
if ((g > 0 && copies * g > visible)); then
    finish "--device cuda: $copies cop$( ((copies > 1)) && echo ies || echo y) x $g GPU(s) need $((copies * g)) GPUs, $visible visible"
fi
((debug)) && say "dataset view: $bin __bmk-subset $data $view $events $valid"
rm -rf "$view"
vmsg=$("$bin" __bmk-subset "$data" "$view" "$events" "$valid" 2>&1) || finish "cannot prepare the dataset: ${vmsg#mlpfbench: }"

IFS=, read -ra gpu_list <<<"${CUDA_VISIBLE_DEVICES:-}"
((${#gpu_list[@]} > 0)) || gpu_list=($(seq 0 $((visible > 0 ? visible - 1 : 0))))
[[ $(id -u) -eq 0 ]] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
on_signal() {
    say "interrupted by SIG$1: stopping the copies"
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    for ((k = 1; k <= copies; k++)); do rcs[k]=${rcs[k]:-143}; done
    finish "interrupted by SIG$1"
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
for ((k = 1; k <= copies; k++)); do
    d=$out/proc_$k
    rm -rf "$d"
    mkdir -p "$d"
    list=""
    for ((c = (k - 1) * threads; c < k * threads; c++)); do list+=${list:+,}${cpus[c % ncpu]}; done
    copy_cpus[k]=$list
    env=()
    if ((g > 0)); then
        gl=""
        for ((j = (k - 1) * g; j < k * g; j++)); do gl+=${gl:+,}${gpu_list[j]}; done
        copy_gpus[k]=$gl
        env=(CUDA_VISIBLE_DEVICES="$gl")
    fi
    extra_out=()
    for ((j = 0; j < ${#outputs[@]}; j += 2)); do extra_out+=("${outputs[j]}" "$d/${outputs[j + 1]}"); done
    per_rank=$threads launch=()
    if ((np > 1)); then # data-parallel ranks sharing the copy's cores
        per_rank=$((threads / np > 0 ? threads / np : 1))
        launch=(mpirun --bind-to none --oversubscribe -np "$np")
    fi
    cmd=(env "${env[@]}" taskset -c "$list" "${launch[@]}" "$bin" train --data "$view" --results "$d"
         --threads "$per_rank" --bind none "${train[@]}" "${extra_out[@]}")
    ((debug)) && say "copy $k: $(printf '%q ' "${cmd[@]}")"
    "${cmd[@]}" >"$d/train.log" 2>&1 &
    pids[k]=$!
    say "copy $k: cpus $list${copy_gpus[k]:+, GPUs ${copy_gpus[k]}}, log $d/train.log"
done
# as the copies end; the first that fails ends the run: the others are stopped
declare -A copy_of
live=()
for ((k = 1; k <= copies; k++)); do copy_of[${pids[k]}]=$k live+=("${pids[k]}"); done
first_failed=""
while ((${#live[@]} > 0)); do
    ended=""
    wait -n -p ended "${live[@]}"
    rc=$?
    [[ -n $ended ]] || continue
    k=${copy_of[$ended]}
    rcs[k]=$rc
    say "copy $k: exit status $rc"
    rest=()
    for p in "${live[@]}"; do [[ $p == "$ended" ]] || rest+=("$p"); done
    live=("${rest[@]}")
    if ((rc != 0)) && [[ -z $first_failed ]]; then
        first_failed=$k
        if ((${#live[@]} > 0)); then
            say "copy $k failed: stopping the other copies"
            kill -TERM "${live[@]}" 2>/dev/null
        fi
    fi
done
trap - TERM INT
merge ${first_failed:+--first-failed "$first_failed"}
status=$?
cleanup
exit $((status == 0 ? 0 : 1))
