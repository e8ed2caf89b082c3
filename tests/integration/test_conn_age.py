"""End-to-end: connection ageing on the gRPC port (docs/reliability.md, "Connection ageing").

KEDA keeps one connection per scaler address for ever (kedacore/keda#8192), and grpc-go resolves the
address again only when a connection goes; with several prescale replicas behind a headless Service, one of
them would get every call. --max-connection-age makes each connection go, gracefully: GOAWAY(NO_ERROR,
2^31-1) and a PING, then the final GOAWAY once the PING is acknowledged, so that calls in flight finish and
the client opens the next ones on a new connection. What a connection still has open at the end of
--max-connection-age-grace (a StreamIsActive watch) is cut off, and the client opens it again.

With a real grpcio client on one channel:
- GetMetrics called in a loop for longer than two ages: every call succeeds, and prescale's
  prescale_grpc_connections_opened_total shows the channel reconnecting after each age;
- a StreamIsActive watch open across the age ends with UNAVAILABLE at the end of the grace (counted in
  prescale_grpc_connections_age_cut_total), and a new watch on the same channel is served at once.

Waiting for the age to pass is what the test is about: it waits on the counters moving, with generous
bounds, never on a fixed sleep. The client's own pace between calls is the only use of the clock.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_conn_age.py   (PRESCALE_BIN overrides the binary)
"""

import math
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

ENV = None
PB2 = PB2_GRPC = None
AGE_S = 2.0  # --max-connection-age: each connection lives 1.8 s to 2.2 s from its greeting
GRACE_S = 3.0  # --max-connection-age-grace
RPC_TIMEOUT = 30.0
BOUND_S = 90.0  # generous, for a busy machine: two ages take about 5 s on an idle one
CALL_EVERY_S = 0.05  # the client's pace: calls keep coming while each connection ages


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2, PB2_GRPC
    ENV, PB2, PB2_GRPC = h.start_module_env(f"--max-connection-age={AGE_S:g}s",
                                            f"--max-connection-age-grace={GRACE_S:g}s")
    ConnAge.env = ENV


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)


class ConnAge(h.ScalerCase):
    def ref(self, name, **kw):
        return h.scaled_ref(PB2, name=name, namespace="age", **h.metadata(**kw))

    def counter(self, family):
        v = h.metric_value(self.env.prescale_metrics(), family)
        return 0.0 if v is None or math.isnan(v) else v

    def counters(self):
        m = self.env.prescale_metrics()
        out = {}
        for f in ("opened", "aged", "age_cut"):
            v = h.metric_value(m, f"prescale_grpc_connections_{f}_total")
            out[f] = 0.0 if v is None or math.isnan(v) else v
        return out

    def test_calls_across_the_age_all_succeed_and_the_channel_reconnects(self):
        ref = self.ref("age-unary")
        req = PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale")
        # The first call opens the channel's connection (and loads the target).
        self.assertEqual(len(self.stub.GetMetrics(req, timeout=RPC_TIMEOUT).metricValues), 1)
        before = self.counters()
        calls, errors = 0, []
        deadline = time.monotonic() + BOUND_S
        # Until the channel has been told to go away twice and has opened a connection after each time.
        while time.monotonic() < deadline:
            try:
                r = self.stub.GetMetrics(req, timeout=RPC_TIMEOUT)
                self.assertEqual(len(r.metricValues), 1)
            except grpc.RpcError as e:
                errors.append(f"{e.code()}: {e.details()}")
            calls += 1
            now = self.counters()
            if now["aged"] >= before["aged"] + 2 and now["opened"] >= before["opened"] + 2:
                break
            time.sleep(CALL_EVERY_S)
        after = self.counters()
        self.assertEqual(errors, [], f"{len(errors)} of {calls} calls failed across the age")
        self.assertGreaterEqual(after["aged"], before["aged"] + 2,
                                f"the connection was not aged twice within {BOUND_S:.0f}s: {before} -> {after}")
        self.assertGreaterEqual(after["opened"], before["opened"] + 2,
                                f"the channel did not reconnect after each age: {before} -> {after}")
        # grpcio acknowledges the PING and its calls are short: nothing had to be cut off at the grace.
        self.assertEqual(after["age_cut"], before["age_cut"], f"{before} -> {after}")
        print(f"\n  {calls} GetMetrics calls over {after['aged'] - before['aged']:.0f} ages, "
              f"{after['opened'] - before['opened']:.0f} new connections, none failed", file=sys.stderr)

    def test_a_watch_across_the_age_is_cut_at_the_grace_and_reopens(self):
        ref = self.ref("age-watch")
        before = self.counters()
        call = self.stub.StreamIsActive(ref, timeout=RPC_TIMEOUT + AGE_S + GRACE_S)
        got, ended = [], []
        done = threading.Event()

        def reader():
            try:
                for m in call:
                    got.append(m.result)
            except grpc.RpcError as e:
                ended.append(e)
            finally:
                done.set()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        h.wait_until(lambda: got or done.is_set(), RPC_TIMEOUT, interval=0.05, what="the watch's first state")
        self.assertTrue(got, f"the watch sent nothing: {ended}")
        # The watch's connection ages (<= 2.2 s), then its grace ends (3 s): the watch is cut off then.
        self.assertTrue(done.wait(BOUND_S), f"the watch was not cut off within {BOUND_S:.0f}s")
        th.join(5)
        self.assertTrue(ended, "the watch ended without an error, as if the server had finished it")
        e = ended[0]
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE,
                         f"the watch ended with {e.code()}: {e.details()!r}; expected UNAVAILABLE, which KEDA retries")
        h.wait_until(lambda: self.counter("prescale_grpc_connections_age_cut_total") >= before["age_cut"] + 1,
                     30, interval=0.1, what="the cut-off to be counted")
        # KEDA opens its watch again: on the same channel, a new watch gets its first state at once.
        again = self.stub.StreamIsActive(ref, timeout=RPC_TIMEOUT)
        first = next(again)
        self.assertIn(first.result, (True, False))
        again.cancel()
        self.assertGreater(self.counter("prescale_grpc_connections_opened_total"), before["opened"],
                           "the new watch did not come on a new connection")


if __name__ == "__main__":
    unittest.main()
