"""End-to-end: TLS and mTLS on the gRPC port (issue 10), with grpcio's ssl_channel_credentials as KEDA's
grpc-go would connect, and python's ssl module to look at the handshake itself (ALPN, the certificate served).
Certificates come from certs.py (the openssl CLI); one real Prometheus with history serves the module, and
each class starts the prescale it needs (TLS, mTLS, an expired or misnamed certificate, a rotating Secret).

Run: /usr/bin/python3 -m unittest -v tests/integration/test_tls.py
"""

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import certs  # noqa: E402
import harness as h  # noqa: E402

ENV = CERTS = None
PB2 = PB2_GRPC = None
# The server's handshake timeout (PS_TLS_HANDSHAKE_TIMEOUT_MS, 10 s): a silent client must be closed by it;
# the bound on waiting for that leaves room for a busy machine.
HANDSHAKE_TIMEOUT_S = 10
WAIT_S = 60
# PS_FILEWATCH_INTERVAL_MS is 10 s: a rotation is seen within a poll or two, bounded generously.
ROTATION_WAIT_S = 90


def setUpModule():  # noqa: N802
    global ENV, PB2, PB2_GRPC, CERTS
    ENV, PB2, PB2_GRPC = h.start_module_env(prescale=False)
    CERTS = certs.Certs()


def tearDownModule():  # noqa: N802
    if CERTS is not None:
        CERTS.close()
    h.stop_module_env(ENV)


def start_prescale(*flags):
    """A prescale of its own (the module's Prometheus), ready; close it with stop_prescale."""
    return h.start_prescale_beside(ENV, *flags, tmp_prefix="prescale-tls-")


def stop_prescale(env):
    if env is not None:
        problems = env.close()
        if problems:
            raise AssertionError("prescale at shutdown: " + "; ".join(problems))


def tls_flags(pair=None, client_ca=None):
    pair = pair or CERTS.server
    flags = [f"--tls-cert={pair.cert}", f"--tls-key={pair.key}"]
    if client_ca:
        flags.append(f"--tls-client-ca={client_ca}")
    return flags


def secure_channel(env, ca=None, client=None):
    """A grpcio channel over TLS to env's gRPC port, verifying the name "localhost" (in the SANs of
    certs.SERVER_SANS) against ca (default CERTS.ca), with a client certificate when given."""
    import grpc
    creds = grpc.ssl_channel_credentials(
        root_certificates=certs.Certs.read(ca or CERTS.ca.cert),
        private_key=certs.Certs.read(client.key) if client else None,
        certificate_chain=certs.Certs.read(client.cert) if client else None)
    return grpc.secure_channel(env.grpc_addr, creds, options=[("grpc.enable_http_proxy", 0),
                                                              ("grpc.ssl_target_name_override", "localhost")])


def spec_call(channel, timeout=10):
    """GetMetricSpec, as KEDA calls it on every poll: answered from the metadata alone."""
    stub = PB2_GRPC.ExternalScalerStub(channel)
    return stub.GetMetricSpec(h.scaled_ref(PB2, **h.metadata()), timeout=timeout)


def tls_socket(env, ca=None, client=None, alpn=("h2",), server_hostname="localhost"):
    """A raw TLS connection with python's ssl module (handshake done), or the exception it raised."""
    ctx = ssl.create_default_context(cafile=ca or CERTS.ca.cert)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if client:
        ctx.load_cert_chain(client.cert, client.key)
    raw = socket.create_connection(("127.0.0.1", env.grpc_port), timeout=WAIT_S)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def handshakes(env, result):
    return h.metric_value(env.prescale_metrics(), "prescale_tls_handshakes_total", listener="grpc",
                          result=result) or 0


def assert_refused(testcase, channel):
    import grpc
    with testcase.assertRaises(grpc.RpcError) as cm:
        spec_call(channel)
    testcase.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, cm.exception.details())


def served_der(env):
    s = tls_socket(env)
    try:
        return s.getpeercert(binary_form=True)
    finally:
        s.close()


def file_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def not_after(path):
    return ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(path)["notAfter"])  # noqa: SLF001


