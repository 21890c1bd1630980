#!/usr/bin/env bash
# The data pipeline: generate (determinism), parallel reading under 1, 2 and 3
# ranks (every event once per epoch, data equal to what was written, the same
# global batches for every rank count), and every kind of bad input refused with
# a message naming the file, on every rank, within seconds.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:?usage: tests/data.sh BUILD_DIR}
bin="$build/mlpfbench"
here=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpirun=(mpirun --oversubscribe)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

gen() { "$bin" generate --elements 60 --seed 5 "$@" >/dev/null; }

# --- writing: same seed, same bytes; whatever the rank count
gen --out "$tmp/a" --train-events 13 --valid-events 3 --shards 3
gen --out "$tmp/b" --train-events 13 --valid-events 3 --shards 3
"${mpirun[@]}" -np 3 "$bin" generate --elements 60 --seed 5 --out "$tmp/c" --train-events 13 \
    --valid-events 3 --shards 3 >/dev/null
if diff -r "$tmp/a" "$tmp/b" >/dev/null && diff -r "$tmp/a" "$tmp/c" >/dev/null; then
    ok "generate: byte-identical files for the same seed, with 1 and 3 ranks"
else bad "generate: files differ between runs"; fi
gen --out "$tmp/d" --train-events 13 --valid-events 3 --shards 3 --seed 6
if cmp -s "$tmp/a/train/shard-0000.h5" "$tmp/d/train/shard-0000.h5"; then bad "generate: seed ignored"
else ok "generate: another seed, other data"; fi
if gen --out "$tmp/a" --train-events 2 --valid-events 1 2>"$tmp/err"; then bad "generate overwrote a dataset"
elif grep -q "already exists" "$tmp/err"; then ok "generate: refuses to overwrite without --force"
else bad "generate: wrong message: $(cat "$tmp/err")"; fi
compgen -G "$tmp/*.tmp" >/dev/null && bad "generate left a temporary directory" || ok "generate: no temporary left behind"

# --- reading: 1, 2, 3 ranks
seq_of() { # np batch -> global batch sequence of 2 epochs (reader_check verifies data and once-per-epoch)
    timeout 60 "${mpirun[@]}" -np "$1" "$build/reader_check" "$tmp/a" "$2" 9 2 5 60
}
seq_of 1 6 >"$tmp/s16" && seq_of 2 3 >"$tmp/s23" && seq_of 3 2 >"$tmp/s32" \
    && seq_of 1 3 >"$tmp/s13" && seq_of 3 1 >"$tmp/s31" && seq_of 2 1 >"$tmp/s21" && seq_of 1 2 >"$tmp/s12"
rc=$?
if [[ $rc -ne 0 ]]; then bad "reader_check failed (data differs, or an event read twice or never)"
elif cmp -s "$tmp/s16" "$tmp/s23" && cmp -s "$tmp/s16" "$tmp/s32" && cmp -s "$tmp/s13" "$tmp/s31" \
     && cmp -s "$tmp/s12" "$tmp/s21"; then
    ok "reader: every event once per epoch, data as written, same global batches for 1, 2, 3 ranks"
else bad "reader: global batch sequences differ between rank counts"; fi
grep -q "^1 " "$tmp/s16" && ! diff <(grep "^0 " "$tmp/s16" | cut -d: -f2) <(grep "^1 " "$tmp/s16" | cut -d: -f2) >/dev/null \
    && ok "reader: a new order every epoch" || bad "reader: epochs have the same order"

# --- bad input: each refused with the file named, non-zero exit on every rank within seconds
train() { timeout 60 "${mpirun[@]}" -np "$1" "$bin" train --preset tiny --batch-size 1 --threads 1 --data "$2" --results "$tmp/res"; }
expect_refusal() { # name dataset pattern [np]
    local name=$1 d=$2 pat=$3 np=${4:-2} start=$SECONDS
    train "$np" "$d" >"$tmp/out" 2>&1; local rc=$?
    if [[ $rc -eq 0 ]]; then bad "$name: accepted"; return; fi
    if [[ $rc -eq 124 ]]; then bad "$name: hung"; return; fi
    if ! grep -qE -- "$pat" "$tmp/out"; then bad "$name: message lacks /$pat/: $(head -c 600 "$tmp/out")"; return; fi
    ok "$name: refused in $((SECONDS - start)) s: $(grep -E -- "$pat" "$tmp/out" | head -1 | cut -c1-150)"
}
fresh() { rm -rf "$tmp/x"; cp -r "$tmp/a" "$tmp/x"; }
S=train/shard-0001.h5

