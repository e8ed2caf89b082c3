#!/usr/bin/python3
"""Why MASE < 0.85 is out of reach on some public traces: two offline analyses for docs/forecasting.md.

1. Spikes: the share of the last-value forecast's absolute error that falls on rows next to a spike
   (a row above 1.8x the rolling 31-row median), and how often a spike's onset repeats at the same time
   one day (and one week) earlier, i.e. how far any history-based forecast could see it coming.
2. A bound for linear forecasters: a least-absolute-deviation regression of the window's maximum on
   16 recent lags and 21 seasonal lags (the same minute 1, 2 and 3 days back, -2..+4 rows), fitted on the
   whole trace at once, so it peeks at the future no real forecaster has. Its MASE is a lower bound
   for any linear model on those inputs.

Not part of the build or the tests: it needs numpy (Debian: python3-numpy), which prescale does not.
    /usr/bin/python3 scripts/forecast_bounds.py [--traces ../shared/data/traces]
"""
import argparse
import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = [("nasa", "nasa-http-1995-07-60s"), ("worldcup98", "worldcup98-60s"),
          ("twitter", "twitter-stream-2021-08-60s")]
H, P = 2, 1440  # 2m lookahead at 60 s rows; a day of rows


def spikes(y):
    n = len(y)
    med = np.median(sliding_window_view(np.pad(y, 15, mode="edge"), 31), axis=1)
    sp = y > 1.8 * med
    z = np.array([y[t + 1:t + H + 1].max() for t in range(n - H)])
    err = np.abs(z - y[:n - H])
    near = np.array([sp[max(0, t - 1):t + H + 1].any() for t in range(n - H)])
    onsets = [i for i in range(1, n) if sp[i] and not sp[i - 1]]
    on = set(onsets)

    def recur(lag):
        return sum(any(o - lag + d in on for d in (-1, 0, 1)) for o in onsets) / max(len(onsets), 1)

    return near.mean(), err[near].sum() / err.sum(), len(onsets), recur(P), recur(7 * P)


def lad_bound(y):
    n = len(y)
    idx = np.arange(3 * P, n - H - 4)
    z = np.maximum(y[idx + 1], y[idx + 2])
    cols = [np.ones(len(idx))] + [y[idx - j] for j in range(16)]
    for k in (1, 2, 3):
        for j in range(-2, 5):
            cols.append(y[idx + j - k * P])
    x = np.array(cols).T
    w = np.linalg.lstsq(x, z, rcond=None)[0]
    for _ in range(15):  # iteratively reweighted least squares towards least absolute deviations
        sw = np.sqrt(1 / np.maximum(np.abs(z - x @ w), 1e-3))
        w = np.linalg.lstsq(x * sw[:, None], z * sw, rcond=None)[0]
    return np.abs(z - x @ w).sum() / np.abs(z - y[idx]).sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default=os.path.join(REPO, "..", "shared", "data", "traces"))
    a = ap.parse_args()
    print("| trace | rows near a spike | their share of last-value's error | spike onsets "
          "| onset seen 1 day before | 1 week before | in-sample LAD MASE |")
    print("|---|---|---|---|---|---|---|")
    for short, name in TRACES:
        y = np.loadtxt(os.path.join(a.traces, name + ".csv"), delimiter=",", skiprows=1)[:, 1]
        near, share, n_on, day, week = spikes(y)
        print(f"| {short} | {100 * near:.1f}% | {100 * share:.0f}% | {n_on} | {100 * day:.0f}% | "
              f"{100 * week:.0f}% | {lad_bound(y):.3f} |")


if __name__ == "__main__":
    main()
