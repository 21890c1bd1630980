#!/usr/bin/env bash
# scripts/scaling_report.py on synthetic sweeps: hand-written summaries for 1, 2
# and 4 nodes (valid against docs/mlpf_summary.schema.json) with round numbers,
# so speedup, efficiency and the exposed all-reduce share can be checked by
# hand in the CSV; the Markdown has a row per node count, the PNG is a real
# image; a failed run is a row with its status and no figures; an empty sweep,
# unreadable JSON and a --baseline without a run exit non-zero with a message.
# A GPU sweep (2 GPUs per node, wl-stats.gpus and gpu_energy) adds the GPU
# columns (gpus, per-GPU throughput and efficiency, energy per event) to the
# Markdown; CPU sweeps keep their table.
#
#   tests/test_scaling_report.sh        (needs python3-matplotlib, python3-jsonschema)
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
report="$here/scripts/scaling_report.py"
schema="$here/docs/mlpf_summary.schema.json"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# summary DIR NODES LOG EPOCH_TIMES THROUGHPUTS ACCURACIES STEP_TIMES EXPOSED
# Writes DIR/mlpf_summary.json with every field the schema requires, one rank
# per node (RPN=r in the environment: r ranks per node). The lists are JSON;
# STEP_TIMES and EXPOSED have one entry per rank.
# wl-scores are what mlpfbench writes: the means over epochs 2..n of an ok run
# with 2+ epochs; with one epoch its rate after the warm-up steps (here the
# epoch's own); empty for a failed run.
summary() {
    mkdir -p "$1"
    "$py" - "$@" <<'PY'
import json, os, sys
out, nodes, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rpn = int(os.environ.get("RPN", "1"))
times, thr, acc, step, exposed = (json.loads(a) for a in sys.argv[4:9])
e = len(times)
scores = {}
train_set, batch = 1200, 4
if log == "ok" and e >= 2:
    scores = {"mean_throughput": sum(thr[1:]) / (e - 1), "mean_epoch_time": sum(times[1:]) / (e - 1)}
elif log == "ok" and e == 1:
    scores = {"mean_throughput": thr[0], "mean_epoch_time": train_set / thr[0]}
ranks = [{"rank": r, "host": f"node{r // rpn:02d}", "local_rank": r % rpn, "cpus": "0-7", "threads": 8,
          "events": train_set // nodes * e, "elements": 50 * train_set // nodes * e,
          "steps": train_set // (batch * nodes) * e,
          "throughput": train_set // nodes * e / step[r] if step[r] else 0.0,
          "step_time": step[r], "forward_time": 0.4 * step[r], "backward_time": 0.4 * step[r],
          "allreduce_time": 2 * exposed[r], "allreduce_exposed_time": exposed[r],
          "data_wait_time": 0.01, "data_read_time": 0.02, "data_read_bytes": 1000000,
          "optimizer_time": 0.05, "peak_memory_mib": 512.0} for r in range(len(step))]
def node_entry(rs):
    n = len(rs)
    return {"host": rs[0]["host"], "ranks": [r["rank"] for r in rs], "events": sum(r["events"] for r in rs),
            "elements": sum(r["elements"] for r in rs), "throughput": sum(r["throughput"] for r in rs),
            "mean_step_time": sum(r["step_time"] for r in rs) / n,
            "mean_forward_time": sum(r["forward_time"] for r in rs) / n,
            "mean_backward_time": sum(r["backward_time"] for r in rs) / n,
            "mean_allreduce_exposed_time": sum(r["allreduce_exposed_time"] for r in rs) / n,
            "mean_data_wait_time": 0.01, "mean_optimizer_time": 0.05, "peak_memory_mib": 512.0}
per_node = [node_entry(ranks[i:i + rpn]) for i in range(0, len(ranks), rpn)]
stats = {"num_epochs": e, "epoch_times": times, "throughput_per_epoch": thr,
         "train_start": "2025-01-01T00:00:00Z", "train_stop": "2025-01-01T00:01:00Z" if log == "ok" else "",
         "train_time": sum(times), "GPU": "none", "CPU": "synthetic CPU", "train_set_size": train_set,
         "batch_size_per_device": batch, "batch_size_total": batch * nodes * rpn,
         "steps_per_epoch": train_set // (batch * nodes * rpn), "events_per_epoch": train_set,
         "horovod_enabled": nodes > 1, "validation_accuracy": acc,
         "validation_loss": {k: [1.0] * e for k in
                             ("total", "cls", "charge", "pt", "eta", "sin_phi", "cos_phi", "energy")},
         "world_size": nodes * rpn, "nodes": nodes if ranks else 1, "ranks_per_node": rpn, "device": "cpu",
         "precision": "fp32", "flops_per_event": 1e9, "achieved_flops": 1e11,
         "per_node": per_node, "per_rank": ranks,
         "software": {"mlpfbench": "0.3.0", "git_commit": "test", "compiler": "gcc", "mpi": "Open MPI",
                      "hdf5": "1.10.8", "hwloc": "2.9.0", "openblas": "OpenBLAS"},
         "command_line": f"mlpfbench train --results {out}"}
if scores:
    stats["score_basis"] = "mean over epochs 2..n" if e >= 2 else "one epoch: its steps after the first 1 warm-up step(s)"
doc = {"run_info": {"copies": nodes * rpn, "threads_per_copy": 8, "events_per_thread": train_set // (nodes * rpn),
                    "extra_arguments": stats["command_line"]},
       "report": {"wl-scores": scores, "wl-stats": stats, "log": log},
       "app": {"version": "0.3.0", "description": "mlpfbench: MLPF (hepscore22) training benchmark",
               "containment": "none"}}
with open(out + "/mlpf_summary.json", "w") as f:
    json.dump(doc, f, indent=2)
PY
}

