#!/usr/bin/python3
"""Does a BOUNDED nearest-neighbour forecaster of the window's peak keep the causal kNN's gain?
Offline; the follow-up to scripts/peak_bounds.py (docs/forecasting.md, "How far the window's peak can be
forecast (bounds)"), whose causal kNN's pool is every past row: not O(1) per step.

Same quantity, same inputs, same check as peak_bounds.py (it imports them): at row t, a forecast of
z[t] = max(rate[t+1], rate[t+2]) (2m lookahead at 60 s rows), MASE against the last value rate[t]. It first
runs `prescale backtest TRACE --lookahead 2m --startup 60s --csv` and stops unless its last-value MAE and
auto's MASE (the `forecast` column) equal the backtest's; then it reproduces peak_bounds.py's causal kNN
(pool rebuilt daily, inputs scaled by whole-trace standard deviations) on peak_bounds' rows.

The bounded variants: the library is the last N rows whose window has ended (rows t-H-N+1 .. t-H, exact
per row, no daily rebuild), or N of them at a stride, or the same phase (the last N rows and the rows
within +-W of the same minute on each of the last 7 days), or a reservoir of fixed size over all past
rows; k neighbours; a subset of the
input groups (lags: log(rate[t-j]/rate[t]), j=1..11; mean: log(rate[t]/5-row mean); seasonal: what followed
the same minute 1, 2, 7 days back, 3 rows each; level: log of the 5-row mean; hour: sin/cos of the minute of
the day; gmean, glevel: mean and level with the mean of the 5 logs for the log of the mean, so that every
input is a difference or mean of stored log rates); inputs quantized to 8 or 16 bits (each scaled input clipped to +-4 and rounded to 2^b levels).
The inputs are centered and scaled by their means and standard deviations over the FIRST half of the
scored rows only (the
second half is a check the settings never saw). Forecast: rate[t] x exp(median of the neighbours'
log(z/rate)) (peak_bounds.py's); blended with auto at one weight per variant, chosen on the first halves
(the best mean over the three traces); and a switch that, per row, takes that blend or auto's forecast,
whichever made the smaller absolute error over the last day's rows whose windows have ended (how auto
chooses among its own models: what keeps nasa, the control, from getting worse than auto).

Every variant is scored on the same rows (from peak_bounds.py's S once 7 days + 128 rows, the oldest
library row tried, exist, to 17 rows before the end), split in a first and a second half. Cost per step: distance computations x inputs
(the flops of the distance loop, ~1 flop/ns in a plain C loop: the same number in ns); memory: bytes per
stored sample at a week of 1-minute history (10,080 samples) if the library's inputs and target are stored
explicitly, at the quantized width (float32 when not quantized), plus the implicit alternative: every input
but the hour is a difference of log rates already in the history, so a 16-bit log rate per sample
(2 bytes) and the recomputed differences suffice: 2 bytes x (the library's reach back + its inputs'
reach back, 7 days with the seasonal inputs) / a week, at least 2.

Needs numpy and scipy (Debian: python3-numpy, python3-scipy), the traces and a built prescale; imports
scripts/peak_bounds.py. About 14 minutes on the shared machine, 8 without the reproduction (--no-ref);
--only NAME (repeatable) runs only the named variants:
    /usr/bin/python3 scripts/peak_knn_bounded.py [--traces ../shared/data/traces] [--prescale build/src/prescale]
        [--no-ref] [--only 'phase: last 120 + 7 days x +-60']
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peak_bounds import EPS, H, P, REPO, TRACES, checked_trace, knn_causal, knn_features, log  # noqa: E402

NMAX = 7 * P + 128  # the oldest library row tried (offset): scored rows start once it exists
WEEK = 7 * P  # samples in a week of 1-minute history
GROUPS = {"lags": list(range(0, 11)), "mean": [11], "seasonal": list(range(12, 21)), "level": [21],
          "hour": [22, 23], "gmean": [24], "glevel": [25]}
BLOCK = 256  # query rows per distance matrix
BLEND_GRID = np.round(np.arange(0.0, 1.01, 0.1), 2)


def raw_features(y, idx):
    """peak_bounds.py's 22 inputs, unscaled, and the hour's two; the log of the current rate."""
    x, cur = knn_features(y, idx)  # scaled by whole-trace std: undo with the same std
    cur_ = log(y[idx])
    lev = np.mean([y[idx - j] for j in range(5)], axis=0)
    f = [log(y[idx - j]) - cur_ for j in range(1, 12)] + [cur_ - log(lev)]
    f += [log(y[idx - k * P + j]) - log(y[idx - k * P]) for k in (1, 2, 7) for j in (1, 2, 3)]
    f.append(log(lev))
    hour = 2 * np.pi * (idx % P) / P
    glev = np.mean([log(y[idx - j]) for j in range(5)], axis=0)  # the mean of the logs: no log in C
    raw = np.column_stack(f + [np.sin(hour), np.cos(hour), cur_ - glev, glev])
    return raw, x, cur


def quantize(x, bits):
    if not bits:
        return x
    levels = 2 ** bits - 1
    q = np.round((np.clip(x, -4, 4) + 4) / 8 * levels)
    return q / levels * 8 - 4


def switch(f, g, z, day=P):
    """Per row t, f[t] or g[t], whichever made the smaller sum of absolute errors over the rows
    t-H-day+1 .. t-H (their windows have ended at t): auto's own way of choosing among its models."""
    diff = np.abs(f - z) - np.abs(g - z)
    c = np.concatenate([[0.0], np.cumsum(np.where(np.isnan(diff), 0.0, diff))])
    t = np.arange(len(f))
    hi, lo = np.clip(t - H + 1, 0, len(f)), np.clip(t - H + 1 - day, 0, len(f))
    use_f = (c[hi] - c[lo] < 0) & ~np.isnan(f)
    return np.where(use_f, f, g)


