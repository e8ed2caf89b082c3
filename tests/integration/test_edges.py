"""End-to-end: the answer at the extremes, signals and logs (docs/reliability.md, "Values at the
extremes" and "Signals and logs").

A real Prometheus (no scrape: the queries are expressions such as `vector(1) / 0`, whose value is +Inf at
every instant), the prescale binary, and python3-grpcio as the client, as KEDA would be:
- +Inf from Prometheus, and 1.797e308 x (1 + headroom 1), answer INT64_MAX and the largest double, and
  IsActive true (they answered 0 and false: the workload went to its minimum at its highest load);
- a NUL byte in a metadata key or value is INVALID_ARGUMENT naming the key; threshold=0x10 is refused;
- a space in an HTTP/1 header name on the health port is 400 and the connection closes;
- SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM leave the process alive and answering (HUP and USR1 log a line);
- a flood of failing RPCs writes at most PS_LOG_RATE_BURST "rpc failed" lines of its kind, then one line
  with the count, and prescale_log_suppressed_total counts the rest; so does rapid reset over 30
  connections (python3-h2), each closed with GOAWAY ENHANCE_YOUR_CALM, which wrote one WARN line each.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_edges.py   (PRESCALE_BIN overrides the binary)
"""

import os
import select
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

ENV = None
PB2 = PB2_GRPC = None
RPC_TIMEOUT = 30.0
INT64_MAX = 2**63 - 1
LOG_RATE_BURST = 10  # PS_LOG_RATE_BURST (src/log.h)
LOG_RATE_WINDOW_S = 10  # PS_LOG_RATE_WINDOW_MS / 1000


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2, PB2_GRPC
    if not os.access(h.prescale_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()}")
    PB2, PB2_GRPC = h.grpc_modules()
    ENV = h.Env(tmp_prefix="prescale-edges-")
    try:
        ENV.prom_port = h.free_port()
        with open(os.path.join(ENV.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 15s\n")  # nothing to scrape: expressions only
        ENV.start_prometheus()
        ENV.start_prescale()
    except BaseException:
        ENV.close()
        raise
    Edges.env = ENV


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)


def ref(**md):
    return PB2.ScaledObjectRef(name="web", namespace="edges", scalerMetadata=md)


def log_lines():
    with open(ENV.prescale.log_path, errors="replace") as f:
        return f.readlines()


class Edges(h.ScalerCase):
    def get_metrics(self, **md):
        r = self.stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref(**md), metricName="prescale"),
                                 timeout=RPC_TIMEOUT)
        self.assertEqual(len(r.metricValues), 1)
        return r.metricValues[0]

    def assert_invalid(self, rpc, req, *words):
        with self.assertRaises(grpc.RpcError) as cm:
            rpc(req, timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, cm.exception.details())
        for w in words:
            self.assertIn(w, cm.exception.details())
        return cm.exception.details()

    def assert_serving(self):
        self.assertEqual(h.http_get(ENV.http_url + "/healthz")[0], 200)
        spec = self.stub.GetMetricSpec(ref(query="vector(1)", threshold="3"), timeout=RPC_TIMEOUT)
        self.assertEqual(spec.metricSpecs[0].targetSize, 3)

    # ---- values at the extremes ----------------------------------------------------------------------

    def test_plus_inf_from_prometheus_saturates_and_is_active(self):
        md = {"query": "vector(1) / 0", "threshold": "2", "model": "last"}
        mv = self.get_metrics(**md)
        self.assertEqual(mv.metricValue, INT64_MAX)
        self.assertEqual(mv.metricValueFloat, sys.float_info.max)
        self.assertTrue(self.stub.IsActive(ref(**md), timeout=RPC_TIMEOUT).result)
        # The default model (auto) too.
        mv = self.get_metrics(query="vector(1) / 0", threshold="2")
        self.assertEqual(mv.metricValue, INT64_MAX)
        self.assertEqual(mv.metricValueFloat, sys.float_info.max)

    def test_headroom_overflow_saturates(self):
        md = {"query": "vector(1.797e308)", "threshold": "2", "model": "last", "headroom": "1"}
        mv = self.get_metrics(**md)
        self.assertEqual(mv.metricValue, INT64_MAX)
        self.assertEqual(mv.metricValueFloat, sys.float_info.max)
        self.assertTrue(self.stub.IsActive(ref(**md), timeout=RPC_TIMEOUT).result)

    def test_nan_is_missing(self):
        # ignoreNullValues true (the default): missing counts as 0; false: FAILED_PRECONDITION.
        mv = self.get_metrics(query="vector(0) / 0", threshold="2", model="last")
        self.assertEqual((mv.metricValue, mv.metricValueFloat), (0, 0.0))
        with self.assertRaises(grpc.RpcError) as cm:
            self.get_metrics(query="vector(0) / 0", threshold="2", model="last", ignoreNullValues="false")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION, cm.exception.details())

    def test_nul_in_metadata_is_invalid_argument_naming_the_key(self):
        d = self.assert_invalid(self.stub.GetMetricSpec, ref(query="vector(1)", threshold="10\x00junk"),
                                '"threshold"', "NUL")
        self.assertIn("offset 2", d)
        gm = PB2.GetMetricsRequest(scaledObjectRef=ref(query="bars_load\x00x", threshold="10"),
                                   metricName="prescale")
        self.assert_invalid(self.stub.GetMetrics, gm, '"query"', "NUL")
        self.assert_invalid(self.stub.IsActive, ref(**{"query": "vector(1)", "thres\x00hold": "10"}),
                            'metadata key "thres"', "NUL")
        self.assert_serving()

    def test_numbers_are_decimal_only(self):
        for v in ("0x10", "inf", "nan"):
            self.assert_invalid(self.stub.GetMetricSpec, ref(query="vector(1)", threshold=v), "threshold",
                                "not a decimal number")

    def test_a_query_over_the_url_limit_says_which_limit(self):
        q = "sum(x)" + " " * 6994
        self.assert_invalid(self.stub.IsActive,
                            ref(query=q, threshold="2", model="last"),
                            "over the limit of 16384 bytes (PS_HTTP_MAX_URL)", "the query is 7000 bytes")

    def test_space_in_a_header_name_is_400_and_closes(self):
        for req in (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nHost : a\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", ENV.http_port), timeout=10) as s:
                s.sendall(req)
                data = b""
                while True:  # the server closes after its answer: read to EOF (bounded by the timeout)
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
            self.assertIn(b"\r\nConnection: close\r\n", data)
        self.assert_serving()

    # ---- signals and logs ----------------------------------------------------------------------------

    def test_signals_leave_the_process_alive_and_answering(self):
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
            ENV.prescale.signal(sig)
            self.assert_serving()
            self.assertTrue(ENV.prescale.alive(), f"{sig.name}: " + ENV.prescale.describe())
        h.wait_until(lambda: any('msg="reload requested" signal=SIGHUP' in ln for ln in log_lines()), 10,
                     what="the reload line of SIGHUP")
        h.wait_until(lambda: any('msg=state signal=SIGUSR1' in ln for ln in log_lines()), 10,
                     what="the state line of SIGUSR1")
        # Once more each, all at once: still one process, still serving.
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
            ENV.prescale.signal(sig)
        self.assert_serving()
        self.assertTrue(ENV.prescale.alive(), ENV.prescale.describe())

    def test_a_flood_of_failing_calls_is_rate_limited_in_the_log(self):
        marker = f"flood{int(time.time() * 1000)}"
        before = h.metric_value(ENV.prescale_metrics(), "prescale_log_suppressed_total") or 0
        n = 300
        for _ in range(n):
            with self.assertRaises(grpc.RpcError):
                self.stub.GetMetricSpec(ref(query="vector(1)", threshold=marker), timeout=RPC_TIMEOUT)
        written = sum(marker in ln for ln in log_lines())
        self.assertLessEqual(written, LOG_RATE_BURST, "".join(log_lines()[-20:]))
        after = h.metric_value(ENV.prescale_metrics(), "prescale_log_suppressed_total")
        self.assertGreaterEqual(after - before, n - LOG_RATE_BURST)
        # Once the window is over, one line says how many were dropped (the server's flush timer writes it
        # even though no line of that kind follows).
        h.wait_until(lambda: any('msg="rpc failed (suppressed ' in ln for ln in log_lines()),
                     3 * LOG_RATE_WINDOW_S + 10, interval=0.5, what="the line with the suppressed count")
        self.assert_serving()

    def test_rapid_reset_from_many_connections_logs_a_few_lines_and_a_count(self):
        """The attack of the issue: each connection opens and resets streams until prescale closes it with
        GOAWAY ENHANCE_YOUR_CALM, and each close was one WARN line."""
        import h2.config
        import h2.connection
        import h2.errors
        import h2.events

        conns = 3 * LOG_RATE_BURST
        headers = [(":method", "POST"), (":scheme", "http"), (":path", "/externalscaler.ExternalScaler/IsActive"),
                   (":authority", "edges"), ("content-type", "application/grpc"), ("te", "trailers")]
        msg = 'msg="client resets streams too fast; closing its connection"'
        before = sum(msg in ln for ln in log_lines())
        suppressed_before = h.metric_value(ENV.prescale_metrics(), "prescale_log_suppressed_total")
        calmed = 0
        for _ in range(conns):
            with socket.create_connection(("127.0.0.1", ENV.grpc_port), timeout=20) as s:
                c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                c.initiate_connection()
                s.sendall(c.data_to_send())
                goaway = None
                for _ in range(40):  # bounded: 40 x 50 resets, the bucket holds 500
                    for _ in range(50):
                        sid = c.get_next_available_stream_id()
                        c.send_headers(sid, headers)
                        c.reset_stream(sid)
                    try:
                        s.sendall(c.data_to_send())
                        # What the server said so far (its GOAWAY), without waiting when it said nothing.
                        while goaway is None and select.select([s], [], [], 0)[0]:
                            data = s.recv(65536)
                            if not data:
                                break
                            for ev in c.receive_data(data):
                                if isinstance(ev, h2.events.ConnectionTerminated):
                                    goaway = ev.error_code
                    except OSError:
                        break
                    if goaway is not None:
                        break
                if goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM:
                    calmed += 1
        # The GOAWAY (ENHANCE_YOUR_CALM) is mostly lost to the reset of a socket closed with our frames
        # unread, so `calmed` is not asserted; the server's own count below shows that every connection
        # hit the limit.

        def accounted():
            written = sum(msg in ln for ln in log_lines()) - before
            dropped = h.metric_value(ENV.prescale_metrics(), "prescale_log_suppressed_total") - suppressed_before
            return (written, dropped) if written + dropped >= conns else None

        written, dropped = h.wait_until(accounted, 20, what="a WARN line, written or suppressed, per connection")
        self.assertGreaterEqual(written, 1)
        self.assertLessEqual(written, LOG_RATE_BURST, "".join(log_lines()[-20:]))
        self.assertEqual(written + dropped, conns)
        h.wait_until(lambda: any('msg="client resets streams too fast; closing its connection (suppressed ' in ln
                                 for ln in log_lines()),
                     3 * LOG_RATE_WINDOW_S + 10, interval=0.5, what="the line with the suppressed count")
        self.assert_serving()


if __name__ == "__main__":
    unittest.main()
