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
its run (/proc/PID/stat), every thread; prescale and nghttpd run one thread, grpc-go all cores. Requests per
CPU-second (1 / CPU per request): the server's capacity on one core, whatever the client drove, i.e. what a
pod limited to one CPU (`resources.limits.cpu: 1`) buys.

--pin: each server on CPU 0 alone (taskset; grpc-go also with GOMAXPROCS=1) and the client on CPU 1 alone, so
that each server gets the same one core, not a single-threaded server one core and grpc-go both, the
client's included (h2run.py; every thread's affinity checked). Without it, the machine as it comes.

--client grpcblast: the load comes from tests/bench/grpcblast (C, one thread, epoll, pre-encoded requests,
one write per connection and loop turn) instead of h2load. One h2load thread spends more CPU per request
than prescale does, so with --pin it runs out of its core first and the rate is the client's; grpcblast
spends a fraction of that (the "client us/req" column), so the server under test is what saturates. It
also checks every answer: :status 200, the DATA bytes equal to the server's answer (prescale's and the
reference scaler's exact GetMetrics answer, nghttpd's file), grpc-status 0 in the gRPC trailers; a run
with one wrong or missing answer stops the bench. Its p50/p99 come from its histogram (within 0.8 %).

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
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import grpcgo_client  # noqa: E402
import harness  # noqa: E402
from h2run import CLIENT_CPU, SERVER_CPU, Server, check_pinned, pin_prefix, pin_threads  # noqa: E402

