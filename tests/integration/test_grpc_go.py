"""End-to-end: prescale with grpc-go, KEDA's own gRPC library (issue 10), over h2c, TLS and mTLS.

grpcio (the other suites' client) is gRPC's C core; KEDA's external scaler runs grpc-go, whose HTTP/2, TLS
and status handling are its own. grpcgo/keda_client.go dials scalerAddress as KEDA does (insecure, or
credentials.NewTLS over the system CAs plus caCert, with tlsClientCert/tlsClientKey, unsafeSsl) and calls
GetMetricSpec, GetMetrics, IsActive and StreamIsActive; grpcgo_client.py builds it once per run with
Debian's golang-go and golang-google-grpc-dev (GOPATH mode, offline) and skips the module without `go`.

Debian bookworm's grpc-go is 1.33, which does not yet refuse a server that selects no ALPN protocol (1.67
does: KEDA's releases ship such grpc-go). The client applies that check itself (-enforce-alpn, on by default),
and reports the negotiated protocol, so every TLS call here also proves prescale selected h2; a fake TLS
server without ALPN (the one thing prescale cannot be made to do) shows the check refuses such a server.

One real Prometheus with history serves the module; each class starts the prescale it needs. GetMetrics is
checked against the harness's exact prediction (harness.candidate_slots, as test_grpc.py does).

Run: /usr/bin/python3 -m unittest -v tests/integration/test_grpc_go.py   (PRESCALE_BIN overrides the binary)
"""

import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import certs  # noqa: E402
import grpcgo_client as gogrpc  # noqa: E402
import harness as h  # noqa: E402

ENV = CERTS = CLIENT = BUILD_DIR = None
WAIT_S = 60  # bound on waiting for prescale's counters and log, for a busy machine
REQUIRED = 'error="tls: client certificate required"'  # prescale's log line for a handshake without one


