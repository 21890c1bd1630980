#!/usr/bin/env bash
# Seed corpora for 'make fuzz': real shards (with their event and element
# counts as the 16-byte header the shard harness expects) and real command lines.
set -euo pipefail
build=$1 shard_dir=$2 cli_dir=$3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$build/mlpfbench" generate --out "$tmp/ds" --train-events 3 --valid-events 1 --shards 1 --elements 20 --seed 1 >/dev/null
/usr/bin/python3 - "$tmp/ds" "$shard_dir" <<'PY'
import json, struct, sys
d, out = sys.argv[1], sys.argv[2]
m = json.load(open(d + "/manifest.json"))
for split in ("train", "valid"):
    for i, sh in enumerate(m[split]["shards"]):
        data = open(d + "/" + sh["file"], "rb").read()
        open("%s/%s-%d" % (out, split, i), "wb").write(struct.pack("<qq", sh["events"], sh["elements"]) + data)
PY
i=0
while IFS= read -r line; do
    printf '%s' "$line" | tr ' ' '\n' >"$cli_dir/seed-$i"; i=$((i + 1))
done <<'CL'
--preset tiny --batch-size 4 --epochs 3
--data data/default --results results --bind none --timeout 60
--lr 1e-4 --bucket-mb 8 --log-every 0 --max-steps 10 --seed 7
--checkpoint-every 5 --checkpoint ck.bin --resume ck.bin --device cpu --precision fp32
--threads 2 --timeline t.json --save-weights w.bin --help
CL
