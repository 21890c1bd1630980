#!/usr/bin/env bash
# scripts/convert_delphes.py on small pickles written in the public Zenodo
# format: round trip of every value, offsets, attributes, manifest, byte-identical
# reruns, and refusal of bad inputs without leaving output behind.
#   tests/test_convert.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conv="$here/../scripts/convert_delphes.py"
py=/usr/bin/python3
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------------------
# Inputs: three pickles in the public format (two train files so that a shard
# spans two files, one valid file), plus broken copies of the first.
"$py" - "$tmp" <<'EOF' || { echo "convert: 0 passed, 1 failed (cannot write inputs)"; exit 1; }
import bz2, pickle, sys
import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(20210222)

def event(n_tracks, n_towers):
    """One Delphes-like event: tracks (type 2) first, then towers (type 1)."""
    n = n_tracks + n_towers
    X = np.zeros((n, 12))
    ygen = np.zeros((n, 7))
    # tracks
    t = slice(0, n_tracks)
    pt = 0.5 + rng.exponential(2.0, n_tracks)
    eta = rng.uniform(-2.5, 2.5, n_tracks)
    phi = rng.uniform(-np.pi, np.pi, n_tracks)
    phi_out = phi + rng.normal(0, 0.05, n_tracks)
    q = rng.choice([-1.0, 1.0], n_tracks)
    mu = (rng.random(n_tracks) < 0.05).astype(float)
    el = ((rng.random(n_tracks) < 0.05) & (mu == 0)).astype(float)
    X[t] = np.column_stack([np.full(n_tracks, 2.0), pt, eta, np.sin(phi), np.cos(phi),
                            pt * np.cosh(eta), eta + rng.normal(0, 0.02, n_tracks),
                            np.sin(phi_out), np.cos(phi_out), q, mu, el])
    cls = np.where(mu == 1, 5.0, np.where(el == 1, 4.0, 1.0))
    gpt = pt * (1 + rng.normal(0, 0.02, n_tracks))
    ygen[t] = np.column_stack([cls, q, gpt, eta, np.sin(phi), np.cos(phi),
                               np.sqrt(gpt**2 * np.cosh(eta)**2 + 0.0195)])
    # towers: most have no target
    w = slice(n_tracks, n)
    et = rng.exponential(3.0, n_towers)
    eta = rng.uniform(-4.9, 4.9, n_towers)
    phi = rng.uniform(-np.pi, np.pi, n_towers)
    e = et * np.cosh(eta)
    fem = rng.random(n_towers)
    X[w, 0] = 1.0
    X[w, 1:8] = np.column_stack([et, eta, np.sin(phi), np.cos(phi), e, fem * e, (1 - fem) * e])
    tcls = np.where(rng.random(n_towers) < 0.3, rng.choice([2.0, 3.0], n_towers), 0.0)
    tcls[(tcls == 2.0) & (e < 9.0)] = 0.0
    has = tcls > 0
    ygen[w] = np.where(has[:, None],
                       np.column_stack([tcls, np.zeros(n_towers), et * 0.9, eta,
                                        np.sin(phi), np.cos(phi), e * 0.9]), 0.0)
    ycand = ygen.copy()
    ycand[:, 2:] *= np.where(ycand[:, :1] > 0, 1 + rng.normal(0, 0.05, (n, 1)), 1.0)
    return X, ygen, ycand

def write(name, sizes):
    d = {"X": [], "ygen": [], "ycand": []}
    for nt, nw in sizes:
        for k, a in zip(("X", "ygen", "ycand"), event(nt, nw)):
            d[k].append(a)
    with bz2.open(f"{out}/{name}", "wb") as f:
        pickle.dump(d, f, protocol=pickle.HIGHEST_PROTOCOL)
    return d

good = write("tev14_pythia8_ttbar_0_0.pkl.bz2", [(12, 30), (20, 40), (8, 15), (25, 35), (10, 22)])
write("tev14_pythia8_ttbar_0_1.pkl.bz2", [(15, 25), (30, 30), (9, 11)])
write("tev14_pythia8_qcd_10_0.pkl.bz2", [(18, 27), (22, 38), (7, 21), (14, 40)])

def broken(name, fix):
    d = {k: [a.copy() for a in v] for k, v in good.items()}
    fix(d)
    with bz2.open(f"{out}/{name}", "wb") as f:
        pickle.dump(d, f)

broken("nan_x.pkl.bz2", lambda d: d["X"][1].__setitem__((3, 4), np.nan))
broken("cols_x.pkl.bz2", lambda d: d["X"].__setitem__(2, d["X"][2][:, :11]))
broken("rows_ygen.pkl.bz2", lambda d: d["ygen"].__setitem__(3, d["ygen"][3][:-1]))
broken("type_x.pkl.bz2", lambda d: d["X"][4].__setitem__((0, 0), 0.0))
broken("class_ycand.pkl.bz2", lambda d: d["ycand"][1].__setitem__((2, 0), 6.0))
broken("frac_ygen.pkl.bz2", lambda d: d["ygen"][0].__setitem__((1, 0), 1.5))
with open(f"{out}/truncated.pkl.bz2", "wb") as f:
    f.write(open(f"{out}/tev14_pythia8_ttbar_0_0.pkl.bz2", "rb").read()[:500])
