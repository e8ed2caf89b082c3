#!/usr/bin/python3
"""How far the window's peak can be forecast on the public traces: bounds for the MASE target of
docs/forecasting.md ("How far the window's peak can be forecast"), offline.

The quantity is the backtest's (src/backtest/replay.c, score.c): at row t, a forecast of
z[t] = max(rate[t+1], rate[t+2]) (the 2m lookahead at 60 s rows; rate = value / 60, requests/s), scored
against the last value rate[t] over the same rows: MASE = sum |f - z| / sum |rate[t] - z|. Before it
trusts anything, the script runs `prescale backtest TRACE --lookahead 2m --startup 60s --csv` and checks
that its own last-value MAE and its MASE of the backtest's `forecast` column (auto's `predicted`) equal
the figures the backtest prints.

Forecasters that may see more than any real one, all scored on the same rows S (from day 8, where every
feature below exists, to 17 rows before the end), beside auto on S:

- in-sample LAD: the window's peak regressed (least absolute deviations, by iteratively reweighted
  least squares) on 16 recent values and 21 seasonal ones (1, 2, 3 days back, -2..+4 rows), fitted on
  the whole trace at once (scripts/forecast_bounds.py's bound); and the same in log space (multiplicative);
- in-sample kNN: the median log ratio z / rate[t] of the 50 rows whose recent shape is nearest (11 lags
  and the distance to the 5-row mean, in logs relative to rate[t]; what followed the same minute 1, 2 and
  7 days back; the log level), the pool the whole trace but the 20 rows either side: it knows rows from
  after t;
- causal kNN: the same, the pool only the rows whose window ended before the day of t (rebuilt daily):
  a real, causal forecaster, though not O(1) per step (its one hindsight: each input is scaled by its
  standard deviation over the whole trace); with the hour of the day as two more inputs (its sine and
  cosine); and 0.7 x that + 0.3 x auto's forecast, also causal;
- two-sided: knows rate[t+3 .. t+18] too, the values after the window: the straight line from rate[t] to
  rate[t+3] (its max over the window), and an in-sample LAD on the causal inputs plus those 16;
- Poisson floor (whole trace): the MAE of a forecaster that knew each row's intensity exactly (taken as
  its count) if the counts were Poisson: E|max(N1, N2) - median|, by simulation. The one hard floor here,
  and only under that model.

An oracle's MASE is an upper estimate of the best any forecaster with its information could do, not a
lower bound: a low oracle proves that much is reachable (with its information); a high one only suggests
that no forecaster of its kind does better. Then, per trace, where the last value's error is: its share in
the top 1 % and 5 % of rows (by that error) and in the rows of the highest 20 % of the load; of the top
1 % rows, how many are rises, in how many separate events (more than 5 rows apart), and how often a
change of the same sign and at least half the size came within 2 rows of the same minute 1 and 7 days
before, against the same test 1 to 4 hours off that minute (what chance alone gives). Last, on the causal
kNN's rows, the absolute errors of the last value, auto and the causal kNN summed per class of row: a
spike starts in the window, in a spike, up to 30 rows after one, calm (a spike row: above 1.8 x the median
of the 31 rows around it, as in scripts/forecast_bounds.py).

Not part of the build or the tests: it needs numpy and scipy (Debian: python3-numpy, python3-scipy),
which prescale does not, and the traces. About 25 minutes on the shared machine, most of it the
in-sample kNN on worldcup98 (a 22-dimensional search over 115,000 rows).
    /usr/bin/python3 scripts/peak_bounds.py [--traces ../shared/data/traces] [--prescale build/src/prescale]
"""
import argparse
import os
import re
import subprocess
import tempfile

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.spatial import cKDTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = [("nasa", "nasa-http-1995-07-60s"), ("worldcup98", "worldcup98-60s"),
          ("twitter", "twitter-stream-2021-08-60s")]
