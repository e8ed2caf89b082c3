"""End-to-end: grpc.health.v1.Health on the gRPC port (src/health_grpc.c), as grpcio calls it.

The stubs are generated at test time from proto/health.proto (grpc_tools.protoc) into a temp dir, so the
test checks that our file is the standard's: grpcio's own encoding of the standard messages must be
understood, and the paths are the ones the generated stub calls (/grpc.health.v1.Health/Check, Watch).
Readiness does not depend on Prometheus (it is /readyz's: the gRPC port bound, no shutdown begun), so no
Prometheus is started: prescale polls nothing until a trigger asks.

No Debian package ships grpc_health_probe or grpcurl (apt-cache search, 2026-12), so the probe's behaviour
is reproduced instead: a new channel per probe, Check with a deadline, SERVING or not (what the kubelet's
native `grpc:` probe does too).

Run: /usr/bin/python3 -m unittest -v tests/integration/test_health_grpc.py   (PRESCALE_BIN overrides the binary)
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

ENV = None
HPB2 = HPB2_GRPC = None
STUBS_DIR = None
RPC_TIMEOUT = 10.0
# Bounds for what must happen without waiting for the drain's grace (30 s below): generous for a busy
# machine, far below the grace.
AT_ONCE = 10.0


def health_modules():
    """health_pb2 and health_pb2_grpc generated from proto/health.proto into a temp dir."""
    global STUBS_DIR
    STUBS_DIR = tempfile.mkdtemp(prefix="prescale-health-stubs-")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", h.PROTO_DIR, "--python_out", STUBS_DIR,
                    "--grpc_python_out", STUBS_DIR, os.path.join(h.PROTO_DIR, "health.proto")],
                   check=True, capture_output=True)
    sys.path.insert(0, STUBS_DIR)
    import health_pb2  # noqa: E402
    import health_pb2_grpc  # noqa: E402
    return health_pb2, health_pb2_grpc


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, HPB2, HPB2_GRPC
    if not os.access(h.prescale_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")
    HPB2, HPB2_GRPC = health_modules()
    ENV = h.Env()
    try:
        ENV.start_prescale()
    except BaseException:
        ENV.close()
        raise


def tearDownModule():  # noqa: N802
    try:
        h.stop_module_env(ENV)
    finally:
        if STUBS_DIR is not None:
            shutil.rmtree(STUBS_DIR, ignore_errors=True)


class WatchReader:
    """Reads a Watch stream in a thread: each message's status in `statuses` (and `got` is set), `ended`
    set with the RpcError (or None) that ended it."""

    def __init__(self, call):
        self.call = call
        self.statuses = []
        self.error = None
        self.got = threading.Condition()
        self.ended = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for m in self.call:
                with self.got:
                    self.statuses.append(m.status)
                    self.got.notify_all()
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.ended.set()
            with self.got:
                self.got.notify_all()

    def wait_count(self, n, timeout):
        with self.got:
            return self.got.wait_for(lambda: len(self.statuses) >= n or self.ended.is_set(), timeout) and \
                len(self.statuses) >= n


class TestHealthGrpc(unittest.TestCase):
    def setUp(self):
        self.channel = h.grpc_channel(ENV.grpc_addr)
        self.stub = HPB2_GRPC.HealthStub(self.channel)

    def tearDown(self):
        self.channel.close()
        if not ENV.prescale.alive():
            self.fail("prescale died: " + ENV.prescale.describe())

    def check(self, service):
        return self.stub.Check(HPB2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT).status

    def test_check_the_known_names_serving(self):
        S = HPB2.HealthCheckResponse
        self.assertEqual(self.check(""), S.SERVING)
        self.assertEqual(self.check("externalscaler.ExternalScaler"), S.SERVING)
        # The enum values are the standard's (health-checking.md): a client compares numbers.
        self.assertEqual((S.UNKNOWN, S.SERVING, S.NOT_SERVING, S.SERVICE_UNKNOWN), (0, 1, 2, 3))
        m = ENV.prescale_metrics()
        self.assertGreaterEqual(h.metric_value(m, "prescale_grpc_requests_total", method="Check", code="OK"), 2)

    def test_check_an_unknown_name_is_not_found(self):
        for name in ("foo", "grpc.health.v1.Health", "externalscaler.ExternalScaler\x00x"):
            with self.subTest(name=name):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.check(name)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND, cm.exception.details())
                self.assertIn("unknown service", cm.exception.details())
        self.assertIn('"foo"', self._details_of("foo"))
        m = ENV.prescale_metrics()
        self.assertGreaterEqual(h.metric_value(m, "prescale_grpc_requests_total", method="Check", code="NOT_FOUND"),
                                3)

    def _details_of(self, name):
        try:
            self.check(name)
        except grpc.RpcError as e:
            return e.details()
        self.fail(f"Check {name!r} succeeded")

    def test_probe_like_grpc_health_probe_and_the_kubelet(self):
        # A new connection per probe, a deadline, the default service "" (the kubelet's `grpc:` probe and
        # grpc_health_probe both do this): SERVING on each of several probes in a row.
        for _ in range(5):
            with h.grpc_channel(ENV.grpc_addr) as ch:
                resp = HPB2_GRPC.HealthStub(ch).Check(HPB2.HealthCheckRequest(), timeout=1.0 * RPC_TIMEOUT)
                self.assertEqual(resp.status, HPB2.HealthCheckResponse.SERVING)

    def test_watch_of_an_unknown_name_says_service_unknown_and_stays_open(self):
        # The spec: SERVICE_UNKNOWN, and the call is not terminated.
        call = self.stub.Watch(HPB2.HealthCheckRequest(service="foo"), timeout=60)
        reader = WatchReader(call)
        self.assertTrue(reader.wait_count(1, RPC_TIMEOUT), f"no first message: {reader.error!r}")
        self.assertEqual(reader.statuses, [HPB2.HealthCheckResponse.SERVICE_UNKNOWN])
        # Still open after a round trip on the same connection.
        self.assertEqual(self.check(""), HPB2.HealthCheckResponse.SERVING)
        self.assertFalse(reader.ended.is_set(), f"the Watch ended: {reader.error!r}")
        call.cancel()
        self.assertTrue(reader.ended.wait(RPC_TIMEOUT))
        self.assertEqual(reader.error.code(), grpc.StatusCode.CANCELLED)
        h.wait_until(lambda: h.metric_value(ENV.prescale_metrics(), "prescale_grpc_requests_total",
                                            method="Watch", code="CANCELLED") >= 1,
                     RPC_TIMEOUT, what="the cancelled Watch counted")

    def test_watches_are_bounded_by_ps_health_grpc_max_watches(self):
        # PS_HEALTH_GRPC_MAX_WATCHES (health_grpc.h) with the default build: 128 open Watches, then the next
        # is refused at once. Unknown names count as well (they stay open); Check is not limited.
        limit = 128
        calls = []
        try:
            for i in range(limit):
                call = self.stub.Watch(HPB2.HealthCheckRequest(service="" if i % 2 else "foo"), timeout=120)
                calls.append(call)
                self.assertIn(next(call).status, (HPB2.HealthCheckResponse.SERVING,
                                                  HPB2.HealthCheckResponse.SERVICE_UNKNOWN))
            with self.assertRaises(grpc.RpcError) as cm:
                next(self.stub.Watch(HPB2.HealthCheckRequest(), timeout=RPC_TIMEOUT))
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, cm.exception.details())
            self.assertEqual(cm.exception.details(), "too many health watches open (128, PS_HEALTH_GRPC_MAX_WATCHES)")
            self.assertEqual(self.check(""), HPB2.HealthCheckResponse.SERVING)
            before = h.metric_value(ENV.prescale_metrics(), "prescale_grpc_requests_total", method="Watch",
                                    code="CANCELLED") or 0
        finally:
            for call in calls:
                call.cancel()
        # Every slot comes back once the cancels are in.
        h.wait_until(lambda: h.metric_value(ENV.prescale_metrics(), "prescale_grpc_requests_total",
                                            method="Watch", code="CANCELLED") >= before + limit,
                     RPC_TIMEOUT, what="the cancelled Watches counted")
        call = self.stub.Watch(HPB2.HealthCheckRequest(), timeout=RPC_TIMEOUT)
        self.assertEqual(next(call).status, HPB2.HealthCheckResponse.SERVING)
        call.cancel()

    def test_other_methods_of_health_are_unimplemented(self):
        # List is in newer versions of grpc-proto's health.proto; prescale serves Check and Watch only.
        method = self.channel.unary_unary("/grpc.health.v1.Health/List")
        with self.assertRaises(grpc.RpcError) as cm:
            method(b"", timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


class TestHealthWatchDrain(unittest.TestCase):
    """Its own prescale, since SIGTERM ends it."""

    def setUp(self):
        self.grpc_port, self.http_port = h.free_port(), h.free_port()
        argv = h.prescale_argv(self.grpc_port, self.http_port, "http://127.0.0.1:9", "--log-level=debug",
                               "--shutdown-grace=30s")
        self.proc = h.Process("prescale", argv, os.path.join(ENV.tmp, "prescale-drain.log"))
        h.wait_http_ok(self.proc, f"http://127.0.0.1:{self.http_port}/readyz", 15, "prescale /readyz")
        self.channel = h.grpc_channel(f"127.0.0.1:{self.grpc_port}")
        self.stub = HPB2_GRPC.HealthStub(self.channel)

    def tearDown(self):
        self.channel.close()
        self.proc.stop(timeout=5)
        text = h.log_tail(self.proc.log_path, 100000)
        for marker in h.SANITIZER_MARKERS:
            self.assertNotIn(marker, text, "sanitizer report in prescale's log")

    def test_watch_gets_not_serving_at_sigterm_then_ends_and_the_drain_is_not_held(self):
        S = HPB2.HealthCheckResponse
        readers = [WatchReader(self.stub.Watch(HPB2.HealthCheckRequest(service=name), timeout=120))
                   for name in ("", "externalscaler.ExternalScaler", "foo")]
        for r in readers:
            self.assertTrue(r.wait_count(1, RPC_TIMEOUT), f"no first message: {r.error!r}")
        self.assertEqual([r.statuses for r in readers], [[S.SERVING], [S.SERVING], [S.SERVICE_UNKNOWN]])
        self.proc.signal(signal.SIGTERM)
        for r in readers:
            self.assertTrue(r.ended.wait(AT_ONCE), "the Watch did not end at the drain")
            self.assertIsNotNone(r.error, "the stream ends with a status")
            self.assertEqual(r.error.code(), grpc.StatusCode.UNAVAILABLE, r.error.details())
            self.assertEqual(r.error.details(), "prescale is shutting down")
        # The known names saw NOT_SERVING before the end; the unknown one stays SERVICE_UNKNOWN.
        self.assertEqual([r.statuses for r in readers],
                         [[S.SERVING, S.NOT_SERVING], [S.SERVING, S.NOT_SERVING], [S.SERVICE_UNKNOWN]])
        # The Watches do not hold the drain: with no other call, prescale exits well before the 30 s grace.
        try:
            rc = self.proc.proc.wait(AT_ONCE)
        except subprocess.TimeoutExpired:
            self.fail("prescale still running after its Watches ended: " + self.proc.describe())
        self.assertEqual(rc, 0, self.proc.describe())
        with open(self.proc.log_path, errors="replace") as f:
            log = f.read()
        m = re.search(r"msg=drained reason=(\"[^\"]*\"|\S+) .*streams_ended=(\d+)", log)
        self.assertIsNotNone(m, "no drained line")
        self.assertEqual(m.group(2), "3", m.group(0))
        self.assertEqual(m.group(1), '"every call done"', m.group(0))


if __name__ == "__main__":
    unittest.main()
