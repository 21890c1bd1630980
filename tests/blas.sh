#!/usr/bin/env bash
# The BLAS kernels and the start-up instruction-set guard (issue 16):
# - the core OpenBLAS picked is kept where it suits the CPU; a core the user
#   set (OPENBLAS_CORETYPE, --blas-core) wins, and is checked;
# - a fallback is corrected for real: the test hook MLPF_TEST_BLAS_AS_DETECTED
#   makes the Prescott core that OPENBLAS_CORETYPE really loads count as
#   OpenBLAS's own pick, so the process must restart itself with the right
#   core (OpenBLAS cannot change its core inside a process: the new core
#   proves the restart) after checking it in a child process; the check
#   refuses a core that crashes (SkylakeX on a CPU without AVX-512: SIGILL),
#   computes wrong results (MLPF_TEST_BLAS_CHECK=perturb) or hangs;
# - under mpirun the correction is said once, and the summary, info and the
#   closing table carry the library, core and whether it was corrected;
# - gemm-bench flags a BLAS under 50% of the FMA peak, and the bench table
#   draws no "out of reach" verdict from a misconfigured BLAS alone;
# - a binary built with ARCH=x86-64-v4 refuses to start on a CPU without
#   AVX-512 (exit 3, naming what is missing) before any AVX-512 code runs,
#   and the guard's own objects contain no AVX or AVX-512 instruction.
# OPENBLAS_CORETYPE is set per command only (env), never exported: the test
# leaves it as it found it (checked at the end).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/blas.sh BUILD_DIR [V4_BUILD_DIR]}
v4build=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$build/mlpfbench"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
coretype_at_start=${OPENBLAS_CORETYPE-<unset>}
py=/usr/bin/python3
avx512=0; grep -qw avx512f /proc/cpuinfo && avx512=1

# a command with no BLAS setting of the caller's: none of the test hooks,
# OPENBLAS_CORETYPE only where the test sets it (clean VAR=VALUE... CMD ...)
clean() { env -u OPENBLAS_CORETYPE -u MLPF_TEST_BLAS_AS_DETECTED -u MLPF_TEST_BLAS_CPU -u MLPF_TEST_BLAS_CHECK \
    -u MLPF_BLAS_CHECK_TIMEOUT -u MLPF_BLAS_RESTART "$@"; }
count() { grep -c -- "$1" "$2"; }

# ---- OpenBLAS's own choice, on this CPU ---------------------------------
clean "$bin" info >"$tmp/info" 2>&1; rc=$?
suits=$(sed -n "s/.*mlpfbench's core for it: \([A-Za-z0-9]*\).*/\1/p" "$tmp/info" | head -1)
# OpenBLAS's own pick may be another core of the same class as mlpfbench's
# (Cooperlake on a Zen 4, where mlpfbench names SkylakeX): that is kept
own=$(sed -n "s/^BLAS: OpenBLAS [0-9.]*, core \([A-Za-z0-9]*\) (OpenBLAS's own choice).*/\1/p" "$tmp/info" | head -1)
class_of() { case $1 in SkylakeX|Cooperlake|SapphireRapids) echo avx512 ;; Haswell|Zen) echo avx2 ;; *) echo "other:$1" ;; esac; }
if [[ $rc -ne 0 || -z $suits ]]; then
    bad "info: exit $rc, no core named for this CPU: $(cat "$tmp/info")"
    suits=Haswell
elif grep -q "restarting with OPENBLAS_CORETYPE" "$tmp/info"; then
    # this CPU's OpenBLAS falls back by itself: then the correction must land on the core for it, said once
    [[ $(count "restarting with" "$tmp/info") -eq 1 ]] \
        && grep -q "^BLAS: OpenBLAS .*, core $suits (corrected by mlpfbench from OpenBLAS's" "$tmp/info" \
        && ok "info: OpenBLAS fell back on this CPU by itself; corrected to $suits, said once" \
        || bad "info (own fallback): $(cat "$tmp/info")"
else
    [[ -n $own && $(class_of "$own") == $(class_of "$suits") ]] \
        && grep -q "^BLAS check: not run: OpenBLAS's own choice" "$tmp/info" \
        && ! grep -q "test hook" "$tmp/info" \
        && ok "info: OpenBLAS's own core $own kept (the class of $suits, which suits this CPU), no restart, no check needed" \
        || bad "info: $(cat "$tmp/info")"
fi
[[ -n $own ]] || own=$suits
grep -Eq "^binary: ARCH=native \([a-z0-9-]+\), built on .*; may use: .*sse3" "$tmp/info" \
    && grep -q "^CPU: .*; runs: " "$tmp/info" \
    && ok "info: the binary's ARCH (native, resolved) and instruction sets, and this CPU's" || bad "info binary line: $(cat "$tmp/info")"

