# shellcheck shell=bash
# Part of tests/gpu_host/run.sh: train and infer --device cuda through the
# command line, on the host execution path ($dir/mlpfbench loads
# $dir/libmlpf_cuda.so). Expects $dir, $tmp and tests/lib.sh's ok/bad.
bin=$dir/mlpfbench
"$bin" generate --out "$tmp/ds" --train-events 6 --valid-events 2 --shards 1 --elements 40 --seed 8 >/dev/null
gtrain() { "$bin" train --preset tiny --data "$tmp/ds" --batch-size 2 --threads 2 "$@"; }
summary() { /usr/bin/python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["report"]))' "$1"; }

# a GPU run: the self-check in fp32 then tf32, the summary says what ran and gives no score
if gtrain --device cuda --epochs 2 --results "$tmp/rc" >"$tmp/rc.out" 2>&1 \
    && /usr/bin/python3 - "$tmp/rc/mlpf_summary.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["report"]
st, sc = r["wl-stats"], r["wl-stats"]["self_check"]
assert r["log"] == "ok" and r["wl-scores"] == {}, r["wl-scores"]
assert st["device"] == "cuda" and st["precision"] == "tf32" and st["backend"]["host_execution_path"] is True
assert "not a GPU" in st["GPU"] and "not a GPU result" in st["note"]
assert sc["ran"] and sc["passed"] and [p["precision"] for p in sc["passes"]] == ["fp32", "tf32"], sc
assert all(p["worst_gradient_error"] <= p["gradient_tolerance"] for p in sc["passes"])
PY
then ok "train --device cuda: self-check fp32 + tf32 passed, no score, the summary says host execution path"
else bad "train --device cuda: $(tail -5 "$tmp/rc.out")"; fi
grep -q "nothing this run measures is a GPU figure" "$tmp/rc.out" && ok "the run says it is not a GPU figure" \
    || bad "no host-path warning: $(head -3 "$tmp/rc.out")"
check_summaries "$tmp/rc"

# each precision trains and lowers the loss like the CPU backend
for prec in fp32 bf16; do
    gtrain --device cuda --precision "$prec" --epochs 2 --results "$tmp/r$prec" >"$tmp/r$prec.out" 2>&1 \
        && grep -q "^GPU self-check  *self-check passed" "$tmp/r$prec.out" \
        && ok "train --device cuda --precision $prec: self-check passed, trained" \
        || bad "--precision $prec: $(tail -4 "$tmp/r$prec.out")"
done
gtrain --device cpu --epochs 2 --results "$tmp/rcpu" >"$tmp/rcpu.out" 2>&1
/usr/bin/python3 - "$tmp/rfp32/mlpf_summary.json" "$tmp/rcpu/mlpf_summary.json" <<'PY' \
    && ok "fp32 on the GPU backend: validation losses of both epochs within 1e-4 of the CPU backend's" || bad "GPU vs CPU training"
import json, sys
g, c = (json.load(open(p))["report"]["wl-stats"]["validation_loss"]["total"] for p in sys.argv[1:3])
assert all(abs(a - b) <= 1e-4 * abs(b) for a, b in zip(g, c)), (g, c)
PY

# checkpoints cross the backends: the CPU writes, the GPU resumes, and back
gtrain --device cpu --epochs 2 --checkpoint-every 3 --max-steps 3 --results "$tmp/k1" >/dev/null 2>&1
if gtrain --device cuda --precision fp32 --epochs 2 --resume "$tmp/k1/checkpoint.bin" --checkpoint-every 4 \
        --results "$tmp/k2" >"$tmp/k2.out" 2>&1 && grep -q "resuming from .*: epoch 1, step 3 of it, 3 steps done" "$tmp/k2.out" \
    && gtrain --device cpu --epochs 2 --resume "$tmp/k2/checkpoint.bin" --results "$tmp/k3" --save-weights "$tmp/w3" \
        >"$tmp/k3.out" 2>&1 && grep -q "resuming from .*4 steps done" "$tmp/k3.out" \
    && gtrain --device cpu --epochs 2 --results "$tmp/k0" --save-weights "$tmp/w0" >/dev/null 2>&1 \
    && /usr/bin/python3 - "$tmp/w3" "$tmp/w0" <<'PY'