def setUpModule():  # noqa: N802
    global ENV, CERTS, CLIENT, BUILD_DIR
    if not os.access(h.prescale_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")
    BUILD_DIR = tempfile.mkdtemp(prefix="prescale-grpcgo-")
    try:
        CLIENT = gogrpc.build(BUILD_DIR)  # skips the module without `go`
        CERTS = certs.Certs()
        ENV, _, _ = h.start_module_env(prescale=False)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():  # noqa: N802
    if CERTS is not None:
        CERTS.close()
    if BUILD_DIR is not None:
        shutil.rmtree(BUILD_DIR, ignore_errors=True)
    h.stop_module_env(ENV)


def start_prescale(*flags):
    """A prescale of its own (the module's Prometheus), ready."""
    return h.start_prescale_beside(ENV, *flags, tmp_prefix="prescale-grpcgo-")


def tls_flags(client_ca=None):
    flags = [f"--tls-cert={CERTS.server.cert}", f"--tls-key={CERTS.server.key}"]
    if client_ca:
        flags.append(f"--tls-client-ca={client_ca}")
    return flags


def handshakes(env, result):
    return h.metric_value(env.prescale_metrics(), "prescale_tls_handshakes_total", listener="grpc",
                          result=result) or 0


class Base(unittest.TestCase):
    """One prescale per class, started with `flags`; a test after which it is dead fails."""

    flags = ()
    env = None

    @classmethod
    def setUpClass(cls):  # noqa: N802
        cls.env = start_prescale(*cls.flags)

    @classmethod
    def tearDownClass(cls):  # noqa: N802
        if cls.env is not None:
            problems = cls.env.close()
            if problems:
                raise AssertionError("prescale at shutdown: " + "; ".join(problems))

    def tearDown(self):
        if not self.env.prescale.alive():
            self.fail("prescale died: " + self.env.prescale.describe())

    def call(self, *args, **kw):
        kw.setdefault("metadata", h.metadata())
        kw.setdefault("namespace", "grpcgo")
        return gogrpc.run(CLIENT, self.env.grpc_addr, *args, **kw)

    def assert_ok(self, out):
        self.assertTrue(out["ok"] and out["exit"] == 0,
                        f"grpc-go: {out.get('call')} {out.get('code')}: {out.get('message')!r} ({out['stderr']})")

    def assert_fails(self, out, code="UNAVAILABLE", *fragments):
        self.assertEqual(out["exit"], 1, f"expected a failed call, got {out}")
        self.assertEqual(out["code"], code, f"{out['call']}: {out['message']!r}")
        for f in fragments:
            self.assertIn(f, out["message"])
        return out

    def assert_answers(self, out, w0, w1, metric="prescale", target=10):
        """KEDA's four calls answered: the spec, the exact seasonal value of one of the slots prescale may
        hold between w0 and w1, and the activity (default activationThreshold 0: a load >= 18 is active)
        from IsActive and from StreamIsActive's first message."""
        self.assert_ok(out)
        self.assertEqual(out["spec"], [{"metricName": metric, "targetSize": math.ceil(target),
                                        "targetSizeFloat": target}])
        self.assertEqual(len(out["metrics"]), 1, out)
        mv = out["metrics"][0]
        self.assertEqual(mv["metricName"], metric, "KEDA asks GetMetrics for the name the spec gave")
        self.assertEqual(mv["metricValue"], math.ceil(mv["metricValueFloat"]))
        want = {N: h.seasonal_value(N, 30) for N in h.candidate_slots(w0, w1)}
        self.assertTrue(any(h.close_to(mv["metricValueFloat"], v) for v in want.values()),
                        f"value {mv['metricValueFloat']!r} at wall {w0:.3f} is none of the expected "
                        f"{ {N % h.PERIOD: v for N, v in want.items()} } (slot phase: value)")
        self.assertIs(out["active"], True)
        self.assertEqual(out["stream"], [True])

    def keda_calls(self, *args, **kw):
        w0 = time.time()
        out = self.call(*args, **kw)
        return out, w0, time.time()


class TestH2c(Base):
    """No TLS flags: the port speaks h2c and grpc-go's insecure credentials reach it."""

    def connections_opened(self):
        return h.metric_value(self.env.prescale_metrics(), "prescale_grpc_connections_opened_total") or 0

    def test_keda_calls(self):
        out, w0, w1 = self.keda_calls(name="h2c")
        self.assert_answers(out, w0, w1)
        self.assertEqual(out["security"], "insecure")
        self.assertNotIn("tls", out)

    def test_metric_name_threshold_and_inactive(self):
        meta = h.metadata(threshold="12.5", metricName="rps", activationThreshold="1000")
        out = self.call(name="h2c-named", metadata=meta)
        self.assert_ok(out)
        self.assertEqual(out["spec"], [{"metricName": "rps", "targetSize": 13, "targetSizeFloat": 12.5}])
        self.assertEqual(out["metrics"][0]["metricName"], "rps")
        # load <= 92.1 against an activationThreshold of 1000: false, from both calls.
        self.assertIs(out["active"], False)
        self.assertEqual(out["stream"], [False])

    def test_error_status_reaches_grpc_go(self):
        out = self.call(name="h2c-bad", metadata=h.metadata(query=None))
        self.assert_fails(out, "INVALID_ARGUMENT", "query")
        self.assertEqual(out["call"], "GetMetricSpec")
        out = self.call(name="h2c-unknown-key", metadata=h.metadata(bogusKey="zzz"), calls="active")
        self.assert_fails(out, "INVALID_ARGUMENT", "bogusKey")

    def test_concurrent_calls_share_one_connection(self):
        """KEDA shares one ClientConn per scaler address: 400 GetMetrics from 16 goroutines all succeed, on
        one connection (the performance reference's mode, with its rate and latencies)."""
        opened = self.connections_opened()
        out = self.call("-repeat", "400", "-concurrency", "16", name="h2c-load", calls="metrics")
        self.assert_ok(out)
        self.assertEqual(out["load"]["calls"], 400)
        self.assertEqual(out["load"]["errors"], {})
        self.assertEqual(self.connections_opened() - opened, 1, "grpc-go did not use exactly one connection")
        print(f"\n  grpc-go {out['grpc_go']}: 400 GetMetrics x16 over h2c: {out['load']['calls_per_s']:.0f}/s, "
              f"p50 {out['load']['p50_ms']:.2f} ms, p99 {out['load']['p99_ms']:.2f} ms", file=sys.stderr)


class TestTls(Base):
    """--tls-cert/--tls-key: grpc-go verifying the server with the CA (KEDA's caCert)."""

    @classmethod
    def setUpClass(cls):  # noqa: N802
        cls.flags = tls_flags()
        super().setUpClass()

    def test_keda_calls_over_tls_with_alpn_h2(self):
        ok = handshakes(self.env, "ok")
        out, w0, w1 = self.keda_calls("-ca", CERTS.ca.cert, name="tls")
        self.assert_answers(out, w0, w1)
        self.assertEqual(out["security"], "tls")
        self.assertEqual(out["tls"]["alpn"], "h2")
        self.assertEqual(out["tls"]["version"], "TLSv1.3")
        self.assertEqual(out["tls"]["server_dns_names"], ["localhost"])
        # One connection for the four calls (grpc-go 1.33 does not retry a handshake that succeeded).
        self.assertEqual(handshakes(self.env, "ok") - ok, 1)

    def test_tls12_with_alpn_h2(self):
        out = self.call("-ca", CERTS.ca.cert, "-max-tls-version", "1.2", name="tls12", calls="spec,stream")
        self.assert_ok(out)
        self.assertEqual((out["tls"]["version"], out["tls"]["alpn"]), ("TLSv1.2", "h2"))
        self.assertEqual(out["stream"], [True])

    def test_wrong_ca_fails(self):
        out = self.call("-ca", CERTS.other_ca.cert, name="tls-wrong-ca", calls="spec")
        self.assert_fails(out, "UNAVAILABLE", "authentication handshake failed",
                          "x509: certificate signed by unknown authority")

    def test_enable_tls_trusts_the_system_cas_only(self):
        # enableTLS without caCert: the test CA is not among the system's, so the certificate is refused...
        out = self.call("-enable-tls", name="tls-system", calls="spec")
        self.assert_fails(out, "UNAVAILABLE", "x509: certificate signed by unknown authority")
        # ...unless unsafeSsl turns verification off (still TLS, still h2).
        out = self.call("-enable-tls", "-unsafe-ssl", name="tls-unsafe", calls="spec")
        self.assert_ok(out)
        self.assertEqual(out["tls"]["alpn"], "h2")

    def test_h2c_client_to_the_tls_port_fails(self):
        failed = handshakes(self.env, "failed")
        out = self.call(name="tls-h2c", calls="spec")
        self.assert_fails(out, "UNAVAILABLE")
        h.wait_until(lambda: handshakes(self.env, "failed") > failed, WAIT_S,
                     what="the plaintext preface counted as a failed handshake")


class TestMtls(Base):
    """--tls-client-ca: KEDA's tlsClientCert/tlsClientKey signed by that CA get through, nothing else."""

    @classmethod
    def setUpClass(cls):  # noqa: N802
        cls.flags = tls_flags(client_ca=CERTS.ca.cert)
        super().setUpClass()

    def client_args(self, pair, ca=None):
        return ["-ca", ca or CERTS.ca.cert, "-cert", pair.cert, "-key", pair.key]

    def test_client_certificate_from_the_ca_works(self):
        out, w0, w1 = self.keda_calls(*self.client_args(CERTS.client), name="mtls")
        self.assert_answers(out, w0, w1)
        self.assertEqual(out["tls"]["alpn"], "h2")

    def refusals(self):
        return h.log_tail(self.env.prescale.log_path, 100000).count(REQUIRED)

    def assert_refused(self, *args, name):
        failed, logged = handshakes(self.env, "failed"), self.refusals()
        out = self.call(*args, name=name, calls="spec")
        self.assert_fails(out, "UNAVAILABLE")
        h.wait_until(lambda: handshakes(self.env, "failed") > failed, WAIT_S, what="the refusal counted")
        h.wait_until(lambda: self.refusals() > logged, WAIT_S, what=f"{REQUIRED} in prescale's log")

    def test_without_a_client_certificate_fails(self):
        # TLS 1.3: grpc-go's side of the handshake ends before prescale checks the certificate, so the
        # client only sees the connection closed after it ("connection closed"); prescale counts and logs why.
        self.assert_refused("-ca", CERTS.ca.cert, name="mtls-none")

    def test_client_certificate_from_another_ca_fails(self):
        # Go's crypto/tls sends a configured certificate only when its issuer is among the CAs the server's
        # CertificateRequest names (prescale names its --tls-client-ca): grpc-go sends none, and prescale
        # refuses the handshake for the missing certificate. (A client that sends it anyway is refused with
        # "client certificate: x509: unknown authority": test_tls.py, with grpcio.)
        self.assert_refused(*self.client_args(CERTS.other_client), name="mtls-other")

    def test_wrong_server_ca_with_a_good_client_certificate_fails(self):
        out = self.call(*self.client_args(CERTS.client, ca=CERTS.other_ca.cert), name="mtls-wrong-ca", calls="spec")
        self.assert_fails(out, "UNAVAILABLE", "x509: certificate signed by unknown authority")


class NoAlpnServer:
    """A TLS server that selects no ALPN protocol (prescale always selects h2, so this is the only way to
    show the client's check). It completes handshakes, records what they negotiated, and closes."""

    def __init__(self):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(CERTS.server.cert, CERTS.server.key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.handshakes = []  # selected_alpn_protocol() of each completed handshake
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            raw.settimeout(WAIT_S)
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as s:
                    self.handshakes.append(s.selected_alpn_protocol())
            except (OSError, ssl.SSLError):
                pass  # the client refused the handshake
            finally:
                raw.close()

    def close(self):
        self.stop.set()
        self.thread.join(WAIT_S)
        self.sock.close()


class TestAlpnCheck(unittest.TestCase):
    """The client refuses a server without ALPN h2, as grpc-go >= 1.67 (KEDA's) does."""

    def test_server_without_alpn_is_refused(self):
        srv = NoAlpnServer()
        try:
            addr = f"127.0.0.1:{srv.port}"
            out = gogrpc.run(CLIENT, addr, "-ca", CERTS.ca.cert, calls="spec", timeout_s=10)
            self.assertEqual((out["exit"], out["code"]), (1, "UNAVAILABLE"), out)
            self.assertIn("missing selected ALPN property", out["message"])
            self.assertEqual(srv.handshakes, [], "a handshake without ALPN completed")
            # Without the check (grpc-go 1.33's own behaviour) the same handshake completes.
            out = gogrpc.run(CLIENT, addr, "-ca", CERTS.ca.cert, "-enforce-alpn=false", calls="spec", timeout_s=10)
            self.assertEqual(out["exit"], 1, out)
            self.assertNotIn("ALPN", out["message"])
            h.wait_until(lambda: srv.handshakes, WAIT_S, what="the unchecked handshake")
            self.assertIsNone(srv.handshakes[0])
        finally:
            srv.close()


class TestReferenceScaler(unittest.TestCase):
    """The bench's grpc-go reference scaler (tests/bench/refscaler) called by the grpc-go client: grpc-go on
    both ends, so the shared messages of tests/gopath/src/externalscaler are encoded and decoded both ways
    (requests by the client, answers by the server) and must agree; a miss is NOT_FOUND; the counts it prints
    at SIGTERM (grpc_bench checks a run by them) are the calls made."""

    def test_answers_from_its_map_and_counts_the_calls(self):
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "refscaler")
        binary = gogrpc.build(BUILD_DIR, source=source, name="refscaler")
        port = h.free_port()
        proc = subprocess.Popen([binary, "-addr", f"127.0.0.1:{port}", "-target", "grpcgo/web", "-int", "7",
                                 "-float", "6.5", "-target-size", "3"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True)
        try:
            def accepts():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    return False

            h.wait_until(accepts, WAIT_S, what="refscaler to listen")
            addr = f"127.0.0.1:{port}"
            out = gogrpc.run(CLIENT, addr, calls="spec,metrics,active", namespace="grpcgo",
                             metadata={"key with space": "välue", "b": ""})
            self.assertTrue(out["ok"], out)
            self.assertEqual(out["spec"], [{"metricName": "web", "targetSize": 3, "targetSizeFloat": 3}])
            self.assertEqual(out["metrics"], [{"metricName": "web", "metricValue": 7, "metricValueFloat": 6.5}])
            self.assertIs(out["active"], True)
            out = gogrpc.run(CLIENT, addr, "-metric", "other", calls="metrics", namespace="grpcgo",
                             metadata={}, name="nope")
            self.assertEqual((out["exit"], out["code"]), (1, "NOT_FOUND"), out)
            self.assertIn("grpcgo/nope", out["message"])
        finally:
            proc.send_signal(signal.SIGTERM)
            text, _ = proc.communicate(timeout=WAIT_S)
        self.assertEqual(proc.returncode, 0, text)
        self.assertIn('{"getmetrics_calls":2,"getmetrics_ok":1}', text)


if __name__ == "__main__":
    unittest.main()