# Every synthetic summary must follow the project's schema.
validate() {
    "$py" -c 'import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
for p in sys.argv[2:]:
    jsonschema.validate(json.load(open(p)), schema)' "$schema" "$@"
}

# csv_check CSV 'NODES:column=value,...' ...: the values in the row for NODES
# (numbers within 1e-6 relative; "" means empty; anything else compared as text).
csv_check() {
    "$py" - "$@" <<'PY'
import csv, sys
rows = {r["nodes"]: r for r in csv.DictReader(open(sys.argv[1]))}
errors = []
for spec in sys.argv[2:]:
    n, checks = spec.split(":", 1)
    row = rows.get(n)
    if row is None:
        errors.append(f"no row for {n} nodes"); continue
    for c in checks.split(","):
        col, want = c.split("=", 1)
        got = row[col]
        try:
            good = abs(float(got) - float(want)) <= 1e-6 * max(1.0, abs(float(want)))
        except ValueError:
            good = got == want
        if not good:
            errors.append(f"{n} nodes, {col}: {got!r}, expected {want!r}")
if errors:
    sys.exit("; ".join(errors))
PY
}

# png_ok FILE: PNG signature, IHDR of a real figure, more than 10 kB.
png_ok() {
    "$py" - "$1" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
assert data[12:16] == b"IHDR", "no IHDR chunk"
w, h = struct.unpack(">II", data[16:24])
assert w >= 400 and h >= 300, f"{w}x{h} pixels"
assert len(data) > 10000, f"only {len(data)} bytes"
assert data[-8:-4] == b"IEND", "no IEND chunk at the end"
PY
}

if ! "$py" -c 'import matplotlib, jsonschema' 2>/dev/null; then
    echo "test_scaling_report: needs python3-matplotlib and python3-jsonschema (apt-get install -y ...)"
    echo "scaling_report: 0 passed, 1 failed"
    exit 1
fi

