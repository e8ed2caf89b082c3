#!/usr/bin/python3
"""`make bench`: prescale's RPC path measured beside nghttpd and a grpc-go scaler, in one run, on loopback.

What is compared, under the same h2load load (clients x streams, request count, request body): GetMetrics
on prescale (a real gRPC POST with a length-prefixed protobuf body, answered from a warm target's cache);
nghttpd, nghttp2's own reference server, serving a static file of the size of prescale's answer to the
same POST (the ratio says how much prescale's gRPC framing, protobuf and target lookup cost over plain
HTTP/2 serving); and the grpc-go reference scaler (tests/bench/refscaler: a minimal KEDA external scaler
written the usual way in Go, on Debian's grpc-go 1.33, built here in GOPATH mode, no module download),
answering the same GetMetrics from an in-memory map with the same answer. Issue 11's targets: prescale
>= 0.8x nghttpd and >= 3.5x grpc-go in req/s, p99 <= 1.5x nghttpd's, at each load.

Each load (--loads, default 4x32, 4x16 and 1000x4) runs --rounds rounds; a round runs every server once,
in an order rotated from round to round, so that the shared, noisy machine affects all alike; medians of
the rounds are quoted, and ratios of medians from the same run. Latency: h2load prints no percentile, so
each run writes `h2load --log-file` (one line per request: start, status, microseconds to the end of the
response) and the round's p50 and p99 are computed from it. In a closed loop (clients x streams always
outstanding) the mean latency is the outstanding count over the rate (Little's law), so latency ratios
follow the throughput ratios; p99 shows the tail on top. CPU per request: the server's utime+stime over
its run (/proc/PID/stat), every thread; prescale and nghttpd run one thread, grpc-go all cores.

--compare LABEL=BINARY runs another prescale build (e.g. a branch) in the same rounds, against the same
Prometheus, and prints its ratios too.

Also printed: prescale's resident memory idle, then with N targets loaded (history 1 h at 5 s), and the
memory per target. Every RPC is checked afterwards: prescale's own counter
prescale_grpc_requests_total{method="GetMetrics",code="OK"}, the reference scaler's count of OK answers,
and h2load's status column (every request 200), so a run that answered errors cannot pass for a fast one.
"""

import argparse
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import grpcgo_client  # noqa: E402
import harness  # noqa: E402

