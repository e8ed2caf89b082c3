#!/usr/bin/python3
"""`make bench`: Prometheus fan-out with many targets (docs/reliability.md, "Prometheus fan-out").

A real Prometheus (scraping itself every 5 s, so the queries read real series) and prescale with
--prometheus-max-inflight; a real gRPC client (python3-grpcio) calls GetMetrics once for each of
--targets targets with distinct queries (`sum(prometheus_http_requests_total) + <i>*0`) at --step, so
that they are created, and keeps its connection. Then, for --duration seconds, it measures:
  - refresh timeouts and errors (prescale's /metrics counters, delta over the window);
  - requests in flight, queued, and connections to Prometheus (the /metrics gauges every 15 s, and the
    process's established sockets to Prometheus from /proc every 0.5 s);
  - /healthz latency, polled every 100 ms (p50, p99, max);
  - prescale's CPU (share of one core) and RSS.
Figures are printed; nothing passes or fails on speed.
"""

import argparse
import os
import statistics
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402



def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])  # utime + stime


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def family_sum(m, name):
    return sum(v for (n, _), v in m.items() if n == name)


def family_max(m, name):
    return max([v for (n, _), v in m.items() if n == name], default=0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prescale", default=h.prescale_bin())
    ap.add_argument("--targets", type=int, default=10000)
    ap.add_argument("--duration", type=float, default=float(os.environ.get("FANOUT_SECONDS", "120")))
    ap.add_argument("--step", default="15s")
    ap.add_argument("--max-inflight", type=int, default=16)
    ap.add_argument("--callers", type=int, default=64, help="concurrent GetMetrics while creating targets")
    a = ap.parse_args()
    pb2, pb2_grpc = h.grpc_modules()
    env = h.Env(tmp_prefix="prescale-fanout-bench-")
    try:
        env.prom_port = h.free_port()
        with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 5s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: ['127.0.0.1:{env.prom_port}']
""")
        env.start_prometheus()
        h.wait_until(lambda: env.prom_instant("sum(prometheus_http_requests_total)") is not None, 60,
                     what="Prometheus' own series")
        env.start_prescale("--prometheus-max-inflight", str(a.max_inflight), "--max-targets", str(a.targets),
                           "--first-load-timeout", "60s", "--log-level=warn", binary=a.prescale)
        pid = env.prescale.proc.pid
        stub = pb2_grpc.ExternalScalerStub(h.grpc_channel(env.grpc_addr))
        q = "sum(prometheus_http_requests_total)"

        def create(i):
            ref = h.scaled_ref(pb2, name=f"t{i}", namespace="bench", query=f"{q} + {i}*0", threshold="10",
                               step=a.step, history="5m", model="auto")
            stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=120)

        t0 = time.monotonic()
        with ThreadPoolExecutor(a.callers) as ex:
            list(ex.map(create, range(a.targets)))
        created_s = time.monotonic() - t0
        print(f"fan-out: {a.targets} targets created (every first GetMetrics answered) in {created_s:.1f} s, "
              f"--prometheus-max-inflight {a.max_inflight}, step {a.step}")

        m0 = env.prescale_metrics()
        stop = threading.Event()
        lat, socks, gauges, scrape = [], [], [], []

        def poll_health():
            url = env.http_url + "/healthz"
            while not stop.is_set():
                w = time.monotonic()
                with urllib.request.urlopen(url, timeout=10) as r:
                    r.read()
                lat.append((time.monotonic() - w, w))
                stop.wait(max(0.0, 0.1 - (time.monotonic() - w)))

        def sample():
            k = 0
            while not stop.is_set():
                socks.append(h.tcp_sockets_to(pid, env.prom_port))
                if k % 30 == 0:
                    w = time.monotonic()
                    m = env.prescale_metrics()
                    scrape.append((w, time.monotonic()))
                    gauges.append((family_max(m, "prescale_prometheus_inflight"),
                                   family_sum(m, "prescale_prometheus_queued"),
                                   family_max(m, "prescale_prometheus_connections")))
                k += 1
                stop.wait(0.5)

        c0, w0 = cpu_ticks(pid), time.monotonic()
        ths = [threading.Thread(target=poll_health), threading.Thread(target=sample)]
        for t in ths:
            t.start()
        time.sleep(a.duration)
        stop.set()
        for t in ths:
            t.join()
        c1, w1 = cpu_ticks(pid), time.monotonic()
        m1 = env.prescale_metrics()

        def delta(name):
            return family_sum(m1, name) - family_sum(m0, name)

        hz = os.sysconf("SC_CLK_TCK")
        def p99(xs):
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000

        # Polls that overlapped one of the sampler's /metrics scrapes (rendered on the same loop).
        quiet = [d for d, w in lat if not any(a <= w + d and w <= b for a, b in scrape)]
        lat = sorted(d for d, _ in lat)
        print(f"fan-out: over {w1 - w0:.0f} s:")
        print(f"  refreshes {delta('prescale_refreshes_total'):.0f}, refresh errors "
              f"{delta('prescale_refresh_errors_total'):.0f}, request timeouts "
              f"{delta('prescale_prometheus_request_timeouts_total'):.0f}, queue timeouts "
              f"{delta('prescale_prometheus_queue_timeouts_total'):.0f}, superseded "
              f"{delta('prescale_refreshes_superseded_total'):.0f}, shared {delta('prescale_refreshes_shared_total'):.0f}")
        print(f"  connections to Prometheus (/proc, every 0.5 s): max {max(socks)}, mean "
              f"{statistics.mean(socks):.1f} (cap {a.max_inflight}, budget "
              f"{family_max(m1, 'prescale_prometheus_connections_limit'):.0f})")
        print(f"  /metrics gauges (every 15 s): inflight max {max(g[0] for g in gauges):.0f}, queued max "
              f"{max(g[1] for g in gauges):.0f}, connections max {max(g[2] for g in gauges):.0f}")
        print(f"  /metrics scrape by the sampler ({len(scrape)}, its {len(m1)} series parsed too): max "
              f"{max(b - a for a, b in scrape) * 1000:.0f} ms")
        print(f"  /healthz every 100 ms: {len(lat)} polls, p50 {statistics.median(lat) * 1000:.1f} ms, "
              f"p99 {p99(lat):.1f} ms, max {lat[-1] * 1000:.1f} ms; the {len(quiet)} polls outside the "
              f"sampler's /metrics scrapes: p99 {p99(quiet):.1f} ms, max {max(quiet) * 1000:.1f} ms")
        print(f"  prescale CPU {100 * (c1 - c0) / hz / (w1 - w0):.0f} % of a core, RSS {rss_mib(pid):.0f} MiB")
    finally:
        problems = env.close()
        if problems:
            print("fan-out: prescale at shutdown: " + "; ".join(problems), file=sys.stderr)


if __name__ == "__main__":
    main()
