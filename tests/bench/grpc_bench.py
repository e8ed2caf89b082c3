#!/usr/bin/python3
"""`make bench`: prescale's RPC path measured beside nghttpd, in one run, on loopback.

What is compared: h2load drives GetMetrics (a real gRPC POST with a length-prefixed protobuf body,
answered from a warm target's cache) against prescale, and the same h2load load (same clients, streams
and request count, a body of the same size) against nghttpd serving a static file of the size of
prescale's answer. nghttpd is nghttp2's own reference server: the ratio says how much prescale's
gRPC framing, protobuf and target lookup cost over plain HTTP/2 serving. Rounds alternate between the
two servers so that the shared, noisy machine affects both alike; medians are quoted.

Also printed: prescale's resident memory idle, then with N targets loaded (history 1 h at 5 s), and the
memory per target. Every RPC is checked afterwards through prescale's own counter
prescale_grpc_requests_total{method="GetMetrics",code="OK"}, so a run that answered errors cannot pass
for a fast one.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

QUERY = "vector(time() % 180)"  # an exact periodic series that needs no scraping
MD = {"query": QUERY, "threshold": "10", "step": "5s", "period": "3m", "lookahead": "30s"}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def h2load(url, n, clients, streams, data, headers=()):
    argv = ["h2load", "-n", str(n), "-c", str(clients), "-m", str(streams), "-t", "1", "-d", data]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=300).stdout
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    if not rps or not ok:
        raise RuntimeError("cannot read h2load's output:\n" + out)
    if int(ok.group(2)) != 0 or int(ok.group(1)) != n:
        raise RuntimeError(f"h2load: {ok.group(1)} of {n} succeeded\n" + out)
    return float(rps.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prescale", default=harness.prescale_bin())
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--targets", type=int, default=1000)
    args = ap.parse_args()
    pb2, pb2_grpc = harness.grpc_modules()
    import grpc

    env = harness.Env(tmp_prefix="prescale-bench-")
    nghttpd = None
    try:
        with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        env.prom_port = harness.free_port()
        env.start_prometheus()
        env.start_prescale("--log-level=warn", binary=args.prescale)
        pid = env.prescale.proc.pid
        rss_idle = rss_kib(pid)

        req = pb2.GetMetricsRequest(scaledObjectRef=harness.scaled_ref(pb2, **MD), metricName="prescale")
        with harness.grpc_channel(env.grpc_addr) as ch:
            stub = pb2_grpc.ExternalScalerStub(ch)
            answer = stub.GetMetrics(req, timeout=10)  # loads the target: the bench reads its cache
        body = req.SerializeToString()
        reqfile = os.path.join(env.tmp, "req.bin")
        with open(reqfile, "wb") as f:
            f.write(b"\x00" + len(body).to_bytes(4, "big") + body)
        # nghttpd serves a file as large as prescale's answer (prefix + message).
        docroot = os.path.join(env.tmp, "htdocs")
        os.makedirs(docroot)
        with open(os.path.join(docroot, "v"), "wb") as f:
            f.write(b"x" * (5 + len(answer.SerializeToString())))
        ng_port = harness.free_port()
        nghttpd = subprocess.Popen(["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", docroot, str(ng_port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: _h2_ready(ng_port), 10, what="nghttpd to accept connections")

        grpc_url = f"http://{env.grpc_addr}/externalscaler.ExternalScaler/GetMetrics"
        ng_url = f"http://127.0.0.1:{ng_port}/v"
        hdrs = ["content-type: application/grpc", "te: trailers"]
        ok_before = _ok_count(env)
        ps, ng = [], []
        for _ in range(args.rounds):
            ps.append(h2load(grpc_url, args.requests, args.clients, args.streams, reqfile, hdrs))
            ng.append(h2load(ng_url, args.requests, args.clients, args.streams, reqfile))
        ok_after = _ok_count(env)
        answered = ok_after - ok_before
        if answered != args.requests * args.rounds:
            raise RuntimeError(f"prescale counted {answered} OK GetMetrics, expected {args.requests * args.rounds}")
        rss_busy = rss_kib(pid)

        # Memory with many targets: each its own name, loaded from Prometheus (1 h at 5 s = 721 points).
        with harness.grpc_channel(env.grpc_addr) as ch:
            stub = pb2_grpc.ExternalScalerStub(ch)
            futures = [stub.GetMetrics.future(pb2.GetMetricsRequest(
                scaledObjectRef=harness.scaled_ref(pb2, name=f"app-{i}", **MD), metricName="prescale"),
                timeout=60) for i in range(args.targets)]
            failed = sum(1 for fu in futures if fu.exception() is not None)
        rss_targets = rss_kib(pid)

        med_ps, med_ng = statistics.median(ps), statistics.median(ng)
        print(f"prescale bench ({args.rounds} rounds of {args.requests} requests, {args.clients} clients x "
              f"{args.streams} streams, h2load -t 1; machine: {os.cpu_count()} cores, shared)")
        print(f"  GetMetrics on prescale   req/s median {med_ps:10.0f}   rounds {[round(x) for x in ps]}")
        print(f"  static file on nghttpd   req/s median {med_ng:10.0f}   rounds {[round(x) for x in ng]}")
        print(f"  ratio prescale/nghttpd  {med_ps / med_ng:.2f}")
        print(f"  every request answered OK (prescale counted {answered})")
        print(f"  RSS idle {rss_idle} KiB, after the RPC bench {rss_busy} KiB, with {args.targets + 1} targets "
              f"{rss_targets} KiB ({failed} loads failed): "
              f"{(rss_targets - rss_busy) * 1024 / max(1, args.targets):.0f} bytes per target "
              f"(model auto, history 721 points; the engine's bytes per sample: engine bench below)")
    finally:
        if nghttpd is not None:
            nghttpd.terminate()
            nghttpd.wait(10)
        env.close()


def _h2_ready(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _ok_count(env):
    m = env.prescale_metrics()
    return harness.metric_value(m, "prescale_grpc_requests_total", method="GetMetrics", code="OK") or 0


if __name__ == "__main__":
    main()