# ---- the user's core wins --------------------------------------------------
clean OPENBLAS_CORETYPE=Prescott "$bin" info >"$tmp/o" 2>&1; rc=$?
[[ $rc -eq 0 ]] && grep -q "^BLAS: OpenBLAS .*, core Prescott (set by OPENBLAS_CORETYPE)" "$tmp/o" \
    && ! grep -q "restarting" "$tmp/o" && grep -q "^BLAS check: passed: 6 products" "$tmp/o" \
    && grep -q "OPENBLAS_CORETYPE=Prescott kept as set; this CPU (.*) could run the $suits kernels" "$tmp/o" \
    && ok "OPENBLAS_CORETYPE=Prescott (the user's): kept, checked in a child process, the better core named" \
    || bad "user's OPENBLAS_CORETYPE: exit $rc: $(cat "$tmp/o")"
clean OPENBLAS_CORETYPE=Prescott "$bin" info --blas-core haswell >"$tmp/o" 2>&1; rc=$?
[[ $rc -eq 0 ]] && grep -q "^BLAS: OpenBLAS .*, core Haswell (set by --blas-core)" "$tmp/o" \
    && grep -q "BLAS notes: .*--blas-core haswell replaced OPENBLAS_CORETYPE=Prescott" "$tmp/o" \
    && ok "--blas-core haswell: restarted with Haswell, over the user's OPENBLAS_CORETYPE" \
    || bad "--blas-core haswell: exit $rc: $(cat "$tmp/o")"
clean "$bin" info --blas-core Foo >"$tmp/o" 2>&1; rc=$?
[[ $rc -eq 2 ]] && grep -q "BLAS: --blas-core Foo: this OpenBLAS has no core 'Foo' (with OPENBLAS_CORETYPE=Foo it ran" "$tmp/o" \
    && ok "--blas-core Foo: refused (exit 2), a core this OpenBLAS does not have" || bad "--blas-core Foo: exit $rc: $(cat "$tmp/o")"
clean "$bin" gemm-bench --blas-core >"$tmp/o" 2>&1; rc=$?
[[ $rc -eq 2 ]] && grep -q "\-\-blas-core needs a core name" "$tmp/o" \
    && ok "--blas-core without a name: exit 2" || bad "--blas-core alone: exit $rc: $(cat "$tmp/o")"

# ---- a fallback corrected: check in a child, restart ------------------------
clean OPENBLAS_CORETYPE=Prescott MLPF_TEST_BLAS_AS_DETECTED=1 "$bin" info >"$tmp/o" 2>&1; rc=$?
[[ $rc -eq 0 && $(count "restarting with" "$tmp/o") -eq 1 ]] \
    && grep -q "picked its Prescott kernels on this CPU (.*); restarting with OPENBLAS_CORETYPE=$suits (checked in a child process, passed" "$tmp/o" \
    && grep -q "^BLAS: OpenBLAS .*, core $suits (corrected by mlpfbench from OpenBLAS's Prescott) \[test hook\]" "$tmp/o" \
    && grep -q "^BLAS check: passed: 6 products .* within [0-9.e-]* of a float64 reference" "$tmp/o" \
    && ok "Prescott as OpenBLAS's pick: $suits checked in a child, the process restarted with it (said once)" \
    || bad "correction: exit $rc: $(cat "$tmp/o")"
clean OPENBLAS_CORETYPE=Prescott MLPF_TEST_BLAS_AS_DETECTED=1 MLPF_TEST_BLAS_CHECK=perturb "$bin" info >"$tmp/o" 2>&1; rc=$?
[[ $rc -eq 0 ]] && ! grep -q "restarting" "$tmp/o" \
    && grep -q "the $suits core failed its check in a child process (wrong results: sgemm NN 67x131x95: entry .* (error 1.00e-03 of its magnitude, tolerance 1e-04)): not used" "$tmp/o" \
    && grep -q "WARNING: keeping OpenBLAS's Prescott kernels on a CPU that runs .*: no better core passed its check" "$tmp/o" \
    && grep -q "^BLAS: OpenBLAS .*, core Prescott (OpenBLAS's own choice)" "$tmp/o" \
    && grep -q "^BLAS notes: $suits not used: it failed its check" "$tmp/o" \
    && ok "a candidate whose products are off by 1e-3: not used, the run says why and keeps Prescott" \
    || bad "perturbed check: exit $rc: $(cat "$tmp/o")"
