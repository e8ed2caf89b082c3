"""End-to-end: prescale's five ExternalScaler RPCs against a real Prometheus holding >= 1 h of backfilled
history of a known periodic load (see harness.py for the data model and the tolerance).

Run: /usr/bin/python3 -m unittest -v tests/integration/test_grpc.py   (PRESCALE_BIN overrides the binary)
"""

import math
import os
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

ENV = None
PB2 = PB2_GRPC = None
FIRST_LOAD_TIMEOUT = 5.0  # prescale's default --first-load-timeout
RPC_TIMEOUT = 15.0


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2, PB2_GRPC
    ENV, PB2, PB2_GRPC = h.start_module_env()
    Base.env = ENV


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)


md = h.metadata


class Base(h.ScalerCase):
    def ref(self, name, **kw):
        return h.scaled_ref(PB2, name=name, namespace="e2e", **md(**kw))

    def get_metrics(self, ref, metric_name="prescale"):
        return self.stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName=metric_name),
                                    timeout=RPC_TIMEOUT)

    def timed_value(self, ref, metric_name="prescale"):
        """(wall before, response, wall after)."""
        w0 = time.time()
        r = self.get_metrics(ref, metric_name)
        return w0, r, time.time()

    def assert_code(self, fn, code, *fragments):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        e = cm.exception
        self.assertEqual(e.code(), code, f"expected {code}, got {e.code()} with message {e.details()!r}")
        for f in fragments:
            self.assertIn(f, e.details() or "", f"grpc-message {e.details()!r} should name {f!r}")
        return e


class TestMetricSpec(Base):
    def test_spec_default_name(self):
        r = self.stub.GetMetricSpec(self.ref("spec1"), timeout=RPC_TIMEOUT)
        self.assertEqual(len(r.metricSpecs), 1)
        s = r.metricSpecs[0]
        self.assertEqual(s.metricName, "prescale")
        self.assertEqual(s.targetSize, 10)
        self.assertEqual(s.targetSizeFloat, 10.0)

    def test_spec_fractional_threshold_and_name(self):
        r = self.stub.GetMetricSpec(self.ref("spec2", threshold="12.5", metricName="rps"), timeout=RPC_TIMEOUT)
        self.assertEqual(len(r.metricSpecs), 1)
        s = r.metricSpecs[0]
        self.assertEqual((s.metricName, s.targetSize, s.targetSizeFloat), ("rps", 13, 12.5))