QUERY = "vector(time() % 180)"  # an exact periodic series that needs no scraping
MD = {"query": QUERY, "threshold": "10", "step": "5s", "period": "3m", "lookahead": "30s"}
REFSCALER_SOURCE = os.path.join(HERE, "refscaler")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def cpu_s(pid):
    """utime + stime of every thread of pid so far, in seconds (proc(5): fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def quantile(sorted_values, q):
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    i = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[i]


def h2load(url, clients, streams, data, log_path, timing, pid, headers=()):
    """One h2load run; returns (req/s, requests measured, sorted request durations in ms, server CPU seconds
    over the measured part, h2load's own CPU seconds, warm-up included). timing is ("n", N): N requests,
    connection set-up included, or ("D", D, W): W seconds of warm-up (connections set up, requests not
    counted) then D seconds measured."""
    argv = ["h2load", "-c", str(clients), "-m", str(streams), "-t", "1", "-d", data, f"--log-file={log_path}"]
    if timing[0] == "n":
        argv += ["-n", str(timing[1])]
    else:
        argv += ["-D", f"{round(timing[1] * 1000)}ms", f"--warm-up-time={round(timing[2] * 1000)}ms"]
    for h in headers:
        argv += ["-H", h]
    c0 = cpu_s(pid)
    # h2load is the only child reaped during the run: the children's usage grows by its CPU time alone.
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv + [url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if timing[0] == "D":
        # The server's CPU time is read when the warm-up ends (by the clock: this is a measurement window,
        # not a synchronisation; h2load starts its own clock a few milliseconds later).
        time.sleep(timing[2])
        c0 = cpu_s(pid)
    try:
        out, _ = proc.communicate(timeout=600 if timing[0] == "n" else timing[1] + timing[2] + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise RuntimeError(f"h2load {' '.join(argv)} {url} did not finish:\n{out}") from None
    cpu = cpu_s(pid) - c0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    ok = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    if not rps or not ok:
        raise RuntimeError("cannot read h2load's output:\n" + out)
    n = int(ok.group(1))
    if int(ok.group(4)) != 0 or int(ok.group(3)) != n or int(ok.group(2)) != n or n == 0:
        raise RuntimeError(f"h2load: {ok.group(3)} of {n} succeeded\n" + out)
    durations, cut = [], 0
    with open(log_path) as f:
        for line in f:
            cols = line.split("\t")
            if cols[1] == "200":
                durations.append(int(cols[2]) / 1000.0)
            elif cols[1] == "0" and timing[0] == "D":
                cut += 1  # ended as the measured time did: h2load counts it, logs it with status 0
            else:
                raise RuntimeError(f"h2load --log-file ({url}): a request ended with status {cols[1]}: {line!r}")
    os.unlink(log_path)
    if len(durations) + cut != n or cut > clients * streams:
        raise RuntimeError(f"h2load --log-file ({url}): {len(durations)} answered and {cut} cut off at the end, "
                           f"for {n} requests")
    durations.sort()
    return float(rps.group(1)), n, durations, cpu, client_cpu


class Server:
    """One server under test: where h2load sends the POST, and the process whose CPU time is counted."""

    def __init__(self, name, url, pid, headers=()):
        self.name, self.url, self.pid, self.headers = name, url, pid, headers
        self.rps, self.p50, self.p99, self.cpu_us, self.client_busy = {}, {}, {}, {}, {}  # per load, per round
        self.measured = 0  # requests h2load measured, every load and round

    def run(self, load, timing, reqfile, log_path):
        rps, n, d, cpu, client = h2load(self.url, load[0], load[1], reqfile, log_path, timing, self.pid,
                                        self.headers)
        self.measured += n
        self.cpu_us.setdefault(load, []).append(cpu * 1e6 / n)
        # h2load's CPU over its whole run (warm-up included) per second measured: near 1.0, the one-thread
        # client is what limits the rate, not the server.
        span = timing[1] + timing[2] if timing[0] == "D" else n / rps
        self.client_busy.setdefault(load, []).append(client / span)
        self.rps.setdefault(load, []).append(rps)
        self.p50.setdefault(load, []).append(quantile(d, 0.5))
        self.p99.setdefault(load, []).append(quantile(d, 0.99))

    def med(self, what, load):
        return statistics.median(getattr(self, what)[load])


def parse_load(text):
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"a load is CLIENTSxSTREAMS, e.g. 4x32, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def version_line():
    h2 = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    grpc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "golang-google-grpc-dev"],
                          capture_output=True, text=True).stdout.strip() or "?"
    return f"{h2}, nghttpd of the same nghttp2, grpc-go {grpc} (Debian)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prescale", default=harness.prescale_bin())
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=BINARY",
                    help="another prescale build run in the same rounds (repeatable)")
    ap.add_argument("--duration", type=float, default=3, help="seconds measured per server per round")
    ap.add_argument("--warm-up", type=float, default=1,
                    help="seconds before the measured part (connections set up; requests not counted)")
    ap.add_argument("--requests", type=int, default=0,
                    help="instead of --duration: this many requests per server per round, set-up included")
    ap.add_argument("--loads", type=lambda t: [parse_load(x) for x in t.split(",")],
                    default=[(4, 32), (4, 16), (1000, 4)], help="CLIENTSxSTREAMS,... (default 4x32,4x16,1000x4)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--no-grpc-go", action="store_true", help="leave out the grpc-go reference scaler")
    args = ap.parse_args()
    pb2, pb2_grpc = harness.grpc_modules()

    env = harness.Env(tmp_prefix="prescale-bench-")
    others, nghttpd, refscaler = [], None, None
    try:
        with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        env.prom_port = harness.free_port()
        env.start_prometheus()
        env.start_prescale("--log-level=warn", binary=args.prescale)
        pid = env.prescale.proc.pid
        rss_idle = rss_kib(pid)
        for spec in args.compare:
            label, _, binary = spec.partition("=")
            if not label or not binary:
                raise SystemExit(f"--compare LABEL=BINARY, not {spec!r}")
            other = harness.Env(tmp_prefix="prescale-bench-")
            others.append((label, other))
            other.prom_port = env.prom_port
            other.start_prescale("--log-level=warn", binary=binary)

        req = pb2.GetMetricsRequest(scaledObjectRef=harness.scaled_ref(pb2, **MD), metricName="prescale")
        answers = []
        for e in [env] + [o for _, o in others]:
            with harness.grpc_channel(e.grpc_addr) as ch:
                stub = pb2_grpc.ExternalScalerStub(ch)
                answers.append(stub.GetMetrics(req, timeout=10))  # loads the target: the bench reads its cache
        answer = answers[0]
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

        hdrs = ["content-type: application/grpc", "te: trailers"]
        path = "/externalscaler.ExternalScaler/GetMetrics"
        servers = [Server("prescale GetMetrics", f"http://{env.grpc_addr}{path}", pid, hdrs)]
        for label, o in others:
            servers.append(Server(f"prescale[{label}]", f"http://{o.grpc_addr}{path}", o.prescale.proc.pid, hdrs))
        servers.append(Server("nghttpd static POST", f"http://127.0.0.1:{ng_port}/v", nghttpd.pid))
        grpc_note = ""
        if not args.no_grpc_go:
            try:
                binary = grpcgo_client.build(env.tmp, source=REFSCALER_SOURCE, name="refscaler")
            except unittest.SkipTest as e:
                grpc_note = f"grpc-go reference left out: {e}"
            else:
                mv = answer.metricValues[0]
                rs_port = harness.free_port()
                # stdout is read once, at the end (the counts); grpc-go's log goes to a file, so that a
                # chatty run cannot fill a pipe nobody reads and stall the server.
                with open(os.path.join(env.tmp, "refscaler.log"), "wb") as log:
                    refscaler = subprocess.Popen(
                        [binary, "-addr", f"127.0.0.1:{rs_port}", "-target", "default/web", "-int",
                         str(mv.metricValue), "-float", repr(mv.metricValueFloat)],
                        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
                harness.wait_until(lambda: _h2_ready(rs_port), 10, what="refscaler to accept connections")
                with harness.grpc_channel(f"127.0.0.1:{rs_port}") as ch:
                    got = pb2_grpc.ExternalScalerStub(ch).GetMetrics(req, timeout=10)
                if got.SerializeToString() != answer.SerializeToString():
                    raise RuntimeError(f"refscaler answered {got}, prescale {answer}")
                servers.append(Server("grpc-go GetMetrics", f"http://127.0.0.1:{rs_port}{path}", refscaler.pid,
                                      hdrs))

        envs = [env] + [o for _, o in others]
        counts_before = [_counts(e) for e in envs]
        timing = ("n", args.requests) if args.requests > 0 else ("D", args.duration, args.warm_up)
        load_avg = [os.getloadavg()[0]]
        t0 = time.time()
        logf = os.path.join(env.tmp, "h2load.log")
        for load in args.loads:
            for r in range(args.rounds):
                k = r % len(servers)
                for srv in servers[k:] + servers[:k]:
                    srv.run(load, timing, reqfile, logf)
        load_avg.append(os.getloadavg()[0])
        t1 = time.time()
        # Every GetMetrics answered OK, and at least every request h2load measured (exactly those with
        # --requests; with --duration the warm-up's requests come on top).
        for e, srv, before in zip(envs, prescales_of(servers), counts_before):
            ok, total = (a - b for a, b in zip(_counts(e), before))
            _check_counts(srv.name, ok, total, srv.measured, timing)
        if refscaler is not None:
            refscaler.terminate()
            out, _ = refscaler.communicate(timeout=30)
            refscaler = None
            m = re.search(r'"getmetrics_calls":(\d+),"getmetrics_ok":(\d+)', out)
            if not m:
                raise RuntimeError(f"refscaler printed no counts: {out!r}")
            _check_counts("grpc-go", int(m.group(2)) - 1, int(m.group(1)) - 1, servers[-1].measured, timing)
        rss_busy = rss_kib(pid)

        # Memory with many targets: each its own name, loaded from Prometheus (1 h at 5 s = 721 points).
        with harness.grpc_channel(env.grpc_addr) as ch:
            stub = pb2_grpc.ExternalScalerStub(ch)
            futures = [stub.GetMetrics.future(pb2.GetMetricsRequest(
                scaledObjectRef=harness.scaled_ref(pb2, name=f"app-{i}", **MD), metricName="prescale"),
                timeout=60) for i in range(args.targets)]
            failed = sum(1 for fu in futures if fu.exception() is not None)
        rss_targets = rss_kib(pid)

        report(args, servers, grpc_note, load_avg, t0, t1, timing)
        print(f"  RSS idle {rss_idle} KiB, after the RPC bench {rss_busy} KiB, with {args.targets + 1} targets "
              f"{rss_targets} KiB ({failed} loads failed): "
              f"{(rss_targets - rss_busy) * 1024 / max(1, args.targets):.0f} bytes per target "
              f"(model auto, history 721 points; the engine's bytes per sample: engine bench below)")
    finally:
        if refscaler is not None:
            refscaler.kill()
            refscaler.wait(10)
        if nghttpd is not None:
            nghttpd.terminate()
            nghttpd.wait(10)
        for _, o in others:
            o.close()
        env.close()


def prescales_of(servers):
    return [s for s in servers if s.name.startswith("prescale")]


def _check_counts(name, ok, total, measured, timing):
    if ok != total or ok < measured or (timing[0] == "n" and ok != measured):
        raise RuntimeError(f"{name}: {ok} of {total} GetMetrics answered OK; h2load measured {measured}")


def report(args, servers, grpc_note, load_avg, t0, t1, timing):
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0)) + "-" + time.strftime("%H:%M UTC", time.gmtime(t1))
    what = (f"{timing[1]} requests" if timing[0] == "n" else f"{timing[2]:g} s of warm-up and {timing[1]:g} s measured")
    print(f"prescale bench: {args.rounds} rounds, each {what} per server and load, h2load -t 1, "
          f"server order rotated each round; {stamp}; machine: {os.cpu_count()} cores, shared (load average "
          f"{load_avg[0]:.1f} before, {load_avg[1]:.1f} after); {version_line()}")
    if grpc_note:
        print("  " + grpc_note)
    by = {s.name: s for s in servers}
    ng, go = by["nghttpd static POST"], by.get("grpc-go GetMetrics")
    prescales = prescales_of(servers)
    for load in args.loads:
        print(f"load -c {load[0]} -m {load[1]} (medians of {args.rounds} rounds)")
        print(f"  {'server':22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'h2load busy':>11}"
              f"   req/s of each round")
        for s in servers:
            print(f"  {s.name:22} {s.med('rps', load):9.0f} {s.med('p50', load):8.2f} {s.med('p99', load):8.2f} "
                  f"{s.med('cpu_us', load):10.2f} {s.med('client_busy', load):11.2f}   "
                  f"{[round(x) for x in s.rps[load]]}")
        for p in prescales:
            line = (f"  {p.name}: /nghttpd req/s {p.med('rps', load) / ng.med('rps', load):.2f} (target >= 0.8), "
                    f"p99 {p.med('p99', load) / ng.med('p99', load):.2f} (target <= 1.5), "
                    f"CPU/req {p.med('cpu_us', load) / ng.med('cpu_us', load):.2f}")
            if go is not None:
                line += (f"; /grpc-go req/s {p.med('rps', load) / go.med('rps', load):.2f} (target >= 3.5), "
                         f"p99 {p.med('p99', load) / go.med('p99', load):.2f}, "
                         f"CPU/req {p.med('cpu_us', load) / go.med('cpu_us', load):.2f}")
            if p is not prescales[0]:
                first = prescales[0]
                line += f"; /{first.name.split()[0]} req/s {p.med('rps', load) / first.med('rps', load):.2f}"
            print(line)
    print(f"  every request answered OK: h2load's status 200 each, and every GetMetrics counted OK by "
          f"{' and '.join(s.name.split()[0] for s in prescales)}{' and the grpc-go scaler' if go else ''} "
          f"({', '.join(str(s.measured) for s in servers)} measured)")


def _h2_ready(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _counts(env):
    """(OK, every code) of prescale's GetMetrics counter."""
    m = env.prescale_metrics()
    ok = harness.metric_value(m, "prescale_grpc_requests_total", method="GetMetrics", code="OK") or 0
    total = sum(v for (name, labels), v in m.items()
                if name == "prescale_grpc_requests_total" and dict(labels).get("method") == "GetMetrics")
    return ok, total


if __name__ == "__main__":
    main()