t0=$SECONDS
clean MLPF_BLAS_CHECK_TIMEOUT=2 MLPF_TEST_BLAS_CHECK=hang "$bin" info --blas-core "$suits" >"$tmp/o" 2>&1; rc=$?
[[ $rc -eq 1 && $((SECONDS - t0)) -lt 20 ]] && grep -q "the $suits core failed its check in a child process (hung: no answer in 2 s (killed)): not used" "$tmp/o" \
    && ok "a check that hangs: killed after its limit, the core refused (exit 1)" || bad "hung check: exit $rc: $(cat "$tmp/o")"
if [[ $avx512 -eq 0 ]]; then
    clean OPENBLAS_CORETYPE=Prescott MLPF_TEST_BLAS_AS_DETECTED=1 MLPF_TEST_BLAS_CPU=avx512 "$bin" info >"$tmp/o" 2>&1; rc=$?
    [[ $rc -eq 0 ]] && grep -q "the SkylakeX core failed its check in a child process (crashed: killed by signal 4 (SIGILL" "$tmp/o" \
        && grep -q "restarting with OPENBLAS_CORETYPE=$suits" "$tmp/o" \
        && grep -q "^BLAS: OpenBLAS .*, core $suits (corrected by mlpfbench from OpenBLAS's Prescott)" "$tmp/o" \
        && grep -q "^BLAS notes: SkylakeX not used: it failed its check in a child process: crashed" "$tmp/o" \
        && ok "assumed AVX-512: SkylakeX crashes in its check (SIGILL, this CPU has none), $suits used instead, and the summary says why" \
        || bad "crashing candidate: exit $rc: $(cat "$tmp/o")"
    clean "$bin" info --blas-core SkylakeX >"$tmp/o" 2>&1; rc=$?
    [[ $rc -eq 1 ]] && grep -q "BLAS: --blas-core SkylakeX: the SkylakeX core failed its check in a child process (crashed: killed by signal 4 (SIGILL" "$tmp/o" \
        && ok "--blas-core SkylakeX without AVX-512: refused with the crash named (exit 1), not a SIGILL mid-run" \
        || bad "--blas-core SkylakeX: exit $rc: $(cat "$tmp/o")"
    clean OPENBLAS_CORETYPE=SkylakeX "$bin" gemm-bench --preset tiny --seconds 0.01 >"$tmp/o" 2>&1; rc=$?
    [[ $rc -eq 1 ]] && grep -q "BLAS: OPENBLAS_CORETYPE=SkylakeX: the SkylakeX core failed its check in a child process (crashed" "$tmp/o" \
        && ok "OPENBLAS_CORETYPE=SkylakeX without AVX-512: refused before any product (exit 1)" \
        || bad "OPENBLAS_CORETYPE=SkylakeX: exit $rc: $(cat "$tmp/o")"
else
    echo "SKIP (this CPU has AVX-512): SkylakeX crashing in its check"
fi

# ---- training: said once over 2 ranks, in the summary and the closing table -
"$bin" generate --out "$tmp/ds" --train-events 8 --valid-events 2 --shards 2 --elements 60 --seed 3 >/dev/null
clean OPENBLAS_CORETYPE=Prescott MLPF_TEST_BLAS_AS_DETECTED=1 timeout 120 mpirun --oversubscribe -np 2 \
    -x OPENBLAS_CORETYPE -x MLPF_TEST_BLAS_AS_DETECTED "$bin" train --preset tiny --data "$tmp/ds" \
    --batch-size 2 --epochs 1 --max-steps 2 --threads 1 --log-every 0 --results "$tmp/r2" >"$tmp/o" 2>&1; rc=$?
if [[ $rc -eq 0 && $(count "restarting with OPENBLAS_CORETYPE=$suits" "$tmp/o") -eq 1 ]] \
   && grep -Eq "^BLAS +OpenBLAS .*, core $suits \(corrected by mlpfbench from OpenBLAS's Prescott\) \[test hook\]" "$tmp/o" \
   && grep -Eq "^binary +ARCH=native \(" "$tmp/o" \
   && $py - "$tmp/r2/mlpf_summary.json" "$suits" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))["report"]["wl-stats"]
