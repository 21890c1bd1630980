#!/usr/bin/python3
"""The table of `make bench` (scripts/bench.sh) from the files it left in OUT.

usage: bench_table.py OUT [--command CMD] [--append DOC]

Reads OUT/gemm.json (and OUT/gemm-2.json, the same measured at the end: per
shape the higher rate counts), OUT/train-b1, OUT/train-b4, OUT/ranks-1, OUT/ranks-2
(mlpf_summary.json each), OUT/infer.json and OUT/torch-{b1,b4,infer}.json,
and where present OUT/train-b1-2 and OUT/torch-b1-2.json (batch 1 again,
run alternately: the faster run of each implementation is the one shown),
prints a Markdown section and, with --append, adds it to DOC.
Training figures are steady-state rates over the timed steps of rank 0
(events / step time; the warm-up steps that train --warmup-steps left out are
not in them, as torch_bench.py --warmup leaves its own out); GFLOP/s use the
spec's cost model (3x forward FLOPs).
"""
import argparse
import datetime
import json
import os
import platform
import sys

KINDS = ["matrix_products", "distance_products_fp64", "binning", "kernel_matrix", "elementwise", "loss", "optimizer",
         "data_wait", "allreduce_exposed"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"bench_table: cannot read {path}: {e}")


def train_figures(out, name):
    s = load(os.path.join(out, name, "mlpf_summary.json"))
    st = s["report"]["wl-stats"]
    ranks = st["per_rank"]
    r0 = ranks[0]
    # training FLOPs per element (cost model); flops_per_event averages over
    # every step, warm-up included, so it is not used with the measured steps
    per_el = st.get("flops_per_element") or st["flops_per_event"] * r0["events"] / r0["elements"]
    b = st["batch_size_per_device"]
    other = r0["step_time"] - sum(r0["time_by_kind"][k] for k in KINDS)
    return {
        "batch": b,
        "steps": r0["steps"],
        "events_s": r0["events"] / r0["step_time"],
        "s_step": r0["step_time"] / r0["steps"],
        "flops": per_el * r0["elements"] / r0["step_time"],
        "flops_event": per_el * r0["elements"] / r0["events"],  # of the measured events
        "mem_event": r0["peak_memory_mib"] / b,
        "act_event": r0["activation_mib"] / b,
        "kinds": {k: r0["time_by_kind"][k] / r0["step_time"] for k in KINDS},
        "other": other / r0["step_time"],
        "ranks": ranks,
        "stats": st,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--command", default="make bench")
    ap.add_argument("--append")
    a = ap.parse_args()
    g = load(os.path.join(a.out, "gemm.json"))
    if os.path.exists(os.path.join(a.out, "gemm-2.json")):  # measured again at the end: the higher rates
        g2 = load(os.path.join(a.out, "gemm-2.json"))
        for k in ("dense_flops", "gram_flops", "message_flops", "fma_peak_flops"):
            g[k] = max(g.get(k, 0.0), g2.get(k, 0.0))
        g["mix_flops"] = 1 / (g["dense_share"] / g["dense_flops"] + g["gram_share"] / g["gram_flops"]
                              + g["message_share"] / g["message_flops"])
    t1, t4 = train_figures(a.out, "train-b1"), train_figures(a.out, "train-b4")
    p1, p4 = load(os.path.join(a.out, "torch-b1.json")), load(os.path.join(a.out, "torch-b4.json"))
    # batch 1 ran twice for each, alternating: the faster run of each counts
    b1_runs = 1
    if os.path.exists(os.path.join(a.out, "train-b1-2", "mlpf_summary.json")):
        b1_runs = 2
        t1 = max(t1, train_figures(a.out, "train-b1-2"), key=lambda t: t["events_s"])
    if os.path.exists(os.path.join(a.out, "torch-b1-2.json")):
        p1 = max(p1, load(os.path.join(a.out, "torch-b1-2.json")), key=lambda p: p["events_per_s"])
    inf = load(os.path.join(a.out, "infer.json"))
    pinf = load(os.path.join(a.out, "torch-infer.json"))
    r1, r2 = train_figures(a.out, "ranks-1"), train_figures(a.out, "ranks-2")
    thr1 = r1["events_s"]
    if os.path.exists(os.path.join(a.out, "ranks-1b", "mlpf_summary.json")):
        thr1 = (thr1 + train_figures(a.out, "ranks-1b")["events_s"]) / 2  # before and after
    thr2 = sum(r["events"] / r["step_time"] for r in r2["ranks"])
    eff = thr2 / (2 * thr1)
    ar = sum(r["allreduce_time"] for r in r2["ranks"])
    ex = sum(r["allreduce_exposed_time"] for r in r2["ranks"])
    hidden = 1 - ex / ar if ar > 0 else 0.0
    limit = g["mix_flops"]
    st = t1["stats"]
    best_train = max(t1, t4, key=lambda t: t["events_s"])
    best_torch = max(p1, p4, key=lambda p: p["events_per_s"])
    mem_event = min(t1["mem_event"], t4["mem_event"])
    L = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L.append(f"### make bench, {now}")
    L.append("")
    L.append(f"Machine: {st['CPU']}, {os.cpu_count()} cores, {platform.node()}; "
             f"{st['software']['openblas']}; PyTorch {p1.get('torch_version', '?')}; "
             f"mlpfbench {st['software']['mlpfbench']} ({st['software']['git_commit']}). "
             f"Command: `{a.command}` (out: `{a.out}`). Events: {st['data']}, "
             f"~{t1['ranks'][0]['elements'] / t1['ranks'][0]['events']:.0f} elements/event.")
    L.append("")
    L.append("| | figure |")
    L.append("|---|---|")
    twice = " (higher of 2 runs, start and end)" if os.path.exists(os.path.join(a.out, "gemm-2.json")) else ""
    w, sb, dd = g.get("width", 512), g.get("bin", 640), g.get("dist_dim", 128)
    L.append(f"| 1. BLAS sgemm, {g['threads']} threads{twice}: dense {g['rows']}x{w}x{w} / gram {sb}x{sb}x{dd} / "
             f"message {sb}x{w}x{sb} | {g['dense_flops']/1e9:.1f} / {g['gram_flops']/1e9:.1f} / "
             f"{g['message_flops']/1e9:.1f} GFLOP/s; model mix (the limit) **{limit/1e9:.1f} GFLOP/s** |")
    for t in (t1, t4):
        k = t["kinds"]
        runs = f", best of {b1_runs} alternating with PyTorch" if t is t1 and b1_runs > 1 else ""
        L.append(f"| 2. mlpfbench training, batch {t['batch']} ({t['steps']} steps{runs}) | "
                 f"**{t['events_s']:.3f} events/s**, {t['s_step']:.2f} s/step, {t['flops']/1e9:.1f} GFLOP/s = "
                 f"**{100*t['flops']/limit:.0f}% of the limit**; peak RSS {t['mem_event']:.0f} MiB/event "
                 f"(activations {t['act_event']:.0f} MiB/event) |")
        L.append(f"| &nbsp;&nbsp;time by kind, batch {t['batch']} | "
                 + ", ".join(f"{n.replace('_', ' ')} {100*k[n]:.1f}%" for n in KINDS)
                 + f", other {100*t['other']:.1f}% |")
    for p in (p1, p4):
        runs = f" (best of {b1_runs})" if p is p1 and b1_runs > 1 else ""
        L.append(f"| 3. PyTorch (padded batches, autograd, torch.optim.Adam), batch {p['batch_size']}{runs} | "
                 f"{p['events_per_s']:.3f} events/s, {p['s_per_step']:.2f} s/step, peak RSS "
                 f"{p['peak_rss_mib_per_event']:.0f} MiB/event above the model |")
    L.append(f"| 4. inference, batch 1: mlpfbench / PyTorch | {inf['events_per_s']:.3f} / "
             f"{pinf['events_per_s']:.3f} events/s ({inf['events_per_s']/pinf['events_per_s']:.1f}x) |")
    L.append(f"| 5. 1 vs 2 ranks, one core each, batch 1/rank (1 rank: mean of runs before and after) | {thr1:.3f} vs {thr2:.3f} events/s: "
             f"efficiency **{100*eff:.0f}%**, all-reduce {100*hidden:.0f}% hidden "
             f"({ar/len(r2['ranks'])/r2['steps']:.3f} s/step, {ex/len(r2['ranks'])/r2['steps']:.3f} s exposed) |")
    # the ceiling: the model's training FLOPs (cost model) at the BLAS limit,
    # and at the cores' FMA peak, with no other work at all
    per_event = t1["flops_event"]
    peak = g.get("fma_peak_flops", 0.0)
    ceil_limit = limit / per_event
    ceil_peak = peak / per_event if peak > 0 else 0.0
    torch_best = best_torch["events_per_s"]
    L.append(f"| 6. ceiling: {per_event/1e9:.3g} GFLOP/event (cost model) with no other work, at the limit"
             + (f" / at the cores' FMA peak ({peak/1e9:.1f} GFLOP/s, {g.get('fma_isa', '?')})" if peak > 0 else "")
             + f" | {ceil_limit:.3f}" + (f" / {ceil_peak:.3f}" if peak > 0 else "")
             + f" events/s = {ceil_limit/torch_best:.2f}x" + (f" / {ceil_peak/torch_best:.2f}x" if peak > 0 else "")
             + " PyTorch's best |")
    L.append("")
    ok = lambda c: "met" if c else "NOT met"
    two_x = best_train["events_s"] >= 2 * torch_best
    why = ""
    if not two_x and ceil_limit < 2 * torch_best:
        why = (f"; out of reach here: even with no work but its matrix products, each at the "
               f"limit, mlpfbench would be {ceil_limit/torch_best:.2f}x PyTorch"
               + (f" ({ceil_peak/torch_best:.2f}x at the FMA peak)" if peak > 0 else ""))
    L.append("Goals: training at >= 70% of the limit: "
             f"{ok(max(t1['flops'], t4['flops']) >= 0.7*limit)} ({100*max(t1['flops'], t4['flops'])/limit:.0f}%); "
             f">= 2x PyTorch training: {ok(two_x)} "
             f"({best_train['events_s']/torch_best:.2f}x, best batch of each{why}); "
             f"<= 600 MB peak memory per event: {ok(mem_event*1.048576 <= 600)} ({mem_event*1.048576:.0f} MB); "
             f"2 ranks >= 90% efficiency with >= 80% hidden: {ok(eff >= 0.9 and hidden >= 0.8)}.")
    L.append("")
    text = "\n".join(L)
    print(text)
    if a.append:
        with open(a.append, "a") as f:
            f.write("\n" + text)
        print(f"bench_table: appended to {a.append}", file=sys.stderr)


if __name__ == "__main__":
    main()
