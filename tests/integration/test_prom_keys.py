"""End-to-end: the keys of KEDA's prometheus scaler in a prescale trigger (issue 10).

- Against a real Prometheus: a trigger with namespace, queryParameters, customHeaders and timeout still
  loads and answers (Prometheus ignores parameters and headers it does not know), the same value as the
  plain trigger.
- Against a small fake Prometheus API written here, only for what a real one cannot do (check custom
  headers, answer 401/403): it records the request line and the headers it receives and answers a matrix,
  or 401/403/502 by path prefix. customHeaders arrive as given and namespace/queryParameters are
  percent-encoded in the query string; a 401 or 403 ends GetMetrics at once with UNAVAILABLE naming the
  HTTP status and the server (--first-load-timeout is 10 minutes and the RPC's deadline 60 s: a wait for
  the first-load timeout would be DEADLINE_EXCEEDED), and neither the message, the log nor /metrics holds
  the header values.
- A customHeaders value smuggling a header line is INVALID_ARGUMENT naming the key, not the value.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_prom_keys.py
"""

import json
import os
import sys
import threading
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

RPC_TIMEOUT = 60.0  # generous for a busy machine, and far below --first-load-timeout
TOKEN = "t0k3n-s3cret"  # must never come back in a message, the log or /metrics


