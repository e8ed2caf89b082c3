"""End-to-end: prescale's HTTP side door (/healthz, /readyz, /metrics, 404) and process lifecycle.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_http.py
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ENV = None
PB2 = PB2_GRPC = None


def setUpModule():  # noqa: N802
    global ENV, PB2, PB2_GRPC
    ENV, PB2, PB2_GRPC = h.start_module_env()


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)


class TestHttp(unittest.TestCase):
    def test_healthz(self):
        status, _, _ = h.http_get(ENV.http_url + "/healthz")
        self.assertEqual(status, 200)

    def test_readyz(self):
        status, _, _ = h.http_get(ENV.http_url + "/readyz")
        self.assertEqual(status, 200)

    def test_unknown_path_404(self):
        for path in ("/nope", "/metrics/x", "/healthzz", "/"):
            status, _, _ = h.http_get(ENV.http_url + path)
            self.assertEqual(status, 404, path)

    def test_metrics_after_calls(self):
        ref = h.scaled_ref(PB2, name="httpweb", namespace="httpns", **h.TEST_METADATA)
        with h.grpc_channel(ENV.grpc_addr) as ch:
            stub = PB2_GRPC.ExternalScalerStub(ch)
            stub.IsActive(ref, timeout=10)
            stub.GetMetricSpec(ref, timeout=10)
            stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=10)
        status, body, headers = h.http_get(ENV.http_url + "/metrics")
        self.assertEqual(status, 200)
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        self.assertTrue(ctype.startswith("text/plain"), ctype)
        m = h.parse_metrics(body)
        ok = h.metric_value(m, "prescale_grpc_requests_total", method="IsActive", code="OK")
        self.assertIsNotNone(ok, 'prescale_grpc_requests_total{method="IsActive",code="OK"} missing')
        self.assertGreaterEqual(ok, 1)
        labels = dict(namespace="httpns", name="httpweb", metric="prescale")
        for fam in ("prescale_target_observed", "prescale_target_predicted", "prescale_target_value"):
            v = h.metric_value(m, fam, **labels)
            self.assertIsNotNone(v, f"{fam}{labels} missing")
        self.assertIn(h.metric_value(m, "prescale_target_observed", **labels), h.SHAPE)
        targets = h.metric_value(m, "prescale_targets")
        self.assertIsNotNone(targets, "prescale_targets missing")
        self.assertGreaterEqual(targets, 1)
        for fam in ("prescale_grpc_requests_total", "prescale_target_observed", "prescale_targets"):
            self.assertIn(f"# TYPE {fam} ", body)

    def test_refresh_errors_series_exists_at_zero(self):
        """prescale_refresh_errors_total{namespace,name,metric} is listed in the contract; a labelled
        counter that only appears on its first increment defeats `increase(...) > 0` alerts on the
        first error, so the series should exist (at 0) as soon as the target does."""
        ref = h.scaled_ref(PB2, name="httperr0", namespace="httpns", **h.TEST_METADATA)
        with h.grpc_channel(ENV.grpc_addr) as ch:
            PB2_GRPC.ExternalScalerStub(ch).GetMetrics(
                PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=10)
        status, body, _ = h.http_get(ENV.http_url + "/metrics")
        self.assertIn("# TYPE prescale_refresh_errors_total counter", body)
        v = h.metric_value(h.parse_metrics(body), "prescale_refresh_errors_total", namespace="httpns",
                           name="httperr0", metric="prescale")
        self.assertEqual(v, 0.0, "prescale_refresh_errors_total for a healthy target: expected 0, series absent"
                         if v is None else f"expected 0, got {v}")

    def test_error_codes_counted(self):
        ref = h.scaled_ref(PB2, name="httpbad", namespace="httpns", threshold="abc", query="x")
        import grpc
        with h.grpc_channel(ENV.grpc_addr) as ch:
            with self.assertRaises(grpc.RpcError):
                PB2_GRPC.ExternalScalerStub(ch).IsActive(ref, timeout=10)
        m = h.parse_metrics(h.http_get(ENV.http_url + "/metrics")[1])
        v = h.metric_value(m, "prescale_grpc_requests_total", method="IsActive", code="INVALID_ARGUMENT")
        self.assertIsNotNone(v, 'prescale_grpc_requests_total{method="IsActive",code="INVALID_ARGUMENT"} missing')
        self.assertGreaterEqual(v, 1)


class TestTargetIdle(unittest.TestCase):
    def test_idle_target_is_forgotten(self):
        """A second prescale with --target-idle 4s: the target KEDA stops asking about disappears from
        prescale_targets and its per-target series are removed."""
        grpc_port, http_port = h.free_port(), h.free_port()
        p = h.Process("prescale-idle", h.prescale_argv(grpc_port, http_port, ENV.prom_url, "--target-idle=4s"),
                      os.path.join(ENV.tmp, "prescale-idle.log"))
        url = f"http://127.0.0.1:{http_port}"
        try:
            h.wait_http_ok(p, url + "/readyz", 15, "prescale /readyz")
            ref = h.scaled_ref(PB2, name="idle", namespace="httpns", **h.TEST_METADATA)
            with h.grpc_channel(f"127.0.0.1:{grpc_port}") as ch:
                PB2_GRPC.ExternalScalerStub(ch).GetMetrics(
                    PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=10)
            # The target's last use was before this instant: the idle time is counted from here (after the
            # scrape below, which can take a while on a busy machine, it would be counted short).
            t0 = time.monotonic()
            targets = lambda: h.metric_value(h.parse_metrics(h.http_get(url + "/metrics")[1]), "prescale_targets")
            self.assertEqual(targets(), 1)
            h.wait_until(lambda: targets() == 0, 30, interval=0.25, what="prescale_targets to drop to 0")
            self.assertGreaterEqual(time.monotonic() - t0, 2.0, "evicted before --target-idle elapsed")
            m = h.parse_metrics(h.http_get(url + "/metrics")[1])
            self.assertIsNone(h.metric_value(m, "prescale_target_value", namespace="httpns", name="idle",
                                             metric="prescale"), "gauges of an evicted target must be removed")
        finally:
            self.assertEqual(p.stop(), 0, p.describe())


class TestLifecycle(unittest.TestCase):
    """A separate prescale (no Prometheus needed): flags, readiness and signals."""

    def run_prescale(self, *args):
        return subprocess.run([h.prescale_bin(), *args], capture_output=True, text=True, timeout=10)

    def test_help_and_version(self):
        r = self.run_prescale("--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--grpc-listen", r.stdout + r.stderr)
        r = self.run_prescale("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue((r.stdout + r.stderr).strip())

    def test_bad_flag_names_it(self):
        r = self.run_prescale("--stale-after=banana")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("banana", r.stderr + r.stdout)
        r = self.run_prescale("--no-such-flag")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--no-such-flag", r.stderr + r.stdout)

    def test_ipv6_loopback_listener(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6 in this Python")
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
                port = s.getsockname()[1]
        except OSError as e:
            self.skipTest(f"no IPv6 loopback here: {e}")
        http_port = h.free_port()
        p = h.Process("prescale-v6", [h.prescale_bin(), f"--grpc-listen=[::1]:{port}",
                                      f"--http-listen=127.0.0.1:{http_port}"],
                      os.path.join(tempfile.gettempdir(), f"prescale-v6-{os.getpid()}.log"))
        try:
            h.wait_http_ok(p, f"http://127.0.0.1:{http_port}/readyz", 15, "prescale /readyz")
            import grpc
            with h.grpc_channel(f"[::1]:{port}") as ch:
                with self.assertRaises(grpc.RpcError) as cm:
                    PB2_GRPC.ExternalScalerStub(ch).GetMetricSpec(
                        h.scaled_ref(PB2, threshold="abc", query="x"), timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        finally:
            self.assertEqual(p.stop(), 0, p.describe())
            os.unlink(p.log_path)

    def test_signals_exit_zero(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with h.Env(tmp_prefix="prescale-sig-") as env:
                env.start_prescale()  # readiness awaited inside
                t0 = time.monotonic()
                env.prescale.signal(sig)
                try:
                    rc = env.prescale.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.fail(f"prescale did not exit within 10s of {sig.name}")
                self.assertEqual(rc, 0, f"exit code after {sig.name}\n{env.prescale.describe()}")
                self.assertLess(time.monotonic() - t0, 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