def offsets(kind, n, stride=1, days=0, width=0):
    """The library as the offsets o = t - s (o >= H: s's window has ended at t) it may hold: the last n
    rows at a stride ("last"), or the rows within +-width of the same minute on each of the last `days`
    days plus the last n rows ("phase"). A boolean over o = 0 .. max."""
    if kind == "last":
        o = H + stride * np.arange(n)
    else:
        o = np.concatenate([H + np.arange(n)] + [d * P + np.arange(-width, width + 1) for d in range(1, days + 1)])
    allowed = np.zeros(o.max() + 1, bool)
    allowed[o[o >= H]] = True
    return allowed


def knn_window(x, r, q_rows, allowed, k):
    """For each position q in q_rows: the median of r over the k nearest of the positions q - o with o
    an allowed offset (exact per row)."""
    out = np.empty(len(q_rows))
    sq = (x * x).sum(axis=1)
    omax = len(allowed) - 1
    for a in range(0, len(q_rows), BLOCK):
        qs = q_rows[a:a + BLOCK]
        lo, hi = qs[0] - omax, qs[-1] - H + 1
        lib = np.arange(lo, hi)
        d = sq[qs][:, None] + sq[lo:hi][None, :] - 2 * x[qs] @ x[lo:hi].T
        o = qs[:, None] - lib[None, :]
        d[(o < 0) | (o > omax) | ~allowed[np.clip(o, 0, omax)]] = np.inf
        j = np.argpartition(d, k - 1, axis=1)[:, :k]
        out[a:a + BLOCK] = np.median(r[lo + j], axis=1)
    return out


def knn_reservoir(x, r, q_rows, n, k, seed=13):
    """A reservoir of n rows (Vitter's algorithm R) over every row whose window has ended, searched
    exactly; the reservoir is updated row by row, the search done once per block of rows (the reservoir
    of the block's first row: at most BLOCK rows stale)."""
    rng = np.random.default_rng(seed)
    res = np.arange(0)
    seen = 0
    out = np.empty(len(q_rows))
    sq = (x * x).sum(axis=1)
    nxt = 0
    for a in range(0, len(q_rows), BLOCK):
        qs = q_rows[a:a + BLOCK]
        while nxt <= qs[0] - H:  # admit rows whose window ended before the block
            if len(res) < n:
                res = np.append(res, nxt)
            else:
                s = rng.integers(0, seen + 1)
                if s < n:
                    res[s] = nxt
            seen += 1
            nxt += 1
        d = sq[qs][:, None] + sq[res][None, :] - 2 * x[qs] @ x[res].T
        j = np.argpartition(d, k - 1, axis=1)[:, :k]
        out[a:a + BLOCK] = np.median(r[res[j]], axis=1)
    return out


ALL = ("lags", "mean", "seasonal", "level")


def V(name, lib=("last", 4096, 1, 0, 0), k=50, groups=ALL, bits=0):
    """A variant: lib is (kind, n, stride, days, width) for offsets(), or ("reservoir", n)."""
    return {"name": name, "lib": lib, "k": k, "groups": groups, "bits": bits}


