"""End-to-end: memory that a client can pin (issue 9, section 1; docs/reliability.md, "Request memory").

The attack of the issue, scaled down by small flag values so that it runs in seconds: 4 raw HTTP/2
connections (python3-h2 over a socket) x 64 streams, each sending a gRPC prefix that announces
(--grpc-max-msg - 1) bytes and then part of the body, and never END_STREAM. Against the real prescale
binary and a real Prometheus, it checks what the attacker sees (RESOURCE_EXHAUSTED once the streams'
bytes exceed --grpc-max-buffered; DEADLINE_EXCEEDED at --grpc-request-timeout for the others), that
/healthz and a grpcio IsActive/GetMetrics still answer during the attack, and that prescale's RSS
(/proc/<pid>/status VmRSS) stays within the budget plus a margin during the attack and comes back near
its baseline once the connections are gone.

Synchronisation is on events: a PING sent after a connection's last DATA frame is acknowledged only after
the server processed every frame before it (RFC 9113 6.7, frames are processed in order), and statuses
are read off the sockets as they come.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_abuse_memory.py   (PRESCALE_BIN overrides)
"""

import os
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
except ImportError:  # pragma: no cover - Debian's python3-h2 is a test dependency
    h2 = None

MIB = 1 << 20
MAX_MSG = 4 * MIB  # prescale's default --grpc-max-msg: the attack announces MAX_MSG - 1
BUDGET = 8 * MIB  # --grpc-max-buffered for the test
RESERVE = 1 * MIB  # PS_H2_BUFFER_RESERVE (h2_conn.h): small messages may use it beyond the budget
REQUEST_TIMEOUT_S = 10  # --grpc-request-timeout for the test: long enough to check health mid-attack
CONNS, STREAMS = 4, 64
BODY = 64 * 1024  # bytes of the announced message each stream sends: 16 MiB in all, twice the budget
# RSS bounds. During: the budget, its reserve, and room for 256 streams' nghttp2 state, socket buffers
# and the loop's read buffers (main, which reserved by the announced length, went 17 MiB over its baseline
# here). After: near the baseline. Measured: +0.4 MiB with the heap trims, +3 to +4.5 MiB without them.
DURING_MARGIN = 4 * MIB
AFTER_MARGIN = 2 * MIB
PATH = "/externalscaler.ExternalScaler/IsActive"
WAIT = 60.0  # generous bound on every wait for an event (a busy machine)

ENV = None
PB2 = PB2_GRPC = None


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2, PB2_GRPC
    if h2 is None:
        raise unittest.SkipTest("python3-h2 is not installed")
    ENV, PB2, PB2_GRPC = h.start_module_env(f"--grpc-max-buffered={BUDGET // MIB}MiB",
                                            f"--grpc-request-timeout={REQUEST_TIMEOUT_S}s")


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)


