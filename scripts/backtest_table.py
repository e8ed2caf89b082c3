#!/usr/bin/python3
"""Runs `prescale backtest` on the public traces and prints the two Markdown tables of
docs/forecasting.md (results, and the issue's targets). Usage:

    /usr/bin/python3 scripts/backtest_table.py [--prescale build/src/prescale] [--traces DIR]

The traces are not part of the project: DIR defaults to ../shared/data/traces beside the repo."""

import argparse
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = [("nasa", "nasa-http-1995-07-60s", ["2m", "1m"]),
          ("worldcup98", "worldcup98-60s", ["2m", "1m"]),
          ("twitter", "twitter-stream-2021-08-60s", ["2m", "1m"]),
          ("azure", "azure-llm-2023-conv-1s", ["2m", "30s"])]


def run(prescale, path, lookahead, quantile):
    """quantile None: the default margin (targetCoverage 0.82)."""
    margin = [] if quantile is None else ["--quantile", str(quantile)]
    out = subprocess.run([prescale, "backtest", path, "--lookahead", lookahead, "--startup", "60s", *margin,
                          "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def period(r):
    p = r.get("period_seconds")
    return "no period" if not p else f"period {p / 3600:.1f}h"


def g(x):
    return f"{x:.4g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prescale", default=os.path.join(REPO, "build", "src", "prescale"))
    ap.add_argument("--traces", default=os.path.join(REPO, "..", "shared", "data", "traces"))
    a = ap.parse_args()
    rows, checks = [], []
    for short, name, horizons in TRACES:
        for la in sorted(horizons, key=lambda h: h != "2m"):
            for q in (None, 0.9, 0):  # the default (targetCoverage 0.82), quantile 0.9, then no margin
                d = run(a.prescale, os.path.join(a.traces, name + ".csv"), la, q)
                res = d["results"]
                rea, seed, mod = res["reactive"], res["seed"], res["model"]
                if q is None:
                    for label, r in (("reactive", rea), (f"seed ({period(seed)})", seed)):
                        rows.append((short, la, label, r))
                label = {None: "auto (default: targetCoverage 0.82)", 0.9: "auto, quantile 0.9", 0: "auto, quantile 0"}[q]
                label += f", {period(mod)}"
                u_seed = mod["under_provisioned_pod_seconds"] / max(seed["under_provisioned_pod_seconds"], 1e-9)
                p_seed = mod["pod_seconds"] / max(seed["pod_seconds"], 1e-9)
                u_rea = mod["under_provisioned_pod_seconds"] / max(rea["under_provisioned_pod_seconds"], 1e-9)
                rows.append((short, la, label, mod, u_seed, p_seed, u_rea))
                yes = lambda ok, v: f"yes ({v})" if ok else f"**no** ({v})"  # noqa: E731
                mase = mod["mase"]
                checks.append(f"| {short} | {la}, auto{ {None: '', 0.9: ' q0.9', 0: ' q0'}[q]} | "
                              f"{yes(mase < 0.85, f'{mase:.3f}')} | "
                              f"{yes(u_seed <= 0.5, f'{u_seed:.2f}')} | {yes(p_seed <= 1, f'{p_seed:.2f}')} | "
                              f"{yes(u_rea <= 0.3, f'{u_rea:.2f}')} |")
    print("| trace | lookahead | approach | MAE (req/s) | MASE | under-prov. pod-s | time under | pod-s | events "
          "| under vs seed | pod-s vs seed | under vs reactive |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        short, la, label, r = row[:4]
        extra = " | ".join(f"{x:.2f}" for x in row[4:]) if len(row) > 4 else " |  | "
        print(f"| {short} | {la} | {label} | {g(r['mae'])} | {r['mase']:.3f} | "
              f"{r['under_provisioned_pod_seconds']:.0f} | {100 * r['under_provisioned_fraction']:.2f}% | "
              f"{r['pod_seconds']:.4g} | {r['scaling_events']} | {extra} |")
    print()
    print("| trace | lookahead | MASE < 0.85 | under <= 0.5 x seed | pod-s <= seed | under <= 0.3 x reactive |")
    print("|---|---|---|---|---|---|")
    print("\n".join(checks))


if __name__ == "__main__":
    main()
