#!/usr/bin/python3
"""`make bench`: a restart (issue 11, "Restarts and first loads"): every target's first RPC loads a week.

A real Prometheus, backfilled with promtool (`promtool tsdb create-blocks-from openmetrics`) with
--targets series (RESTART_TARGETS, 1,000 by default) of a week at 1 minute each (a daily cycle that
differs by series, noise); prescale started fresh (period auto, so each target loads the default 8 days:
the week held); then one GetMetrics per target from a real gRPC client (python3-grpcio, --callers at
once, each on its own query). Measured per prescale binary, one after the other against the same
Prometheus, in one run (--baseline BIN: an older build, e.g. main before the bulk load):
  - the time from the first RPC to the last target answered (every first load in);
  - prescale's CPU over that time (/proc), per target;
  - the longest loop stall, seen from outside: /healthz polled every --probe-ms (5) by a process of its
    own (out of the gRPC client's GIL), its worst latency (the loop answers /healthz between two pieces
    of work; a stall shows whole, plus the probe's own scheduling on a busy machine);
  - the longest loop turn seen from inside (prescale_loop_turn_max_seconds: the time the loop spent in
    callbacks in one turn, waiting for events excluded) and how many turns took over 25 and 50 ms
    (prescale_loop_turn_seconds), read from /metrics after the last answer; "n/a" for a build without
    them. The two figures side by side tell a stall of prescale's from the probe's own wait for a core.
Figures are printed side by side with their ratio; nothing passes or fails on speed.
"""

import argparse
import math
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402

METRIC = "prescale_bench_load"
WEEK_MIN = 7 * 24 * 60


