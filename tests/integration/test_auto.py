"""End-to-end: the forecasting engine wired into the server (issue 3), against a real Prometheus holding
75 min of backfilled history of harness.py's periodic load (180 s period at a 5 s step).

- model auto with period auto: the detected period is reported in /metrics (180 s, within one step), one
  model is named in prescale_target_model_info, and the log says so;
- mode shadow: GetMetrics answers the observation itself (what a reactive scaler would, headroom left
  out) while prescale_target_predicted carries the seasonal forecast;
- quantile: with `quantile: "0.9"` the value gains the margin exported in prescale_target_quantile_margin,
  and is never below the value of the same trigger with `quantile: "0"`, whose margin is 0;
- targetCoverage (the default margin, 0.82): prescale_target_coverage_target shows it, and
  prescale_target_coverage, the realised share of covered windows (0..1), appears once the first
  lookahead window of the live refreshes has ended; without a target (a quantile) only the latter.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_auto.py   (PRESCALE_BIN overrides the binary)
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ENV = None
PB2 = None
RPC_TIMEOUT = 30.0
NS = "auto"
# Models that may answer (auto never answers itself).
ANSWERING = {"holtwinters", "seasonal", "linear", "last", "peak", "analog"}


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2
    # An 8-day default history at 5 s is 100,000 points: give the first load time to read them.
    ENV, PB2, _ = h.start_module_env("--first-load-timeout=20s")
    Base.env = ENV


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)


def labels(name):
    return dict(namespace=NS, name=name, metric="prescale")


class Base(h.ScalerCase):
    def value(self, name, **md):
        ref = h.scaled_ref(PB2, name=name, namespace=NS, **md)
        r = self.stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"),
                                 timeout=RPC_TIMEOUT)
        self.assertEqual(len(r.metricValues), 1, r)
        return r.metricValues[0].metricValueFloat

    def gauge(self, m, family, name):
        return h.metric_value(m, family, **labels(name))

    def model_info(self, m, name):
        """{model: value} of the target's prescale_target_model_info series."""
        out = {}
        for (family, lbls), v in m.items():
            d = dict(lbls)
            if family == "prescale_target_model_info" and d.get("namespace") == NS and d.get("name") == name:
                out[d.get("model")] = v
        return out


