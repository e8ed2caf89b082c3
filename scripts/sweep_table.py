#!/usr/bin/python3
"""Runs `prescale backtest --sweep` on the public traces at the 2m lookahead and 60 s startup of
docs/forecasting.md, writes each cost curve to docs/curves/<trace>.svg and prints the Markdown tables of
the section "Cost curves" (the points, and the curve read at seed's and at reactive's + 10 % pods). Usage:

    /usr/bin/python3 scripts/sweep_table.py [--prescale build/src/prescale] [--traces DIR] [--svg-dir DIR]

The traces are not part of the project: DIR defaults to ../shared/data/traces beside the repo."""

import argparse
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = [("nasa", "nasa-http-1995-07-60s"), ("worldcup98", "worldcup98-60s"),
          ("twitter", "twitter-stream-2021-08-60s"), ("azure", "azure-llm-2023-conv-1s")]


def reading(at):
    if at["off_curve"] is None:
        return f"{at['under_provisioned_pod_seconds']:.0f} (x{at['ratio']:.2f})"
    if at["off_curve"] == "more_pods":
        return f"beyond the last point: at most {at['at_most_under_provisioned_pod_seconds']:.0f} (x{at['at_most_ratio']:.2f})"
    return "fewer pods than q0: none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prescale", default=os.path.join(REPO, "build", "src", "prescale"))
    ap.add_argument("--traces", default=os.path.join(REPO, "..", "shared", "data", "traces"))
    ap.add_argument("--svg-dir", default=os.path.join(REPO, "docs", "curves"))
    a = ap.parse_args()
    points, reads = [], []
    for short, name in TRACES:
        svg = os.path.join(a.svg_dir, short + ".svg")
        out = subprocess.run([a.prescale, "backtest", os.path.join(a.traces, name + ".csv"), "--lookahead", "2m",
                              "--startup", "60s", "--sweep", "--json", "--svg", svg],
                             check=True, capture_output=True, text=True)
        d = json.loads(out.stdout)
        seed, rea = d["results"]["seed"], d["results"]["reactive"]
        sp, su = seed["pod_seconds"], seed["under_provisioned_pod_seconds"]
        for p in d["sweep"]["points"]:
            label = f"q {p['quantile']:g}" if p["setting"] == "quantile" else f"coverage {p['target_coverage']:g}"
            points.append(f"| {short} | {label} | {p['pod_seconds']:.4g} | "
                          f"{p['under_provisioned_pod_seconds']:.0f} | {p['pod_seconds'] / sp:.2f} | "
                          f"{p['under_provisioned_pod_seconds'] / su:.2f} | {100 * p['coverage']:.2f}% |")
        for label, r in (("seed", seed), ("reactive", rea)):
            points.append(f"| {short} | {label} | {r['pod_seconds']:.4g} | {r['under_provisioned_pod_seconds']:.0f} | "
                          f"{r['pod_seconds'] / sp:.2f} | {r['under_provisioned_pod_seconds'] / su:.2f} | "
                          f"{100 * r['coverage']:.2f}% |")
        sw = d["sweep"]
        reads.append(f"| {short} | {sp:.4g} | {reading(sw['at_seed_pod_seconds'])} | "
                     f"{sw['at_reactive_pod_seconds_plus_10pct']['pod_seconds']:.4g} | "
                     f"{reading(sw['at_reactive_pod_seconds_plus_10pct'])} |")
    print("| trace | setting | pod-s | under-prov. pod-s | pod-s vs seed | under vs seed | coverage |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(points))
    print()
    print("| trace | seed's pod-s | under-prov. pod-s there (x seed's) | reactive's pod-s + 10 % "
          "| under-prov. pod-s there (x reactive's) |")
    print("|---|---|---|---|---|")
    print("\n".join(reads))


if __name__ == "__main__":
    main()
