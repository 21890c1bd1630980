#!/usr/bin/env bash
# Command-line behaviour of mlpfbench: help, bad input, and a short training run.
set -uo pipefail
bin=${1:?usage: tests/cli.sh path/to/mlpfbench}
pass=0 fail=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# expect RC PATTERN -- command...: exit status RC and PATTERN in stdout+stderr
expect() {
    local rc=$1 pat=$2; shift 3
    out=$("$@" 2>&1); got=$?
    if [[ $got -ne $rc ]]; then bad "'$*' exited $got, expected $rc: $out"; return; fi
    if ! grep -qE -- "$pat" <<<"$out"; then bad "'$*' output lacks /$pat/: $out"; return; fi
    ok
}

expect 0 "usage: mlpfbench <command>" -- "$bin" --help
expect 2 "usage: mlpfbench" -- "$bin"
expect 2 "unknown command 'frobnicate'" -- "$bin" frobnicate
expect 0 "--batch-size B" -- "$bin" train --help
expect 2 "unknown option '--bogus'" -- "$bin" train --bogus 1
expect 2 "--batch-size needs a whole number from 1" -- "$bin" train --batch-size 0
expect 2 "--batch-size needs a whole number" -- "$bin" train --batch-size -3
expect 2 "--batch-size needs a whole number" -- "$bin" train --batch-size 4x
expect 2 "--events needs a whole number" -- "$bin" train --events 99999999999999999999
expect 2 "--epochs needs a whole number" -- "$bin" train --epochs
expect 2 "--lr needs a number" -- "$bin" train --lr nan
expect 2 "--preset must be one of" -- "$bin" train --preset huge

# hepscore22 reports the reference parameter count (one short step on small events)
expect 0 "preset hepscore22, 6786861 trainable parameters" -- \
    "$bin" train --events 1 --elements 300 --max-steps 1 --threads 2

# A test-sized run: the loss clearly falls (last epoch's mean below 60% of the first's).
"$bin" train --preset tiny --events 8 --elements 100 --batch-size 4 --epochs 30 \
    --threads 2 --seed 3 >"$tmp/train.log" 2>&1 || bad "tiny training run failed: $(tail -5 "$tmp/train.log")"
if awk '/^epoch /{ e=$2; s[e]+=$6; n[e]++; last=e } END {
        first = s[1]/n[1]; final = s[last]/n[last];
        printf "tiny run: mean loss epoch 1 %.4f, epoch %d %.4f\n", first, last, final;
        exit !(final < 0.6 * first) }' "$tmp/train.log"; then ok
else bad "loss did not fall enough: $(grep -E '^epoch (1|30) ' "$tmp/train.log" | head -3)"; fi
grep -q "loss .* \[cls .* charge .* pt .* eta .* sin_phi .* cos_phi .* energy" "$tmp/train.log" \
    && ok || bad "step lines lack the seven loss components"

echo "cli: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