b, bd = st["blas"], st["build"]
assert st["world_size"] == 2, st["world_size"]
assert b["library"] == "OpenBLAS" and b["version"][0].isdigit() and b["core"] == sys.argv[2], b
assert b["corrected"] is True and b["corrected_from"] == "Prescott" and b["chosen_by"] == "mlpfbench", b
assert b["restarted"] is True and b["test_hook"] is True and b["check"].startswith("passed: 6 products"), b
assert bd["arch"].startswith("native (") and "sse3" in bd["isa"].split(), bd
PY
then ok "2-rank training: corrected once (rank 0 says it), wl-stats.blas and .build, closing table rows"
else bad "2-rank corrected training: exit $rc: $(tail -30 "$tmp/o")"; fi
clean timeout 120 "$bin" train --preset tiny --data "$tmp/ds" --batch-size 2 --epochs 1 --max-steps 2 --threads 1 \
    --log-every 0 --results "$tmp/r1" >"$tmp/o" 2>&1; rc=$?
[[ $rc -eq 0 ]] && $py - "$tmp/r1/mlpf_summary.json" "$own" <<'PY' && ok "plain training: wl-stats.blas says OpenBLAS chose $own, not corrected, no test hook" || bad "plain training: exit $rc: $(tail -20 "$tmp/o")"
import json, sys
b = json.load(open(sys.argv[1]))["report"]["wl-stats"]["blas"]
assert b["core"] == sys.argv[2] and b["test_hook"] is False and b["restarted"] is (b["chosen_by"] == "mlpfbench"), b
PY
check_summaries "$tmp"

# ---- gemm-bench against the FMA peak -----------------------------------------
gb() { clean "$@" "$bin" gemm-bench --threads 1 --rows 2000 --seconds 0.5 --json "$tmp/g.json" >"$tmp/o" 2>&1; }
if gb OPENBLAS_CORETYPE=Prescott && grep -q "BLAS: MISCONFIGURED: the dense product runs at [0-9]*% of the cores' FMA peak (under 50%)" "$tmp/o" \
   && $py -c "
import json, sys; d = json.load(open('$tmp/g.json'))
sys.exit(not (d['blas_misconfigured'] is True and d['dense_of_fma_peak'] < 0.5 and d['blas']['core'] == 'Prescott'))"; then
    ok "gemm-bench with Prescott kernels: MISCONFIGURED ($(grep -o 'runs at [0-9]*%' "$tmp/o" | head -1) of the FMA peak)"
else bad "gemm-bench Prescott: $(cat "$tmp/o")"; fi
if gb && grep -q "BLAS: ok: the dense product runs at [0-9]*% of the FMA peak (at least 50%)" "$tmp/o" \
   && $py -c "
import json, sys; d = json.load(open('$tmp/g.json'))
sys.exit(not (d['blas_misconfigured'] is False and d['dense_of_fma_peak'] >= 0.5 and d['blas']['core'] == '$own'))"; then
    ok "gemm-bench with $own: ok ($(grep -o 'runs at [0-9]*%' "$tmp/o" | head -1) of the FMA peak)"
else bad "gemm-bench $own: $(cat "$tmp/o")"; fi
if gb OPENBLAS_CORETYPE=Prescott MLPF_TEST_BLAS_AS_DETECTED=1 && grep -q "BLAS: ok:" "$tmp/o" \
   && $py -c "
import json, sys; d = json.load(open('$tmp/g.json'))
sys.exit(not (d['blas']['corrected'] is True and d['blas']['core'] == '$suits' and d['blas_misconfigured'] is False))"; then
    ok "gemm-bench with Prescott as OpenBLAS's pick: corrected to $suits, and then not misconfigured"
else bad "gemm-bench corrected: $(cat "$tmp/o")"; fi

# ---- the bench table's verdicts -----------------------------------------------
if $py - "$here/scripts" <<'PY'; then ok "bench table: 'out of reach' only from the FMA-peak ceiling or a healthy BLAS's limit; no 70% verdict on a misconfigured BLAS"
import sys
sys.path.insert(0, sys.argv[1])
from bench_table import blas_health, limit_goal, two_x_verdict
share, mis = blas_health({"dense_flops": 47e9, "fma_peak_flops": 384e9})
assert mis is True and abs(share - 47 / 384) < 1e-12
assert blas_health({"dense_flops": 288e9, "fma_peak_flops": 384e9})[1] is False
assert blas_health({"dense_flops": 288e9, "fma_peak_flops": 0.0}) == (None, None)
assert blas_health({"dense_flops": 2e9, "fma_peak_flops": 384e9, "width": 32}) == (None, None)
# the issue's case: a Prescott BLAS on an AVX-512 CPU, 0.16 events/s vs PyTorch 0.34
v = two_x_verdict(0.16, 0.34, "torch", ceil_limit=0.5, ceil_peak=3.0, misconfigured=True)
assert v.startswith("NOT met") and "out of reach" in v and "not judged out of reach" in v and "misconfigured" in v, v
assert "out of reach on these cores" not in v and "out of reach with this BLAS" not in v, v
v = two_x_verdict(0.16, 0.34, "torch", ceil_limit=0.5, ceil_peak=0.6, misconfigured=True)
assert "out of reach on these cores" in v, v
v = two_x_verdict(0.5, 0.34, "torch", ceil_limit=0.6, ceil_peak=3.0, misconfigured=False)
assert "out of reach with this BLAS" in v and "a faster BLAS could reach it" in v, v
v = two_x_verdict(0.5, 0.34, "torch", ceil_limit=0.9, ceil_peak=3.0, misconfigured=False)
assert v.startswith("NOT met") and "out of reach" not in v, v
assert two_x_verdict(0.7, 0.34, "torch", 0.9, 3.0, False).startswith("met")
g = limit_goal(48e9, 46e9, True, 0.12)
assert g.startswith("not judged") and "104%" in g, g
assert limit_goal(48e9, 46e9, False, 0.8).startswith("met (104%)")
assert limit_goal(30e9, 46e9, False, 0.8).startswith("NOT met (65%)")
PY
else bad "bench table verdicts"; fi