class FakeApi:
    """A Prometheus query_range API on 127.0.0.1 that records what it receives. Paths under /forbidden,
    /unauthorized and /badgateway answer 403, 401 and 502; others a one-series matrix of 7."""

    def __init__(self):
        self.requests = []  # (path with query, {header name lowercased: value})
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                with fake.lock:
                    fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                for prefix, status, reason in (("/forbidden", 403, "Forbidden"),
                                               ("/unauthorized", 401, "Unauthorized"),
                                               ("/badgateway", 502, "Bad Gateway")):
                    if self.path.startswith(prefix):
                        # Some gateways echo the request: prescale must not repeat this body.
                        return self.answer(status, f"{reason}: you sent Authorization {TOKEN}".encode(),
                                           "text/plain")
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                start, end, step = (float(q[k][0]) for k in ("start", "end", "step"))
                values, t = [], start
                while t <= end + 1e-9:
                    values.append([round(t, 3), "7"])
                    t += step
                body = {"status": "success",
                        "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}}
                self.answer(200, json.dumps(body).encode(), "application/json")

            def answer(self, status, body, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-api", daemon=True)
        self.thread.start()

    def seen(self, prefix):
        with self.lock:
            return [r for r in self.requests if r[0].startswith(prefix)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TestPromKeys(h.ScalerCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(h.prescale_bin(), os.X_OK):
            raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")
        if not os.access(h.PROMETHEUS_BIN, os.X_OK):
            raise unittest.SkipTest(f"{h.PROMETHEUS_BIN} not installed")
        cls.pb2, cls.pb2_grpc = h.grpc_modules()
        cls.fake = FakeApi()
        cls.env = h.Env(tmp_prefix="prescale-keys-")
        try:
            with open(os.path.join(cls.env.tmp, "prometheus.yml"), "w") as f:
                f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
            cls.env.prom_port = h.free_port()
            cls.env.start_prometheus()
            cls.env.start_prescale("--first-load-timeout=10m")
        except BaseException:
            cls.env.close()
            cls.fake.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.fake.close()
        h.stop_module_env(cls.env)

    def get_metrics(self, name, **md):
        md = {"threshold": "10", "step": "1s", "model": "last", "quantile": "0", "history": "1m", **md}
        ref = self.pb2.ScaledObjectRef(name=name, namespace="keys", scalerMetadata=md)
        return self.stub.GetMetrics(self.pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"),
                                    timeout=RPC_TIMEOUT)

    def rpc_error(self, name, **md):
        with self.assertRaises(grpc.RpcError) as cm:
            self.get_metrics(name, **md)
        return cm.exception

    def assert_no_secret(self, text, where):
        self.assertNotIn(TOKEN, text, where)

    def test_a_real_prometheus_ignores_the_keys(self):
        plain = self.get_metrics("plain", query="vector(42)")
        keyed = self.get_metrics("keyed", query="vector(42)", namespace="team-a",
                                 queryParameters="dedup=false, partial_response=true",
                                 customHeaders=f"X-Scope-OrgID=team-a,Authorization=Bearer {TOKEN}",
                                 timeout="5000", unsafeSsl="false")
        self.assertEqual(plain.metricValues[0].metricValueFloat, 42)
        self.assertEqual(keyed.metricValues[0].metricValueFloat, 42)

    def test_custom_headers_and_parameters_arrive(self):
        r = self.get_metrics("fake-ok", query="up", serverAddress=self.fake.url + "/ok",
                             customHeaders=f"X-Scope-OrgID=team-a, Authorization=Bearer {TOKEN}",
                             namespace="team a", queryParameters="tenant=a&b #c, dedup=false")
        self.assertEqual(r.metricValues[0].metricValueFloat, 7)
        seen = self.fake.seen("/ok/api/v1/query_range")
        self.assertGreaterEqual(len(seen), 1)
        path, headers = seen[0]
        self.assertEqual(headers.get("x-scope-orgid"), "team-a")
        self.assertEqual(headers.get("authorization"), f"Bearer {TOKEN}")
        self.assertEqual(headers.get("accept-encoding"), "identity")  # the client's own, not replaced
        self.assertTrue(path.endswith("&namespace=team%20a&dedup=false&tenant=a%26b%20%23c"), path)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        self.assertEqual(q["namespace"], ["team a"])
        self.assertEqual(q["tenant"], ["a&b #c"])
        self.assertEqual(q["query"], ["up"])

    def check_refused(self, prefix, status, reason):
        e = self.rpc_error(f"fake{status}", query="up", serverAddress=self.fake.url + prefix,
                           customHeaders=f"Authorization=Bearer {TOKEN}")
        # At once: not DEADLINE_EXCEEDED, which waiting for --first-load-timeout (10m) would give.
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, e.details())
        self.assertIn(f"prometheus {self.fake.url}{prefix} answered {status} {reason}", e.details())
        self.assert_no_secret(e.details(), "grpc-message")
        self.assertGreaterEqual(len(self.fake.seen(prefix)), 1)
        return e

    def test_403_ends_the_rpc_at_once_with_a_clear_status(self):
        self.check_refused("/forbidden", 403, "Forbidden")

    def test_401_ends_the_rpc_at_once_with_a_clear_status(self):
        self.check_refused("/unauthorized", 401, "Unauthorized")

    def test_502_names_the_server_too_and_not_an_echoed_header(self):
        e = self.rpc_error("fake502", query="up", serverAddress=self.fake.url + "/badgateway",
                           customHeaders=f"Authorization=Bearer {TOKEN}")
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, e.details())
        self.assertIn(f"prometheus {self.fake.url}/badgateway answered 502 Bad Gateway", e.details())
        self.assert_no_secret(e.details(), "grpc-message")
        # Without header lines to leak, the head of the body is shown, as for any proxy's page.
        e = self.rpc_error("fake502-plain", query="up", serverAddress=self.fake.url + "/badgateway")
        self.assertIn("answered 502 Bad Gateway (expected a Prometheus API response): Bad Gateway: you sent",
                      e.details())

    def test_header_smuggling_is_invalid_argument_without_the_value(self):
        e = self.rpc_error("smuggle", query="up", serverAddress=self.fake.url + "/ok",
                           customHeaders=f"X-A={TOKEN}\r\nHost: evil")
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("customHeaders: entry 1 (key \"X-A\"): the value holds a control byte", e.details())
        self.assert_no_secret(e.details(), "grpc-message")
        e = self.rpc_error("reserved", query="up", customHeaders="Host=evil")
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("customHeaders: header \"Host\" is set by prescale's HTTP client itself", e.details())

    def test_zz_no_secret_in_the_log_or_metrics(self):
        """Runs last (unittest sorts by name): after every test above sent the token."""
        self.check_refused("/forbidden", 403, "Forbidden")
        log = h.log_tail(self.env.prescale.log_path, 100000)
        self.assert_no_secret(log.replace("Bad Gateway: you sent Authorization " + TOKEN, ""), "prescale's log")
        status, body, _ = h.http_get(self.env.http_url + "/metrics")
        self.assertEqual(status, 200)
        self.assert_no_secret(body if isinstance(body, str) else body.decode(), "/metrics")


if __name__ == "__main__":
    unittest.main()
