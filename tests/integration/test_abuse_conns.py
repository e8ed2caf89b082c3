"""End-to-end: connection slots under abuse (docs/reliability.md, "Connection slots").

Clients that hold connections must not lock KEDA or the kubelet out:
- 1,024 greeted but idle gRPC connections (preface and SETTINGS, then nothing) fill every slot of
  --max-conns (1024, the real default); a real grpcio client still gets GetMetrics and IsActive answered,
  because it evicts the longest-idle connection, which gets GOAWAY(NO_ERROR) first;
- 1,100 idle connections on the health port, and /healthz still answers 200 at once;
- a client that trickles one byte at a time after a fast preface, never completing a frame, is closed by
  --grpc-idle-timeout with GOAWAY; a real grpcio channel that was closed that way while idle reconnects by
  itself;
- with RLIMIT_NOFILE at 256 and 300 targets whose Prometheus is a black hole (it accepts and never
  answers), outgoing connections stay within their share of the descriptors, and /healthz and new gRPC
  connections keep working.

The raw HTTP/2 clients are plain sockets that write the preface and frames by hand (RFC 9113 3.4, 4.1) and
parse what comes back: an attacker needs nothing more, and the test sees every byte the server sends.
Waits are on events (a frame, an EOF, a metric, a readiness) with generous bounds; the only pacing by the
clock is the trickling attack itself.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_abuse_conns.py   (PRESCALE_BIN overrides the binary)
"""

import os
import re
import resource
import selectors
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

ENV = None
PB2 = PB2_GRPC = None
RPC_TIMEOUT = 30.0
MAX_CONNS = 1024  # PS_NET_MAX_CONNS, the default of --max-conns

# The test process itself holds well over a thousand sockets.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != resource.RLIM_INFINITY and (_hard == resource.RLIM_INFINITY or _soft < _hard):
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2, PB2_GRPC
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 3 * MAX_CONNS:
        raise unittest.SkipTest("RLIMIT_NOFILE too low for this test process to open 1,100 connections")
    ENV, PB2, PB2_GRPC = h.start_module_env(prescale=False)  # each test starts its own prescale


def tearDownModule():  # noqa: N802
    if ENV is not None:
        ENV.close()


# ---- a raw HTTP/2 client -------------------------------------------------------------------------------

GOAWAY, SETTINGS, HEADERS = 0x7, 0x4, 0x1
ACK, END_HEADERS = 0x1, 0x4
NO_ERROR = 0x0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload=b"", length=None):
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


class RawH2:
    """One connection: preface, an empty SETTINGS and the ACK of the server's SETTINGS (which the server
    sends first, on accept), then whatever the test writes. Reads without blocking; keeps every byte."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.eof = False
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0))
        # From here reads must not wait: a socket with a timeout would wait for it even with MSG_DONTWAIT.
        self.sock.setblocking(False)

    def pump(self):
        while not self.eof:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.eof = True
            self.buf += data

    def frames(self):
        out, p = [], 0
        while len(self.buf) - p >= 9:
            n = int.from_bytes(self.buf[p:p + 3], "big")
            if len(self.buf) - p < 9 + n:
                break
            out.append((self.buf[p + 3], self.buf[p + 4], self.buf[p + 9:p + 9 + n]))
            p += 9 + n
        return out

    def greeted(self):
        """The server acknowledged our SETTINGS: it has processed the greeting."""
        return any(t == SETTINGS and f & ACK for t, f, _ in self.frames())

    def goaway(self):
        """(last stream id, error code, debug data) of the first GOAWAY, or None."""
        for t, _, p in self.frames():
            if t == GOAWAY:
                return struct.unpack(">I", p[:4])[0] & 0x7FFFFFFF, struct.unpack(">I", p[4:8])[0], p[8:]
        return None

    def close(self):
        self.sock.close()


def pump_until(conns, cond, timeout, what):
    """Reads from every connection as bytes arrive (select) until cond() holds; bounded by timeout."""
    sel = selectors.DefaultSelector()
    for c in conns:
        if not c.eof:
            sel.register(c.sock, selectors.EVENT_READ, c)
    deadline = time.monotonic() + timeout
    try:
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            for key, _ in sel.select(min(left, 1.0)):
                c = key.data
                c.pump()
                if c.eof:
                    sel.unregister(c.sock)
    finally:
        sel.close()


def open_greeted(port, n, batch=64):
    """n raw connections, each greeted (the server acknowledged its SETTINGS) before the next batch
    connects, so that the accept queue never overflows and the accept order is the connect order."""
    conns = []
    for i in range(0, n, batch):
        chunk = [RawH2(port) for _ in range(min(batch, n - i))]
        pump_until(chunk, lambda: all(c.greeted() for c in chunk), 60, f"greetings {i}..{i + len(chunk)}")
        conns.extend(chunk)
    return conns


class BlackHole:
    """A Prometheus that accepts connections, reads what they send and never answers (a stalled server on
    loopback). Counts the connections it accepted and those still open."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = self.open = self.peak = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="blackhole", daemon=True)
        self.thread.start()

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, None)
        conns = []
        while not self.stop.is_set():
            for key, _ in sel.select(0.2):
                if key.data is None:
                    try:
                        s, _ = self.listener.accept()
                    except BlockingIOError:
                        continue
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ, s)
                    conns.append(s)
                    with self.lock:
                        self.accepted += 1
                        self.open += 1
                        self.peak = max(self.peak, self.open)
                    continue
                s = key.data
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()
                    conns.remove(s)
                    with self.lock:
                        self.open -= 1
        for s in conns:
            s.close()
        sel.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