class TestTls(unittest.TestCase):
    """--tls-cert and --tls-key: TLS with ALPN h2; the health port stays plain HTTP."""

    env = None

    @classmethod
    def setUpClass(cls):  # noqa: N802
        cls.env = start_prescale(*tls_flags())

    @classmethod
    def tearDownClass(cls):  # noqa: N802
        stop_prescale(cls.env)

    def tearDown(self):
        if not self.env.prescale.alive():
            self.fail("prescale died: " + self.env.prescale.describe())

    def test_calls_over_tls(self):
        with secure_channel(self.env) as ch:
            spec = spec_call(ch)
            self.assertEqual(spec.metricSpecs[0].targetSize, 10)
            # A call that needs Prometheus: the first load through the secured port works as over h2c.
            stub = PB2_GRPC.ExternalScalerStub(ch)
            stub.IsActive(h.scaled_ref(PB2, **h.metadata()), timeout=30)
        self.assertGreaterEqual(handshakes(self.env, "ok"), 1)
        self.assertIn("grpc_tls=on", h.log_tail(self.env.prescale.log_path, 1000))

    def test_alpn_h2_and_tls_version(self):
        s = tls_socket(self.env, alpn=("h2", "http/1.1"))
        try:
            self.assertEqual(s.selected_alpn_protocol(), "h2")
            self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
            self.assertEqual(s.getpeercert(binary_form=True), file_der(CERTS.server.cert))
        finally:
            s.close()
        # TLS 1.2 alone is accepted too (grpc-go's minimum), still with h2.
        ctx = ssl.create_default_context(cafile=CERTS.ca.cert)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", self.env.grpc_port), timeout=WAIT_S) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s12:
                self.assertEqual(s12.version(), "TLSv1.2")
                self.assertEqual(s12.selected_alpn_protocol(), "h2")

    def test_alpn_without_h2_is_refused(self):
        # RFC 7301 section 3.2: no protocol in common is a no_application_protocol alert.
        with self.assertRaises(ssl.SSLError) as cm:
            tls_socket(self.env, alpn=("http/1.1",)).close()
        self.assertIn("NO APPLICATION PROTOCOL", str(cm.exception).upper().replace("_", " "))

    def test_wrong_ca_on_the_client_fails(self):
        with self.assertRaises(ssl.SSLCertVerificationError) as cm:
            tls_socket(self.env, ca=CERTS.other_ca.cert).close()
        self.assertIn("unable to get local issuer certificate", str(cm.exception))
        with secure_channel(self.env, ca=CERTS.other_ca.cert) as ch:
            assert_refused(self, ch)

    def test_h2c_client_fails_and_health_port_is_plain_http(self):
        failed = handshakes(self.env, "failed")
        with h.grpc_channel(self.env.grpc_addr) as ch:
            assert_refused(self, ch)
        h.wait_until(lambda: handshakes(self.env, "failed") > failed, WAIT_S, what="the h2c preface counted as failed")
        self.assertIn('error="tls: not a TLS handshake (a plaintext client: h2c or HTTP?)"',
                      h.log_tail(self.env.prescale.log_path, 1000))
        self.assertEqual(h.http_get(self.env.http_url + "/healthz")[0], 200)
        self.assertEqual(h.http_get(self.env.http_url + "/readyz")[0], 200)

    def test_silent_and_garbage_clients_cost_a_slot_until_the_timeout(self):
        """A client that connects and sends nothing, and one that sends half a ClientHello, are closed by
        the handshake timeout; garbage is closed at once; KEDA-style calls are answered meanwhile."""
        timeouts, failed = handshakes(self.env, "timeout"), handshakes(self.env, "failed")
        silent = socket.create_connection(("127.0.0.1", self.env.grpc_port), timeout=WAIT_S)
        partial = socket.create_connection(("127.0.0.1", self.env.grpc_port), timeout=WAIT_S)
        garbage = socket.create_connection(("127.0.0.1", self.env.grpc_port), timeout=WAIT_S)
        try:
            partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # a handshake record header announcing 512 bytes
            garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            start = time.monotonic()
            # Garbage: closed without waiting for the timeout, so before the silent one.
            while garbage.recv(4096):
                pass
            silent.setblocking(False)
            with self.assertRaises(BlockingIOError, msg="the silent client was closed with the garbage one"):
                silent.recv(1)
            silent.setblocking(True)
            silent.settimeout(WAIT_S)
            self.assertGreaterEqual(handshakes(self.env, "failed"), failed + 1)
            with secure_channel(self.env) as ch:
                for _ in range(5):
                    self.assertEqual(spec_call(ch).metricSpecs[0].targetSize, 10)
            # The slow ones: closed by the server (recv returns b"", not a timeout of ours).
            for s in (silent, partial):
                self.assertEqual(s.recv(4096), b"", "closed without a byte of ours")
            self.assertGreaterEqual(time.monotonic() - start, HANDSHAKE_TIMEOUT_S * 0.5,
                                    "closed long before the handshake timeout")
            h.wait_until(lambda: handshakes(self.env, "timeout") >= timeouts + 2, WAIT_S,
                         what="two handshake timeouts counted")
        finally:
            for s in (silent, partial, garbage):
                s.close()


