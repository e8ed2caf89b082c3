"""End-to-end: large answers from Prometheus do not take prescale's loop.

A real Prometheus holds backfilled history (promtool tsdb create-blocks-from openmetrics): ps_big_load, one
series sampled every second for 12 h (a first load of 43,200 points: four query_range chunks of about
360 KB), and ps_many_load, 200 series of 10 minutes (an answer of about 3 MB, over PS_PROM_MAX_RESPONSE).
While a thread polls /healthz back to back:
- the first load of a ps_big_load target answers GetMetrics with the newest backfilled value, and /healthz
  keeps answering during it (counted: answers that started and ended while the load was in flight);
- four ps_many_load targets loading at once all answer INVALID_ARGUMENT naming the series (an answer over
  the limit is refused as it streams in, not parsed whole), and prescale stays healthy.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_prom_answers.py
"""

import os
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

BIG_SECONDS = 12 * 3600
MANY_SERIES = 200
MANY_SECONDS = 600
RPC_TIMEOUT = 120.0  # generous: a busy machine; the assertions are on what answers, not how fast
HEALTHZ_TIMEOUT = 10.0


def big_value(i):
    """ps_big_load at second i: 15 significant digits, as real gauges are."""
    return 1000.0 + i * 0.001234567


class HealthPoller:
    """Polls /healthz back to back from a thread; keeps (start, end, status) of every answer."""

    def __init__(self, url):
        self.url, self.answers, self.stop_flag = url + "/healthz", [], threading.Event()
        self.thread = threading.Thread(target=self.run, name="healthz", daemon=True)

    def run(self):
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                status = h.http_get(self.url, timeout=HEALTHZ_TIMEOUT)[0]
            except OSError as e:
                status = f"error: {e}"
            self.answers.append((t0, time.monotonic(), status))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(HEALTHZ_TIMEOUT + 5)

    def within(self, t0, t1):
        return [a for a in self.answers if a[0] >= t0 and a[1] <= t1]


class TestPromAnswers(h.ScalerCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(h.prescale_bin(), os.X_OK):
            raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")
        for b in (h.PROMETHEUS_BIN, h.PROMTOOL_BIN):
            if not os.access(b, os.X_OK):
                raise unittest.SkipTest(f"{b} not installed")
        cls.pb2, cls.pb2_grpc = h.grpc_modules()
        cls.env = h.Env(tmp_prefix="prescale-answers-")
        try:
            cls.backfill()
            cls.env.start_prescale()
        except BaseException:
            cls.env.close()
            raise

    @classmethod
    def backfill(cls):
        env = cls.env
        os.makedirs(env.tsdb, exist_ok=True)
        # The series end a minute ahead of now, so that a fetch ending now finds its newest point.
        cls.end = int(time.time()) + 60
        om = os.path.join(env.tmp, "backfill.om")
        with open(om, "w") as f:
            f.write("# TYPE ps_big_load gauge\n")
            for i in range(BIG_SECONDS):
                f.write(f'ps_big_load{{job="big"}} {big_value(i)!r} {cls.end - BIG_SECONDS + 1 + i}\n')
            f.write("# TYPE ps_many_load gauge\n")
            for k in range(MANY_SERIES):
                for i in range(MANY_SECONDS):
                    f.write(f'ps_many_load{{job="many",k="{k}"}} {big_value(i + k)!r} {cls.end - MANY_SECONDS + 1 + i}\n')
            f.write("# EOF\n")
        with open(os.path.join(env.tmp, "promtool.log"), "ab") as log:
            h.create_blocks(om, env.tsdb, log)
        os.unlink(om)
        with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        env.prom_port = h.free_port()
        env.start_prometheus()
        h.wait_until(lambda: env.prom_instant("ps_big_load") is not None, 30, what="the backfilled series")

    @classmethod
    def tearDownClass(cls):
        h.stop_module_env(cls.env)

    def get_metrics(self, name, query, **md):
        ref = h.scaled_ref(self.pb2, name=name, namespace="answers", query=query, threshold="10", step="1s",
                           model="last", quantile="0", **md)
        return self.stub.GetMetrics(self.pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"),
                                    timeout=RPC_TIMEOUT)

    def test_a_large_first_load_leaves_healthz_answering(self):
        with HealthPoller(self.env.http_url) as poller:
            t0 = time.monotonic()
            r = self.get_metrics("big", "ps_big_load", history="12h")
            t1 = time.monotonic()
        value = r.metricValues[0].metricValueFloat
        newest = big_value(BIG_SECONDS - 1 - (self.end - int(time.time())))
        self.assertAlmostEqual(value, newest, delta=0.01 * 5)  # within a few seconds of samples
        bad = [a for a in poller.answers if a[2] != 200]
        self.assertEqual(bad, [], "/healthz failed while the load ran")
        during = poller.within(t0, t1)
        self.assertGreaterEqual(len(during), 2, f"/healthz answered {len(during)} times during a {t1 - t0:.2f} s load")

    def test_answers_over_the_limit_are_refused_by_every_target(self):
        def one(i):
            try:
                self.get_metrics(f"many{i}", "ps_many_load", history="10m")
                return None
            except grpc.RpcError as e:
                return e

        with HealthPoller(self.env.http_url) as poller:
            with ThreadPoolExecutor(4) as pool:
                errors = list(pool.map(one, range(4)))
        for i, e in enumerate(errors):
            self.assertIsNotNone(e, f"target many{i} answered")
            self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT, f"many{i}: {e.details()}")
            self.assertIn("query returned at least ", e.details())  # cut short at the limit
            self.assertIn("sum(...)", e.details())
        self.assertEqual([a for a in poller.answers if a[2] != 200], [], "/healthz failed meanwhile")
        self.assertGreater(len(poller.answers), 0)
        # Aggregated, the same data is one series and loads.
        r = self.get_metrics("many-sum", "sum(ps_many_load)", history="10m")
        self.assertGreater(r.metricValues[0].metricValueFloat, 0)


if __name__ == "__main__":
    unittest.main()