# ---- the tests -----------------------------------------------------------------------------------------


class TestConnectionSlots(unittest.TestCase):
    def setUp(self):
        self.proc = None
        self.channels = []
        self.closers = []

    def tearDown(self):
        for c in self.channels:
            c.close()
        for close in reversed(self.closers):
            close()
        if self.proc is not None:
            rc = self.proc.stop(timeout=10)
            text = h.log_tail(self.proc.log_path, 100000)
            for marker in h.SANITIZER_MARKERS:
                self.assertNotIn(marker, text, "sanitizer report in prescale's log")
            self.assertIsNone(h.VALGRIND_REPORT.search(text), "valgrind report in prescale's log")
            self.assertEqual(rc, 0, "prescale did not exit cleanly after SIGTERM:\n" + self.proc.describe())

    # -- helpers ---------------------------------------------------------------------------------------

    def start(self, *flags, nofile=None):
        """prescale with its own log (under prlimit when nofile is given); waits for /readyz (bounded)."""
        self.grpc_port, self.http_port = h.free_port(), h.free_port()
        argv = h.prescale_argv(self.grpc_port, self.http_port, ENV.prom_url, "--log-level=debug", *flags)
        if nofile is not None:
            argv = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] + argv  # prlimit execs: same pid
        self.proc = h.Process("prescale", argv, os.path.join(ENV.tmp, f"prescale-{self._testMethodName}.log"))
        h.wait_http_ok(self.proc, self.http_url + "/readyz", 15, "prescale /readyz")

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def stub(self):
        ch = h.grpc_channel(f"127.0.0.1:{self.grpc_port}")
        self.channels.append(ch)
        return PB2_GRPC.ExternalScalerStub(ch)

    def metric(self, family, **labels):
        status, body, _ = h.http_get(self.http_url + "/metrics", timeout=10)
        self.assertEqual(status, 200)
        return h.metric_value(h.parse_metrics(body), family, **labels) or 0.0

    def log(self):
        with open(self.proc.log_path, errors="replace") as f:
            return f.read()

    def assert_keda_served(self, stub, name):
        """GetMetrics and IsActive on the real Prometheus, as KEDA asks them."""
        ref = h.scaled_ref(PB2, name=name, namespace="abuse", **h.metadata())
        r = stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=RPC_TIMEOUT)
        self.assertEqual(len(r.metricValues), 1)
        self.assertGreater(r.metricValues[0].metricValueFloat, 0)
        stub.IsActive(ref, timeout=RPC_TIMEOUT)  # answered: any result

    # -- tests -----------------------------------------------------------------------------------------

    def test_idle_greeted_grpc_connections_do_not_lock_keda_out(self):
        self.start()
        conns = open_greeted(self.grpc_port, MAX_CONNS)
        self.closers.append(lambda: [c.close() for c in conns])
        self.assertEqual(self.metric("prescale_grpc_connections"), MAX_CONNS)
        self.assertFalse(any(c.eof for c in conns), "a greeted connection was closed below the limit")

        # KEDA (re)connects with every slot held by an idle connection: it evicts the longest-idle one.
        t0 = time.monotonic()
        self.assert_keda_served(self.stub(), "keda-after-flood")
        keda_s = time.monotonic() - t0
        pump_until(conns, lambda: conns[0].eof, 30, "the longest-idle connection to be evicted")
        evicted = [c for c in conns if c.eof]
        for c in evicted:
            g = c.goaway()
            self.assertIsNotNone(g, "an evicted connection got no GOAWAY")
            self.assertEqual(g[1], NO_ERROR)
            self.assertEqual(g[2], b"evicted: connection limit")
            self.assertEqual(g[0], 0, "no stream of an idle connection was processed")
        # Oldest first: the evicted ones are a prefix of the connect order.
        self.assertEqual(evicted, conns[:len(evicted)])
        self.assertGreaterEqual(self.metric("prescale_connections_evicted_total", listener="grpc"), 1)
        self.assertEqual(self.metric("prescale_connections_refused_total", listener="grpc"), 0)
        self.assertLessEqual(self.metric("prescale_grpc_connections"), MAX_CONNS)
        print(f"\n  {MAX_CONNS} idle gRPC connections: GetMetrics+IsActive answered in {keda_s * 1000:.0f} ms, "
              f"{len(evicted)} evicted with GOAWAY", file=sys.stderr)

    def test_1100_idle_health_connections_and_healthz_answers(self):
        self.start()
        n = 1100
        idle = []
        self.closers.append(lambda: [s.close() for s in idle])
        for _ in range(n):
            idle.append(socket.create_connection(("127.0.0.1", self.http_port), timeout=10))
        # Each /metrics scrape is one more connection, so at least n - MAX_CONNS + 1 evictions are seen.
        h.wait_until(lambda: self.metric("prescale_connections_evicted_total", listener="http") >= n - MAX_CONNS + 1,
                     30, interval=0.2, what="the idle health connections beyond the limit to be evicted")
        t0 = time.monotonic()
        status, body, _ = h.http_get(self.http_url + "/healthz", timeout=10)
        healthz_ms = (time.monotonic() - t0) * 1000
        self.assertEqual((status, body), (200, "ok\n"))
        self.assertEqual(h.http_get(self.http_url + "/readyz", timeout=10)[0], 200)
        sel = selectors.DefaultSelector()
        for s in idle:
            sel.register(s, selectors.EVENT_READ)
        closed = set()

        def enough_closed():
            for key, _ in sel.select(0.5):
                try:
                    if key.fileobj.recv(1, socket.MSG_DONTWAIT) == b"":
                        closed.add(key.fileobj)
                except BlockingIOError:
                    continue
                except OSError:
                    closed.add(key.fileobj)
                sel.unregister(key.fileobj)
            return len(closed) >= n - MAX_CONNS

        h.wait_until(enough_closed, 30, interval=0, what="the evicted health connections to see their close")
        sel.close()
        self.assertEqual(self.metric("prescale_connections_refused_total", listener="http"), 0)
        print(f"\n  {n} idle health connections: /healthz 200 in {healthz_ms:.0f} ms", file=sys.stderr)

    def test_slow_byte_client_is_closed_and_an_idle_channel_reconnects(self):
        self.start("--grpc-idle-timeout=2s")
        slow = RawH2(self.grpc_port)
        self.closers.append(slow.close)
        pump_until([slow], slow.greeted, 20, "the greeting")
        # HEADERS announcing a 200-byte block on stream 1, then the block one byte at a time.
        slow.sock.sendall(frame(HEADERS, END_HEADERS, 1, length=200))
        sent, t0 = 0, time.monotonic()
        sel = selectors.DefaultSelector()
        sel.register(slow.sock, selectors.EVENT_READ)
        while not slow.eof and sent < 199 and time.monotonic() - t0 < 60:
            try:
                slow.sock.send(b"a")
                sent += 1
            except OSError:
                break
            if sel.select(0.2):
                slow.pump()
        sel.close()
        pump_until([slow], lambda: slow.eof, 10, "the close")
        self.assertTrue(slow.eof, "the trickling client was never closed")
        self.assertLess(sent, 199, "the frame was completed: the test did not trickle")
        self.assertGreaterEqual(sent, 5, "closed before bytes had trickled for a while")
        g = slow.goaway()
        self.assertIsNotNone(g, "closed without GOAWAY")
        self.assertEqual(g[1], NO_ERROR)
        self.assertEqual(g[2], b"idle")

        # A KEDA-like channel idle longer than the timeout is closed the same way and reconnects by itself.
        stub = self.stub()
        self.assert_keda_served(stub, "keda-idle")
        h.wait_until(lambda: self.metric("prescale_grpc_connections") == 0, 30, interval=0.2,
                     what="the idle gRPC channel's connection to be closed")
        self.assert_keda_served(stub, "keda-idle")
        self.assertGreaterEqual(self.metric("prescale_grpc_connections"), 1)

    def test_low_descriptor_limit_keeps_healthz_and_grpc_working(self):
        hole = BlackHole()
        self.closers.append(hole.close)
        nofile = 256
        # A per-server cap above the descriptor budget, so that the budget is what binds here (the cap's own
        # bound on a black hole is test_fanout's).
        self.start("--first-load-timeout=1s", "--prometheus-max-inflight=1024", nofile=nofile)
        m = re.search(r"nofile=(\d+) max_conns=(\d+) outgoing_conns=(\d+)", self.log())
        self.assertIsNotNone(m, "no descriptor budget in the log:\n" + h.log_tail(self.proc.log_path))
        self.assertEqual(int(m.group(1)), nofile)
        listener_conns, outgoing = int(m.group(2)), int(m.group(3))
        self.assertLess(listener_conns, MAX_CONNS)

        # 300 targets, each loading its history from the black hole: far more than the descriptors allow.
        stub = self.stub()
        futures = [stub.GetMetricSpec.future(
            h.scaled_ref(PB2, name=f"hole{i}", namespace="abuse",
                         **h.metadata(serverAddress=hole.url, query=f"up + {i}", timeout="60s")),
            timeout=RPC_TIMEOUT) for i in range(300)]
        for f in futures:
            self.assertEqual(len(f.result().metricSpecs), 1)
        h.wait_until(lambda: hole.open >= outgoing, 30, interval=0.1,
                     what=f"{outgoing} connections held open by the black hole")

        # Idle health connections beyond the listener's share, as a flood of probes would leave.
        idle = [socket.create_connection(("127.0.0.1", self.http_port), timeout=10)
                for _ in range(listener_conns + 50)]
        self.closers.append(lambda: [s.close() for s in idle])
        for _ in range(3):
            status, body, _ = h.http_get(self.http_url + "/healthz", timeout=10)
            self.assertEqual((status, body), (200, "ok\n"))
        # A new gRPC connection (KEDA after a restart) is accepted and served.
        fresh = self.stub()
        ref = h.scaled_ref(PB2, name="hole-fresh", namespace="abuse", **h.metadata(serverAddress=hole.url))
        self.assertEqual(len(fresh.GetMetricSpec(ref, timeout=RPC_TIMEOUT).metricSpecs), 1)
        self.assertLessEqual(hole.peak, outgoing, "outgoing connections went beyond their budget")
        # The loads beyond the budget wait in the queue for a connection, rather than take a descriptor.
        self.assertGreater(self.metric("prescale_prometheus_queued", server=hole.url[len("http://"):]), 0)
        self.assertTrue(self.proc.alive())
        print(f"\n  RLIMIT_NOFILE {nofile}: listeners {listener_conns} each, outgoing {outgoing} "
              f"(peak {hole.peak} to the black hole); /healthz 200", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
