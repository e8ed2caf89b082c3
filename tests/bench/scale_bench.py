#!/usr/bin/python3
"""`make bench`: Prometheus bytes per refresh and memory with many targets (issue 11, "Fan-out and scale").

A real Prometheus backfilled with promtool (restart_bench.py's --series series of a week at 1 minute), then
one prescale:
  1. RSS at rest: started, /readyz answered, no target yet.
  2. Bytes per refresh: --bytes-targets targets with a history of 1 day and as many with a week (step
     1m, each its own series, `sum(...) or vector(0)` so that the minutes after the backfill read 0),
     each group reaching Prometheus through its own byte-counting proxy (stream_bench.py's); after their
     first loads, the bytes prescale sends and receives per query_range until each target refreshed
     --refreshes times: constant in the history length when refreshes ask only for the new points.
  3. RSS with --targets targets of a week at 1 minute (distinct queries over the series, one GetMetrics
     each from --callers python3-grpcio callers), every first load in: the bytes per stored sample
     beside the target (<= 10 MB + 8.5 bytes per stored sample).
Figures are printed; nothing passes or fails on speed or size.
"""

import argparse
import multiprocessing as mp
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import fanout_bench  # noqa: E402
import harness as h  # noqa: E402
import restart_bench  # noqa: E402
import stream_bench  # noqa: E402

METRIC = restart_bench.METRIC
WEEK = 7 * 24 * 60


def query(i, series):
    """Distinct per i; reads series i % series, 0 where it has no sample (after the backfill)."""
    q = f'sum({METRIC}{{target="t{i % series}"}}) or vector(0)'
    return q if i < series else f"({q}) + {i // series}*0"


def proxy(upstream_port):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    port = ls.getsockname()[1]
    ctl, child = mp.Pipe()
    p = mp.Process(target=stream_bench.proxy_main, args=(ls, upstream_port, child), daemon=True)
    p.start()
    ls.close()
    return port, ctl, p


def counts(ctl):
    ctl.send("bytes")
    return ctl.recv()  # (bytes sent to Prometheus, bytes received from it, query_range requests)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prescale", default=h.prescale_bin())
    ap.add_argument("--series", type=int, default=int(os.environ.get("SCALE_SERIES", "1000")))
    ap.add_argument("--targets", type=int, default=int(os.environ.get("SCALE_TARGETS", "10000")))
    ap.add_argument("--bytes-targets", type=int, default=50)
    ap.add_argument("--refreshes", type=int, default=2)
    ap.add_argument("--callers", type=int, default=64)
    a = ap.parse_args()
    pb2, pb2_grpc = h.grpc_modules()
    env = h.Env(tmp_prefix="prescale-scale-bench-")
    proxies = []
    try:
        print("scale: ", end="")
        restart_bench.start_backfilled_prometheus(env, a.series)
        env.start_prescale("--max-targets", str(a.targets + 2 * a.bytes_targets + 10), "--first-load-timeout",
                           "600s", "--log-level=warn", binary=a.prescale)
        pid = env.prescale.proc.pid
        rest = fanout_bench.rss_mib(pid)
        print(f"  RSS at rest (started, ready, no target): {rest:.1f} MiB   (target < 10 MB = 9.5 MiB)", flush=True)
        stub = pb2_grpc.ExternalScalerStub(h.grpc_channel(env.grpc_addr))
        errors = []

        def first(i, name, history, server):
            ref = h.scaled_ref(pb2, name=name, namespace="bench", query=query(i, a.series), threshold="10",
                               step="1m", history=history, lookahead="5m", serverAddress=server)
            try:
                r = stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=600)
                if not r.metricValues:
                    errors.append(f"{name}: no value")
            except Exception as e:  # noqa: BLE001 -- counted and printed
                errors.append(f"{name}: {e}")

        # 2. Bytes per refresh, a day and a week side by side.
        groups = []
        for k, history in enumerate(("1d", "7d")):
            port, ctl, p = proxy(env.prom_port)
            proxies.append((ctl, p))
            groups.append({"history": history, "ctl": ctl, "server": f"http://127.0.0.1:{port}",
                           "ids": [k * a.bytes_targets + j for j in range(a.bytes_targets)]})
        with ThreadPoolExecutor(a.callers) as ex:
            list(ex.map(lambda g_i: first(g_i[1], f"b{g_i[1]}", g_i[0]["history"], g_i[0]["server"]),
                        [(g, i) for g in groups for i in g["ids"]]))
        for g in groups:
            g["load"] = counts(g["ctl"])
        bound = time.monotonic() + 60 * (a.refreshes + 3)
        for g in groups:
            want = g["load"][2] + a.refreshes * a.bytes_targets
            h.wait_until(lambda: counts(g["ctl"])[2] >= want, max(1.0, bound - time.monotonic()), interval=1.0,
                         what=f"{a.refreshes} refreshes of each {g['history']} target")
        for g in groups:
            g["end"] = counts(g["ctl"])
        print(f"  Prometheus bytes per target, step 1m, {a.bytes_targets} targets per history ({len(errors)} errors"
              f"{': ' + errors[0] if errors else ''}):")
        for g in groups:
            (u0, d0, r0), (u1, d1, r1) = g["load"], g["end"]
            n = r1 - r0
            print(f"    history {g['history']}: first load {u0 / a.bytes_targets:.0f} B sent, "
                  f"{d0 / a.bytes_targets:.0f} B received ({r0 / a.bytes_targets:.1f} requests); then per refresh "
                  f"({n} refreshes): {(u1 - u0) / n:.0f} B sent, {(d1 - d0) / n:.0f} B received", flush=True)
        (_, da0, ra0), (_, da1, ra1) = groups[0]["load"], groups[0]["end"]
        (_, dw0, rw0), (_, dw1, rw1) = groups[1]["load"], groups[1]["end"]
        print(f"    => received per refresh, a week / a day: {((dw1 - dw0) / (rw1 - rw0)) / ((da1 - da0) / (ra1 - ra0)):.3f}"
              f" (first load: {dw0 / da0:.2f}); target: constant in the history length")

        # 3. RSS with --targets targets of a week at 1 minute.
        base = 2 * a.bytes_targets
        stored = a.bytes_targets * (1440 + WEEK)
        errors.clear()
        t0 = time.monotonic()
        with ThreadPoolExecutor(a.callers) as ex:
            list(ex.map(lambda i: first(i, f"t{i}", "7d", env.prom_url), range(base, base + a.targets)))
        h.wait_until(lambda: h.metric_value(env.prescale_metrics(), "prescale_targets_loading") == 0, 300,
                     interval=1.0, what="every first load in")
        stored += a.targets * WEEK
        rss = fanout_bench.rss_mib(pid)
        per = (rss - rest) * 2**20 / stored
        limit = (10e6 + 8.5 * stored) / 2**20
        print(f"  {a.targets} targets of a week at 1 minute loaded in {time.monotonic() - t0:.0f} s ({len(errors)} "
              f"errors{': ' + errors[0] if errors else ''}): RSS {rss:.0f} MiB for {stored:,} stored samples "
              f"(with the {base} above): {per:.2f} bytes per stored sample over the RSS at rest; target "
              f"<= 10 MB + 8.5 B/sample = {limit:.0f} MiB", flush=True)
    finally:
        for ctl, p in proxies:
            try:
                ctl.send("quit")
            except OSError:
                pass
            p.join(5)
        problems = env.close()
        if problems:
            print("scale: prescale at shutdown: " + "; ".join(problems), file=sys.stderr)


if __name__ == "__main__":
    main()
