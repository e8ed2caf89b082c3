"""End-to-end: graceful shutdown on SIGTERM (README, "Shutdown").

What a KEDA user with two replicas and rolling updates relies on: on SIGTERM prescale stops accepting
connections, sends GOAWAY so that the client opens its next RPCs elsewhere, ends its streams at once with
UNAVAILABLE, lets a unary call in flight finish within --shutdown-grace, and exits 0.

The unary call in flight is a GetMetrics waiting for a new target's first load of history. To hold it
there on demand, that target's serverAddress is a small stalling proxy in front of the real Prometheus
(allowed: a real Prometheus cannot stall on demand): it answers nothing until the test releases it, and
then what the real Prometheus answers. Each test runs its own prescale process, since each ends one.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_shutdown.py   (PRESCALE_BIN overrides the binary)
"""

import os
import re
import signal
import socket
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

ENV = None
PB2 = PB2_GRPC = None
STALL_MAX = 60.0  # a stalled request gives up by itself after this (bounds the proxy's threads)
RPC_TIMEOUT = 45.0
# Bounds for what comes at once or just after the grace: generous, for a busy machine (on an idle one these
# take well under a second), and still far from the waits they tell apart (the graces of 30 s below, the
# stalled load's STALE_MAX, the calls' RPC_TIMEOUT).
EXIT_MARGIN = 10.0  # seconds allowed beyond the grace for the final close and the exit
AT_ONCE = 10.0  # seconds within which what must not wait for the grace happens


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2, PB2_GRPC
    ENV, PB2, PB2_GRPC = h.start_module_env(prescale=False)  # each test starts its own prescale


def tearDownModule():  # noqa: N802
    if ENV is not None:
        ENV.close()