expect_refusal "missing directory" "$tmp/nothing-here" "dataset directory .*nothing-here does not exist"
fresh; rm "$tmp/x/$S"; expect_refusal "missing shard" "$tmp/x" "cannot read shard .*shard-0001.h5"
fresh; echo '{"format": "mlpfbench-dataset", "version": 1' >"$tmp/x/manifest.json"
expect_refusal "damaged manifest" "$tmp/x" "cannot read the manifest .*manifest.json"
for what in flip truncate; do
    fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" "$what"
    expect_refusal "shard $what" "$tmp/x" "shard .*shard-0001.h5 (is damaged: CRC-32|has [0-9]+ bytes)"
done
fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" format
expect_refusal "shard of another format" "$tmp/x" "shard .*shard-0001.h5 is not an mlpfbench-shard file"
fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" version
expect_refusal "shard of another version" "$tmp/x" "shard .*shard-0001.h5 has format version 99"
fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" shape
expect_refusal "wrong dataset shape" "$tmp/x" "shard .*shard-0001.h5: wrong dataset shapes"
fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" offsets-order
expect_refusal "offsets not monotonic" "$tmp/x" "shard .*shard-0001.h5: offsets are not monotonic at event 1"
fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" offsets-range
expect_refusal "offsets beyond the rows" "$tmp/x" "shard .*shard-0001.h5: the last offset is"
for what in nan inf; do
    fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" "$what"
    expect_refusal "$what in the features" "$tmp/x" "shard .*shard-0001.h5, event 1 \(row 2, column 5\): X is not finite"
done
fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" type
expect_refusal "bad element type" "$tmp/x" "shard .*shard-0001.h5, event 1 .*element type"
fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" class
expect_refusal "bad target class" "$tmp/x" "shard .*shard-0001.h5, event 1 .*target class"
gen --out "$tmp/small" --train-events 2 --valid-events 1 --shards 1
expect_refusal "fewer events than ranks" "$tmp/small" "has 2 training events, fewer than the 3 ranks" 3
# the same damage under 1 rank too (no MPI job around it)
fresh; "$here/tests/corrupt_shard.py" "$tmp/x" "$S" nan
expect_refusal "nan, one rank" "$tmp/x" "X is not finite" 1

# random byte flips anywhere in a shard: always refused (never a crash or a hang)
flips_ok=1
for seed in 1 2 3 4 5 6 7 8 9 10 11 12; do
    fresh
    /usr/bin/python3 - "$tmp/x/$S" "$seed" <<'PY'
import random, sys
p, r = sys.argv[1], random.Random(int(sys.argv[2]))
d = bytearray(open(p, "rb").read())
for _ in range(r.randint(1, 4)):
    d[r.randrange(len(d))] ^= 1 << r.randrange(8)
open(p, "wb").write(d)
PY
    timeout 60 "$bin" train --preset tiny --batch-size 1 --threads 1 --data "$tmp/x" --results "$tmp/res" >"$tmp/out" 2>&1
    rc=$?
    if [[ $rc -ne 1 ]] || ! grep -q "shard-0001.h5 is damaged" "$tmp/out"; then
        bad "random flips (seed $seed): exit $rc: $(tail -2 "$tmp/out")"; flips_ok=0; break
    fi
done
[[ $flips_ok -eq 1 ]] && ok "12 shards with random bit flips: each refused as damaged"