# --- case 1: 1, 2, 4 nodes, all ok --------------------------------------------
# mean throughput (epochs 2..3): 100, 180, 300 events/s
#   speedup 1, 1.8, 3; efficiency 1, 1.8/2 = 0.9, 3/4 = 0.75
# mean epoch time (epochs 2..3): 12, 6.5, 4 s
# exposed all-reduce, sum over ranks / sum over ranks: 0.1/2 = 5 %;
#   (0.5+0)/(2+3) = 10 % (the mean of per-rank shares would be 12.5 %); (4 x 0.25)/(4 x 1) = 25 %
s1="$tmp/sweep-all-ok"
summary "$s1/nodes-1" 1 ok '[15, 12, 12]' '[80, 100, 100]' '[0.5, 0.6, 0.7]' '[2.0]' '[0.1]'
summary "$s1/nodes-2" 2 ok '[8, 6, 7]' '[150, 170, 190]' '[0.5, 0.6, 0.71]' '[2.0, 3.0]' '[0.5, 0.0]'
summary "$s1/nodes-4" 4 ok '[5, 4, 4]' '[240, 300, 300]' '[0.5, 0.6, 0.72]' '[1, 1, 1, 1]' '[0.25, 0.25, 0.25, 0.25]'
echo weak >"$s1/mode.txt"      # as slurm/sweep.sh writes it
if validate "$s1"/nodes-*/mlpf_summary.json; then ok "synthetic ok summaries follow the schema"
else bad "synthetic ok summaries do not follow $schema"; fi

if (cd "$tmp" && "$py" "$report" "$s1") >"$tmp/out1" 2>&1; then ok "all-ok sweep: exit 0"
else bad "all-ok sweep: exit non-zero: $(cat "$tmp/out1")"; fi
if err=$(csv_check "$s1/scaling.csv" \
        '1:ranks=1,throughput_events_per_s=100,throughput_basis=wl-scores,speedup=1,parallel_efficiency=1,epoch_time_s=12,allreduce_exposed_pct=5,final_validation_accuracy=0.7,status=ok' \
        '2:ranks=2,throughput_events_per_s=180,speedup=1.8,parallel_efficiency=0.9,epoch_time_s=6.5,allreduce_exposed_pct=10,final_validation_accuracy=0.71,status=ok' \
        '4:ranks=4,throughput_events_per_s=300,speedup=3,parallel_efficiency=0.75,epoch_time_s=4,allreduce_exposed_pct=25,final_validation_accuracy=0.72,status=ok' 2>&1)
then ok "CSV: throughput, speedup 1/1.8/3, efficiency 1/0.9/0.75, epoch time, all-reduce share, accuracy"
else bad "CSV values: $err"; fi
# no wl-stats.gpus (summaries before GPU training): 0 GPUs, no per-GPU figures
if err=$(csv_check "$s1/scaling.csv" '1:gpus=0,throughput_per_gpu=,gpu_efficiency=,gpu_energy_per_event_j=' \
                   '4:gpus=0,throughput_per_gpu=,gpu_efficiency=,gpu_energy_per_event_j=' 2>&1) \
   && ! grep -qi 'gpu' "$s1/scaling.md"; then
    ok "CPU sweep: gpus 0 and empty GPU columns in the CSV, no GPU column in the Markdown"
else bad "CPU sweep GPU columns: ${err:-} $(head -8 "$s1/scaling.md")"; fi
header="nodes,ranks,throughput_events_per_s,throughput_basis,speedup,parallel_efficiency,epoch_time_s"
header+=",allreduce_exposed_pct,final_validation_accuracy,status,gpus,throughput_per_gpu,gpu_efficiency"
header+=",gpu_energy_per_event_j"
if [[ $(head -1 "$s1/scaling.csv") == "$header" && $(wc -l <"$s1/scaling.csv") -eq 4 ]]; then
    ok "CSV: header and one line per run"