H, P, STEP = 2, 1440, 60.0  # the 2m lookahead at 60 s rows; a day of rows
AFTER = 16  # rows after the window the two-sided forecasters see
KNN, GAP = 50, 20  # neighbours; rows either side of t left out of the in-sample pool
BLEND = 0.7  # the causal kNN's weight against auto's in the blend
EPS = 1 / STEP  # one request per row, in requests/s: logs of 0
SPIKE = 1.8  # a spike row: above SPIKE x the rolling 31-row median (scripts/forecast_bounds.py)


def backtest(prescale, path):
    """auto's `predicted` per row, and the reactive MAE and auto MASE the backtest prints."""
    with tempfile.TemporaryDirectory() as d:
        csv = os.path.join(d, "rows.csv")
        out = subprocess.run([prescale, "backtest", path, "--lookahead", "2m", "--startup", "60s", "--csv", csv],
                             check=True, capture_output=True, text=True).stdout
        rows = np.genfromtxt(csv, delimiter=",", names=True)
    mae = float(re.search(r"^reactive\s+(\S+)", out, re.M).group(1))
    mase = float(re.search(r"^auto\s+\S+\s+\S+\s+(\S+)", out, re.M).group(1))
    return rows, mae, mase


def lad(x, z, iters=30):
    """Least absolute deviations by iteratively reweighted least squares; the fitted values."""
    w = np.linalg.lstsq(x, z, rcond=None)[0]
    floor = 1e-4 * np.abs(z).mean()
    for _ in range(iters):
        sw = np.sqrt(1 / np.maximum(np.abs(z - x @ w), floor))
        w = np.linalg.lstsq(x * sw[:, None], z * sw, rcond=None)[0]
    return x @ w


def log(v):
    return np.log(v + EPS)


def knn_features(y, idx):
    cur = log(y[idx])
    lev = np.mean([y[idx - j] for j in range(5)], axis=0)
    f = [log(y[idx - j]) - cur for j in range(1, 12)] + [cur - log(lev)]
    f += [log(y[idx - k * P + j]) - log(y[idx - k * P]) for k in (1, 2, 7) for j in (1, 2, 3)]
    f.append(log(lev))
    x = np.array(f).T
    return x / x.std(axis=0), cur


def knn_insample(x, r):
    """Median of r over the KNN nearest rows, leaving out the GAP rows either side of each row."""
    _, j = cKDTree(x).query(x, k=KNN + 2 * GAP + 1)
    keep = np.abs(j - np.arange(len(x))[:, None]) > GAP
    keep &= np.cumsum(keep, axis=1) <= KNN
    return np.nanmedian(np.where(keep, r[j], np.nan), axis=1)


def knn_causal(x, r):
    """The same with a pool of the rows whose window ended before the day of the row (NaN on day 1)."""
    out = np.full(len(x), np.nan)
    for s in range(P, len(x), P):
        _, j = cKDTree(x[:s - H]).query(x[s:s + P], k=KNN)
        out[s:s + P] = np.median(r[j], axis=1)
    return out


def poisson_floor(counts, e0_sum, seed=7, draws=400):
    rng = np.random.default_rng(seed)
    n, tot = len(counts), 0.0
    for a in range(0, n - H, 20000):
        b = min(a + 20000, n - H)
        m = np.maximum(rng.poisson(counts[a + 1:b + 1, None], (b - a, draws)),
                       rng.poisson(counts[a + 2:b + 2, None], (b - a, draws))) / STEP
        tot += np.abs(m - np.median(m, axis=1, keepdims=True)).mean(axis=1).sum()
    return tot / e0_sum