import sys, numpy as np
a, b = (np.fromfile(p, dtype=np.float32) for p in sys.argv[1:3])
assert a.shape == b.shape and np.isfinite(a).all()
d = np.linalg.norm(a - b) / np.linalg.norm(b)
assert d < 1e-5, d            # one of six steps on the GPU backend in fp32
PY
then ok "checkpoint CPU -> GPU (step 3) -> CPU (step 4): final weights within 1e-5 of a CPU-only run"
else bad "cross-backend resume: $(tail -3 "$tmp/k2.out" "$tmp/k3.out" 2>/dev/null)"; fi

# the self-check can be skipped, and says so
gtrain --device cuda --epochs 2 --skip-self-check --results "$tmp/rs" >"$tmp/rs.out" 2>&1 \
    && grep -q "self-check skipped (--skip-self-check)" "$tmp/rs/mlpf_summary.json" \
    && ok "--skip-self-check: skipped and recorded" || bad "--skip-self-check: $(tail -3 "$tmp/rs.out")"

# inference on the GPU backend
"$bin" infer --device cuda --preset tiny --data "$tmp/ds" --batch-size 2 --steps 2 --json "$tmp/inf.json" >"$tmp/inf.out" 2>&1 \
    && grep -q '"host_execution_path": true' "$tmp/inf.json" && ok "infer --device cuda: $(cut -c1-100 "$tmp/inf.out")" \
    || bad "infer --device cuda: $(tail -3 "$tmp/inf.out")"