else bad "CSV layout: $(cat "$s1/scaling.csv")"; fi
# the rows, in node order, as tests/slurm_sweep.sh counts them
if [[ $(grep -c '^| *[124] ' "$s1/scaling.md") -eq 3 ]] \
   && [[ $(grep -o '^| [0-9]* ' "$s1/scaling.md" | tr -d '| ' | paste -sd,) == "1,2,4" ]] \
   && grep -q '^| 2 | 2 | 180.0 | 1.80 | 90.0% | 6.50 | 10.0% | 0.7100 | ok |$' "$s1/scaling.md" \
   && grep -q '^weak scaling, 3 run(s); baseline 1 node = 100.0 events/s' "$s1/scaling.md"; then
    ok "Markdown: a row per node count, sorted, figures formatted, mode and baseline named"
else bad "Markdown table: $(cat "$s1/scaling.md")"; fi
if grep -q '^| nodes | ranks | throughput' "$tmp/out1" && grep -q '^| 4 | 4 | 300.0 ' "$tmp/out1"; then
    ok "the Markdown table is printed"
else bad "stdout: $(cat "$tmp/out1")"; fi
if err=$(png_ok "$s1/scaling.png" 2>&1); then ok "PNG written and valid"; else bad "PNG: $err"; fi

# --baseline and --out
if "$py" "$report" "$s1" --baseline 2 --out "$tmp/other/b2" >/dev/null 2>"$tmp/err" \
   && err=$(csv_check "$tmp/other/b2.csv" '1:speedup=0.5555555556,parallel_efficiency=1.111111111' \
                      '2:speedup=1,parallel_efficiency=1' '4:speedup=1.666666667,parallel_efficiency=0.8333333333' 2>&1) \
   && [[ -s "$tmp/other/b2.md" && -s "$tmp/other/b2.png" ]]; then
    ok "--baseline 2 --out PREFIX: speedup 100/180, 1, 300/180; efficiency 1.11, 1, 0.83"
else bad "--baseline 2: ${err:-} $(cat "$tmp/err")"; fi
if "$py" "$report" "$s1" --baseline 8 --out "$tmp/b8" >"$tmp/out" 2>&1; then bad "--baseline 8 (no such run) accepted"
elif grep -q "baseline 8.*no run on 8 nodes" "$tmp/out"; then ok "--baseline without a run: non-zero exit and a message"
else bad "--baseline 8 message: $(cat "$tmp/out")"; fi

# --- node order and the epochs 2..n fallback --------------------------------
# case 1 plus 16 nodes, whose summary lacks wl-scores (as from an older
# mlpfbench; off-schema on purpose): throughput = mean of epochs 2..3 =
# (700+900)/2 = 800, speedup 8, efficiency 0.5; epoch time (2+2.5)/2 = 2.25.
s3="$tmp/sweep-order"
cp -r "$s1" "$s3"
summary "$s3/nodes-16" 16 ok '[3, 2, 2.5]' '[500, 700, 900]' '[0.5, 0.6, 0.73]' '[1]' '[0]'
"$py" -c 'import json, sys; p = sys.argv[1]; d = json.load(open(p)); del d["report"]["wl-scores"]; json.dump(d, open(p, "w"))' \
    "$s3/nodes-16/mlpf_summary.json"
if "$py" "$report" "$s3" >"$tmp/out3" 2>&1 \
   && [[ $(grep -o '^| [0-9]* ' "$s3/scaling.md" | tr -d '| ' | paste -sd,) == "1,2,4,16" ]] \
   && [[ $(cut -d, -f1 "$s3/scaling.csv" | paste -sd,) == "nodes,1,2,4,16" ]] \
   && err=$(csv_check "$s3/scaling.csv" \
        '16:throughput_events_per_s=800,throughput_basis=epochs 2..n,speedup=8,parallel_efficiency=0.5,epoch_time_s=2.25' 2>&1); then
    ok "rows sorted by node count (1, 2, 4, 16); without wl-scores the mean over epochs 2..n"
else bad "order / fallback: ${err:-} $(cat "$tmp/out3")"; fi