EOF

t0="$tmp/tev14_pythia8_ttbar_0_0.pkl.bz2"
t1="$tmp/tev14_pythia8_ttbar_0_1.pkl.bz2"
v0="$tmp/tev14_pythia8_qcd_10_0.pkl.bz2"

# ---------------------------------------------------------------------------
# Help and argument errors.
out=$("$py" "$conv" --help 2>&1) && grep -q -- "--events-per-shard" <<<"$out" \
    && grep -q "4559324" <<<"$out" && ok || bad "--help: $out"
"$py" "$conv" --out "$tmp/x" --train "$t0" >/dev/null 2>&1 && bad "missing --valid accepted" || ok
"$py" "$conv" --out "$tmp/x" --train "$t0" --valid "$v0" --events-per-shard 0 >/dev/null 2>&1 \
    && bad "--events-per-shard 0 accepted" || ok
out=$("$py" "$conv" --out "$tmp/x" --train "$t0" --valid "$t0" 2>&1) \
    && bad "same file in both splits accepted" || { grep -q "given twice" <<<"$out" && ok || bad "dup: $out"; }
[[ ! -e "$tmp/x" ]] && ok || bad "argument error left $tmp/x"

# ---------------------------------------------------------------------------
# Good conversion, twice (a second apart, so stored time stamps would differ).
# 8 train events in shards of 3: 3+3+2, shard 1 spans both train files;
# 4 valid events: 3+1.
run() { "$py" "$conv" --out "$1" --train "$t0" "$t1" --valid "$v0" --events-per-shard 3; }
if out=$(run "$tmp/ds1" 2>&1); then ok; else bad "conversion failed: $out"; fi
grep -qE "events/s" <<<"$out" && ok || bad "no progress output: $out"
sleep 1.1
run "$tmp/ds2" >/dev/null 2>&1 && ok || bad "second conversion failed"
if cmp -s "$tmp/ds1/manifest.json" "$tmp/ds2/manifest.json" && diff -r "$tmp/ds1" "$tmp/ds2" >/dev/null; then
    ok; else bad "two conversions of the same input differ"; fi

# Existing output: refused without --force (and left alone), replaced with it.
out=$(run "$tmp/ds2" 2>&1) && bad "existing DIR overwritten without --force" \
    || { grep -q "already exists" <<<"$out" && ok || bad "no-force: $out"; }
"$py" "$conv" --out "$tmp/ds2" --train "$t0" --valid "$v0" --events-per-shard 100 --force >/dev/null 2>&1 \
    && [[ -f "$tmp/ds2/train/shard-0000.h5" && ! -e "$tmp/ds2/train/shard-0001.h5" ]] \
    && ok || bad "--force did not replace the dataset"
mkdir -p "$tmp/notds" && touch "$tmp/notds/precious"
"$py" "$conv" --out "$tmp/notds" --train "$t0" --valid "$v0" --force >/dev/null 2>&1 \
    && bad "--force replaced a directory without manifest.json" \
    || { [[ -f "$tmp/notds/precious" ]] && ok || bad "non-dataset directory damaged"; }

# ---------------------------------------------------------------------------
# Contents of ds1 against the pickles, value by value.
res=$("$py" - "$tmp/ds1" "$t0" "$t1" "$v0" <<'EOF' 2>&1
import bz2, json, os, pickle, re, sys, zlib
import numpy as np
import h5py

ds, t0, t1, v0 = sys.argv[1:]
def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what)

def load(p):
    with bz2.open(p, "rb") as f:
        return pickle.load(f)

splits = {"train": [t0, t1], "valid": [v0]}
m = json.load(open(f"{ds}/manifest.json"))
check(m.get("format") == "mlpfbench-dataset" and m.get("version") == 1, "manifest format/version")
check(set(m) == {"format", "version", "source", "train", "valid"}, f"manifest keys {sorted(m)}")
feat = "type,pt_et,eta,sin_phi,cos_phi,p_e,eta_outer_e_em,sin_phi_outer_e_had,cos_phi_outer,charge,is_gen_muon,is_gen_electron"
tgt = "class,charge,pt,eta,sin_phi,cos_phi,energy"

