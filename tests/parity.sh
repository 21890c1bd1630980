#!/usr/bin/env bash
# Parity of the C model with the independent PyTorch twin (docs/parity-fixture.md):
# the seven loss components, every gradient tensor and three Adam steps agree to
# 1e-4 relative, for the tiny preset and for hepscore22 on two small events; and
# the comparison itself catches a single wrong gradient tensor, for every tensor.
set -uo pipefail
build=${1:?usage: tests/parity.sh BUILD_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
twin=("/usr/bin/python3" "$here/scripts/torch_twin.py")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
run() { # name, command...
    local name=$1; shift
    if "$@" >"$tmp/log" 2>&1; then pass=$((pass + 1)); echo "ok   $name"
    else fail=$((fail + 1)); echo "FAIL $name"; cat "$tmp/log"; fi
}

"$build/parity_dump" --preset tiny --sizes 70,130 --seed 1 --out "$tmp/tiny.h5" >/dev/null
run "tiny: losses, gradients, 3 Adam steps vs PyTorch" "${twin[@]}" check "$tmp/tiny.h5" --threads 2
run "tiny: every single-tensor gradient error is detected" "${twin[@]}" check "$tmp/tiny.h5" --threads 2 --mutate all

"$build/parity_dump" --preset tiny --sizes 300,17,40 --seed 2 --out "$tmp/tiny3.h5" >/dev/null
run "tiny: 3 events (many bins, a one-bin event)" "${twin[@]}" check "$tmp/tiny3.h5" --threads 2

# hepscore22 on realistic events: the generator's energies reach TeV, the model
# has no input normalisation, and float32 itself cannot hold every gradient to
# 1e-4 there (PyTorch in float32 misses the float64 reference by up to ~4e-3 on
# the gate weights). A tensor passes within 1e-4, or within twice PyTorch's own
# float32 error; the per-step Adam losses are held to 1e-4, and the Adam weight
# changes are printed (float32 gradient noise that Adam normalises to full
# steps dominates them; the tiny runs above check them strictly).
OMP_NUM_THREADS=2 "$build/parity_dump" --preset hepscore22 --sizes 700,1300 --seed 3 --lr 1e-5 \
    --out "$tmp/hep.h5" >/dev/null
run "hepscore22 (700 + 1300 elements): losses, gradients, 3 Adam steps vs PyTorch" \
    "${twin[@]}" check "$tmp/hep.h5" --threads 2 --fp32-floor 2 --adam-deltas-info

echo "parity: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
