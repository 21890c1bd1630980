# shellcheck shell=bash
# Shared by the shell tests: pass/fail counters, the schema check of every
# summary a test produced, and bringing up the local Slurm.
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
lib_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Every mlpf_summary.json below DIR must be valid against the schema.
check_summaries() {
    local f
    while IFS= read -r f; do
        /usr/bin/python3 "$lib_root/tests/check_summary.py" "$f" >"$1/.schema.log" 2>&1 \
            || bad "summary $f: $(cat "$1/.schema.log")"
    done < <(find "$1" -name mlpf_summary.json)
}

# The closing line, and the exit status.
finish() {
    echo "$1: $pass passed, $fail failed"
    [[ $fail -eq 0 ]]
}

# NAME NODES LOGDIR: a local Slurm of NODES emulated nodes (stop it with
# slurm_down, e.g. in an EXIT trap). Where that is impossible the test says so
# loudly and fails rather than passing silently.
slurm_up() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "$1: NOT RUN: a local Slurm needs root (slurmctld, slurmd, munge)" >&2
        echo "$1: 0 passed, 1 failed"
        exit 1
    fi
    "$lib_root/scripts/slurm-local-down.sh" >/dev/null 2>&1
    if ! SLURM_EMU_NODES=$2 "$lib_root/scripts/slurm-local-up.sh" >"$3/slurm-up.log" 2>&1; then
        echo "$1: cannot bring up the local Slurm:"
        tail -20 "$3/slurm-up.log"
        echo "$1: 0 passed, 1 failed"
        exit 1
    fi
}
slurm_down() { "$lib_root/scripts/slurm-local-down.sh" >/dev/null 2>&1; }