# --- case 2: the 1-node run failed, the 4-node run had one epoch ---------------
# baseline = smallest run that succeeded, 2 nodes (180 events/s);
# 4 nodes: epoch 1 alone, 330 events/s, speedup 330/180 = 1.8333, efficiency 0.91667
s2="$tmp/sweep-failed"
long="dataset directory /data/mlpf/none does not exist (create one with 'mlpfbench generate --out /data/mlpf/none')"
summary "$s2/nodes-1" 1 "$long" '[]' '[]' '[]' '[]' '[]'
summary "$s2/nodes-2" 2 ok '[8, 6, 7]' '[150, 170, 190]' '[0.5, 0.6, 0.71]' '[2.0, 2.0]' '[0.2, 0.3]'
summary "$s2/nodes-4" 4 ok '[4]' '[330]' '[0.66]' '[1, 1, 1, 1]' '[0.5, 0.5, 0.5, 0.5]'
if validate "$s2"/nodes-*/mlpf_summary.json; then ok "synthetic failed and one-epoch summaries follow the schema"
else bad "case 2 summaries do not follow $schema"; fi
# the one-epoch run as mlpfbench before 0.4 wrote it: no scores (the report falls back to epoch 1)
"$py" -c 'import json, sys; p = sys.argv[1]; d = json.load(open(p)); d["report"]["wl-scores"] = {}; json.dump(d, open(p, "w"))' \
    "$s2/nodes-4/mlpf_summary.json"
if "$py" "$report" "$s2" >"$tmp/out2" 2>&1; then ok "sweep with a failed run: exit 0"
else bad "sweep with a failed run: $(cat "$tmp/out2")"; fi
if err=$(csv_check "$s2/scaling.csv" \
        "1:ranks=1,throughput_events_per_s=,speedup=,parallel_efficiency=,epoch_time_s=,allreduce_exposed_pct=,final_validation_accuracy=,status=$long" \
        '2:speedup=1,parallel_efficiency=1' \
        '4:throughput_events_per_s=330,throughput_basis=epoch 1 only,speedup=1.833333333,parallel_efficiency=0.9166666667,epoch_time_s=4,allreduce_exposed_pct=50,final_validation_accuracy=0.66' 2>&1)
then ok "CSV: failed run has its status and no figures; baseline 2 nodes; epoch-1-only throughput"
else bad "CSV (failed run): $err"; fi
row1=$(grep '^| 1 ' "$s2/scaling.md")
if [[ "$row1" == "| 1 | 1 |  |  |  |  |  |  | dataset directory /data/mlpf/none does not exist (create on"*"… |" ]] \
   && [[ $(grep -c '^| *[124] ' "$s2/scaling.md") -eq 3 ]] && grep -q '^| 4 | 4 | 330.0 † ' "$s2/scaling.md" \
   && grep -q "smallest run (1 node) failed" "$s2/scaling.md"; then
    ok "Markdown: failed row with its (truncated) status and no figures, epoch-1-only marked"
else bad "Markdown with a failed run: $(cat "$s2/scaling.md")"; fi
if err=$(png_ok "$s2/scaling.png" 2>&1); then ok "PNG with a failed run written"; else bad "PNG (failed run): $err"; fi

