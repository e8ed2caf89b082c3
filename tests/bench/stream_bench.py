#!/usr/bin/python3
"""`make bench`: StreamIsActive fan-out (issue 11, "Fan-out and scale"): --streams open streams over
--conns connections; how soon all of them hear of an activity change.

A real Prometheus scrapes, every second, a switch served by this script (`prescale_bench_switch`, 0 or
100); prescale reaches it through a byte-counting TCP proxy (a process of its own) that notes when each
piece of Prometheus's answers passes to prescale. The client is raw HTTP/2 over plain sockets, in a
process of its own: it opens --streams StreamIsActive calls (one target each: `mode: shadow`,
`model: last`, `activationThreshold: 50`, all with the same query, so that one Prometheus answer changes
them all in one loop turn of prescale), waits for every first state, then, per round, records the time of
each recv() and only counts frames; the frames are attributed to streams after the round, so its own
parsing never delays a timestamp. Each round flips the switch and measures, on one clock (CLOCK_MONOTONIC):
  change  = the last piece of a Prometheus answer passed to prescale before the first stream heard;
  first, last = the recv() that carried the first and the last stream's update.
Also per round: prescale's time on a CPU and waiting for one (run queue) between change and last, from
/proc/PID/schedstat sampled every millisecond by another process (on a shared machine the wait is the
machine's, the CPU time is prescale's), and the Prometheus requests (one per refresh when the targets
share their answer). Printed per binary: the medians over --rounds, the recv() count, the client's CPU,
prescale's RSS; with --baseline BIN the same for that binary first, in the same run, with the ratios.
Nothing passes or fails on speed (target: change->last <= 50 ms for 10,000 streams over 10 connections).
"""

import argparse
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fanout_bench import rss_mib  # noqa: E402

SWITCH = "prescale_bench_switch"
PATH = b"/externalscaler.ExternalScaler/StreamIsActive"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7


# ---- the switch Prometheus scrapes --------------------------------------------------------------------


class Switch:
    def __init__(self):
        self.value = 0
        sw = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = f"# TYPE {SWITCH} gauge\n{SWITCH} {sw.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# ---- a TCP proxy that timestamps Prometheus's answers -----------------------------------------------


def proxy_main(listen_sock, upstream_port, conn):
    """Forwards every connection accepted on listen_sock to upstream_port; notes (monotonic time, bytes)
    of each piece passed from upstream to the client, byte totals per direction and the query_range
    requests seen. Answers `conn` requests: "times" -> the list noted since the last call; "bytes" ->
    (bytes sent upstream, bytes received from upstream, requests)."""
    sel = selectors.DefaultSelector()
    listen_sock.setblocking(False)
    sel.register(listen_sock, selectors.EVENT_READ, None)
    sel.register(conn, selectors.EVENT_READ, "ctl")
    times, up_bytes, down_bytes, reqs = [], 0, 0, 0
    while True:
        for key, _ in sel.select(1.0):
            if key.fileobj is listen_sock:
                c, _ = listen_sock.accept()
                u = socket.create_connection(("127.0.0.1", upstream_port))
                for s in (c, u):
                    s.setblocking(False)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(c, selectors.EVENT_READ, ("up", u))
                sel.register(u, selectors.EVENT_READ, ("down", c))
            elif key.data == "ctl":
                msg = conn.recv()
                if msg == "times":
                    conn.send(times)
                    times = []
                elif msg == "bytes":
                    conn.send((up_bytes, down_bytes, reqs))
                else:
                    return
            else:
                way, other = key.data
                try:
                    b = key.fileobj.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    b = b""
                if not b:
                    for s in (key.fileobj, other):
                        try:
                            sel.unregister(s)
                        except (KeyError, ValueError):
                            pass
                        s.close()
                    continue
                if way == "down":
                    times.append((time.monotonic(), len(b)))
                    down_bytes += len(b)
                else:
                    up_bytes += len(b)
                    reqs += b.count(b"GET /api/v1/query_range")
                other.setblocking(True)
                other.sendall(b)
                other.setblocking(False)


# ---- prescale's CPU time, from outside -----------------------------------------------------------------


