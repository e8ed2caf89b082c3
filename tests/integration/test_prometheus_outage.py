"""End-to-end: Prometheus goes away and comes back.

prescale runs with --stale-after STALE_AFTER and a target of step 1s (model last). While Prometheus is
down, the last value keeps being served until it is older than STALE_AFTER, then UNAVAILABLE; after
Prometheus restarts (same port, same storage) the value comes back by itself.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_prometheus_outage.py
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

# seconds: long enough that Prometheus's shutdown (~1 s idle, several seconds on a busy machine) and the
# next GetMetrics fit well inside it
STALE_AFTER = 10.0
TARGET_STEP = 1.0
RPC_TIMEOUT = 10.0


class TestPrometheusOutage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(h.prescale_bin(), os.X_OK):
            raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")
        cls.pb2, cls.pb2_grpc = h.grpc_modules()
        cls.env = h.Env()
        try:
            cls.env.start_prometheus_with_history()
            cls.env.start_prescale(f"--stale-after={STALE_AFTER:g}s")
        except BaseException:
            cls.env.close()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = cls.env.close()
        if problems:
            raise AssertionError("prescale at shutdown: " + "; ".join(problems))

    def setUp(self):
        self.channel = h.grpc_channel(self.env.grpc_addr)
        self.stub = self.pb2_grpc.ExternalScalerStub(self.channel)
        self.ref = h.scaled_ref(self.pb2, name="outage", namespace="e2e", query=h.QUERY, threshold="10",
                                step=f"{TARGET_STEP:g}s", model="last", quantile="0")  # the load itself

    def tearDown(self):
        self.channel.close()

    def value(self):
        r = self.stub.GetMetrics(self.pb2.GetMetricsRequest(scaledObjectRef=self.ref, metricName="prescale"),
                                 timeout=RPC_TIMEOUT)
        return r.metricValues[0].metricValueFloat

    def refresh_errors(self):
        m = self.env.prescale_metrics()
        return h.metric_value(m, "prescale_refresh_errors_total", namespace="e2e", name="outage",
                              metric="prescale")

    def test_outage_and_recovery(self):
        env = self.env
        v0 = self.value()
        self.assertIn(v0, h.SHAPE, f"model last must return an observed load value, got {v0}")
        errors_before = self.refresh_errors() or 0.0

        # 1. Prometheus goes away.
        t_kill = time.monotonic()
        rc = env.stop_prometheus()
        t_exit = time.monotonic()
        self.assertEqual(rc, 0, "Prometheus should exit cleanly on SIGTERM")
        self.assertLess(t_exit - t_kill, STALE_AFTER - 2, "Prometheus took too long to stop for this test")

        # 2. Within stale-after the last value is still served, unchanged (no refresh can succeed).
        served = self.value()
        self.assertIn(served, h.SHAPE)
        self.assertEqual(self.value(), served, "the cached value must not change while Prometheus is down")

        # 3. Refresh errors are counted while Prometheus is down.
        h.wait_until(lambda: (self.refresh_errors() or 0.0) > errors_before, STALE_AFTER + 5, interval=0.2,
                     what="prescale_refresh_errors_total to grow during the outage")

        # 4. After stale-after: UNAVAILABLE (poll until it flips, bounded).
        def unavailable():
            try:
                v = self.value()
                self.assertEqual(v, served, "a value served during the outage must be the last one")
                return False
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    return True
                self.fail(f"during the outage expected OK or UNAVAILABLE, got {e.code()}: {e.details()}")

        h.wait_until(unavailable, STALE_AFTER + 2 * TARGET_STEP + 5, interval=0.1,
                     what=f"UNAVAILABLE after --stale-after {STALE_AFTER}s")
        t_flip = time.monotonic()
        # Staleness counts from the newest point: the last refresh before t_kill was at most one step
        # (+ query time) earlier and its newest point at most one more step older, so the flip cannot
        # come before t_kill + stale - 2 steps - 0.5 s.
        self.assertGreaterEqual(t_flip, t_kill + STALE_AFTER - 2 * TARGET_STEP - 0.5,
                                f"UNAVAILABLE after {t_flip - t_kill:.2f}s, before --stale-after {STALE_AFTER}s")
        self.assertTrue(env.prescale.alive(), env.prescale.describe())
        self.assertTrue(h.http_get(env.http_url + "/healthz")[0] == 200, "/healthz during the outage")

        # 5. Prometheus comes back on the same port and storage: the value returns by itself.
        env.start_prometheus()

        def back():
            try:
                return self.value()
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    self.fail(f"after restart expected OK or UNAVAILABLE, got {e.code()}: {e.details()}")
                return None

        v = h.wait_until(back, 30, interval=0.25, what="GetMetrics to succeed after Prometheus restarted")
        self.assertIn(v, h.SHAPE)

        # Fresh again: within a few seconds the value tracks the live load (any slot of the last 15 s).
        def tracking():
            now = time.time()
            return self.value() in {h.load_at(now - k) for k in range(0, 16)}

        h.wait_until(tracking, 15, interval=0.5, what="the value to track the live load again")
        self.assertTrue(self.stub.IsActive(self.ref, timeout=RPC_TIMEOUT).result)


if __name__ == "__main__":
    unittest.main(verbosity=2)
