#!/usr/bin/python3
"""Where the default's under-provisioning falls on the periodic traces: in the first two minutes of a spike,
or elsewhere (docs/forecasting.md, "Where the targets stand, and why not further").

Runs `prescale backtest` (2m lookahead, 60 s startup, the defaults) with --json and --csv on each trace,
and recomputes the under-provisioned pod-seconds row by row from the CSV's replicas: at row t the pods
ready are min(replicas[t], replicas[t-1]) (a scale-up is ready one 60 s row later, a scale-down at once),
and the shortfall is max(0, demand / threshold - ready) x 60 s. That is an approximation of the backtest's
HPA replay, which syncs every 15 s: the script stops unless its total is within 1 % of the backtest's.

A spike row is above 1.8 x the median of the 31 rows around it (the spike table of docs/forecasting.md);
a spike's first two rows are its first spike row and the row after it: the answer had to be up a startup
before them, on a window whose course had not started to rise. Usage:

    /usr/bin/python3 scripts/spike_onsets.py [--prescale build/src/prescale] [--traces DIR]

The traces are not part of the project: DIR defaults to ../shared/data/traces beside the repo."""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = [("nasa", "nasa-http-1995-07-60s"), ("worldcup98", "worldcup98-60s"),
          ("twitter", "twitter-stream-2021-08-60s")]
SPIKE = 1.8
AROUND = 15


def shortfalls(demand, replicas, threshold, interval):
    out = [0.0] * len(demand)
    for i in range(1, len(demand)):
        ready = min(replicas[i], replicas[i - 1])
        out[i] = max(0.0, demand[i] / threshold - ready) * interval
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prescale", default=os.path.join(REPO, "build", "src", "prescale"))
    ap.add_argument("--traces", default=os.path.join(REPO, "..", "shared", "data", "traces"))
    a = ap.parse_args()
    print("| trace | under pod-s: backtest / here | spikes | in their first 2 rows (share) | there, x the seed's "
          "total | elsewhere, x the seed's total | reactive in the first 2 rows (share) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for short, name in TRACES:
            rows = os.path.join(tmp, short + ".csv")
            out = subprocess.run([a.prescale, "backtest", os.path.join(a.traces, name + ".csv"), "--lookahead",
                                  "2m", "--startup", "60s", "--json", "--csv", rows],
                                 check=True, capture_output=True, text=True).stdout
            j = json.loads(out)
            with open(rows) as f:
                r = list(csv.DictReader(f))
            demand = [float(x["demand"]) for x in r]
            n = len(demand)
            spike = [demand[i] > SPIKE * statistics.median(demand[max(0, i - AROUND):i + AROUND + 1])
                     for i in range(n)]
            first2 = [spike[i] and (i == 0 or not spike[i - 1]) for i in range(n)]
            first2 = [first2[i] or (i > 0 and first2[i - 1]) for i in range(n)]
            seed = j["results"]["seed"]["under_provisioned_pod_seconds"]
            cells = []
            for col, res in (("replicas_prescale", "model"), ("replicas_reactive", "reactive")):
                u = shortfalls(demand, [int(x[col]) for x in r], j["threshold"], j["interval_seconds"])
                want = j["results"][res]["under_provisioned_pod_seconds"]
                if abs(sum(u) - want) > 0.01 * want:
                    sys.exit(f"{short} {res}: {sum(u):.0f} under-provisioned pod-s here, {want:.0f} in the backtest")
                cells.append((want, sum(u), sum(x for x, s in zip(u, first2) if s)))
            (want, total, onset), (_, rtotal, ronset) = cells
            starts = sum(1 for i in range(n) if spike[i] and (i == 0 or not spike[i - 1]))
            print(f"| {short} | {want:.0f} / {total:.0f} | {starts} | {onset:.0f} ({onset / total:.0%}) | "
                  f"{onset / seed:.2f} | {(total - onset) / seed:.2f} | {ronset:.0f} ({ronset / rtotal:.0%}) |")


if __name__ == "__main__":
    main()
