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