for split, files in splits.items():
    # Expected: all events of the split in order, each with its source file.
    events = []
    for p in files:
        d = load(p)
        events += [(os.path.basename(p), d["X"][i], d["ygen"][i], d["ycand"][i])
                   for i in range(len(d["X"]))]
    ms = m[split]
    want_shards = [events[i:i + 3] for i in range(0, len(events), 3)]
    check(len(ms["shards"]) == len(want_shards), f"{split}: {len(want_shards)} shards")
    check(sorted(os.listdir(f"{ds}/{split}")) ==
          [f"shard-{i:04d}.h5" for i in range(len(want_shards))], f"{split}: shard file names")
    check(ms["events"] == len(events), f"{split}: manifest events {ms['events']}")
    check(ms["elements"] == sum(e[1].shape[0] for e in events), f"{split}: manifest elements")
    for k, (entry, want) in enumerate(zip(ms["shards"], want_shards)):
        tag = f"{split} shard {k}"
        path = f"{ds}/{entry['file']}"
        check(entry["file"] == f"{split}/shard-{k:04d}.h5", f"{tag}: file {entry['file']}")
        raw = open(path, "rb").read()
        check(entry["bytes"] == len(raw), f"{tag}: bytes")
        check(re.fullmatch(r"[0-9a-f]{8}", entry["crc32"]) is not None
              and entry["crc32"] == f"{zlib.crc32(raw):08x}", f"{tag}: crc32 {entry['crc32']}")
        n = [e[1].shape[0] for e in want]
        check(entry["events"] == len(want) and entry["elements"] == sum(n), f"{tag}: counts")
        with h5py.File(path, "r") as f:
            check(sorted(f.keys()) == ["X", "offsets", "ycand", "ygen"], f"{tag}: datasets {sorted(f.keys())}")
            for name, col in (("X", 1), ("ygen", 2), ("ycand", 3)):
                dset = f[name]
                want_a = np.concatenate([e[col] for e in want]).astype(np.float32)
                check(dset.dtype == np.float32 and dset.shape == want_a.shape,
                      f"{tag}: /{name} float32 {dset.shape}")
                check(dset.chunks is None and dset.compression is None
                      and dset.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS,
                      f"{tag}: /{name} contiguous, uncompressed")
                a = dset[()]
                check(a.tobytes() == want_a.tobytes(), f"{tag}: /{name} values equal float32(float64 input)")
            off = f["offsets"][()]
            check(f["offsets"].dtype == np.int64, f"{tag}: /offsets int64")
            check(off.tolist() == np.concatenate([[0], np.cumsum(n)]).tolist(), f"{tag}: offsets {off.tolist()}")
            at = f.attrs
            s = lambda v: v.decode() if isinstance(v, bytes) else str(v)
            check(s(at["format"]) == "mlpfbench-shard", f"{tag}: attr format")
            check(at["version"] == 1 and np.asarray(at["version"]).dtype == np.int64, f"{tag}: attr version int64")
            src = ",".join(dict.fromkeys(e[0] for e in want))
            check(s(at["source"]) == src, f"{tag}: attr source {s(at['source'])!r} == {src!r}")
            check(s(at["feature_names"]) == feat and len(feat.split(",")) == 12, f"{tag}: attr feature_names")
            check(s(at["target_names"]) == tgt, f"{tag}: attr target_names")
# The second train shard holds events of both train files.
with h5py.File(f"{ds}/train/shard-0001.h5", "r") as f:
    check(f.attrs["source"] == b"tev14_pythia8_ttbar_0_0.pkl.bz2,tev14_pythia8_ttbar_0_1.pkl.bz2",
          "shard spanning two files names both")
EOF
)
[[ -n "$res" ]] || bad "verifier printed nothing"
while IFS= read -r line; do
    case $line in
        PASS:*) ok ;;
        FAIL:*) bad "${line#FAIL: }" ;;
        *) bad "verifier: $line" ;;
    esac
done <<<"$res"

# ---------------------------------------------------------------------------
# Bad inputs: non-zero exit, a message naming file and event, no output left.
# badcase FILE PATTERN: FILE given as second train input (after a good file).
badcase() {
    local f="$tmp/$1" pat=$2 o="$tmp/bad-out"
    out=$("$py" "$conv" --out "$o" --train "$t0" "$f" --valid "$v0" --events-per-shard 2 2>&1)
    local rc=$?
    if [[ $rc -eq 0 ]]; then bad "$1 accepted"; rm -rf "$o"; return; fi
    if ! grep -qE -- "$pat" <<<"$out"; then bad "$1: message lacks /$pat/: $out"; return; fi
    if [[ -e "$o" ]] || compgen -G "$tmp/.bad-out.*" >/dev/null; then
        bad "$1 left output behind"; rm -rf "$o" "$tmp"/.bad-out.*; return
    fi
    ok
}
badcase nan_x.pkl.bz2       'nan_x\.pkl\.bz2: event 1: X\[3, 4\] = nan is not finite'
badcase cols_x.pkl.bz2      'cols_x\.pkl\.bz2: event 2: X has shape \([0-9]+, 11\)'
badcase rows_ygen.pkl.bz2   'rows_ygen\.pkl\.bz2: event 3: X has [0-9]+ rows but ygen has'
badcase type_x.pkl.bz2      'type_x\.pkl\.bz2: event 4: X\[0, 0\] = 0\.0: element type'
badcase class_ycand.pkl.bz2 'class_ycand\.pkl\.bz2: event 1: ycand\[2, 0\] = 6\.0: class'
badcase frac_ygen.pkl.bz2   'frac_ygen\.pkl\.bz2: event 0: ygen\[1, 0\] = 1\.5: class'
badcase truncated.pkl.bz2   'truncated\.pkl\.bz2: cannot read pickle'
badcase missing.pkl.bz2     'missing\.pkl\.bz2: no such file'

echo "convert: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