# forged datasets (manifest rewritten to match the damaged bytes): the shards
# reach HDF5, which is contained in a probe process. First a probe that
# certainly crashes, then every input known to crash HDF5 1.10 (tests/fuzz/)
fresh
MLPF_FAILPOINT=probe-crash timeout 60 "$bin" train --preset tiny --threads 1 --data "$tmp/x" --results "$tmp/res" >"$tmp/out" 2>&1
rc=$?
[[ $rc -eq 1 ]] && grep -q "shard .*shard-0000.h5 is damaged or forged: the HDF5 library crashed reading it (signal 11" "$tmp/out" \
    && ok "a shard that crashes HDF5 (in the probe): refused naming the shard, exit 1" \
    || bad "crashing probe: exit $rc: $(tail -2 "$tmp/out")"
n_known=0 known_ok=1
for input in "$here"/tests/fuzz/hdf5-known/* "$here"/tests/fuzz/regress/*; do
    [[ -f $input ]] || continue
    n_known=$((n_known + 1))
    rm -rf "$tmp/forged"; "$here/tests/fuzz/make_case.py" "$input" "$tmp/forged"
    for np in 1 2; do
        start=$SECONDS
        train "$np" "$tmp/forged" >"$tmp/out" 2>&1; rc=$?
        if [[ $rc -ne 1 || $((SECONDS - start)) -gt 20 ]] || ! grep -q "shard .*shard-0000.h5" "$tmp/out"; then
            bad "forged shard $(basename "$input"), $np rank(s): exit $rc after $((SECONDS - start)) s: $(grep mlpfbench: "$tmp/out" | head -2)"
            known_ok=0
        fi
    done
done
[[ $known_ok -eq 1 && $n_known -gt 0 ]] && ok "$n_known forged shards known to crash HDF5: each refused (exit 1, shard named) under 1 and 2 ranks"

# --- the converter's output trains: public-format pickles -> shards -> 2 ranks
/usr/bin/python3 - "$tmp" <<'PY'
import bz2, pickle, sys
import numpy as np
rng = np.random.default_rng(1)
def event(n):
    ntrk = n // 2
    X = np.zeros((n, 12)); y = np.zeros((n, 7))
    X[:ntrk, 0] = 2; X[ntrk:, 0] = 1
    X[:, 1] = rng.exponential(2.0, n); X[:, 2] = rng.uniform(-2.5, 2.5, n)
    phi = rng.uniform(-np.pi, np.pi, n); X[:, 3] = np.sin(phi); X[:, 4] = np.cos(phi)
    X[:, 5] = X[:, 1] * np.cosh(X[:, 2])
    X[:ntrk, 9] = rng.choice([-1.0, 1.0], ntrk)
    y[:ntrk, 0] = 1; y[:ntrk, 1] = X[:ntrk, 9]; y[:, 2] = X[:, 1]; y[:, 3] = X[:, 2]
    y[:, 4] = X[:, 3]; y[:, 5] = X[:, 4]; y[:, 6] = X[:, 5]
    y[ntrk:, 0] = rng.choice([0, 2, 3], n - ntrk); y[ntrk:][y[ntrk:, 0] == 0] = 0
    return X, y
for name, nev in (("ttbar.pkl.bz2", 6), ("qcd.pkl.bz2", 2)):
    evs = [event(int(rng.integers(30, 80))) for _ in range(nev)]
    d = {"X": [e[0] for e in evs], "ygen": [e[1] for e in evs], "ycand": [e[1] for e in evs]}
    with bz2.open(sys.argv[1] + "/" + name, "wb") as f:
        pickle.dump(d, f)
PY
if /usr/bin/python3 "$here/scripts/convert_delphes.py" --out "$tmp/conv" --train "$tmp/ttbar.pkl.bz2" \
       --valid "$tmp/qcd.pkl.bz2" --events-per-shard 4 >/dev/null 2>"$tmp/err" \
   && train 2 "$tmp/conv" >"$tmp/out" 2>&1 && grep -q "^validation epoch 1: .*(.* elements)" "$tmp/out"; then
    ok "converted Delphes-format pickles train under 2 ranks"
else bad "converted dataset: $(cat "$tmp/err") $(tail -3 "$tmp/out")"; fi

check_summaries "$tmp"
finish data