# ---- several GPUs (issue 15). On the host path NCCL's calls run over MPI
# (cuda/host/stand_ins.cpp); MLPF_HOST_GPU_PER_RANK=1 gives each local rank a
# GPU of its own (its UUID and PCI bus id), as Slurm's --gpus-per-task 1 does.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
failed_summary() { /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/../check_summary.py" "$1/mlpf_summary.json" --failed "$2"; }
mrun() { timeout 240 mpirun --oversubscribe -np "$@"; }
"$bin" generate --out "$tmp/dp" --train-events 16 --valid-events 4 --shards 3 --elements 60 --seed 8 >/dev/null

# two ranks on one GPU: refused, with both ranks and the GPU named, and a failed summary
mrun 2 "$bin" train --device cuda --preset tiny --data "$tmp/dp" --batch-size 1 --results "$tmp/rsh" >"$tmp/rsh.out" 2>&1
rc=$?
if [[ $rc -eq 2 ]] && grep -q "local ranks 0 and 1 on .* share GPU GPU-00000000-0000-0000-0000-000000000000 .*--allow-shared-gpu" "$tmp/rsh.out" \
    && grep -q "share GPU" "$tmp/rsh/mlpf_summary.json"; then
    ok "two ranks on one GPU: refused (exit 2), ranks and GPU named, failed summary"
else bad "shared GPU not refused: exit $rc: $(grep mlpfbench: "$tmp/rsh.out" | head -3)"; fi

# 1 rank x batch 4, 2 x 2 and 4 x 1 on the GPU backend (fp32): the same losses
# and weights within 1e-5, with buckets that split tensors, for both transports
dp() { # NP BATCH TRANSPORT BUCKET_MB [more options]: losses in $tmp/ldp.NP.T, weights in $tmp/wdp.NP.T
    local np=$1 b=$2 t=$3 mb=$4
    shift 4
    MLPF_HOST_GPU_PER_RANK=1 mrun "$np" "$bin" train --device cuda --precision fp32 --preset tiny --data "$tmp/dp" \
        --batch-size "$b" --epochs 2 --threads 1 --seed 4 --log-every 0 --skip-self-check --bucket-mb "$mb" \
        --results "$tmp/rdp.$np.$t" --save-weights "$tmp/wdp.$np.$t" "$@" ${t:+--allreduce $t} >"$tmp/odp.$np.$t" 2>&1 \
        && awk '/^epoch /{ print $6 }' "$tmp/odp.$np.$t" >"$tmp/ldp.$np.$t"
}
if dp 1 4 "" 4 && dp 2 2 nccl 0.0037 && dp 4 1 nccl 0.011 && dp 2 2 mpi 0.0037 && dp 4 1 mpi 0.011; then
    /usr/bin/python3 - "$tmp" <<'PY' && ok "GPU backend, 1x4, 2x2, 4x1 ranks x batch, NCCL and MPI staging: same losses and weights (1e-5) after 8 steps" \
        || bad "multi-GPU data-parallel results differ"
import sys, numpy as np
t = sys.argv[1]
l1 = np.loadtxt(f"{t}/ldp.1.")
w1 = np.fromfile(f"{t}/wdp.1.", dtype=np.float32).astype(np.float64)
assert len(l1) == 8, l1
ok = True
for n in (2, 4):
    for tr in ("nccl", "mpi"):
        l = np.loadtxt(f"{t}/ldp.{n}.{tr}")
        w = np.fromfile(f"{t}/wdp.{n}.{tr}", dtype=np.float32).astype(np.float64)
        el = np.max(np.abs(l - l1) / np.abs(l1))
        ew = np.linalg.norm(w - w1) / np.linalg.norm(w1)
        print(f"  {n} ranks, {tr}: loss rel diff {el:.2e}, weights rel diff {ew:.2e}")
        ok &= bool(len(l) == 8 and el < 1e-5 and ew < 1e-5 and np.linalg.norm(w - w1) > 0 or n == 0)
sys.exit(0 if ok else 1)
PY
    for t in nccl mpi; do
        grep -q "gradient all-reduce (rank 0, ${t}[^)]*): 8 steps x [0-9]* buckets of 0.011 MiB" "$tmp/odp.4.$t" \
            && ok "4 ranks, $t: the all-reduce figures reported ($(grep -o "buckets of.*hidden)" "$tmp/odp.4.$t"))" \
            || bad "4 ranks, $t: no all-reduce line: $(grep -i "all-reduce" "$tmp/odp.4.$t" | head -2)"
    done
    check_summaries "$tmp/rdp.4.nccl"
else
    bad "a multi-GPU training run failed: $(for f in "$tmp"/odp.*; do echo "$f: $(grep mlpfbench: "$f" | head -2)"; done)"
fi

# a dead or stuck peer ends the job within the CPU limits, naming rank, host, GPU and the wait
"$bin" generate --out "$tmp/long" --train-events 400 --valid-events 2 --shards 2 --elements 40 --seed 9 >/dev/null
long() { # TAG [env...] -- [train options...]
    local tag=$1
    shift
    env MLPF_HOST_GPU_PER_RANK=1 "$@" timeout 120 mpirun --oversubscribe -np 2 "$bin" train --device cuda --preset tiny \
        --data "$tmp/long" --threads 1 --batch-size 1 --epochs 50 --skip-self-check --log-every 0 --timeout 600 \
        --collective-timeout 4 --results "$tmp/r$tag" >"$tmp/o$tag" 2>&1
}
start=$SECONDS
long nerr MLPF_HOST_NCCL_ERROR_AT=12 MLPF_HOST_NCCL_ERROR_RANK=1
rc=$? took=$((SECONDS - start))
if [[ $rc -ne 0 && $rc -ne 124 && $took -le 40 ]] \
    && grep -qE "rank 1 \(.*\): NCCL reports error 6 \(remote process exited.*on GPU 0 \(CUDA host execution path.*0000:11:00.0\).*another rank failed or is gone" "$tmp/onerr" \
    && failed_summary "$tmp/rnerr" "."; then
    ok "NCCL asynchronous error on rank 1: seen by the guard, communicator aborted, job ended (exit $rc) in ${took} s"