# ---- binaries that run where they land -------------------------------------------
# the guard's objects, in this build and the ARCH=x86-64-v4 one: no VEX/EVEX
# instruction (AVX, AVX-512: a mnemonic starting with v) and no ymm, zmm or
# mask register (compiled with the build's flags they have some: 22 with
# -march=native here, 16 with x86-64-v4)
avx_uses() { objdump -d --no-show-raw-insn "$@" | awk -F'\t' 'NF >= 2 {print $2}' | grep -cE '^v|%[yz]mm|%k[0-7]'; }
for d in "$build" ${v4build:+"$v4build"}; do
    n=$(avx_uses "$d/src/commands/isa_guard.o" "$d/src/base/cpu_isa.o" 2>/dev/null); rc=$?
    [[ -f $d/src/commands/isa_guard.o && $n -eq 0 && $rc -eq 1 ]] \
        && ok "$d: the start-up guard's objects use no AVX/AVX-512 instruction (compiled without -march)" \
        || bad "$d: guard objects: $n AVX/AVX-512 instructions (or missing objects)"
done
if [[ -n $v4build ]]; then
    v4="$v4build/mlpfbench"
    nz=$(objdump -d "$v4" | grep -c '%zmm') || true
    if [[ $avx512 -eq 1 ]]; then
        echo "SKIP (this CPU has AVX-512): the ARCH=x86-64-v4 binary cannot be refused here"
    elif [[ ! -x $v4 || $nz -eq 0 ]]; then
        bad "no ARCH=x86-64-v4 binary with AVX-512 code at $v4 ($nz zmm instructions)"
    else
        fails=0
        for args in "info" "--help" "train --preset tiny --data $tmp/ds --results $tmp/r4"; do
            # shellcheck disable=SC2086
            clean "$v4" $args >"$tmp/o" 2>&1; rc=$?
            [[ $rc -eq 3 ]] && grep -q "^mlpfbench: this CPU cannot run this binary: it was built with ARCH=x86-64-v4 (on host .*) and may use .*avx512f avx512cd avx512bw avx512dq avx512vl.*, which this CPU (.*) lacks\. .*make ARCH=x86-64-v3.*(exit status 3)" "$tmp/o" \
                && [[ $(wc -l <"$tmp/o") -eq 1 ]] || { fails=1; bad "v4 binary, '$args': exit $rc: $(cat "$tmp/o")"; }
        done
        [[ $fails -eq 0 ]] && ok "ARCH=x86-64-v4 binary ($nz zmm instructions in it): refused at start with exit 3 (not SIGILL, 132), naming avx512f..vl, for info, --help and train"
        strings "$v4" | grep -x "x86-64-v4" >/dev/null && ok "the target is recorded in the binary (strings: x86-64-v4)" || bad "no ARCH string in $v4"
    fi
fi
make -s -C "$here" BUILD="$tmp/b" ARCH=bogus "$tmp/b/.flags" >"$tmp/o" 2>&1; rc=$?
[[ $rc -ne 0 ]] && grep -q "error: ARCH=bogus: .* does not know -march=bogus" "$tmp/o" \
    && ok "make ARCH=bogus: refused naming the value" || bad "make ARCH=bogus: exit $rc: $(cat "$tmp/o")"

[[ ${OPENBLAS_CORETYPE-<unset>} == "$coretype_at_start" ]] \
    && ok "OPENBLAS_CORETYPE as the test found it ($coretype_at_start)" || bad "OPENBLAS_CORETYPE changed to ${OPENBLAS_CORETYPE-<unset>}"
finish blas
