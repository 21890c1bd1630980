#!/usr/bin/python3
"""Validate mlpf_summary.json files against docs/mlpf_summary.schema.json and
check that their numbers add up.

    check_summary.py SUMMARY [--ok | --failed PATTERN] [--ranks N] [--epochs E]

Without --ok or --failed only the schema and the GPU figures (check_gpu) are
checked.
"""
import argparse
import json
import os
import re
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "docs", "mlpf_summary.schema.json")


def close(a, b):
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def check_gpu(st):
    """The GPU figures add up: per node and in all, the sums of the ranks'."""
    ranks = st["per_rank"]
    gpu = [r for r in ranks if "gpu" in r]
    for r in gpu:
        n = r["gpu"]["nvml"]
        if "energy_j" in n and r["events"] > 0:
            assert close(n["energy_per_event_j"], n["energy_j"] / r["events"]), (r["rank"], n)
    def key(r):  # a GPU: ranks sharing one (--allow-shared-gpu) count it once
        return (r["host"], r["gpu"].get("uuid") or f"rank {r['rank']}")

    def firsts(mine):
        seen, out = set(), []
        for r in mine:
            if key(r) not in seen:
                seen.add(key(r))
                out.append(r)
        return out

    if "gpus" in st:
        assert st["gpus"] == len(firsts(gpu)), (st["gpus"], len(firsts(gpu)))
        assert ("gpu_energy" in st) == (len(gpu) > 0), st.get("gpu_energy")

    def sums(mine):  # energy and power once per GPU, the events of every rank on a measured one
        one = firsts(mine)
        measured = [r for r in one if "energy_j" in r["gpu"]["nvml"]]
        keys = {key(r) for r in measured}
        return (measured, sum(r["gpu"]["nvml"]["energy_j"] for r in measured),
                sum(r["events"] for r in mine if key(r) in keys),
                sum(r["gpu"]["nvml"].get("power_mean_w", 0) for r in one if r["gpu"]["nvml"]["sampled"]),
                any(r["gpu"]["nvml"]["sampled"] for r in one))

    for x in st["per_node"]:
        if "gpus" not in x:
            continue
        mine = [r for r in gpu if r["rank"] in x["ranks"]]
        assert x["gpus"] == len(firsts(mine)), (x["host"], x["gpus"], len(firsts(mine)))
        measured, joules, events, power, sampled = sums(mine)
        assert ("gpu_energy_j" in x) == bool(measured), (x["host"], x)
        if measured:
            assert close(x["gpu_energy_j"], joules), (x["host"], x["gpu_energy_j"], joules)
            assert close(x["gpu_energy_per_event_j"], joules / events if events else 0.0), x
        assert ("gpu_power_mean_w" in x) == sampled, x
        if sampled:
            assert close(x["gpu_power_mean_w"], power), (x["gpu_power_mean_w"], power)
    if gpu and "gpu_energy" in st:
        e = st["gpu_energy"]
        measured, joules, events, power, _ = sums(gpu)
        assert ("joules" in e) == bool(measured), e
        if measured:
            assert e["gpus_measured"] == len(measured), e
            assert close(e["joules"], joules) and close(e["power_mean_w"], power), (e, joules, power)
            assert close(e["joules_per_event"], joules / events if events else 0.0), e
            src = {r["gpu"]["nvml"]["energy_source"] for r in measured}
            want = src.pop() if len(src) == 1 else "energy counter and integrated power"
            assert e["source"] == want, (e["source"], want)
        if len(measured) < len(firsts(gpu)):
            assert "note" in e, e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("summary")
    ap.add_argument("--ok", action="store_true")
    ap.add_argument("--failed", metavar="PATTERN")
    ap.add_argument("--ranks", type=int)
    ap.add_argument("--epochs", type=int)
    a = ap.parse_args()
    s = json.load(open(a.summary))
    jsonschema.validate(s, json.load(open(SCHEMA)))
    rep, st = s["report"], s["report"]["wl-stats"]
    check_gpu(st)
    if not a.ok and not a.failed:        # schema only (plus the schema's own ok/failed rules)
        return
    if a.failed:
        assert rep["log"] != "ok" and re.search(a.failed, rep["log"]), rep["log"]
        assert rep["wl-scores"] == {}, rep["wl-scores"]
        return
    assert rep["log"] == "ok", rep["log"]
    n = st["world_size"]
    if a.ranks:
        assert n == a.ranks == s["run_info"]["copies"] == len(st["per_rank"]), (n, a.ranks)
    if a.epochs:
        assert st["num_epochs"] == a.epochs == len(st["epoch_times"]) == len(st["validation_accuracy"])
    e = st["num_epochs"]
    # events counted over ranks = training set size per epoch
    ranks = st["per_rank"]
    assert sorted(r["rank"] for r in ranks) == list(range(n))
    assert sum(r["events"] for r in ranks) == st["train_set_size"] * e, \
        (sum(r["events"] for r in ranks), st["train_set_size"], e)
    assert all(r["steps"] == st["steps_per_epoch"] * e for r in ranks)
    # per node = sum of its ranks
    nodes = st["per_node"]
    assert st["nodes"] == len(nodes) and sum(len(x["ranks"]) for x in nodes) == n
    for x in nodes:
        mine = [r for r in ranks if r["rank"] in x["ranks"]]
        assert all(r["host"] == x["host"] for r in mine)
        assert x["events"] == sum(r["events"] for r in mine)
        assert x["elements"] == sum(r["elements"] for r in mine)
        assert abs(x["throughput"] - sum(r["throughput"] for r in mine)) <= 1e-6 * max(1, x["throughput"])
    # the reference definitions
    for t, th in zip(st["epoch_times"], st["throughput_per_epoch"]):
        assert abs(th - st["train_set_size"] / t) <= 1e-6 * th, (th, t)
    if e >= 2:
        sc = rep["wl-scores"]
        mt = sum(st["throughput_per_epoch"][1:]) / (e - 1)
        assert abs(sc["mean_throughput"] - mt) <= 1e-9 * mt
        assert abs(sc["mean_epoch_time"] - sum(st["epoch_times"][1:]) / (e - 1)) <= 1e-9 * sc["mean_epoch_time"]
    if e == 1:  # one epoch: scored after its warm-up steps, and the summary says so
        sc = rep["wl-scores"]
        assert "warm-up step" in st["score_basis"] and sc["mean_throughput"] > 0, (sc, st.get("score_basis"))
        assert abs(sc["mean_epoch_time"] * sc["mean_throughput"] - st["train_set_size"]) <= 1e-6 * st["train_set_size"]
    assert st["batch_size_total"] == st["batch_size_per_device"] * n
    assert st["horovod_enabled"] == (n > 1)
    assert st["flops_per_event"] > 0 and st["achieved_flops"] > 0


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, jsonschema.ValidationError, KeyError) as exc:
        print("summary check failed: %s: %s" % (type(exc).__name__, str(exc)[:500]))
        sys.exit(1)
