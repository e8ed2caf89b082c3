#!/usr/bin/python3
"""Two prescale builds' CPU time per GetMetrics, side by side: docs/performance.md ("The connection timer
and the self-metrics").

Both binaries start on one Prometheus (harness.Env), each with one warm target; then h2load rounds of
--requests GetMetrics (connection set-up included) alternate between them, the first of a pair swapped every
round, each server pinned to CPU 0 and h2load to CPU 1 (as grpc_bench.py --pin). A server's CPU time is its
threads' time on CPU from /proc/PID/task/*/schedstat (nanoseconds; proc(5)) around its round: user and
kernel, what the request cost the machine. Printed: each round's µs per request, the medians and the ratio
of each pair (B / A), whose median is the figure: a pair runs back to back, so the machine's load moves
both alike.

    tests/bench/cpu_ab.py A_BINARY B_BINARY --load 1000x4 --rounds 6 --requests 100000
"""

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from h2run import CLIENT_CPU, SERVER_CPU, pin_prefix, pin_threads  # noqa: E402

MD = {"query": "vector(time() % 180)", "threshold": "10", "step": "5s", "period": "3m", "lookahead": "30s"}


def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--load", default="4x16", help="CLIENTSxSTREAMS")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--requests", type=int, default=100000)
    args = ap.parse_args()
    clients, streams = (int(x) for x in args.load.split("x"))
    pb2, pb2_grpc = harness.grpc_modules()
    env = harness.Env(tmp_prefix="prescale-ab-")
    envs = []
    try:
        with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        env.prom_port = harness.free_port()
        env.start_prometheus()
        req = pb2.GetMetricsRequest(scaledObjectRef=harness.scaled_ref(pb2, **MD), metricName="prescale")
        for binary in (args.a, args.b):
            e = env if not envs else harness.Env(tmp_prefix="prescale-ab-")
            e.prom_port = env.prom_port
            e.start_prescale("--log-level=warn", binary=binary)
            pin_threads(e.prescale.proc.pid, SERVER_CPU)
            with harness.grpc_channel(e.grpc_addr) as ch:
                pb2_grpc.ExternalScalerStub(ch).GetMetrics(req, timeout=10)  # loads the target
            envs.append(e)
        body = req.SerializeToString()
        reqfile = os.path.join(env.tmp, "req.bin")
        with open(reqfile, "wb") as f:
            f.write(b"\x00" + len(body).to_bytes(4, "big") + body)
        us = {0: [], 1: []}
        for r in range(args.rounds):
            for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                e = envs[i]
                argv = pin_prefix(CLIENT_CPU) + [
                    "h2load", "-n", str(args.requests), "-c", str(clients), "-m", str(streams), "-t", "1",
                    "-d", reqfile, "-H", "content-type: application/grpc", "-H", "te: trailers",
                    f"http://{e.grpc_addr}/externalscaler.ExternalScaler/GetMetrics"]
                c0 = cpu_ns(e.prescale.proc.pid)
                out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
                c1 = cpu_ns(e.prescale.proc.pid)
                if f"{args.requests} succeeded, 0 failed" not in out:
                    raise RuntimeError("h2load: not every request succeeded\n" + out)
                us[i].append((c1 - c0) / 1000 / args.requests)
            print(f"round {r + 1}: A {us[0][-1]:.3f} us/req, B {us[1][-1]:.3f} us/req, "
                  f"B/A {us[1][-1] / us[0][-1]:.3f}", flush=True)
        ratios = [b / a for a, b in zip(us[0], us[1])]
        print(f"load {args.load}, {args.rounds} rounds of {args.requests} requests, load average "
              f"{os.getloadavg()[0]:.1f}: median A {statistics.median(us[0]):.3f} us/req, "
              f"B {statistics.median(us[1]):.3f} us/req; median of the pairs' B/A {statistics.median(ratios):.3f} "
              f"({sum(x < 1 for x in ratios)} of {len(ratios)} below 1)")
    finally:
        for e in envs[1:]:
            e.close()
        env.close()


if __name__ == "__main__":
    main()