VARIANTS = [
    V("last 1440", ("last", 1440, 1, 0, 0)),
    V("last 2880", ("last", 2880, 1, 0, 0)),
    V("last 4096", ("last", 4096, 1, 0, 0)),
    V("last 8192", ("last", 8192, 1, 0, 0)),
    V("reservoir 4096", ("reservoir", 4096)),
    V("1440 at stride 7 (a week)", ("last", 1440, 7, 0, 0)),
    V("1440 at stride 4", ("last", 1440, 4, 0, 0)),
    V("720 at stride 14", ("last", 720, 14, 0, 0)),
    V("phase: last 120 + 7 days x +-60", ("phase", 120, 1, 7, 60)),
    V("phase: last 240 + 7 days x +-120", ("phase", 240, 1, 7, 120)),
    V("last 4096, + hour", groups=ALL + ("hour",)),
    V("last 4096, no seasonal", groups=("lags", "mean", "level")),
    V("last 4096, seasonal 1-2 days only", groups=("lags", "mean", "seasonal12", "level")),
    V("last 4096, no lags", groups=("mean", "seasonal", "level")),
    V("last 4096, lags 1-5 only", groups=("lags5", "mean", "seasonal", "level")),
    V("last 4096, no level", groups=("lags", "mean", "seasonal")),
    V("last 4096, no mean", groups=("lags", "seasonal", "level")),
    V("last 4096, k 25", k=25),
    V("last 4096, k 100", k=100),
    V("last 4096, 16 bit", bits=16),
    V("last 4096, 8 bit", bits=8),
    # within the budget (about 30,000 flops per step)
    V("last 2304, no seasonal", ("last", 2304, 1, 0, 0), groups=("lags", "mean", "level")),
    V("phase: last 60 + 7 days x +-30", ("phase", 60, 1, 7, 30)),
    V("phase: last 480 + 7 days x +-60", ("phase", 480, 1, 7, 60)),
    V("phase: last 120 + 7 days x +-60, no seasonal", ("phase", 120, 1, 7, 60), groups=("lags", "mean", "level")),
    V("phase: last 240 + 7 days x +-120, no seasonal", ("phase", 240, 1, 7, 120),
      groups=("lags", "mean", "level")),
    V("phase: last 240 + 7 days x +-120, 8 bit", ("phase", 240, 1, 7, 120), bits=8),
    V("phase: last 120 + 7 days x +-60, 8 bit", ("phase", 120, 1, 7, 60), bits=8),
    V("phase: last 120 + 7 days x +-60, k 25", ("phase", 120, 1, 7, 60), k=25),
    V("phase: last 240 + 7 days x +-120, no seasonal, logs only", ("phase", 240, 1, 7, 120),
      groups=("lags", "gmean", "glevel")),
    V("phase: last 240 + 7 days x +-120, no seasonal, logs only, 8 bit", ("phase", 240, 1, 7, 120),
      groups=("lags", "gmean", "glevel"), bits=8),
]


def columns(groups):
    cols = []
    for g in groups:
        cols += {"lags5": list(range(0, 5)), "seasonal12": list(range(12, 18))}.get(g) or GROUPS[g]
    return cols


def run_trace(short, y, z, auto, only, skip_ref):
    n_all = len(y)
    idx = np.arange(7 * P + 4, n_all - H - 16 - 1)  # peak_bounds.py's rows S
    zi, e0 = z[idx], np.abs(z[idx] - y[idx])
    raw, x_pb, cur = raw_features(y, idx)
    r = log(zi) - cur
    # peak_bounds.py's causal kNN, reproduced on its own rows (from S's second day)
    ref = {}
    if not skip_ref:
        c = np.exp(cur + knn_causal(x_pb, r)) - EPS
        ok = ~np.isnan(c)
        ref = {"causal": np.abs(c[ok] - zi[ok]).sum() / e0[ok].sum(),
               "auto": np.abs(auto[idx][ok] - zi[ok]).sum() / e0[ok].sum()}
    q = np.arange(max(P, NMAX + H), len(idx))  # scored positions, common to every variant
    half = len(q) // 2
    parts = (q[:half], q[half:])
    mean, std = raw[q[:half]].mean(axis=0), raw[q[:half]].std(axis=0)
    std[std == 0] = 1

    def mase(f, rows):
        return np.abs(f[rows] - zi[rows]).sum() / e0[rows].sum()

    res = {"ref": ref, "auto": [mase(auto[idx], p) for p in parts], "rows": [len(p) for p in parts],
           "last": {}, "fc": {}}
    for v in VARIANTS:
        name, lib, cols = v["name"], v["lib"], columns(v["groups"])
        if only and name not in only:
            continue
        x = quantize((raw[:, cols] - mean[cols]) / std[cols], v["bits"])
        if lib[0] == "reservoir":
            m = knn_reservoir(x, r, q, lib[1], v["k"])
        else:
            m = knn_window(x, r, q, offsets(*lib), v["k"])
        f = np.full(len(idx), np.nan)
        f[q] = np.exp(cur[q] + m) - EPS
        res["fc"][name] = f
        res["last"][name] = [mase(f, p) for p in parts]
        print(f"  {short} {name}: {res['last'][name][0]:.3f} / {res['last'][name][1]:.3f}", flush=True)
    res["idx"], res["parts"], res["zi"], res["e0"], res["auto_f"] = idx, parts, zi, e0, auto[idx]
    return res