else bad "NCCL error: exit $rc after ${took} s: $(grep mlpfbench: "$tmp/onerr" | head -3)"; fi
start=$SECONDS
long nstall MLPF_HOST_NCCL_STALL_AT=12 MLPF_HOST_NCCL_ERROR_RANK=1
rc=$? took=$((SECONDS - start))
if [[ $rc -ne 0 && $rc -ne 124 && $took -le 40 ]] \
    && grep -qE "rank [01] \(.*\): waited [0-9]+ s in a collective \(the step on the GPU, with its gradient all-reduce\) on GPU 0 .* after step [0-9]+: another rank is stuck or gone \(--collective-timeout 4\)" "$tmp/onstall" \
    && failed_summary "$tmp/rnstall" "."; then
    ok "a peer stuck in NCCL: --collective-timeout ended the job (exit $rc) in ${took} s, naming the wait and the GPU"
else bad "stuck NCCL peer: exit $rc after ${took} s: $(grep mlpfbench: "$tmp/onstall" | head -3)"; fi
rank_pid() { # pid of rank $1 of the run on $tmp/long
    local p
    for p in $(pgrep -f "mlpfbench train .*$tmp/long"); do
        tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
    done
}
start=$SECONDS
long kill &
job=$!
p=
for _ in $(seq 150); do p=$(rank_pid 1); [[ -n "$p" ]] && grep -q "^epoch 1 step 2" "$tmp/okill" 2>/dev/null && break; sleep 0.2; done
[[ -n "$p" ]] && kill -KILL "$p"
wait $job
rc=$? took=$((SECONDS - start))
if [[ -n "$p" && $rc -ne 0 && $rc -ne 124 && $took -le 60 ]] && failed_summary "$tmp/rkill" "."; then
    ok "rank 1 killed mid-training (NCCL): job ended (exit $rc) in ${took} s, rank 0 left a failed summary"
else bad "killed rank: exit $rc after ${took} s: $(tail -3 "$tmp/okill")"; fi

# allreduce-bench --device cuda: the nccl-tests table of each transport, every element checked
if MLPF_HOST_GPU_PER_RANK=1 mrun 3 "$bin" allreduce-bench --device cuda --min-bytes 4 --max-bytes 65536 --factor 8 \
        --extra-floats 3 --iters 2 --bucket-mb 0.01 >"$tmp/arb.out" 2>&1 \
    && [[ $(grep -c "total wrong (nccl): 0\|total wrong (mpi): 0" "$tmp/arb.out") -eq 2 ]] \
    && [[ $(grep -cE "^ +[0-9]+ +[0-9]+ +float +sum .* 0$" "$tmp/arb.out") -eq 10 ]] \
    && grep -q "not GPU figures" "$tmp/arb.out"; then
    ok "allreduce-bench --device cuda, 3 ranks: NCCL and staging tables, 5 odd sizes each, #wrong 0"
else bad "allreduce-bench --device cuda: $(tail -5 "$tmp/arb.out")"; fi
mrun 2 "$bin" allreduce-bench --device cuda --max-bytes 4096 --iters 1 >"$tmp/arbs.out" 2>&1 \
    && grep -q "left out: ranks share a GPU" "$tmp/arbs.out" && grep -q "total wrong (mpi): 0" "$tmp/arbs.out" \
    && ok "allreduce-bench --device cuda on a shared GPU: NCCL left out with a note, staging checked" \
    || bad "allreduce-bench on a shared GPU: $(tail -3 "$tmp/arbs.out")"

# NVML during GPU runs, through the fake library of the tests (so: not a GPU
# measurement): per GPU, per node and in all; energy = power x the window
if MLPF_NVML_LIBRARY="$dir/nvml/libnvidia-ml.so.1" MLPF_FAKE_NVML_POWER_W=200 MLPF_HOST_GPU_PER_RANK=1 mrun 2 "$bin" train \
        --device cuda --preset tiny --data "$tmp/dp" --batch-size 2 --epochs 2 --threads 1 --skip-self-check --log-every 0 \
        --results "$tmp/rnv" >"$tmp/rnv.out" 2>&1 \
    && /usr/bin/python3 - "$tmp/rnv/mlpf_summary.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))["report"]["wl-stats"]