class TestMtls(unittest.TestCase):
    """--tls-client-ca: only a client certificate signed by that CA gets through."""

    env = None

    @classmethod
    def setUpClass(cls):  # noqa: N802
        cls.env = start_prescale(*tls_flags(client_ca=CERTS.ca.cert))

    @classmethod
    def tearDownClass(cls):  # noqa: N802
        stop_prescale(cls.env)

    def test_client_certificate_from_the_ca_works(self):
        with secure_channel(self.env, client=CERTS.client) as ch:
            self.assertEqual(spec_call(ch).metricSpecs[0].targetSize, 10)
        self.assertIn("grpc_tls=mtls", h.log_tail(self.env.prescale.log_path, 1000))

    def test_without_a_client_certificate_fails(self):
        failed = handshakes(self.env, "failed")
        with secure_channel(self.env) as ch:
            assert_refused(self, ch)
        # In TLS 1.3 the client's side of the handshake ends before the server has the certificate, so
        # python learns of the refusal from the alert on its first read.
        s = tls_socket(self.env)
        try:
            with self.assertRaises(ssl.SSLError) as cm:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                s.recv(4096)
            self.assertIn("CERTIFICATE_REQUIRED", str(cm.exception).upper())
        finally:
            s.close()
        h.wait_until(lambda: handshakes(self.env, "failed") >= failed + 2, WAIT_S, what="refusals counted")
        log = h.log_tail(self.env.prescale.log_path, 1000)
        self.assertIn('error="tls: client certificate required"', log)

    def test_client_certificate_from_another_ca_fails(self):
        with secure_channel(self.env, client=CERTS.other_client) as ch:
            assert_refused(self, ch)
        s = tls_socket(self.env, client=CERTS.other_client)
        try:
            with self.assertRaises(ssl.SSLError):
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                s.recv(4096)
        finally:
            s.close()
        h.wait_until(lambda: 'error="client certificate: x509: unknown authority"' in
                     h.log_tail(self.env.prescale.log_path, 1000), WAIT_S, what="the refusal in the log")


class TestBadServerCertificates(unittest.TestCase):
    """A certificate a client cannot accept: prescale serves it (it may be renewed any moment) and says so;
    the client refuses it."""

    def test_expired_server_certificate_fails(self):
        env = start_prescale(*tls_flags(CERTS.expired))
        try:
            with self.assertRaises(ssl.SSLCertVerificationError) as cm:
                tls_socket(env).close()
            self.assertIn("certificate has expired", str(cm.exception))
            with secure_channel(env) as ch:
                assert_refused(self, ch)
            self.assertIn("the TLS certificate has expired", h.log_tail(env.prescale.log_path, 1000))
            self.assertLess(h.metric_value(env.prescale_metrics(), "prescale_tls_cert_expiry_timestamp_seconds",
                                           listener="grpc"), time.time())
        finally:
            stop_prescale(env)

    def test_certificate_for_another_name_fails(self):
        env = start_prescale(*tls_flags(CERTS.wrong_san))
        try:
            with self.assertRaises(ssl.SSLCertVerificationError) as cm:
                tls_socket(env).close()
            self.assertIn("Hostname mismatch", str(cm.exception))
            with secure_channel(env) as ch:
                assert_refused(self, ch)
        finally:
            stop_prescale(env)