class TestAuto(Base):
    def test_auto_detects_the_period_and_names_a_model(self):
        md = {"query": h.QUERY, "threshold": "10", "step": "5s", "lookahead": "30s", "model": "auto",
              "period": "auto"}
        first = self.value("detect", **md)
        self.assertGreaterEqual(first, min(h.SHAPE))

        def period_reported():
            p = self.gauge(ENV.prescale_metrics(), "prescale_target_period_seconds", "detect")
            return p if p is not None and abs(p - h.PERIOD) <= h.STEP else None

        try:
            h.wait_until(period_reported, 60, interval=1, what="a detected period of 180 s +- 5 s")
        except TimeoutError:
            p = self.gauge(ENV.prescale_metrics(), "prescale_target_period_seconds", "detect")
            self.fail(f"prescale_target_period_seconds is {p}, want {h.PERIOD} +- {h.STEP}; log:\n"
                      + h.log_tail(ENV.prescale.log_path))
        m = ENV.prescale_metrics()
        info = self.model_info(m, "detect")
        self.assertEqual(len(info), 1, f"exactly one model_info series expected, got {info}")
        (model, v), = info.items()
        self.assertIn(model, ANSWERING)
        self.assertEqual(v, 1)
        errors = {dict(l).get("model"): v for (f, l), v in m.items()
                  if f == "prescale_target_model_error" and dict(l).get("name") == "detect"}
        self.assertTrue(errors, "no prescale_target_model_error series")
        for mod, e in errors.items():
            self.assertIn(mod, ANSWERING | {"auto"})  # auto: the error of the answers it gave
            self.assertGreaterEqual(e, 0, f"{mod} error {e}")
        self.assertEqual(self.gauge(m, "prescale_target_shadow", "detect"), 0)
        # The answer is never below the observation.
        obs = self.gauge(m, "prescale_target_observed", "detect")
        val = self.gauge(m, "prescale_target_value", "detect")
        self.assertGreaterEqual(val, obs)
        # The log named the period and the model, on changes only (not at each of the refreshes so far).
        with open(ENV.prescale.log_path, errors="replace") as f:
            lines = [ln for ln in f if "name=detect" in ln]
        self.assertIn(sum('msg="period in use"' in ln for ln in lines), (1, 2, 3),
                      "".join(lines[-20:]) or "no log line for the target")
        self.assertTrue(any('msg="model chosen"' in ln for ln in lines), "".join(lines[-20:]))

    def test_shadow_answers_the_observation_and_exports_the_forecast(self):
        # seasonal with the period given, so that the exported forecast is exactly known (harness.py).
        md = {"query": h.QUERY, "threshold": "10", "step": "5s", "lookahead": "30s", "model": "seasonal",
              "period": "3m", "mode": "shadow", "headroom": "0.5"}
        self.value("shadow", **md)
        for _ in range(4):
            w0 = time.time()
            v = self.value("shadow", **md)
            m = ENV.prescale_metrics()
            w1 = time.time()
            slots = h.candidate_slots(w0, w1)
            self.assertIn(v, {h.observed_at(N) for N in slots},
                          f"shadow must answer an observation (no headroom), got {v}")
            obs = self.gauge(m, "prescale_target_observed", "shadow")
            pred = self.gauge(m, "prescale_target_predicted", "shadow")
            self.assertEqual(self.gauge(m, "prescale_target_shadow", "shadow"), 1)
            self.assertEqual(self.gauge(m, "prescale_target_value", "shadow"), obs)
            held = [N for N in slots if h.observed_at(N) == obs]
            self.assertTrue(held, f"observed {obs} is not the load of any slot")
            # "now" is the newest slot or up to one refresh later: both windows are accepted.
            # The engine keeps its history in float: forecasts carry its rounding (relative 6e-8).
            preds = {h.predicted_at(n) for n in slots if n >= held[0]}
            self.assertTrue(any(h.close_to(pred, p, rel=1e-6) for p in preds),
                            f"predicted {pred} at slot phase {held[0] % h.PERIOD}; want one of {preds}")
            time.sleep(2.1)
        self.assertEqual(self.model_info(ENV.prescale_metrics(), "shadow"), {"seasonal": 1.0})

    def test_default_target_coverage_is_exported(self):
        md = {"query": h.QUERY, "threshold": "10", "step": "5s", "lookahead": "30s"}
        self.value("cov", **md)
        self.value("covq", quantile="0.9", **md)

        def realised():
            m = ENV.prescale_metrics()
            self.value("cov", **md)  # keep both targets in use
            self.value("covq", quantile="0.9", **md)
            got = [self.gauge(m, "prescale_target_coverage", n) for n in ("cov", "covq")]
            return m if None not in got else None

        # A window's outcome is known lookahead + 3 steps after the answer: 45 s here.
        m = h.wait_until(realised, 120, interval=1, what="prescale_target_coverage of both targets")
        self.assertEqual(self.gauge(m, "prescale_target_coverage_target", "cov"), 0.82)
        self.assertIsNone(self.gauge(m, "prescale_target_coverage_target", "covq"), "a quantile: no target")
        for n in ("cov", "covq"):
            c = self.gauge(m, "prescale_target_coverage", n)
            self.assertTrue(0 <= c <= 1, f"{n}: {c}")
            self.assertTrue(h.close_to(self.gauge(m, "prescale_target_value", n),
                                       max(self.gauge(m, "prescale_target_observed", n),
                                           self.gauge(m, "prescale_target_predicted", n)
                                           + self.gauge(m, "prescale_target_quantile_margin", n))))

    def test_quantile_adds_a_margin(self):
        # A component the 3 m season does not explain (time() % 7), so the seasonal errors are not 0.
        q = f"{h.QUERY} + 3 * (time() % 7)"
        base = {"query": q, "threshold": "10", "step": "5s", "lookahead": "30s", "model": "seasonal",
                "period": "3m"}
        self.value("noq", quantile="0", **base)
        self.value("q90", quantile="0.9", **base)
        compared = 0
        deadline = time.monotonic() + 60
        while compared < 3 and time.monotonic() < deadline:
            m = ENV.prescale_metrics()
            g = {n: {f: self.gauge(m, f"prescale_target_{f}", n) for f in ("observed", "predicted", "value",
                                                                           "quantile_margin")}
                 for n in ("noq", "q90")}
            margin = g["q90"]["quantile_margin"]
            self.assertIsNotNone(margin, "prescale_target_quantile_margin missing")
            self.assertGreater(margin, 0, "seasonal errors are not 0 on this series: the margin must be > 0")
            self.assertEqual(g["noq"]["quantile_margin"], 0)
            self.assertTrue(h.close_to(g["q90"]["value"], max(g["q90"]["observed"], g["q90"]["predicted"] + margin)),
                            g["q90"])
            # Same data, same slot: the two engines agree on the forecast, the quantile only adds to it.
            if g["noq"]["observed"] == g["q90"]["observed"] and g["noq"]["predicted"] == g["q90"]["predicted"]:
                self.assertGreaterEqual(g["q90"]["value"], g["noq"]["value"], g)
                compared += 1
            self.value("noq", quantile="0", **base)  # keep both targets in use
            self.value("q90", quantile="0.9", **base)
            time.sleep(1.3)
        self.assertGreaterEqual(compared, 3, "the two targets never held the same slot")


if __name__ == "__main__":
    unittest.main()