assert st["gpus"] == 2 and st["allreduce_transport"] == "nccl", (st["gpus"], st.get("allreduce_transport"))
tot = 0.0
for r in st["per_rank"]:
    g, nv = r["gpu"], r["gpu"]["nvml"]
    assert g["pci_bus_id"] == f"0000:{0x10 + r['local_rank']:02x}:00.0", g
    assert nv["sampled"] and nv["samples"] >= 2 and nv["energy_source"] == "energy counter", nv
    assert abs(nv["energy_j"] - 200 * nv["seconds"]) <= 0.05 * 200 * nv["seconds"], nv
    assert abs(nv["energy_per_event_j"] - nv["energy_j"] / r["events"]) <= 1e-6 * nv["energy_j"], nv
    tot += nv["energy_j"]
node = st["per_node"][0]
assert node["gpus"] == 2 and abs(node["gpu_energy_j"] - tot) <= 1e-6 * tot, node
ge = st["gpu_energy"]
assert abs(ge["joules"] - tot) <= 1e-6 * tot and ge["gpus_measured"] == 2, ge
assert "not a GPU measurement" in ge["note"], ge
PY
then ok "NVML (fake library): energy per GPU = 200 W x window, per event, per node and in all; the summary says not a GPU measurement"
else bad "NVML figures: $(tail -3 "$tmp/rnv.out")"; fi
grep -q "^GPU energy .*J/training event, 2 GPU(s).*not a GPU measurement" "$tmp/rnv.out" \
    && ok "closing table: $(grep -o "^GPU energy.*" "$tmp/rnv.out" | cut -c1-110)" || bad "no GPU energy row: $(grep -i energy "$tmp/rnv.out")"
/usr/bin/python3 - "$tmp/rc/mlpf_summary.json" <<'PY' && ok "without NVML the run goes on; the summary says why it was not measured" || bad "no-NVML note"
import json, sys
nv = json.load(open(sys.argv[1]))["report"]["wl-stats"]["per_rank"][0]["gpu"]["nvml"]
assert nv["sampled"] is False and "libnvidia-ml.so.1" in nv["note"], nv
PY

# slurm/mlpf.sbatch inside a job on a node with 2 GPUs (run as the batch
# script would be, without sbatch): one rank per GPU, --device cuda, NCCL
here_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
abs_bin=$(realpath "$bin")
if (cd "$tmp" && env SLURM_GPUS_ON_NODE=2 SLURM_JOB_NUM_NODES=1 SLURM_JOB_ID=4242 MLPF_HOST_GPU_PER_RANK=1 \
        MLPF_BIN="$abs_bin" timeout 240 bash "$here_root/slurm/mlpf.sbatch" --preset tiny --data "$tmp/dp" \
        --batch-size 2 --epochs 2 --threads 1 --skip-self-check --log-every 0 --results "$tmp/rsb") >"$tmp/rsb.out" 2>&1 \
    && /usr/bin/python3 - "$tmp/rsb/mlpf_summary.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))["report"]["wl-stats"]
assert st["device"] == "cuda" and st["world_size"] == 2 and st["gpus"] == 2 and st["ranks_per_node"] == 2, st["world_size"]
assert st["allreduce_transport"] == "nccl"
assert sorted(r["gpu"]["pci_bus_id"] for r in st["per_rank"]) == ["0000:10:00.0", "0000:11:00.0"]
PY
then ok "slurm/mlpf.sbatch on a 2-GPU node: 2 ranks, one GPU each, --device cuda, NCCL"
else bad "mlpf.sbatch GPU node: $(tail -3 "$tmp/rsb.out")"; fi