class StallingPrometheus:
    """Holds every request until `release` is set, then forwards it to the real Prometheus."""

    def __init__(self, upstream):
        self.arrived = threading.Event()
        self.release = threading.Event()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                proxy.arrived.set()
                try:
                    if not proxy.release.wait(STALL_MAX):
                        self.send_error(503)
                        return
                    try:
                        with opener.open(upstream + self.path, timeout=10) as r:
                            status, ctype, body = r.status, r.headers.get("Content-Type"), r.read()
                    except urllib.error.HTTPError as e:
                        status, ctype, body = e.code, e.headers.get("Content-Type"), e.read()
                    self.send_response(status)
                    self.send_header("Content-Type", ctype or "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # prescale closed the connection (it shut down): nobody to answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="stall", daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class StreamReader:
    """Reads a server stream in a thread; `ended` is set with the RpcError (or None) that ended it."""

    def __init__(self, call):
        self.call = call
        self.messages = []
        self.error = None
        self.ended = threading.Event()
        self.first = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for m in self.call:
                self.messages.append(m)
                self.first.set()
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.first.set()
            self.ended.set()


def refused(port):
    """True when a TCP connect to 127.0.0.1:port is refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


class TestShutdown(unittest.TestCase):
    def setUp(self):
        self.stall = StallingPrometheus(ENV.prom_url)
        self.proc = None
        self.channel = None

    def tearDown(self):
        if self.channel is not None:
            self.channel.close()
        self.stall.close()
        if self.proc is not None:
            rc = self.proc.stop(timeout=5)
            text = h.log_tail(self.proc.log_path, 100000)
            for marker in h.SANITIZER_MARKERS:
                self.assertNotIn(marker, text, "sanitizer report in prescale's log")
            self.assertIsNotNone(rc)

    # -- helpers ---------------------------------------------------------------------------------------

    def start(self, grace):
        """prescale with --shutdown-grace=grace and its own log; waits for /readyz (bounded)."""
        self.grpc_port, self.http_port = h.free_port(), h.free_port()
        argv = h.prescale_argv(self.grpc_port, self.http_port, ENV.prom_url, "--log-level=debug",
                               "--first-load-timeout=40s", f"--shutdown-grace={grace}")
        self.proc = h.Process("prescale", argv, os.path.join(ENV.tmp, f"prescale-{self._testMethodName}.log"))
        h.wait_http_ok(self.proc, f"http://127.0.0.1:{self.http_port}/readyz", 15, "prescale /readyz")
        self.channel = h.grpc_channel(f"127.0.0.1:{self.grpc_port}")
        self.stub = PB2_GRPC.ExternalScalerStub(self.channel)

    def log(self):
        with open(self.proc.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout):
        return h.wait_until(lambda: re.search(pattern, self.log()), timeout, interval=0.05,
                            what=f"{pattern!r} in prescale's log")

    def open_stream(self):
        """StreamIsActive on a target served by the real Prometheus; returns once its first state came."""
        ref = h.scaled_ref(PB2, name="drain-stream", namespace="e2e", **h.metadata())
        reader = StreamReader(self.stub.StreamIsActive(ref, timeout=RPC_TIMEOUT + 60))
        self.assertTrue(reader.first.wait(20), "StreamIsActive sent nothing")
        self.assertTrue(reader.messages, f"StreamIsActive failed: {reader.error!r}")
        return reader

    def stalled_get_metrics(self):
        """A GetMetrics waiting for the first load of a target behind the stalling proxy."""
        ref = h.scaled_ref(PB2, name="drain-unary", namespace="e2e",
                           **h.metadata(serverAddress=self.stall.url, timeout="50s"))
        fut = self.stub.GetMetrics.future(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"),
                                          timeout=RPC_TIMEOUT)
        self.assertTrue(self.stall.arrived.wait(15), "the first load never reached the stalling Prometheus")
        self.assertFalse(fut.done(), "GetMetrics should be waiting for the first load")
        return fut

    def wait_exit(self, within):
        """The process exits by itself within `within` seconds; returns its status."""
        try:
            return self.proc.proc.wait(within)
        except Exception:  # noqa: BLE001 - report what it was doing
            self.fail(f"prescale still running {within:.1f}s after SIGTERM: {self.proc.describe()}")

    def assert_cut(self, fut, timeout):
        """The unary call of `fut` ends within `timeout` with UNAVAILABLE (cut by the shutdown)."""
        with self.assertRaises(grpc.RpcError) as cm:
            fut.result(timeout=timeout)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, cm.exception.details())

    def drained_line(self):
        m = re.search(r'msg=drained reason=("[^"]*"|\S+) duration_ms=(\d+) calls_cut=(\d+) streams_ended=(\d+)',
                      self.log())
        self.assertIsNotNone(m, "no 'drained' line in prescale's log:\n" + h.log_tail(self.proc.log_path))
        return m.group(1).strip('"'), int(m.group(2)), int(m.group(3)), int(m.group(4))

    # -- tests -----------------------------------------------------------------------------------------

    def test_streams_end_unary_finishes_new_grpc_refused_probes_answered_exit_0(self):
        grace = 30.0
        self.start(f"{grace:g}s")
        stream = self.open_stream()
        fut = self.stalled_get_metrics()

        t0 = time.monotonic()
        self.proc.signal(signal.SIGTERM)
        # The stream ends at once with UNAVAILABLE, so that KEDA reopens it on the other replica.
        self.assertTrue(stream.ended.wait(AT_ONCE), f"StreamIsActive still open {AT_ONCE:g} s after SIGTERM")
        self.assertLess(time.monotonic() - t0, AT_ONCE)
        self.assertIsNotNone(stream.error, "the stream ended without a status")
        self.assertEqual(stream.error.code(), grpc.StatusCode.UNAVAILABLE, stream.error.details())
        self.assertIn("shutting down", stream.error.details() or "")
        self.wait_log(r'msg="shutting down" reason=SIGTERM grace=30s', AT_ONCE)
        # No new gRPC connection is accepted (the stream's end came after the listener stopped, so no wait
        # is needed here); the probes are still answered: not ready, but alive, so the kubelet neither
        # routes to this replica nor restarts it while it drains.
        self.assertTrue(refused(self.grpc_port), "the gRPC port still accepts connections during the drain")
        base = f"http://127.0.0.1:{self.http_port}"
        self.assertEqual(h.http_get(base + "/readyz", timeout=2)[0], 503, "/readyz during the drain")
        self.assertEqual(h.http_get(base + "/healthz", timeout=2)[0], 200, "/healthz during the drain")
        # The unary call in flight is not cut: once its first load completes, it answers OK.
        self.assertTrue(self.proc.alive(), "prescale exited with a call in flight, before the grace")
        self.assertFalse(fut.done(), "GetMetrics ended before its first load did")
        self.stall.release.set()
        r = fut.result(timeout=10)
        self.assertEqual(len(r.metricValues), 1, r)
        self.assertGreater(r.metricValues[0].metricValueFloat, 0)
        self.assertEqual(r.metricValues[0].metricName, "prescale")
        # Nothing is left: prescale exits 0 without waiting for the rest of the grace.
        rc = self.wait_exit(grace + EXIT_MARGIN)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, self.proc.describe())
        self.assertLess(elapsed, grace, f"exit took {elapsed:.1f}s although every call was done")
        reason, _, cut, streams = self.drained_line()
        self.assertEqual((reason, cut, streams), ("every call done", 0, 1))

    def test_unary_still_waiting_at_the_deadline_is_cut(self):
        grace = 2.0
        self.start(f"{grace:g}s")
        fut = self.stalled_get_metrics()
        t0 = time.monotonic()
        self.proc.signal(signal.SIGTERM)
        self.assert_cut(fut, grace + EXIT_MARGIN)
        waited = time.monotonic() - t0
        self.assertGreaterEqual(waited, grace - 0.3, f"the call was cut after {waited:.1f}s, before the grace")
        rc = self.wait_exit(grace + EXIT_MARGIN)
        self.assertEqual(rc, 0, self.proc.describe())
        self.assertLess(time.monotonic() - t0, grace + EXIT_MARGIN)
        reason, duration_ms, cut, _ = self.drained_line()
        self.assertEqual((reason, cut), ("shutdown grace expired", 1))
        self.assertGreaterEqual(duration_ms, grace * 1000 - 50)

    def test_grace_0_exits_at_once(self):
        self.start("0")
        stream = self.open_stream()
        fut = self.stalled_get_metrics()
        t0 = time.monotonic()
        self.proc.signal(signal.SIGTERM)
        rc = self.wait_exit(EXIT_MARGIN)
        self.assertEqual(rc, 0, self.proc.describe())
        self.assertLess(time.monotonic() - t0, AT_ONCE, "--shutdown-grace 0 must not wait")
        self.assertTrue(stream.ended.wait(5))
        self.assertEqual(stream.error.code(), grpc.StatusCode.UNAVAILABLE, stream.error.details())
        self.assert_cut(fut, 5)
        reason, _, cut, _ = self.drained_line()
        self.assertEqual(reason, "no shutdown grace")
        self.assertEqual(cut, 2, "the stream and the unary call were both cut")

    def test_second_signal_stops_the_drain(self):
        grace = 30.0
        self.start(f"{grace:g}s")
        fut = self.stalled_get_metrics()
        t0 = time.monotonic()
        self.proc.signal(signal.SIGTERM)
        self.wait_log(r'msg="shutting down"', AT_ONCE)
        self.assertTrue(self.proc.alive())
        self.proc.signal(signal.SIGINT)
        rc = self.wait_exit(EXIT_MARGIN)
        self.assertEqual(rc, 0, self.proc.describe())
        self.assertLess(time.monotonic() - t0, EXIT_MARGIN + 1)
        self.assert_cut(fut, 5)
        reason, _, cut, _ = self.drained_line()
        self.assertEqual((reason, cut), ("second signal", 1))

    def test_idle_connection_does_not_hold_the_exit(self):
        """A connection with no call open (KEDA between polls) gets its GOAWAYs and goes; the process does
        not wait for the grace. (grpcio's channel with no call in progress reads its socket only every
        few seconds, so the PING's ACK, and with it the exit, can take about 5 s here; grpc-go answers
        at once.)"""
        grace = 30.0
        self.start(f"{grace:g}s")
        self.assertEqual(len(self.stub.GetMetricSpec(h.scaled_ref(PB2, name="idle", namespace="e2e",
                                                                   **h.metadata()),
                                                     timeout=RPC_TIMEOUT).metricSpecs), 1)
        t0 = time.monotonic()
        self.proc.signal(signal.SIGTERM)
        rc = self.wait_exit(grace + EXIT_MARGIN)
        self.assertEqual(rc, 0, self.proc.describe())
        self.assertLess(time.monotonic() - t0, grace / 2, "an idle connection held the drain")
        reason, _, cut, _ = self.drained_line()
        self.assertEqual((reason, cut), ("every call done", 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
