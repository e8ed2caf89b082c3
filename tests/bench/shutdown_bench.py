#!/usr/bin/python3
"""`make bench`: prescale's shutdown with many targets (issue 11, "Fan-out and scale").

A real Prometheus; prescale started, --targets targets created by a real gRPC client (python3-grpcio:
one GetMetrics each, distinct names, one query `vector(1)`, step 5m so that no refresh runs meanwhile),
their first loads done, the client's connection closed; then SIGTERM. With no gRPC connection open the
drain ends at once and the registry closes every target in one loop callback (main.c finish_shutdown,
ps_targets_close), so the process's CPU time from SIGTERM to its exit is that loop turn plus the rest of
the shutdown (handles, frees, exit). Figures: that CPU time (the threads' schedstat just before the signal,
the children rusage at the reap) and the wall time to exit, medians of --rounds rounds. --baseline runs an
older binary the same way, first, and the ratios are printed.
Nothing passes or fails on speed.
"""

import argparse
import glob
import os
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402


def cpu_s(pid):
    """CPU time of every thread of pid so far, in seconds (schedstat: nanoseconds on a CPU)."""
    total = 0
    for p in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with open(p) as f:
            total += int(f.read().split()[0])
    return total / 1e9


def one_round(env, a, binary, pb2, pb2_grpc):
    env.start_prescale("--max-targets", str(a.targets), "--first-load-timeout", "120s", "--log-level=warn",
                       binary=binary)
    pid = env.prescale.proc.pid
    channel = h.grpc_channel(env.grpc_addr)
    stub = pb2_grpc.ExternalScalerStub(channel)

    def create(i):
        ref = h.scaled_ref(pb2, name=f"t{i}", namespace="bench", query="vector(1)", threshold="10", step="5m",
                           history="1h", model="last")
        stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=120)

    with ThreadPoolExecutor(a.callers) as ex:
        list(ex.map(create, range(a.targets)))
    channel.close()
    h.wait_until(lambda: h.metric_value(env.prescale_metrics(), "prescale_targets") == a.targets
                 and h.metric_value(env.prescale_metrics(), "prescale_targets_loading") == 0, 120,
                 what="targets loaded")
    h.wait_until(lambda: h.metric_value(env.prescale_metrics(), "prescale_grpc_connections") in (0, None), 30,
                 what="the client's connection closed")
    c0 = cpu_s(pid)
    w0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    _, status, ru = os.wait4(pid, 0)
    w1 = time.monotonic()
    env.prescale.proc.returncode = os.waitstatus_to_exitcode(status)
    env.prescale.log.close()
    env.prescale = None
    if status != 0:
        raise RuntimeError(f"prescale exited with status {status}")
    return {"cpu_ms": (ru.ru_utime + ru.ru_stime - c0) * 1000, "wall_ms": (w1 - w0) * 1000}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prescale", default=h.prescale_bin())
    ap.add_argument("--baseline", help="an older prescale, run the same way first")
    ap.add_argument("--targets", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--callers", type=int, default=64, help="concurrent GetMetrics while creating targets")
    a = ap.parse_args()
    pb2, pb2_grpc = h.grpc_modules()
    env = h.Env(tmp_prefix="prescale-shutdown-bench-")
    try:
        env.prom_port = h.free_port()
        with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1m\n")
        env.start_prometheus()
        runs = ([("baseline", a.baseline)] if a.baseline else []) + [("prescale", a.prescale)]
        res = {}
        for name, binary in runs:
            rs = [one_round(env, a, binary, pb2, pb2_grpc) for _ in range(a.rounds)]
            res[name] = {k: statistics.median(r[k] for r in rs) for k in ("cpu_ms", "wall_ms")}
            each = {k: ", ".join(f"{r[k]:.0f}" for r in rs) for k in ("cpu_ms", "wall_ms")}
            print(f"shutdown: {name} ({binary}), {a.targets} targets, medians of {a.rounds}: CPU from SIGTERM "
                  f"to exit {res[name]['cpu_ms']:.0f} ms ({each['cpu_ms']}), wall {res[name]['wall_ms']:.0f} ms "
                  f"({each['wall_ms']})")
        if a.baseline:
            b, n = res["baseline"], res["prescale"]
            print(f"shutdown: prescale / baseline: CPU {n['cpu_ms'] / b['cpu_ms']:.3f}, wall "
                  f"{n['wall_ms'] / b['wall_ms']:.3f}")
    finally:
        problems = env.close()
        if problems:
            print("shutdown: " + "; ".join(problems), file=sys.stderr)


if __name__ == "__main__":
    main()