class TestGetMetrics(Base):
    def check_values(self, ref, expected_for_slot, calls=6, gap=1.7, metric_name="prescale"):
        """Calls GetMetrics `calls` times; each float must equal expected_for_slot(N) for one of the
        slots N prescale may hold (harness.candidate_slots), and metricValue == ceil(float)."""
        for _ in range(calls):
            w0, r, w1 = self.timed_value(ref, metric_name)
            self.assertEqual(len(r.metricValues), 1, r)
            mv = r.metricValues[0]
            self.assertEqual(mv.metricName, metric_name)
            self.assertEqual(mv.metricValue, math.ceil(mv.metricValueFloat),
                             f"metricValue must be ceil(metricValueFloat={mv.metricValueFloat!r})")
            slots = h.candidate_slots(w0, w1)
            want = {N: expected_for_slot(N) for N in slots}
            self.assertTrue(any(h.close_to(mv.metricValueFloat, v) for v in want.values()),
                            f"value {mv.metricValueFloat!r} at wall {w0:.3f} is none of the expected "
                            f"{ {N % h.PERIOD: v for N, v in want.items()} } (slot phase: value)")
            time.sleep(gap)

    def test_seasonal_formula(self):
        self.check_values(self.ref("seasonal"), lambda N: h.seasonal_value(N, 30))

    def test_seasonal_metrics_gauges_consistent(self):
        """observed/predicted/value gauges pin the slot: observed == observed_at(N), predicted is the
        seasonal max for the same window, value == max(observed, predicted) == GetMetrics' float."""
        ref = self.ref("gauges")
        for attempt in range(5):
            w0, r1, _ = self.timed_value(ref)
            m = ENV.prescale_metrics()
            _, r2, w1 = self.timed_value(ref)
            v1, v2 = r1.metricValues[0].metricValueFloat, r2.metricValues[0].metricValueFloat
            if v1 == v2:
                break  # no refresh in between: the gauges belong to this value
        labels = dict(namespace="e2e", name="gauges", metric="prescale")
        obs = h.metric_value(m, "prescale_target_observed", **labels)
        pred = h.metric_value(m, "prescale_target_predicted", **labels)
        val = h.metric_value(m, "prescale_target_value", **labels)
        self.assertIsNotNone(obs, "prescale_target_observed{namespace=e2e,name=gauges,metric=prescale} missing")
        self.assertIsNotNone(pred, "prescale_target_predicted missing")
        self.assertIsNotNone(val, "prescale_target_value missing")
        slots = h.candidate_slots(w0, w1)
        held = [N for N in slots if h.observed_at(N) == obs]
        self.assertTrue(held, f"observed {obs} is not the load of any slot in {[N % 180 for N in slots]}")
        N = held[0]
        # "now" may be the newest slot or the wall clock (one refresh later): both windows are accepted.
        preds = {h.predicted_at(n) for n in slots if n >= N}
        # History is stored as float: compare with the harness's relative tolerance (close_to).
        self.assertTrue(any(h.close_to(pred, p) for p in preds),
                        f"predicted {pred} for newest slot phase {N % 180}s; expected one of {preds}")
        self.assertEqual(val, max(obs, pred))
        self.assertEqual(val, v1)

    def test_headroom(self):
        self.check_values(self.ref("headroom", headroom="0.5"), lambda N: h.seasonal_value(N, 30, 0.5), calls=3)

    def test_model_last_returns_current(self):
        # quantile 0: the margin (default 0.9) would add the model's errors to the current value
        self.check_values(self.ref("last", model="last", period=None, quantile="0"), h.observed_at, calls=3)

    def test_model_last_headroom(self):
        self.check_values(self.ref("lasth", model="last", period=None, headroom="0.25", quantile="0"),
                          lambda N: h.observed_at(N) * 1.25, calls=2)

    def test_custom_metric_name(self):
        self.check_values(self.ref("named", metricName="rps"), lambda N: h.seasonal_value(N, 30), calls=1,
                          metric_name="rps")

    def test_many_targets_first_load_concurrently(self):
        """20 new targets at once (different names, steps and lookaheads): every first load completes and
        each answers its own formula."""
        cfgs = [(f"many{i}", ("5s", "10s")[i % 2], ("30s", "60s")[(i // 2) % 2]) for i in range(20)]

        def one(cfg):
            name, step, la = cfg
            ref = self.ref(name, step=step, lookahead=la)
            return cfg, self.timed_value(ref)

        with ThreadPoolExecutor(20) as ex:
            results = list(ex.map(one, cfgs))
        for (name, step, la), (w0, r, w1) in results:
            st, lookahead = int(step[:-1]), int(la[:-1])
            v = r.metricValues[0].metricValueFloat
            # Step 10s: slots are 10 s wide in prescale's history; its value at T (10 s-aligned) is still
            # observed_at(T) (Prometheus evaluates at T), and refs t - period stay on the 5 s grid.
            lo = h.align(w0, st) - 2 * st
            want = set()
            for N in range(lo, h.align(w1, st) + st, st):
                refs = [h.observed_at(N + k * st - h.PERIOD) for k in range(1, lookahead // st + 1)]
                want.add(max([h.observed_at(N)] + refs))
            self.assertTrue(any(h.close_to(v, x) for x in want), f"{name} step={step} lookahead={la}: {v} not in {want}")

    def test_concurrent_calls(self):
        ref = self.ref("concurrent")
        self.get_metrics(ref)  # first load done
        with ThreadPoolExecutor(16) as ex:
            rs = list(ex.map(lambda _: self.get_metrics(ref), range(64)))
        self.assertTrue(all(len(r.metricValues) == 1 for r in rs))


class TestIsActive(Base):
    def test_is_active_matches_value(self):
        ref = self.ref("active", activationThreshold="50")
        for _ in range(4):
            _, r0, _ = self.timed_value(ref)
            a = self.stub.IsActive(ref, timeout=RPC_TIMEOUT).result
            _, r1, _ = self.timed_value(ref)
            v0, v1 = r0.metricValues[0].metricValueFloat, r1.metricValues[0].metricValueFloat
            if (v0 > 50) == (v1 > 50):
                self.assertEqual(a, v0 > 50, f"IsActive={a} but value {v0} vs activationThreshold 50")
                return
        self.skipTest("value kept crossing 50 around every IsActive call")

    def test_is_active_extremes(self):
        self.assertTrue(self.stub.IsActive(self.ref("act0"), timeout=RPC_TIMEOUT).result,
                        "load >= 18 with activationThreshold 0 must be active")
        self.assertFalse(self.stub.IsActive(self.ref("act1k", activationThreshold="1000"),
                                            timeout=RPC_TIMEOUT).result,
                         "load <= 92.1 with activationThreshold 1000 must be inactive")


class TestErrors(Base):
    def test_missing_query(self):
        for call in (self.stub.GetMetricSpec, self.stub.IsActive):
            self.assert_code(lambda: call(self.ref("noquery", query=None), timeout=RPC_TIMEOUT),
                             grpc.StatusCode.INVALID_ARGUMENT, "query")
        self.assert_code(lambda: self.get_metrics(self.ref("noquery", query=None)),
                         grpc.StatusCode.INVALID_ARGUMENT, "query")

    def test_threshold_not_a_number(self):
        self.assert_code(lambda: self.stub.GetMetricSpec(self.ref("badthr", threshold="abc"), timeout=RPC_TIMEOUT),
                         grpc.StatusCode.INVALID_ARGUMENT, "threshold", "abc")

    def test_threshold_not_positive(self):
        self.assert_code(lambda: self.get_metrics(self.ref("zerothr", threshold="0")),
                         grpc.StatusCode.INVALID_ARGUMENT, "threshold")

    def test_unknown_key(self):
        self.assert_code(lambda: self.stub.IsActive(self.ref("unk", bogusKey="zzz"), timeout=RPC_TIMEOUT),
                         grpc.StatusCode.INVALID_ARGUMENT, "bogusKey")

    def test_period_not_multiple_of_step(self):
        self.assert_code(lambda: self.get_metrics(self.ref("badper", period="7s")),
                         grpc.StatusCode.INVALID_ARGUMENT, "period", "7s")

    def test_bad_values_name_key_and_value(self):
        cases = [("step", "500ms"), ("model", "bogus"), ("lookahead", "soon"), ("headroom", "-1"),
                 ("activationThreshold", "x1"), ("ignoreNullValues", "maybe"), ("timeout", "forever")]
        for key, value in cases:
            with self.subTest(key=key):
                self.assert_code(lambda: self.stub.GetMetricSpec(self.ref("badval", **{key: value}),
                                                                 timeout=RPC_TIMEOUT),
                                 grpc.StatusCode.INVALID_ARGUMENT, key, value)

    def test_query_with_several_series(self):
        q = f'{h.QUERY} or label_replace({h.QUERY}, "copy", "1", "", "")'
        self.assert_code(lambda: self.get_metrics(self.ref("twoseries", query=q)),
                         grpc.StatusCode.INVALID_ARGUMENT, "series")

    def test_empty_result_ignore_null_values(self):
        """Contract detail assumed from KEDA's Prometheus scaler: an empty result with ignoreNullValues=true
        (the default) reads as 0 (so inactive); with false it is an error."""
        q = "prescale_no_such_metric"
        r = self.get_metrics(self.ref("empty", query=q))
        self.assertEqual(r.metricValues[0].metricValueFloat, 0.0)
        self.assertFalse(self.stub.IsActive(self.ref("empty", query=q), timeout=RPC_TIMEOUT).result)
        with self.assertRaises(grpc.RpcError) as cm:
            self.get_metrics(self.ref("emptystrict", query=q, ignoreNullValues="false"))
        self.assertNotEqual(cm.exception.code(), grpc.StatusCode.OK)

    def test_bad_promql_carries_prometheus_text(self):
        bad = "sum(rate(x[5m])"
        now = time.time()
        body = ENV.prom_api_error("/api/v1/query_range",
                                  {"query": bad, "start": now - 60, "end": now, "step": 5})
        self.assertEqual(body.get("status"), "error", body)
        prom_text = body["error"]
        e = self.assert_code(lambda: self.get_metrics(self.ref("badpromql", query=bad)),
                             grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn(prom_text, e.details(), "grpc-message should carry Prometheus's own error text")

    def test_unknown_method(self):
        call = self.channel.unary_unary("/externalscaler.ExternalScaler/Nope")
        self.assert_code(lambda: call(b"", timeout=RPC_TIMEOUT), grpc.StatusCode.UNIMPLEMENTED)

    def test_unknown_service(self):
        call = self.channel.unary_unary("/nope.Nope/IsActive")
        self.assert_code(lambda: call(b"", timeout=RPC_TIMEOUT), grpc.StatusCode.UNIMPLEMENTED)

    def test_prometheus_unreachable(self):
        closed = h.free_port()  # nothing listens there
        ref = self.ref("closed", serverAddress=f"http://127.0.0.1:{closed}")
        t0 = time.monotonic()
        self.assert_code(lambda: self.get_metrics(ref), grpc.StatusCode.UNAVAILABLE)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, FIRST_LOAD_TIMEOUT + 2.0,
                        f"UNAVAILABLE took {elapsed:.1f}s; --first-load-timeout is {FIRST_LOAD_TIMEOUT}s")

    def test_prometheus_stalls(self):
        """A fake peer (allowed: a real Prometheus cannot stall on demand) that completes the TCP handshake
        (kernel backlog) but never answers: the first load must give up within --first-load-timeout."""
        import socket
        with socket.socket() as stall:
            stall.bind(("127.0.0.1", 0))
            stall.listen(64)
            port = stall.getsockname()[1]
            ref = self.ref("stall", serverAddress=f"http://127.0.0.1:{port}")
            t0 = time.monotonic()
            e = self.assert_code(lambda: self.get_metrics(ref), grpc.StatusCode.UNAVAILABLE)
            elapsed = time.monotonic() - t0
        self.assertLess(elapsed, FIRST_LOAD_TIMEOUT + 2.0,
                        f"UNAVAILABLE took {elapsed:.1f}s; --first-load-timeout is {FIRST_LOAD_TIMEOUT}s: {e.details()}")

    def test_metadata_value_too_long(self):
        self.assert_code(lambda: self.stub.GetMetricSpec(self.ref("longval", query="x" * 9000), timeout=RPC_TIMEOUT),
                         grpc.StatusCode.INVALID_ARGUMENT, "query")

    def test_request_over_grpc_max_msg(self):
        """5 MiB request > the default --grpc-max-msg (4 MiB): RESOURCE_EXHAUSTED, and the server lives on."""
        ref = self.ref("huge", query="x" * (5 << 20))
        self.assert_code(lambda: self.stub.GetMetricSpec(ref, timeout=RPC_TIMEOUT), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(len(self.stub.GetMetricSpec(self.ref("afterhuge"), timeout=RPC_TIMEOUT).metricSpecs), 1)

    def test_garbage_request_body(self):
        """Bytes that are not a ScaledObjectRef: an error status (INVALID_ARGUMENT or INTERNAL), not a crash."""
        call = self.channel.unary_unary("/externalscaler.ExternalScaler/IsActive")
        with self.assertRaises(grpc.RpcError) as cm:
            call(b"\xff\xff\xff\xff\x0f", timeout=RPC_TIMEOUT)
        self.assertIn(cm.exception.code(), (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL),
                      cm.exception.details())
        self.assertEqual(len(self.stub.GetMetricSpec(self.ref("aftergarbage"), timeout=RPC_TIMEOUT).metricSpecs), 1)

    def test_server_alive_after_errors(self):
        self.test_unknown_method()
        r = self.stub.GetMetricSpec(self.ref("afterr"), timeout=RPC_TIMEOUT)
        self.assertEqual(len(r.metricSpecs), 1)


class TestStreams(Base):
    def test_stream_is_active_sends_at_once_and_pushes_a_change(self):
        ref = self.ref("stream", activationThreshold="50")
        call = self.stub.StreamIsActive(ref, timeout=2 * h.PERIOD + 60)
        got = []
        first_at = [None]
        done = threading.Event()
        t0 = time.monotonic()

        def reader():
            try:
                for m in call:
                    got.append(m.result)
                    if first_at[0] is None:
                        first_at[0] = time.monotonic() - t0
                    if len(got) >= 2:
                        break
            except grpc.RpcError as e:
                got.append(e)
            finally:
                done.set()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        # Activity flips within a period (the load crosses 50 twice per period); bound by 2 periods.
        done.wait(2 * h.PERIOD + 30)
        call.cancel()
        th.join(5)
        self.assertTrue(got, "StreamIsActive sent nothing")
        self.assertNotIsInstance(got[0], grpc.RpcError, f"stream failed: {got[0]!r}")
        self.assertLess(first_at[0], FIRST_LOAD_TIMEOUT + 1, "first state must be sent at once (after first load)")
        self.assertGreaterEqual(len(got), 2, f"no change pushed within {2 * h.PERIOD + 30}s: {got}")
        self.assertNotIsInstance(got[1], grpc.RpcError, f"stream failed: {got[1]!r}")
        self.assertNotEqual(got[0], got[1], "a pushed message must be a change of state")
        # The pushed state is the current one: IsActive agrees (crossings of 50 are >= 60 s apart).
        self.assertEqual(self.stub.IsActive(ref, timeout=RPC_TIMEOUT).result, got[1])
        # A unary call still works after the client cancelled the stream.
        self.assertEqual(len(self.stub.GetMetricSpec(ref, timeout=RPC_TIMEOUT).metricSpecs), 1)

    def test_stream_metric_spec_sends_at_once_and_stays_open(self):
        ref = self.ref("specstream", threshold="7.5")
        call = self.stub.StreamMetricSpec(ref, timeout=60)
        t0 = time.monotonic()
        first = next(call)
        self.assertLess(time.monotonic() - t0, FIRST_LOAD_TIMEOUT + 1)
        self.assertEqual(len(first.metricSpecs), 1)
        s = first.metricSpecs[0]
        self.assertEqual((s.metricName, s.targetSize, s.targetSizeFloat), ("prescale", 8, 7.5))
        ended = threading.Event()
        outcome = []

        def reader():
            try:
                for m in call:
                    outcome.append(m)
            except grpc.RpcError as e:
                outcome.append(e)
            ended.set()

        threading.Thread(target=reader, daemon=True).start()
        # Negative check: the stream must still be open after a while (nothing to await but time).
        self.assertFalse(ended.wait(4), f"StreamMetricSpec ended early: {outcome!r}")
        self.assertTrue(call.is_active())
        call.cancel()
        self.assertTrue(ended.wait(5))
        self.assertEqual(len(self.stub.GetMetricSpec(ref, timeout=RPC_TIMEOUT).metricSpecs), 1)

    def test_client_cancel_does_not_break_server(self):
        ref = self.ref("cancel")
        for _ in range(3):
            c1 = self.stub.StreamIsActive(ref, timeout=60)
            next(c1)
            c1.cancel()
            c2 = self.stub.StreamMetricSpec(ref, timeout=60)
            c2.cancel()  # possibly before the first message
        r = self.get_metrics(ref)
        self.assertEqual(len(r.metricValues), 1)
        # A brand-new connection works too.
        with h.grpc_channel(ENV.grpc_addr) as ch:
            r = PB2_GRPC.ExternalScalerStub(ch).IsActive(ref, timeout=RPC_TIMEOUT)
            self.assertTrue(r.result)

    def test_stream_bad_metadata(self):
        call = self.stub.StreamIsActive(self.ref("streambad", threshold="abc"), timeout=RPC_TIMEOUT)
        self.assert_code(lambda: next(call), grpc.StatusCode.INVALID_ARGUMENT, "threshold")


if __name__ == "__main__":
    unittest.main(verbosity=2)