def bounds(y, counts, z, auto):
    n = len(y)
    idx = np.arange(7 * P + 4, n - H - AFTER - 1)
    zi, e0 = z[idx], np.abs(z[idx] - y[idx])

    def mase(f, rows=slice(None)):
        return np.abs(f[rows] - zi[rows]).sum() / e0[rows].sum()

    one = [np.ones(len(idx))]
    rec = [y[idx - j] for j in range(16)]
    sea = [y[idx + j - k * P] for k in (1, 2, 3) for j in range(-2, 5)]
    aft = [y[idx + H + 1 + j] for j in range(AFTER)]
    x, cur = knn_features(y, idx)
    r = log(zi) - cur
    causal = np.exp(cur + knn_causal(x, r)) - EPS
    scored = ~np.isnan(causal)
    hour = 2 * np.pi * (idx % P) / P
    causal_h = np.exp(cur + knn_causal(np.column_stack([x, np.sin(hour), np.cos(hour)]), r)) - EPS
    a, b = y[idx], y[idx + H + 1]
    res = {
        "auto": mase(auto[idx]),
        "lad": mase(lad(np.array(one + rec + sea).T, zi)),
        "lad_log": mase(np.exp(lad(np.array(one + [log(v) for v in rec + sea]).T, log(zi))) - EPS),
        "knn": mase(np.exp(cur + knn_insample(x, r)) - EPS),
        "knn_causal": mase(causal, scored),
        "auto_causal_rows": mase(auto[idx], scored),
        "knn_causal_h": mase(causal_h, scored),
        "blend": mase(BLEND * causal_h + (1 - BLEND) * auto[idx], scored),
        "line": mase(np.maximum(a + (b - a) / 3, a + 2 * (b - a) / 3)),
        "lad_2s": mase(lad(np.array(one + rec + sea + aft).T, zi)),
        "poisson": poisson_floor(counts, np.abs(z - y[:n - H]).sum()),
        "rows": len(idx),
    }
    return res, idx[scored], causal[scored]


def classes(y, z, auto, rows, knn):
    """Absolute errors summed per class of row: last value, auto, causal kNN, on the causal kNN's rows.
    A spike row is above SPIKE x the median of the 31 rows around it (scripts/forecast_bounds.py)."""
    med = np.median(sliding_window_view(np.pad(y, 15, mode="edge"), 31), axis=1)
    sp = y > SPIKE * med
    inside = sp[rows]
    onset = np.array([sp[t + 1:t + H + 1].any() for t in rows]) & ~inside
    after = np.array([sp[max(0, t - 30):t].any() for t in rows]) & ~inside & ~onset
    calm = ~inside & ~onset & ~after
    e = [np.abs(f - z[rows]) for f in (y[rows], auto[rows], knn)]
    return [(name, int(c.sum()), *[float(x[c].sum()) for x in e])
            for name, c in (("spike starts in the window", onset), ("in a spike", inside),
                             ("up to 30 rows after a spike", after), ("calm", calm))]


def mass(y, z):
    d = z - y[:len(z)]
    e = np.abs(d)
    order = np.argsort(-e)
    share = {q: e[order[:int(q * len(e))]].sum() / e.sum() for q in (0.01, 0.05)}
    high = np.argsort(-y[:len(z)])[:int(0.2 * len(e))]
    top = order[:int(0.01 * len(e))]

    def seen(lag):
        hit = cnt = 0
        for t in top:
            if t - lag - 2 < 0:
                continue
            w = d[t - lag - 2:t - lag + 3]
            cnt += 1
            hit += bool(np.any((np.sign(w) == np.sign(d[t])) & (np.abs(w) >= 0.5 * e[t])))
        return hit / max(cnt, 1)

    offs = (-240, -120, -60, 60, 120, 240)
    ts = np.sort(top)
    return {"top1": share[0.01], "top5": share[0.05], "high20": e[high].sum() / e.sum(),
            "rises": (d[top] > 0).mean(), "events": 1 + int(np.sum(np.diff(ts) > 5)),
            "day": seen(P), "day_off": np.mean([seen(P + o) for o in offs]),
            "week": seen(7 * P), "week_off": np.mean([seen(7 * P + o) for o in offs])}