QUERY = "vector(time() % 180)"  # an exact periodic series that needs no scraping
MD = {"query": QUERY, "threshold": "10", "step": "5s", "period": "3m", "lookahead": "30s"}
# The target the RPC rounds ask for: a constant series, so that its answer is the same bytes for the whole
# run and grpcblast can check every answer against them (the periodic one's forecast moves at each
# refresh). Either way the answer comes from the target's cache; the memory figure keeps MD.
RPC_MD = dict(MD, query="vector(100)")
REFSCALER_SOURCE = os.path.join(HERE, "refscaler")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


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
    ap.add_argument("--targets", type=int, default=1000, help="targets for the memory figure (0: none)")
    ap.add_argument("--no-grpc-go", action="store_true", help="leave out the grpc-go reference scaler")
    ap.add_argument("--client", choices=("h2load", "grpcblast"), default="h2load",
                    help="the load client, the same for every server: h2load -t 1, or grpcblast (lighter, "
                         "and it checks every answer's bytes)")
    ap.add_argument("--grpcblast", default=None,
                    help="grpcblast's binary (default: tests/bench/grpcblast of --prescale's build)")
    ap.add_argument("--pin", action="store_true",
                    help=f"each server on CPU {SERVER_CPU} alone (grpc-go with GOMAXPROCS=1), the client on CPU "
                         f"{CLIENT_CPU} alone: every server gets the same one core")
    args = ap.parse_args()
    if args.pin and not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        raise SystemExit(f"--pin needs CPUs {SERVER_CPU} and {CLIENT_CPU}; this process may use "
                         f"{sorted(os.sched_getaffinity(0))}")
    server_cpu, client_cpu = (SERVER_CPU, CLIENT_CPU) if args.pin else (None, None)
    blast = None
    if args.client == "grpcblast":
        blast = args.grpcblast or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.prescale))),
                                               "tests", "bench", "grpcblast")
        if not os.access(blast, os.X_OK):
            raise SystemExit(f"--client grpcblast: {blast} is not built (ninja -C BUILD, or --grpcblast PATH)")
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
        if args.pin:
            pin_threads(pid, server_cpu)
        rss_idle = rss_kib(pid)
        for spec in args.compare:
            label, _, binary = spec.partition("=")
            if not label or not binary:
                raise SystemExit(f"--compare LABEL=BINARY, not {spec!r}")
            other = harness.Env(tmp_prefix="prescale-bench-")
            others.append((label, other))
            other.prom_port = env.prom_port
            other.start_prescale("--log-level=warn", binary=binary)
            if args.pin:
                pin_threads(other.prescale.proc.pid, server_cpu)

        req = pb2.GetMetricsRequest(scaledObjectRef=harness.scaled_ref(pb2, **RPC_MD), metricName="prescale")
        # Each prescale's answer as the bytes it sends (it loads the target: the bench reads its cache);
        # every answer of the rounds must be these (grpcblast checks them).
        raw = [raw_get_metrics(e.grpc_addr, req) for e in [env] + [o for _, o in others]]
        answer = pb2.GetMetricsResponse.FromString(raw[0])
        expected = []
        for i, r in enumerate(raw):
            expected.append(os.path.join(env.tmp, f"answer{i}.bin"))
            with open(expected[-1], "wb") as f:
                f.write(b"\x00" + len(r).to_bytes(4, "big") + r)
        body = req.SerializeToString()
        reqfile = os.path.join(env.tmp, "req.bin")
        with open(reqfile, "wb") as f:
            f.write(b"\x00" + len(body).to_bytes(4, "big") + body)
        # nghttpd serves a file as large as prescale's answer (prefix + message).
        docroot = os.path.join(env.tmp, "htdocs")
        os.makedirs(docroot)
        with open(os.path.join(docroot, "v"), "wb") as f:
            f.write(b"x" * (5 + len(raw[0])))
        ng_port = harness.free_port()
        nghttpd = subprocess.Popen((pin_prefix(server_cpu) if args.pin else []) + ["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", docroot, str(ng_port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: _h2_ready(ng_port), 10, what="nghttpd to accept connections")

        hdrs = ["content-type: application/grpc", "te: trailers"]
        path = "/externalscaler.ExternalScaler/GetMetrics"
        servers = [Server("prescale GetMetrics", f"http://{env.grpc_addr}{path}", pid, hdrs, expected[0], True)]
        for (label, o), exp in zip(others, expected[1:]):
            servers.append(Server(f"prescale[{label}]", f"http://{o.grpc_addr}{path}", o.prescale.proc.pid, hdrs,
                                  exp, True))
        servers.append(Server("nghttpd static POST", f"http://127.0.0.1:{ng_port}/v", nghttpd.pid,
                              expected=os.path.join(docroot, "v")))
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
                # --pin: one core, and GOMAXPROCS=1 said outright (the runtime would also take it from the
                # affinity mask it starts with; the refscaler prints the value it ran with, checked below).
                renv = dict(os.environ, GOMAXPROCS="1") if args.pin else None
                with open(os.path.join(env.tmp, "refscaler.log"), "wb") as log:
                    refscaler = subprocess.Popen(
                        (pin_prefix(server_cpu) if args.pin else []) + [binary, "-addr", f"127.0.0.1:{rs_port}", "-target", "default/web", "-int",
                         str(mv.metricValue), "-float", repr(mv.metricValueFloat)],
                        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=renv)
                harness.wait_until(lambda: _h2_ready(rs_port), 10, what="refscaler to accept connections")
                got = raw_get_metrics(f"127.0.0.1:{rs_port}", req)
                if got != raw[0]:
                    raise RuntimeError(f"refscaler answered {got.hex()}, prescale {raw[0].hex()}")
                servers.append(Server("grpc-go GetMetrics", f"http://127.0.0.1:{rs_port}{path}", refscaler.pid,
                                      hdrs, expected[0], True))

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
                    srv.run(load, timing, reqfile, logf, client_cpu, server_cpu, blast)
        load_avg.append(os.getloadavg()[0])
        t1 = time.time()
        pinned = ""
        if args.pin:
            # Every thread of every server still on its one core (threads made during the rounds included).
            threads = [f"{s.name.split()[0]} {check_pinned(s.name, s.pid, server_cpu)}" for s in servers]
            pinned = (f"pinned: every server's threads on CPU {server_cpu} alone ({', '.join(threads)} threads), "
                      f"{args.client} on CPU {client_cpu} alone (checked in every round)")
        # Every GetMetrics answered OK, and at least every request h2load measured (exactly those with
        # --requests; with --duration the warm-up's requests come on top).
        for e, srv, before in zip(envs, prescales_of(servers), counts_before):
            ok, total = (a - b for a, b in zip(_counts(e), before))
            _check_counts(srv.name, ok, total, srv.measured, timing)
        if refscaler is not None:
            refscaler.terminate()
            out, _ = refscaler.communicate(timeout=30)
            refscaler = None
            m = re.search(r'"getmetrics_calls":(\d+),"getmetrics_ok":(\d+)}\n{"gomaxprocs":(\d+)}', out)
            if not m:
                raise RuntimeError(f"refscaler printed no counts: {out!r}")
            _check_counts("grpc-go", int(m.group(2)) - 1, int(m.group(1)) - 1, servers[-1].measured, timing)
            if args.pin and m.group(3) != "1":
                raise RuntimeError(f"refscaler ran with GOMAXPROCS {m.group(3)}, not 1")
            pinned += ("; " if pinned else "") + f"grpc-go ran with GOMAXPROCS {m.group(3)}"
        rss_busy = rss_kib(pid)

        report(args, servers, grpc_note, load_avg, t0, t1, timing, pinned)
        if args.targets <= 0:
            return
        # Memory with many targets: each its own name, loaded from Prometheus (1 h at 5 s = 721 points).
        with harness.grpc_channel(env.grpc_addr) as ch:
            stub = pb2_grpc.ExternalScalerStub(ch)
            futures = [stub.GetMetrics.future(pb2.GetMetricsRequest(
                scaledObjectRef=harness.scaled_ref(pb2, name=f"app-{i}", **MD), metricName="prescale"),
                timeout=60) for i in range(args.targets)]
            failed = sum(1 for fu in futures if fu.exception() is not None)
        rss_targets = rss_kib(pid)
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


def raw_get_metrics(addr, req):
    """GetMetrics over a real gRPC channel; the answer's message as the server encoded it."""
    with harness.grpc_channel(addr) as ch:
        call = ch.unary_unary("/externalscaler.ExternalScaler/GetMetrics",
                              request_serializer=lambda m: m.SerializeToString(), response_deserializer=bytes)
        return call(req, timeout=10)


def prescales_of(servers):
    return [s for s in servers if s.name.startswith("prescale")]


def _check_counts(name, ok, total, measured, timing):
    if ok != total or ok < measured or (timing[0] == "n" and ok != measured):
        raise RuntimeError(f"{name}: {ok} of {total} GetMetrics answered OK; the client measured {measured}")


def report(args, servers, grpc_note, load_avg, t0, t1, timing, pinned):
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0)) + "-" + time.strftime("%H:%M UTC", time.gmtime(t1))
    what = (f"{timing[1]} requests" if timing[0] == "n" else f"{timing[2]:g} s of warm-up and {timing[1]:g} s measured")
    print(f"prescale bench{' (--pin)' if args.pin else ''}: {args.rounds} rounds, each {what} per server and "
          f"load, {'h2load -t 1' if args.client == 'h2load' else 'grpcblast'}, server order rotated each round; {stamp}; machine: {os.cpu_count()} cores, shared "
          f"(load average {load_avg[0]:.1f} before, {load_avg[1]:.1f} after); {version_line()}")
    for note in (pinned, grpc_note):
        if note:
            print("  " + note)
    by = {s.name: s for s in servers}
    refs = [(by["nghttpd static POST"], "nghttpd", "req/s >= 0.8, p99 <= 1.5")]
    if "grpc-go GetMetrics" in by:
        refs.append((by["grpc-go GetMetrics"], "grpc-go", "req/s >= 3.5"))
    prescales = prescales_of(servers)
    for load in args.loads:
        print(f"load -c {load[0]} -m {load[1]} (medians of {args.rounds} rounds)")
        print(f"  {'server':22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'req/CPU-s':>10} "
              f"{'server busy':>11} {'client busy':>11} {'client us/req':>13}{' core idle' if args.pin else ''}"
              f"   req/s of each round")
        for s in servers:
            idle = f" {s.med('core_idle', load):9.2f}" if args.pin else ""
            print(f"  {s.name:22} {s.med('rps', load):9.0f} {s.med('p50', load):8.2f} {s.med('p99', load):8.2f} "
                  f"{s.med('cpu_us', load):10.2f} {s.med('per_cpu_s', load):10.0f} {s.med('busy', load):11.2f} "
                  f"{s.med('client_busy', load):11.2f} {s.med('client_us', load):13.2f}{idle}   "
                  f"{[round(x) for x in s.rps[load]]}")
        print(f"  {'ratio of medians':22} {'req/s':>9} {'p50':>8} {'p99':>8} {'CPU/req':>10} {'req/CPU-s':>10}"
              f"   target")
        for p in prescales:
            pairs = [(ref, label, target) for ref, label, target in refs]
            if p is not prescales[0]:
                pairs.append((prescales[0], prescales[0].name.split()[0], ""))
            for ref, label, target in pairs:
                # nan where the reference measured 0 (a run shorter than a CPU tick, e.g. a small --requests)
                r = {w: p.med(w, load) / ref.med(w, load) if ref.med(w, load) else math.nan
                     for w in ("rps", "p50", "p99", "cpu_us", "per_cpu_s")}
                print(f"  {p.name.split()[0] + '/' + label:22} {r['rps']:9.2f} {r['p50']:8.2f} {r['p99']:8.2f} "
                      f"{r['cpu_us']:10.2f} {r['per_cpu_s']:10.2f}   {target}")
    check = ("h2load's status 200 each" if args.client == "h2load" else
             "grpcblast's check of each (status 200, the exact DATA bytes, grpc-status 0 for the gRPC servers)")
    print(f"  every request answered OK: {check}, and every GetMetrics counted OK by "
          f"{' and '.join(s.name.split()[0] for s in prescales)}"
          f"{' and the grpc-go scaler' if len(refs) > 1 else ''} ({', '.join(str(s.measured) for s in servers)} "
          f"measured)")
    print("  req/CPU-s: requests per second of the server's own CPU time (1 / CPU per request), what one core "
          "buys whatever the client drives; server busy: its CPU seconds per second measured; client busy and "
          "us/req: the client's (h2load's over its whole run, grpcblast's own over the measured part)"
          + (f"; core idle: CPU {SERVER_CPU} idle per second measured" if args.pin else ""))


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
