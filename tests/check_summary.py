#!/usr/bin/python3
"""Validate mlpf_summary.json files against docs/mlpf_summary.schema.json and
check that their numbers add up.

    check_summary.py SUMMARY [--ok | --failed PATTERN] [--ranks N] [--epochs E]

Without --ok or --failed only the schema is checked.
"""
import argparse
import json
import os
import re
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "docs", "mlpf_summary.schema.json")


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