# --- GPU sweep: 1, 2, 4 nodes x 2 GPUs ------------------------------------------
# gpu_run DIR ENERGY: makes the summary in DIR a GPU run as mlpfbench train
# --device cuda writes it: device cuda, wl-stats.gpus = ranks, a GPU per rank,
# GPUs and energy per node; ENERGY is the J/event figure, or "note:TEXT" for a
# run whose GPUs had no energy counter (gpu_energy holds only the note).
gpu_run() {
    "$py" - "$@" <<'PY'
import json, sys
path, energy = sys.argv[1] + "/mlpf_summary.json", sys.argv[2]
d = json.load(open(path))
st = d["report"]["wl-stats"]
st["device"], st["GPU"], st["gpus"] = "cuda", "NVIDIA H200", st["world_size"]
events = sum(r["events"] for r in st["per_rank"])
measured = not energy.startswith("note:")
jpe = float(energy) if measured else None
for r in st["per_rank"]:
    r["gpu"] = {"device": r["local_rank"], "name": "NVIDIA H200",
                "uuid": f"GPU-0000-{r['rank']:04d}", "pci_bus_id": f"00000000:{0x18 + r['local_rank']:02X}:00.0"}
    if measured:
        r["gpu"]["nvml"] = {"sampled": True, "note": "", "samples": 100, "seconds": 10.0,
                            "energy_j": jpe * r["events"], "energy_source": "energy counter",
                            "energy_per_event_j": jpe, "power_mean_w": 600.0}
    else:
        r["gpu"]["nvml"] = {"sampled": False, "note": energy[5:]}
if measured:
    st["gpu_energy"] = {"joules": jpe * events, "joules_per_event": jpe, "gpus_measured": st["gpus"],
                        "source": "energy counter", "power_mean_w": 600.0 * st["gpus"]}
else:
    st["gpu_energy"] = {"note": energy[5:]}
for n in st["per_node"]:
    n["gpus"] = len(n["ranks"])
    if measured:
        n["gpu_energy_j"] = jpe * n["events"]
        n["gpu_energy_per_event_j"] = jpe
        n["gpu_power_mean_w"] = 600.0 * n["gpus"]
json.dump(d, open(path, "w"), indent=2)
PY
}

# validate_gpu FILE...: the schema plus what GPU runs add to wl-stats, per_rank
# and per_node (optional properties; docs/mlpf_summary.schema.json gains them
# with the GPU training change). The schema must not forbid other properties
# there, or these summaries could not follow it.
validate_gpu() {
    "$py" - "$schema" "$@" <<'PY'
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
st = schema["properties"]["report"]["properties"]["wl-stats"]
rank, node = st["properties"]["per_rank"]["items"], st["properties"]["per_node"]["items"]
for where, o in (("wl-stats", st), ("per_rank[]", rank), ("per_node[]", node)):
    if o.get("additionalProperties", True) is False:
        sys.exit(f"the schema forbids additional properties in {where}: GPU summaries cannot follow it")
num = {"type": "number", "minimum": 0}
count = {"type": "integer", "minimum": 0}
st["properties"].setdefault("gpus", count)
st["properties"].setdefault("gpu_energy", {"type": "object", "additionalProperties": False, "properties": {
    "joules": num, "joules_per_event": num, "gpus_measured": count, "power_mean_w": num,
    "source": {"enum": ["energy counter", "integrated power", "energy counter and integrated power"]},
    "note": {"type": "string", "minLength": 1}}})
nvml = {"type": "object", "required": ["sampled", "note"],
        "properties": {"sampled": {"type": "boolean"}, "note": {"type": "string"}, "samples": count,
                       "seconds": num, "energy_j": num, "energy_per_event_j": num, "power_mean_w": num,
                       "energy_source": {"enum": ["energy counter", "integrated power"]}}}
rank.setdefault("properties", {}).setdefault("gpu", {"type": "object",
    "required": ["device", "name", "uuid", "pci_bus_id", "nvml"],
    "properties": {"device": count, "name": {"type": "string"}, "uuid": {"type": "string"},
                   "pci_bus_id": {"type": "string"}, "nvml": nvml}})
node.setdefault("properties", {})
for k, v in (("gpus", count), ("gpu_energy_j", num), ("gpu_energy_per_event_j", num),
             ("gpu_power_mean_w", num)):
    node["properties"].setdefault(k, v)
for p in sys.argv[2:]:
    d = json.load(open(p))
    jsonschema.validate(d, schema)
    assert d["report"]["wl-stats"]["gpus"] > 0, p
PY
}

