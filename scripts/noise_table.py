#!/usr/bin/python3
"""Writes 24 synthetic 1 s traces (Poisson counts around a mean that moves slowly and has no period), runs
`prescale backtest --sweep` on each, and prints, per setting of the sweep, the mean pod-seconds and
under-provisioned pod-seconds against reactive's, the mean realised coverage and, for each target coverage,
on how many traces it is more than 1 point off: the guard of docs/forecasting.md ("The window's peak made
directly") against fitting the one 58-minute 1 s trace of the shared set. Usage:

    /usr/bin/python3 scripts/noise_table.py [--prescale build/src/prescale] [--lookahead 2m] [--dir DIR]

The traces (2 hours each; means 5 and 50 requests/s, swings of 30 % and 80 %, 6 seeds, every other seed
overdispersed) are written to DIR (a temporary folder by default) and are the same on every run."""

import argparse
import json
import math
import os
import random
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = 2 * 3600


def poisson(r, lam):
    if lam >= 30:
        return max(0, int(round(r.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1


def series(seed, base, amp, over):
    """Counts per second: the mean is base x (1 + amp x three random slow waves of 10-40 minutes / 3 + a
    bounded random walk); with over > 0, a gamma factor of variance `over` per second (overdispersion)."""
    r = random.Random(seed)
    waves = [(r.uniform(600, 2400), r.uniform(0, 2 * math.pi), r.uniform(0.3, 1)) for _ in range(3)]
    walk, out = 0.0, []
    for t in range(ROWS):
        walk = max(-0.5, min(0.5, walk + r.gauss(0, 0.002)))
        m = base * (1 + amp * sum(a * math.sin(2 * math.pi * t / p + ph) for p, ph, a in waves) / 3 + walk)
        m = max(0.1, m)
        if over > 0:
            m *= r.gammavariate(1 / over, over)
        out.append(poisson(r, m))
    return out


def write_traces(d):
    paths = []
    for seed in range(1, 7):
        for base in (5, 50):
            for amp in (0.3, 0.8):
                path = os.path.join(d, f"noise-s{seed}-b{base}-a{amp:g}-1s.csv")
                xs = series(seed * 1000 + base + int(amp * 10), base, amp, 0.1 if seed % 2 == 0 else 0)
                with open(path, "w") as f:
                    f.write("timestamp_seconds,value\n")
                    f.writelines(f"{1700000000 + i},{x}\n" for i, x in enumerate(xs))
                paths.append(path)
    return paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prescale", default=os.path.join(REPO, "build", "src", "prescale"))
    ap.add_argument("--lookahead", default="2m")
    ap.add_argument("--dir", default=None, help="where the traces are written (default: a temporary folder)")
    a = ap.parse_args()
    tmp = None if a.dir else tempfile.TemporaryDirectory()
    d = a.dir or tmp.name
    os.makedirs(d, exist_ok=True)
    rows, order, mase = {}, [], []
    for path in write_traces(d):
        out = subprocess.run([a.prescale, "backtest", path, "--lookahead", a.lookahead, "--startup", "60s",
                              "--sweep", "--json"], capture_output=True, text=True, check=True).stdout
        doc = json.loads(out)
        re, model = doc["results"]["reactive"], doc["results"]["model"]
        mase.append(model["mase"])
        for p in doc["sweep"]["points"]:
            cov = p["setting"] == "target_coverage"
            key = f"coverage {p['target_coverage']:g}" if cov else f"q {p['quantile']:g}"
            if key not in rows:
                rows[key] = []
                order.append(key)
            off = abs(p["coverage"] - p["target_coverage"]) > 0.01 if cov else None
            under = p["under_provisioned_pod_seconds"] / max(re["under_provisioned_pod_seconds"], 1e-9)
            rows[key].append((p["pod_seconds"] / re["pod_seconds"], under, p["coverage"], off))
    n = len(mase)
    print(f"{n} traces at {a.lookahead}, mean MASE {sum(mase) / n:.3f}")
    print("| setting | pod-s vs reactive | under vs reactive | coverage | traces off by > 1 pt |")
    print("|---|---|---|---|---|")
    for key in order:
        r = rows[key]
        off = f"{sum(1 for x in r if x[3])} of {len(r)}" if r[0][3] is not None else ""
        print(f"| {key} | {sum(x[0] for x in r) / len(r):.3f} | {sum(x[1] for x in r) / len(r):.3f} "
              f"| {100 * sum(x[2] for x in r) / len(r):.2f}% | {off} |")


if __name__ == "__main__":
    main()