def sched_main(pid, conn):
    """Reads /proc/PID/schedstat (ns on a CPU, ns waiting on a run queue) every millisecond; "get" sends
    the (monotonic time, on CPU, waiting) samples taken since the last "get"."""
    out = []
    while True:
        if conn.poll(0.001):
            msg = conn.recv()
            if msg != "get":
                return
            conn.send(out)
            out = []
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                run, wait = f.read().split()[:2]
        except OSError:
            return
        out.append((time.monotonic(), int(run), int(wait)))


def sched_between(samples, t0, t1):
    """(ms on a CPU, ms waiting for one) between the samples around t0 and t1."""
    a = [x for x in samples if x[0] <= t0]
    b = [x for x in samples if x[0] >= t1]
    if not a or not b:
        return float("nan"), float("nan")
    return (b[0][1] - a[-1][1]) / 1e6, (b[0][2] - a[-1][2]) / 1e6


# ---- the raw HTTP/2 client ----------------------------------------------------------------------------


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def literal(name, value):
    """HPACK literal without indexing (RFC 7541 6.2.2), lengths < 127: the same bytes fit every stream."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


HEADER_BLOCK = b"".join(literal(n, v) for n, v in [
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", PATH), (b":authority", b"prescale"),
    (b"content-type", b"application/grpc"), (b"te", b"trailers")])


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.errors = []

    def frames(self):
        """Whole frames of self.buf: (type, flags, stream id, payload); keeps the rest."""
        out, b, off = [], self.buf, 0
        while len(b) - off >= 9:
            n = int.from_bytes(b[off:off + 3], "big")
            if len(b) - off < 9 + n:
                break
            sid = int.from_bytes(b[off + 5:off + 9], "big") & 0x7FFFFFFF
            out.append((b[off + 3], b[off + 4], sid, b[off + 9:off + 9 + n]))
            off += 9 + n
        self.buf = b[off:]
        return out


def client_main(port, conns, msgs, pipe):
    """msgs[i] is stream i's request message (stream i on connection i % conns). Opens every stream, waits
    for every first state, then serves rounds: "arm" -> records recv() times until each stream heard one
    more DATA frame (or "stop"), and sends back the round's figures."""
    cs = [Conn(port) for _ in range(conns)]
    streams = {}  # (conn index, stream id) -> stream index
    big = (1 << 31) - 1
    for ci, c in enumerate(cs):
        out = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
               frame(SETTINGS, 0, 0, struct.pack(">HI", 4, big) + struct.pack(">HI", 2, 0)),
               frame(8, 0, 0, struct.pack(">I", big - 65535))]  # WINDOW_UPDATE of the connection
        sid = 1
        for i in range(ci, len(msgs), conns):
            m = msgs[i]
            out.append(frame(HEADERS, 0x4, sid, HEADER_BLOCK))
            out.append(frame(DATA, 0x1, sid, b"\x00" + struct.pack(">I", len(m)) + m))
            streams[(ci, sid)] = i
            sid += 2
        c.sock.sendall(b"".join(out))
    sel = selectors.DefaultSelector()
    for ci, c in enumerate(cs):
        sel.register(c.sock, selectors.EVENT_READ, ci)

    def handle(ci, c, frames, seen):
        acks = []
        for ftype, flags, sid, payload in frames:
            if ftype == DATA and sid and payload:
                seen.append((ci, sid))
            elif ftype == SETTINGS and not flags & 1:
                acks.append(frame(SETTINGS, 1, 0))
            elif ftype == PING and not flags & 1:
                acks.append(frame(PING, 1, 0, payload))
            elif ftype in (RST_STREAM, GOAWAY) or (ftype == HEADERS and flags & 1):
                c.errors.append((ftype, sid))
        if acks:
            c.sock.sendall(b"".join(acks))

    # The first state of every stream.
    first = set()
    deadline = time.monotonic() + 600
    while len(first) < len(msgs) and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            c = cs[key.data]
            c.buf += c.sock.recv(1 << 20)
            seen = []
            handle(key.data, c, c.frames(), seen)
            first.update(seen)
        if any(c.errors for c in cs):
            break
    errors = sum(len(c.errors) for c in cs)
    pipe.send(("ready", len(first), errors))
    if len(first) < len(msgs):
        return
    while True:
        cmd = pipe.recv()
        if cmd != "arm":
            return
        pipe.send("armed")
        chunks = []  # (time, conn index, bytes): nothing but recv() in the timed loop
        frames_left = len(msgs)
        cpu0 = time.process_time()
        deadline = time.monotonic() + 120
        while frames_left > 0 and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                b = key.fileobj.recv(1 << 20)
                t = time.monotonic()
                chunks.append((t, key.data, b))
                # Counting whole DATA frames needs the frame headers only.
                c = cs[key.data]
                c.buf += b
                for ftype, flags, sid, payload in c.frames():
                    if ftype == DATA and sid and payload:
                        frames_left -= 1
                    elif ftype == SETTINGS and not flags & 1:
                        c.sock.sendall(frame(SETTINGS, 1, 0))
                    elif ftype == PING and not flags & 1:
                        c.sock.sendall(frame(PING, 1, 0, payload))
        cpu = time.process_time() - cpu0
        # Afterwards: which recv() carried each stream's update.
        per = {}
        bufs = [b""] * conns
        for t, ci, b in chunks:
            bufs[ci] += b
            tmp = Conn.__new__(Conn)
            tmp.buf = bufs[ci]
            for ftype, flags, sid, payload in tmp.frames():
                if ftype == DATA and sid and payload:
                    per.setdefault(streams.get((ci, sid)), t)
            bufs[ci] = tmp.buf
        ts = sorted(per.values())
        pipe.send({"heard": len(per), "first": ts[0] if ts else None, "last": ts[-1] if ts else None,
                   "recvs": len(chunks), "cpu": cpu})