def vm_rss(pid):
    """Resident set size of pid in bytes, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class RawConn:
    """One attacking HTTP/2 connection: streams that upload part of a message and never end it."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                         header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.status = {}  # stream id -> (grpc-status, grpc-message) once answered
        self.reset = set()  # streams the server reset
        self.pings_acked = 0
        self.closed = False
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout):
        """Reads what the server sent (waiting at most timeout for the first bytes); False on EOF."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return True
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                hd = dict(ev.headers)
                if "grpc-status" in hd:
                    self.status[ev.stream_id] = (int(hd["grpc-status"]), hd.get("grpc-message", ""))
            elif isinstance(ev, h2.events.StreamReset):
                self.reset.add(ev.stream_id)
            elif isinstance(ev, h2.events.PingAckReceived):
                self.pings_acked += 1
        self.flush()
        return True

    def attack(self, streams, announce, body_len):
        """Opens `streams` streams, each with a prefix announcing `announce` bytes and body_len of them."""
        prefix = struct.pack(">BI", 0, announce)
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", "prescale"), (":path", PATH),
                   ("content-type", "application/grpc"), ("te", "trailers")]
        todo = {}
        for _ in range(streams):
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(sid, headers)
            todo[sid] = prefix + bytes(body_len)
        self.flush()
        deadline = time.monotonic() + WAIT
        while todo:
            sent = False
            for sid in list(todo):
                if sid in self.status or sid in self.reset:
                    del todo[sid]  # refused: it may not send more
                    continue
                try:
                    n = min(len(todo[sid]), self.conn.local_flow_control_window(sid),
                            self.conn.max_outbound_frame_size)
                except h2.exceptions.StreamClosedError:
                    del todo[sid]
                    continue
                if n > 0:
                    self.conn.send_data(sid, todo[sid][:n])
                    todo[sid] = todo[sid][n:]
                    sent = True
                    if not todo[sid]:
                        del todo[sid]
            self.flush()
            if not sent:  # waiting for flow-control credit (or answers): read
                if not self.pump(1.0) or time.monotonic() > deadline:
                    raise AssertionError("the attack could not send its bytes")
        # Every frame before this PING is processed once its ACK comes back.
        self.conn.ping(b"memattak")
        self.flush()
        want = self.pings_acked + 1
        while self.pings_acked < want:
            if not self.pump(1.0) or time.monotonic() > deadline:
                raise AssertionError("no PING ACK after the attack")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class AbuseMemoryTest(h.ScalerCase):
    env = None

    @classmethod
    def setUpClass(cls):
        cls.env = ENV

    def metrics(self):
        return self.env.prescale_metrics()

    def metric(self, family, **labels):
        return h.metric_value(self.metrics(), family, **labels)

    def is_active(self):
        ref = h.scaled_ref(PB2, name="mem", **h.TEST_METADATA)
        return self.stub.IsActive(ref, timeout=30)

    def get_metrics(self):
        ref = h.scaled_ref(PB2, name="mem", **h.TEST_METADATA)
        req = PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale")
        return self.stub.GetMetrics(req, timeout=30)

    def test_pinned_request_memory_is_bounded_refused_timed_out_and_returned(self):
        pid = self.env.prescale.proc.pid
        # Warm up: the target is loaded, and the code paths of an RPC have run once.
        self.is_active()
        self.get_metrics()
        baseline = vm_rss(pid)

        conns = [RawConn(self.env.grpc_port) for _ in range(CONNS)]
        try:
            for c in conns:
                c.attack(STREAMS, MAX_MSG - 1, BODY)
            during = vm_rss(pid)
            m = self.metrics()
            buffered = h.metric_value(m, "prescale_grpc_buffered_bytes")
            refused = h.metric_value(m, "prescale_grpc_requests_refused_total", reason="memory") or 0
            # Every stream either holds its bytes or was refused; the budget was never exceeded.
            self.assertLessEqual(buffered, BUDGET + RESERVE)
            self.assertGreater(buffered, BUDGET / 2, "the attack's bytes were not buffered at all")
            self.assertGreater(refused, 0, "16 MiB against an 8 MiB budget: some streams must be refused")
            self.assertLess(refused, CONNS * STREAMS)

            # What the attacker sees: RESOURCE_EXHAUSTED for exactly the streams the server counted.
            def refusals_seen():
                for c in conns:
                    c.pump(0.05)
                return sum(1 for c in conns for st in c.status.values() if st[0] == 8) >= refused

            h.wait_until(refusals_seen, WAIT, interval=0, what="the RESOURCE_EXHAUSTED answers")
            seen = [st for c in conns for st in c.status.values() if st[0] == 8]
            self.assertEqual(len(seen), refused, seen[:5])
            for code, message in seen:
                self.assertEqual(code, 8)  # RESOURCE_EXHAUSTED
                self.assertIn("--grpc-max-buffered", message)

            # The server still answers, during the attack: health, and KEDA's RPCs.
            status, body, _ = h.http_get(self.env.http_url + "/healthz")
            self.assertEqual(status, 200, body)
            self.assertIn(self.is_active().result, (True, False))
            self.assertEqual(len(self.get_metrics().metricValues), 1)
            # The attack is still on (streams of it are still held): the checks above ran under it.
            left = sum(1 for c in conns for sid in c.conn.streams if sid not in c.status)
            self.assertGreater(left, 0, "every held stream timed out before the checks (a very slow machine?)")

            # RSS during the attack: within the budget and a margin of the baseline.
            self.assertLessEqual(during - baseline, BUDGET + RESERVE + DURING_MARGIN,
                                 f"RSS {during / MIB:.1f} MiB during the attack, baseline {baseline / MIB:.1f} MiB")

            # Later, the request time limit: every held stream gets DEADLINE_EXCEEDED and its bytes go back.
            total = CONNS * STREAMS

            def all_answered():
                for c in conns:
                    c.pump(0.2)
                return sum(len(c.status) for c in conns) >= total

            h.wait_until(all_answered, WAIT + REQUEST_TIMEOUT_S, interval=0, what="the request time limit")
            timed_out = [st for c in conns for st in c.status.values() if st[0] != 8]
            self.assertEqual(len(timed_out), total - refused)
            for code, message in timed_out:
                self.assertEqual(code, 4, message)  # DEADLINE_EXCEEDED
                self.assertIn("--grpc-request-timeout", message)
            m = self.metrics()
            self.assertEqual(h.metric_value(m, "prescale_grpc_buffered_bytes"), 0)
            self.assertEqual(h.metric_value(m, "prescale_grpc_requests_refused_total", reason="request_timeout"),
                             total - refused)
        finally:
            for c in conns:
                c.close()
        self.channel.close()

        # After: every connection gone (the last one to close trims the heap), RSS back near the baseline.
        h.wait_until(lambda: self.metric("prescale_grpc_connections") == 0, WAIT, what="the connections to close")
        after = vm_rss(pid)
        self.assertLessEqual(after - baseline, AFTER_MARGIN,
                             f"RSS {after / MIB:.1f} MiB after the attack, baseline {baseline / MIB:.1f} MiB, "
                             f"{during / MIB:.1f} MiB during")
        print(f"\nrefused {refused:.0f}, buffered {buffered / MIB:.1f} MiB; RSS baseline {baseline / MIB:.1f} MiB, during {during / MIB:.1f} MiB, after {after / MIB:.1f} MiB",
              file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
