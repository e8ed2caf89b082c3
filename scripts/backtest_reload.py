#!/usr/bin/env python3
"""Compares the two first loads on the public traces: `prescale backtest --reload DUR` restarts the
engines every DUR of the trace, each loaded with the history it holds, in bulk (the server's first load,
ps_engine_bulk_begin/end) or put by put (--reload-puts). Prints one Markdown row per trace, lookahead and
quantile with both scores side by side, and their ratio (bulk / puts: below 1 is better for MAE and
under-provisioning).

    /usr/bin/python3 scripts/backtest_reload.py [--prescale build/src/prescale] [--traces DIR] [--reload 1d]
"""
import argparse
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [("nasa-http-1995-07-60s.csv", "nasa", ["2m", "1m"]),
         ("worldcup98-60s.csv", "worldcup98", ["2m", "1m"]),
         ("twitter-stream-2021-08-60s.csv", "twitter", ["2m", "1m"]),
         ("azure-llm-2023-conv-1s.csv", "azure-llm", ["30s", "10s"])]


def run(prescale, path, lookahead, quantile, extra):
    out = subprocess.run([prescale, "backtest", path, "--lookahead", lookahead, "--startup", "60s",
                          "--quantile", quantile, "--json"] + extra, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["results"]["model"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prescale", default=os.path.join(REPO, "build", "src", "prescale"))
    ap.add_argument("--traces", default=os.path.join(REPO, "..", "shared", "data", "traces"))
    ap.add_argument("--reload", default="1d")
    a = ap.parse_args()
    print("| trace | lookahead | quantile | MAE puts | MAE bulk | ratio | under pod-s puts | under pod-s bulk "
          "| ratio | pod-s puts | pod-s bulk | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f, name, looks in CASES:
        path = os.path.join(a.traces, f)
        if not os.path.exists(path):
            continue
        for la in looks:
            for q in ["0.9", "0"]:
                p = run(a.prescale, path, la, q, ["--reload", a.reload, "--reload-puts"])
                b = run(a.prescale, path, la, q, ["--reload", a.reload])
                row = [name, la, q]
                for k in ["mae", "under_provisioned_pod_seconds", "pod_seconds"]:
                    ratio = b[k] / p[k] if p[k] else float("nan")
                    row += ["%.4g" % p[k], "%.4g" % b[k], "%.3f" % ratio]
                print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