def checked_trace(prescale, path, short):
    """The trace's counts, rates y, window peaks z and auto's forecasts (from `prescale backtest --csv`), once
    this script's last-value MAE and auto's MASE equal the backtest's; exits otherwise. Also returns both."""
    counts = np.loadtxt(path, delimiter=",", skiprows=1)[:, 1]
    y = counts / STEP
    n = len(y)
    z = np.maximum(y[1:n - 1], y[2:n])
    rows, bt_mae, bt_mase = backtest(prescale, path)
    if not np.allclose(rows["demand"], y, rtol=1e-9):
        raise SystemExit(f"{short}: the backtest's demand is not value / 60")
    auto = rows["forecast"][:n - H]
    mae = np.abs(z - y[:n - H]).mean()
    mase = np.abs(auto - z).sum() / np.abs(z - y[:n - H]).sum()
    if f"{mae:.4g}" != f"{bt_mae:.4g}" or f"{mase:.3f}" != f"{bt_mase:.3f}":
        raise SystemExit(f"{short}: last-value MAE {mae:.4g} / auto MASE {mase:.3f} here, "
                         f"{bt_mae:.4g} / {bt_mase:.3f} in the backtest")
    return counts, y, z, auto, mae, mase


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default=os.path.join(REPO, "..", "shared", "data", "traces"))
    ap.add_argument("--prescale", default=os.path.join(REPO, "build", "src", "prescale"))
    a = ap.parse_args()
    b_rows, m_rows, c_rows = [], [], []
    for short, name in TRACES:
        path = os.path.join(a.traces, name + ".csv")
        counts, y, z, auto, mae, mase = checked_trace(a.prescale, path, short)
        r, rows_k, knn = bounds(y, counts, z, auto)
        for cls, cnt, e_last, e_auto, e_knn in classes(y, z, auto, rows_k, knn):
            c_rows.append(f"| {short} | {cls} | {cnt} | {e_last:.0f} | {e_auto:.0f} ({e_auto / e_last:.2f}) | "
                          f"{e_knn:.0f} ({e_knn / e_last:.2f}) |")
        b_rows.append(f"| {short} | {mae:.4g} = {mae:.4g} | {mase:.3f} = {mase:.3f} | {r['rows']} | "
                      f"{r['auto']:.3f} | {r['lad']:.3f} | {r['lad_log']:.3f} | {r['knn']:.3f} | "
                      f"{r['knn_causal']:.3f} ({r['auto_causal_rows']:.3f}) | {r['knn_causal_h']:.3f} | "
                      f"{r['blend']:.3f} | {r['line']:.3f} | "
                      f"{r['lad_2s']:.3f} | {r['poisson']:.3f} |")
        m = mass(y, z)
        m_rows.append(f"| {short} | {100 * m['top1']:.0f}% | {100 * m['top5']:.0f}% | {100 * m['high20']:.0f}% | "
                      f"{100 * m['rises']:.0f}% | {m['events']} | {100 * m['day']:.0f}% ({100 * m['day_off']:.0f}%) | "
                      f"{100 * m['week']:.0f}% ({100 * m['week_off']:.0f}%) |")
    print("| trace | last-value MAE: here = backtest | auto MASE: here = backtest | rows S | auto on S "
          "| in-sample LAD | in-sample LAD, logs | in-sample kNN | causal kNN (auto on its rows) "
          "| causal kNN + hour of day | 0.7 x that + 0.3 x auto | two-sided line | two-sided LAD | Poisson floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(b_rows))
    print()
    print("| trace | top 1% rows' share of last-value's error | top 5% | rows of the top 20% load "
          "| top 1%: rises | events | same change 1 day before (1-4 h off) | 7 days before (1-4 h off) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(m_rows))
    print()
    print("| trace | rows (causal kNN's) | count | last value's error (sum, req/s) | auto's (x last's) "
          "| causal kNN's (x last's) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(c_rows))


if __name__ == "__main__":
    main()