# weak scaling, 2 GPUs per node, wl-scores means over epochs 2..3:
#   throughput 400, 760, 1440 events/s; per GPU 400/2 = 200, 760/4 = 190, 1440/8 = 180
#   speedup 1, 1.9, 3.6; efficiency 1, 0.95, 0.9; per-GPU efficiency 1, 190/200 = 0.95, 0.9
#   epoch time 3, 1.5, 0.8 s; exposed all-reduce 0.05/1 = 5 %, 0.1/1 = 10 %, 0.2/1 = 20 %
#   energy per event 2.5, 2.6 J; the 4-node run's GPUs had no counter (a note, no figure)
sg="$tmp/sweep-gpu"
RPN=2 summary "$sg/nodes-1" 1 ok '[4, 3, 3]' '[300, 400, 400]' '[0.5, 0.6, 0.70]' '[1, 1]' '[0.05, 0.05]'
RPN=2 summary "$sg/nodes-2" 2 ok '[2, 1.5, 1.5]' '[600, 740, 780]' '[0.5, 0.6, 0.71]' \
    '[1, 1, 1, 1]' '[0.1, 0.1, 0.1, 0.1]'
RPN=2 summary "$sg/nodes-4" 4 ok '[1, 0.8, 0.8]' '[1200, 1440, 1440]' '[0.5, 0.6, 0.72]' \
    '[1, 1, 1, 1, 1, 1, 1, 1]' '[0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]'
gpu_run "$sg/nodes-1" 2.5
gpu_run "$sg/nodes-2" 2.6
gpu_run "$sg/nodes-4" "note:NVML: energy counter not supported on this GPU"
echo weak >"$sg/mode.txt"
if err=$(validate_gpu "$sg"/nodes-*/mlpf_summary.json 2>&1); then
    ok "synthetic GPU summaries follow the schema plus the optional GPU fields"
else bad "GPU summaries: $err"; fi
if "$py" "$report" "$sg" >"$tmp/outg" 2>&1 \
   && err=$(csv_check "$sg/scaling.csv" \
        '1:ranks=2,gpus=2,throughput_events_per_s=400,throughput_per_gpu=200,speedup=1,parallel_efficiency=1,gpu_efficiency=1,epoch_time_s=3,allreduce_exposed_pct=5,gpu_energy_per_event_j=2.5' \
        '2:ranks=4,gpus=4,throughput_events_per_s=760,throughput_per_gpu=190,speedup=1.9,parallel_efficiency=0.95,gpu_efficiency=0.95,epoch_time_s=1.5,allreduce_exposed_pct=10,gpu_energy_per_event_j=2.6' \
        '4:ranks=8,gpus=8,throughput_events_per_s=1440,throughput_per_gpu=180,speedup=3.6,parallel_efficiency=0.9,gpu_efficiency=0.9,epoch_time_s=0.8,allreduce_exposed_pct=20,gpu_energy_per_event_j=,status=ok' 2>&1)
then ok "GPU CSV: gpus 2/4/8, per GPU 200/190/180, efficiency and per-GPU efficiency 1/0.95/0.9, J/event 2.5/2.6/none"
else bad "GPU CSV: ${err:-} $(cat "$tmp/outg")"; fi
if grep -q '^| nodes | ranks | gpus | throughput (events/s) | per GPU (events/s) | speedup | efficiency | per-GPU eff. |' "$sg/scaling.md" \
   && grep -q '^| 2 | 4 | 4 | 760.0 | 190.0 | 1.90 | 95.0% | 95.0% | 1.50 | 10.0% | 2.60 | 0.7100 | ok |$' "$sg/scaling.md" \
   && grep -q '^| 4 | 8 | 8 | 1440.0 | 180.0 | 3.60 | 90.0% | 90.0% | 0.8 | 20.0% |  | 0.7200 | ok |$' "$sg/scaling.md" \
   && grep -q '^GPU runs: baseline 200.0 events/s per GPU (2 GPU(s))' "$sg/scaling.md" \
   && grep -q '^4 nodes: no GPU energy figure (NVML: energy counter not supported on this GPU)\.$' "$sg/scaling.md"