# ---- one binary -----------------------------------------------------------------------------------------


def one_binary(a, env, binary, switch, proxy_port, proxy_ctl, pb2):
    per_conn = (a.streams + a.conns - 1) // a.conns
    env.start_prescale("--grpc-max-streams", str(per_conn), "--max-targets", str(a.streams + 10),
                       "--first-load-timeout", "300s", "--log-level=warn", binary=binary)
    pid = env.prescale.proc.pid
    msgs = []
    for i in range(a.streams):
        ref = h.scaled_ref(pb2, name=f"s{i}", namespace="bench", serverAddress=f"http://127.0.0.1:{proxy_port}",
                           query=SWITCH, threshold="10", activationThreshold="50", step=a.step, history="2m",
                           model="last", mode="shadow")
        msgs.append(ref.SerializeToString())
    parent, child = mp.Pipe()
    t0 = time.monotonic()
    cl = mp.Process(target=client_main, args=(env.grpc_port, a.conns, msgs, child))
    cl.start()
    if not parent.poll(900):
        raise RuntimeError("the client did not get every first state in 900 s")
    tag, n_first, errors = parent.recv()
    if n_first < a.streams:
        raise RuntimeError(f"only {n_first} of {a.streams} streams got their first state ({errors} errors)")
    print(f"  {binary}: {a.streams} streams over {a.conns} connections open, every first state in "
          f"{time.monotonic() - t0:.1f} s; prescale RSS {rss_mib(pid):.0f} MiB", flush=True)
    sched_ctl, sched_child = mp.Pipe()
    sched = mp.Process(target=sched_main, args=(pid, sched_child), daemon=True)
    sched.start()
    rounds = []
    for r in range(a.rounds):
        parent.send("arm")
        assert parent.recv() == "armed"
        proxy_ctl.send("times")
        proxy_ctl.recv()  # forget the answers before the flip
        sched_ctl.send("get")
        sched_ctl.recv()
        proxy_ctl.send("bytes")
        reqs0 = proxy_ctl.recv()[2]
        switch.value = 0 if switch.value else 100
        if not parent.poll(150):
            raise RuntimeError("a round did not end in 150 s")
        res = parent.recv()
        proxy_ctl.send("times")
        times = proxy_ctl.recv()
        before = [t for t, _ in times if res["first"] is not None and t <= res["first"]]
        res["change"] = max(before) if before else None
        proxy_ctl.send("bytes")
        res["reqs"] = proxy_ctl.recv()[2] - reqs0
        time.sleep(0.005)  # a sample after the last recv()
        sched_ctl.send("get")
        samples = sched_ctl.recv()
        res["on_cpu"], res["waiting"] = (sched_between(samples, res["change"], res["last"])
                                         if res["change"] is not None else (float("nan"), float("nan")))
        rounds.append(res)
        if res["heard"] < a.streams or res["change"] is None:
            print(f"    round {r + 1}: {res['heard']} of {a.streams} streams heard the change", flush=True)
        else:
            print(f"    round {r + 1} (to {switch.value}): change->first "
                  f"{(res['first'] - res['change']) * 1000:.1f} ms, change->last "
                  f"{(res['last'] - res['change']) * 1000:.1f} ms, first->last "
                  f"{(res['last'] - res['first']) * 1000:.1f} ms; change->last prescale on a CPU "
                  f"{res['on_cpu']:.1f} ms, waiting for one {res['waiting']:.1f} ms; {res['recvs']} recv(), client CPU "
                  f"{res['cpu'] * 1000:.0f} ms; {res['reqs']} Prometheus requests in the round", flush=True)
    parent.send("stop")
    cl.join(30)
    sched_ctl.send("quit")
    sched.join(5)
    rss = rss_mib(pid)
    env.prescale.stop()
    env.prescale = None
    ok = [x for x in rounds if x["heard"] == a.streams and x["change"] is not None]

    def med(f):
        return statistics.median(f(x) for x in ok) * 1000 if ok else float("nan")

    return {"change_first": med(lambda x: x["first"] - x["change"]),
            "change_last": med(lambda x: x["last"] - x["change"]),
            "first_last": med(lambda x: x["last"] - x["first"]),
            "recvs": statistics.median(x["recvs"] for x in ok) if ok else 0,
            "on_cpu": statistics.median(x["on_cpu"] for x in ok) if ok else float("nan"),
            "waiting": statistics.median(x["waiting"] for x in ok) if ok else float("nan"),
            "cpu": med(lambda x: x["cpu"]), "rss": rss, "rounds": len(ok)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prescale", default=h.prescale_bin())
    ap.add_argument("--baseline", default=os.environ.get("STREAM_BASELINE"),
                    help="an older prescale binary with --grpc-max-streams, run the same way first")
    ap.add_argument("--streams", type=int, default=int(os.environ.get("STREAM_STREAMS", "10000")))
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("STREAM_ROUNDS", "5")))
    ap.add_argument("--step", default="2s")
    a = ap.parse_args()
    pb2, _ = h.grpc_modules()
    env = h.Env(tmp_prefix="prescale-stream-bench-")
    proxy_ctl = proc = None
    try:
        switch = Switch()
        env.prom_port = h.free_port()
        with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: switch
    static_configs:
      - targets: ['127.0.0.1:{switch.port}']
