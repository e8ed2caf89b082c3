#!/usr/bin/python3
"""Runs `prescale backtest --target-coverage C` on the public traces at the 2m lookahead and 60 s startup of
docs/forecasting.md, for each target coverage of the sweep, and prints the Markdown table of the section
"Target coverage on the public traces": the realised coverage over the whole trace and over its worst
and best days (days of 24 h from the trace's first row, those with at least half a day of windows), and the
pods and under-provisioning against the seed's. Usage:

    /usr/bin/python3 scripts/coverage_table.py [--prescale build/src/prescale] [--traces DIR] [--targets 0.9,0.99]

The traces are not part of the project: DIR defaults to ../shared/data/traces beside the repo."""

import argparse
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = [("nasa", "nasa-http-1995-07-60s"), ("worldcup98", "worldcup98-60s"),
          ("twitter", "twitter-stream-2021-08-60s"), ("azure", "azure-llm-2023-conv-1s")]


def pp(x, target):
    """A coverage in percent, in bold when more than 1 point off the target."""
    s = f"{100 * x:.2f}%"
    return f"**{s}**" if abs(x - target) > 0.01 else s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prescale", default=os.path.join(REPO, "build", "src", "prescale"))
    ap.add_argument("--traces", default=os.path.join(REPO, "..", "shared", "data", "traces"))
    ap.add_argument("--targets", default="0.8,0.82,0.9,0.95,0.99")
    a = ap.parse_args()
    print("| trace | target | realised (whole) | worst day | best day | days off by > 1 pt | pod-s vs seed "
          "| under vs seed |")
    print("|---|---|---|---|---|---|---|---|")
    for short, name in TRACES:
        for c in (float(x) for x in a.targets.split(",")):
            out = subprocess.run([a.prescale, "backtest", os.path.join(a.traces, name + ".csv"), "--lookahead",
                                  "2m", "--startup", "60s", "--target-coverage", f"{c:g}", "--json"],
                                 check=True, capture_output=True, text=True)
            d = json.loads(out.stdout)
            cov, m, s = d["coverage"], d["results"]["model"], d["results"]["seed"]
            half = 43200 / d["interval_seconds"]
            full = [x for x in cov["days"] if x["windows"] >= half]
            off = sum(abs(x["coverage"] - c) > 0.01 for x in full)
            worst = pp(cov["worst_day_coverage"], c) + f" (day {cov['worst_day']})" if full else "(no whole day)"
            best = pp(cov["best_day_coverage"], c) if full else ""
            print(f"| {short} | {c:g} | {pp(cov['realised'], c)} | {worst} | {best} | {off} of {len(full)} | "
                  f"{m['pod_seconds'] / s['pod_seconds']:.2f} | "
                  f"{m['under_provisioned_pod_seconds'] / s['under_provisioned_pod_seconds']:.2f} |")


if __name__ == "__main__":
    main()