then ok "GPU Markdown: gpus, per-GPU throughput and efficiency, energy per event, the missing energy explained"
else bad "GPU Markdown: $(cat "$sg/scaling.md")"; fi
if err=$(png_ok "$sg/scaling.png" 2>&1); then ok "PNG of the GPU sweep written"; else bad "GPU PNG: $err"; fi

# per-GPU efficiency differs from efficiency when the GPUs per node differ:
# 1 node x 2 GPUs at 400 events/s; 2 nodes x 1 GPU at 390 events/s:
#   efficiency 390/400/2 = 0.4875, per GPU 390/2 = 195, per-GPU efficiency 195/200 = 0.975
sm="$tmp/sweep-gpu-mixed"
mkdir -p "$sm" && cp -r "$sg/nodes-1" "$sm/"
RPN=1 summary "$sm/nodes-2" 2 ok '[2, 3, 3]' '[300, 390, 390]' '[0.5, 0.6, 0.7]' '[1, 1]' '[0, 0]'
gpu_run "$sm/nodes-2" 3.0
if "$py" "$report" "$sm" >"$tmp/outm" 2>&1 \
   && err=$(csv_check "$sm/scaling.csv" '2:gpus=2,throughput_per_gpu=195,parallel_efficiency=0.4875,gpu_efficiency=0.975,gpu_energy_per_event_j=3' 2>&1)
then ok "per-GPU efficiency 0.975 beside an efficiency by nodes of 0.4875 (2 GPUs on 1 node, then 1 per node)"
else bad "mixed GPU sweep: ${err:-} $(cat "$tmp/outm")"; fi
# a wrong GPU count is an error naming the file
cp -r "$sg" "$tmp/badgpu"
"$py" -c 'import json, sys; p = sys.argv[1]; d = json.load(open(p)); d["report"]["wl-stats"]["gpus"] = "8"; json.dump(d, open(p, "w"))' \
    "$tmp/badgpu/nodes-2/mlpf_summary.json"
if "$py" "$report" "$tmp/badgpu" >"$tmp/out" 2>&1; then bad "gpus = \"8\" (a string) accepted"
elif grep -q "$tmp/badgpu/nodes-2/mlpf_summary.json: wl-stats.gpus is '8', not a GPU count" "$tmp/out"; then
    ok "wl-stats.gpus not an integer: non-zero exit naming the file"
else bad "bad gpus message: $(cat "$tmp/out")"; fi

# --- errors --------------------------------------------------------------------
mkdir "$tmp/empty" "$tmp/empty/nodes-1"
if "$py" "$report" "$tmp/empty" >"$tmp/out" 2>&1; then bad "empty sweep accepted"
elif grep -q "no nodes-\*/mlpf_summary.json in $tmp/empty" "$tmp/out" && [[ ! -e "$tmp/empty/scaling.md" ]]; then
    ok "empty sweep directory: non-zero exit and a message"
else bad "empty sweep message: $(cat "$tmp/out")"; fi
if "$py" "$report" "$tmp/nowhere" >"$tmp/out" 2>&1; then bad "missing directory accepted"
elif grep -q "$tmp/nowhere is not a directory" "$tmp/out"; then ok "missing sweep directory: non-zero exit and a message"
else bad "missing directory message: $(cat "$tmp/out")"; fi
cp -r "$s1" "$tmp/broken"
printf '{"report": {"log": "ok", ' >"$tmp/broken/nodes-2/mlpf_summary.json"
if "$py" "$report" "$tmp/broken" >"$tmp/out" 2>&1; then bad "truncated JSON accepted"
elif grep -q "$tmp/broken/nodes-2/mlpf_summary.json: not readable JSON" "$tmp/out"; then
    ok "unreadable JSON: non-zero exit naming the file"
else bad "unreadable JSON message: $(cat "$tmp/out")"; fi

echo "scaling_report: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