class TestStartupErrors(unittest.TestCase):
    """Half a pair, a missing file or a bad PEM: prescale does not start, and says which flag and file."""

    def run_prescale(self, *flags):
        argv = h.prescale_argv(h.free_port(), h.free_port(), "http://127.0.0.1:9", *flags)
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    def test_errors(self):
        r = self.run_prescale(f"--tls-cert={CERTS.server.cert}")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--tls-cert is set without --tls-key", r.stderr)
        missing = os.path.join(CERTS.dir, "missing.key")
        r = self.run_prescale(*tls_flags(certs.Pair(CERTS.server.cert, missing)))
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"--tls-key: read {missing}: no such file or directory".encode(), r.stdout + r.stderr)
        r = self.run_prescale(*tls_flags(certs.Pair(CERTS.server.cert, CERTS.client.key)))
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"--tls-key {CERTS.client.key}: key does not match certificate".encode(), r.stdout + r.stderr)
        r = self.run_prescale(*tls_flags(client_ca=CERTS.server.key))
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"--tls-client-ca {CERTS.server.key}: ca: no valid PEM certificate".encode(),
                      r.stdout + r.stderr)
        # The key file's bytes are never echoed.
        key_body = certs.Certs.read(CERTS.server.key).splitlines()[1]
        self.assertNotIn(key_body, r.stdout + r.stderr)


class TestRotation(unittest.TestCase):
    """The certificate and key in a kubelet-style Secret directory, replaced while a client stays connected."""

    def test_rotation_keeps_connections_and_serves_the_new_certificate(self):
        secret = CERTS.secret_dir("rotating", {"tls.crt": CERTS.server.cert, "tls.key": CERTS.server.key})
        env = start_prescale(f"--tls-cert={secret.path('tls.crt')}", f"--tls-key={secret.path('tls.key')}")
        try:
            ch = secure_channel(env)
            self.assertEqual(spec_call(ch).metricSpecs[0].targetSize, 10)
            self.assertEqual(served_der(env), file_der(CERTS.server.cert))
            ok_before = handshakes(env, "ok")

            # cert-manager renews: new key, new serial; the kubelet swaps ..data. The poll notices.
            new = CERTS.issue_server("server-2")
            secret.update({"tls.crt": new.cert, "tls.key": new.key})
            h.wait_until(lambda: h.metric_value(env.prescale_metrics(), "prescale_tls_reloads_total",
                                                result="ok") == 1, ROTATION_WAIT_S, what="the reload")
            self.assertEqual(h.metric_value(env.prescale_metrics(), "prescale_tls_cert_expiry_timestamp_seconds",
                                            listener="grpc"), not_after(new.cert))
            # The open connection goes on, without a new handshake.
            self.assertEqual(spec_call(ch).metricSpecs[0].targetSize, 10)
            self.assertEqual(handshakes(env, "ok"), ok_before, "the channel reconnected")
            # A new connection gets the new certificate.
            self.assertEqual(served_der(env), file_der(new.cert))

            # A broken certificate at the next rotation, re-read at once by SIGHUP: the new one stays.
            junk = os.path.join(CERTS.dir, "junk.crt")
            with open(junk, "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
            newer = CERTS.issue_server("server-3")
            secret.update({"tls.crt": junk, "tls.key": newer.key})
            env.prescale.signal(signal.SIGHUP)
            h.wait_until(lambda: (h.metric_value(env.prescale_metrics(), "prescale_tls_reloads_total",
                                                 result="failed") or 0) >= 1, WAIT_S, what="the failed reload")
            self.assertEqual(served_der(env), file_der(new.cert))
            self.assertEqual(spec_call(ch).metricSpecs[0].targetSize, 10)
            log = h.log_tail(env.prescale.log_path, 100000)
            self.assertIn("cannot reload the TLS files; keeping the certificate in use", log)
            self.assertIn(secret.path("tls.crt"), log)
            for pem in (new.key, newer.key):
                self.assertNotIn(certs.Certs.read(pem).splitlines()[1].decode(), log, "key bytes in the log")
            ch.close()
        finally:
            stop_prescale(env)


if __name__ == "__main__":
    unittest.main()