""")
        env.start_prometheus()
        h.wait_until(lambda: env.prom_instant(SWITCH) is not None, 60, what="the switch scraped")
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(64)
        proxy_port = ls.getsockname()[1]
        proxy_ctl, child = mp.Pipe()
        proc = mp.Process(target=proxy_main, args=(ls, env.prom_port, child), daemon=True)
        proc.start()
        ls.close()
        print(f"stream fan-out: {a.streams} StreamIsActive streams over {a.conns} connections, one target each "
              f"(step {a.step}, one shared Prometheus answer flips them all), {a.rounds} rounds", flush=True)
        res = {}
        runs = ([("baseline", a.baseline)] if a.baseline else []) + [("prescale", a.prescale)]
        for name, binary in runs:
            res[name] = one_binary(a, env, binary, switch, proxy_port, proxy_ctl, pb2)
        for name, r in res.items():
            print(f"  {name}: medians of {r['rounds']} rounds: change->first {r['change_first']:.1f} ms, "
                  f"change->last {r['change_last']:.1f} ms (target <= 50), first->last {r['first_last']:.1f} ms, "
                  f"prescale on a CPU {r['on_cpu']:.1f} ms and waiting for one {r['waiting']:.1f} ms of change->last; "
                  f"{r['recvs']:.0f} recv() a round, client CPU {r['cpu']:.0f} ms a round; prescale RSS with the "
                  f"streams {r['rss']:.0f} MiB")
        if "baseline" in res:
            b, n = res["baseline"], res["prescale"]
            print(f"  => prescale / baseline in this run: change->last {n['change_last'] / b['change_last']:.3f}, "
                  f"first->last {n['first_last'] / b['first_last']:.3f}")
    finally:
        if proxy_ctl is not None:
            try:
                proxy_ctl.send("quit")
            except OSError:
                pass
        if proc is not None:
            proc.join(5)
        problems = env.close()
        if problems:
            print("stream fan-out: prescale at shutdown: " + "; ".join(problems), file=sys.stderr)


if __name__ == "__main__":
    main()