def cost(v):
    """Inputs; distance computations x inputs per step; bytes per stored sample (a week at 1 minute) if
    the library's rows (inputs and target) are stored explicitly (every row of its span when it moves with
    t: strided and same-phase libraries), and if only a 16-bit log rate per sample is stored over the
    span the library and its inputs reach back (the inputs recomputed)."""
    d = len(columns(v["groups"]))
    lib = v["lib"]
    if lib[0] == "reservoir":
        n, stored, span = lib[1], lib[1], None
    else:
        allowed = offsets(*lib)
        n, span = int(allowed.sum()), len(allowed) - 1
        stored = span - H + 1
    back = 7 * P + 3 if "seasonal" in v["groups"] else 2 * P + 3 if "seasonal12" in v["groups"] else 11
    width = v["bits"] / 8 if v["bits"] else 4
    explicit = stored * (d + 1) * width / WEEK
    implicit = 2 * max(1.0, (span + back) / WEEK) if span is not None else float("nan")
    return d, n * d, explicit, implicit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default=os.path.join(REPO, "..", "shared", "data", "traces"))
    ap.add_argument("--prescale", default=os.path.join(REPO, "build", "src", "prescale"))
    ap.add_argument("--only", action="append", default=[], help="run only this variant (repeatable); "
                    "skips the reproduction of peak_bounds.py's causal kNN")
    ap.add_argument("--no-ref", action="store_true", help="skip the reproduction of peak_bounds.py's causal kNN")
    a = ap.parse_args()
    out = {}
    for short, name in TRACES:
        path = os.path.join(a.traces, name + ".csv")
        _, y, z, auto, mae, mase = checked_trace(a.prescale, path, short)
        print(f"{short}: last-value MAE {mae:.4g}, auto MASE {mase:.3f}, as the backtest's", flush=True)
        out[short] = run_trace(short, y, z, auto, a.only, a.no_ref or bool(a.only))
        if out[short]["ref"]:
            print(f"  {short} peak_bounds causal kNN {out[short]['ref']['causal']:.3f} "
                  f"(auto {out[short]['ref']['auto']:.3f})", flush=True)
    # one blend weight for every trace and variant: the best mean over the three first halves, per variant
    names = [v["name"] for v in VARIANTS if not a.only or v["name"] in a.only]
    print()
    print("| variant | inputs | flops/step (= ns) | bytes/sample explicit, implicit | blend w | "
          + " | ".join(f"{s} 1st / 2nd" for s in out) + " | "
          + " | ".join(f"{s} blend 1st / 2nd" for s in out) + " | "
          + " | ".join(f"{s} switch 1st / 2nd" for s in out) + " |")
    print("|---|---|---|---|---|" + "---|" * (3 * len(out)))
    print("| auto | | | | | " + " | ".join(f"{o['auto'][0]:.3f} / {o['auto'][1]:.3f}" for o in out.values())
          + " |" + " |" * (2 * len(out)))
    for v in VARIANTS:
        name = v["name"]
        if name not in names:
            continue
        d, flops, explicit, implicit = cost(v)

        def bl(o, w, p):
            f = w * o["fc"][name] + (1 - w) * o["auto_f"]
            return np.abs(f[p] - o["zi"][p]).sum() / o["e0"][p].sum()

        w = min(BLEND_GRID, key=lambda w: np.mean([bl(o, w, o["parts"][0]) for o in out.values()]))

        def sw(o, p):
            f = switch(w * o["fc"][name] + (1 - w) * o["auto_f"], o["auto_f"], o["zi"])
            return np.abs(f[p] - o["zi"][p]).sum() / o["e0"][p].sum()
        print(f"| {name} | {d} | {flops} | {explicit:.1f}, {implicit:.1f} | {w:.1f} | "
              + " | ".join(f"{o['last'][name][0]:.3f} / {o['last'][name][1]:.3f}" for o in out.values()) + " | "
              + " | ".join(f"{bl(o, w, o['parts'][0]):.3f} / {bl(o, w, o['parts'][1]):.3f}" for o in out.values())
              + " | " + " | ".join(f"{sw(o, o['parts'][0]):.3f} / {sw(o, o['parts'][1]):.3f}" for o in out.values())
              + " |", flush=True)
    print()
    print("rows per half: " + ", ".join(f"{s} {o['rows'][0]} / {o['rows'][1]}" for s, o in out.items()))
    for s, o in out.items():
        if o["ref"]:
            print(f"{s}: peak_bounds.py's causal kNN {o['ref']['causal']:.3f}, auto on its rows {o['ref']['auto']:.3f}")


if __name__ == "__main__":
    main()