def backfill(tmp, tsdb, n, end_s):
    """n series of a week at 1 minute ending at end_s (a minute boundary) into tsdb. promtool 2.42 reads
    its whole input once per 2-hour block, so a week in one file costs 84 passes: one file per block
    window instead (promtool aligns blocks to multiples of 2 h), each read once."""
    rnd = random.Random(11)
    params = [(20 + 200 * rnd.random(), 0.3 + 0.5 * rnd.random(), 2 * math.pi * rnd.random()) for _ in range(n)]
    start = end_s - (WEEK_MIN - 1) * 60
    block = 2 * 3600
    w = start - start % block
    om = os.path.join(tmp, "backfill.om")
    with open(os.path.join(tmp, "promtool.log"), "ab") as log:
        while w <= end_s:
            ks = range(max(0, (w - start) // 60), min(WEEK_MIN, (w + block - start) // 60))
            with open(om, "w") as f:
                f.write(f"# HELP {METRIC} Synthetic load.\n# TYPE {METRIC} gauge\n")
                for i, (base, amp, ph) in enumerate(params):
                    lines = []
                    for k in ks:
                        d = 2 * math.pi * (k % 1440) / 1440
                        noise = ((i * 2654435761 + k * 40503) % 1000) / 1000 - 0.5  # deterministic, +-0.5
                        v = base * (1 + amp * math.sin(d + ph)) * (1 + 0.1 * noise)
                        lines.append(f'{METRIC}{{target="t{i}"}} {v:.2f} {start + k * 60}\n')
                    f.write("".join(lines))
                f.write("# EOF\n")
            r = subprocess.run([h.PROMTOOL_BIN, "tsdb", "create-blocks-from", "openmetrics", om, tsdb],
                               stdout=log, stderr=subprocess.STDOUT, timeout=600)
            if r.returncode != 0:
                raise RuntimeError(f"promtool create-blocks-from failed with {r.returncode}; see {log.name}")
            w += block
    os.unlink(om)


def start_backfilled_prometheus(env, n):
    """n series of a week at 1 minute, ending two minutes ago, backfilled into env's TSDB; Prometheus started
    on it (no scrape) and waited for until they are queryable. Returns the end (s)."""
    end_s = (int(time.time()) // 60 - 2) * 60
    t0 = time.monotonic()
    os.makedirs(env.tsdb, exist_ok=True)
    backfill(env.tmp, env.tsdb, n, end_s)
    print(f"{n} series x a week at 1 minute backfilled in {time.monotonic() - t0:.0f} s", flush=True)
    env.prom_port = h.free_port()
    with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    env.prometheus = h.Process("prometheus", [
        h.PROMETHEUS_BIN, f"--config.file={os.path.join(env.tmp, 'prometheus.yml')}",
        f"--storage.tsdb.path={env.tsdb}", f"--web.listen-address=127.0.0.1:{env.prom_port}",
        "--storage.tsdb.retention.time=30d", "--log.level=warn"], os.path.join(env.tmp, "prometheus.log"))
    h.wait_http_ok(env.prometheus, env.prom_url + "/-/ready", 120, "Prometheus /-/ready")
    h.wait_until(lambda: env.prom_instant(f'{METRIC}{{target="t0"}}', end_s - 3600) is not None, 120,
                 what="the backfilled series to be queryable")
    return end_s


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def probe(url, period_s, stop, worst, count):
    """In a process of its own: GET url every period_s until stop; the worst latency in worst."""
    while not stop.is_set():
        w = time.monotonic()
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()
        d = time.monotonic() - w
        if d > worst.value:
            worst.value = d
        count.value += 1
        stop.wait(period_s)


def one_run(a, env, binary, pb2, pb2_grpc):
    """prescale `binary` started fresh; every target's first GetMetrics; returns the figures."""
    env.start_prescale("--max-targets", str(a.targets + 10), "--first-load-timeout", "600s", "--log-level=warn",
                       binary=binary)
    pid = env.prescale.proc.pid
    stub = pb2_grpc.ExternalScalerStub(h.grpc_channel(env.grpc_addr))
    stop, worst, probes = mp.Event(), mp.Value("d", 0.0), mp.Value("q", 0)
    errors = []

    def first(i):
        ref = h.scaled_ref(pb2, name=f"t{i}", namespace="bench", query=f'{METRIC}{{target="t{i}"}}',
                           threshold="10", step="1m", model="auto", lookahead="5m")
        try:
            r = stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=600)
            if not r.metricValues:
                errors.append(f"t{i}: no value")
        except Exception as e:  # noqa: BLE001 -- counted and printed
            errors.append(f"t{i}: {e}")

    th = mp.Process(target=probe, args=(env.http_url + "/healthz", a.probe_ms / 1000, stop, worst, probes))
    th.start()
    h.wait_until(lambda: probes.value >= 20, 30, what="the /healthz probe")
    worst.value = 0.0
    c0, w0 = cpu_seconds(pid), time.monotonic()
    with ThreadPoolExecutor(a.callers) as ex:
        list(ex.map(first, range(a.targets)))
    w1, c1 = time.monotonic(), cpu_seconds(pid)
    stop.set()
    th.join()
    m = env.prescale_metrics()
    turn_max = h.metric_value(m, "prescale_loop_turn_max_seconds")
    count = h.metric_value(m, "prescale_loop_turn_seconds_count")
    over = {le: None if count is None else count - h.metric_value(m, "prescale_loop_turn_seconds_bucket", le=le)
            for le in ("0.025", "0.05")}
    env.prescale.stop()
    env.prescale = None
    return {"ready_s": w1 - w0, "cpu_s": c1 - c0, "stall_ms": worst.value * 1000, "probes": probes.value,
            "errors": errors, "turn_ms": None if turn_max is None else turn_max * 1000, "over": over}


def fmt_ms(v):
    return "n/a" if v is None else f"{v:.0f} ms"


def fmt_n(v):
    return "n/a" if v is None else f"{v:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prescale", default=h.prescale_bin())
    ap.add_argument("--baseline", default=os.environ.get("RESTART_BASELINE"),
                    help="an older prescale binary, run the same way first (e.g. main before the bulk load)")
    ap.add_argument("--targets", type=int, default=int(os.environ.get("RESTART_TARGETS", "1000")))
    ap.add_argument("--callers", type=int, default=64)
    ap.add_argument("--probe-ms", type=float, default=5.0)
    a = ap.parse_args()
    pb2, pb2_grpc = h.grpc_modules()
    env = h.Env(tmp_prefix="prescale-restart-bench-")
    try:
        print("restart: ", end="")
        start_backfilled_prometheus(env, a.targets)
        runs = []
        if a.baseline:
            runs.append(("baseline", a.baseline))
        runs.append(("prescale", a.prescale))
        res = {}
        for name, binary in runs:
            r = res[name] = one_run(a, env, binary, pb2, pb2_grpc)
            print(f"  {name} ({binary}): {a.targets} targets ready {r['ready_s']:.1f} s after the first RPC "
                  f"({a.callers} callers); prescale CPU {r['cpu_s']:.1f} s ({r['cpu_s'] / a.targets * 1000:.2f} ms "
                  f"per target); longest /healthz wait {r['stall_ms']:.0f} ms over {r['probes']} probes "
                  f"every {a.probe_ms:g} ms; longest loop turn {fmt_ms(r['turn_ms'])} (turns over 25 / 50 ms: "
                  f"{fmt_n(r['over']['0.025'])} / {fmt_n(r['over']['0.05'])}); "
                  f"{len(r['errors'])} errors{': ' + r['errors'][0] if r['errors'] else ''}")
        if "baseline" in res:
            b, n = res["baseline"], res["prescale"]
            print(f"  => prescale / baseline in this run: time to ready {n['ready_s'] / b['ready_s']:.3f}, CPU "
                  f"{n['cpu_s'] / b['cpu_s']:.3f}, longest /healthz wait {n['stall_ms'] / b['stall_ms']:.3f}, longest "
                  f"turn {n['turn_ms'] / b['turn_ms'] if n['turn_ms'] and b['turn_ms'] else float('nan'):.3f}"
                  f"   (target: 10,000 targets ready in <= 30 s of one core, 3 ms per target)")
    finally:
        problems = env.close()
        if problems:
            print("restart: prescale at shutdown: " + "; ".join(problems), file=sys.stderr)


if __name__ == "__main__":
    main()
