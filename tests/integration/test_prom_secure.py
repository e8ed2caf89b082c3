"""End-to-end: prescale against a secured Prometheus through --prometheus-config (issue 10).

A real Prometheus 2.42 behind its own --web.config.file (secure_prom.py): TLS with a certificate of a test
CA (certs.py, made with openssl), basic_auth_users with a bcrypt hash (htpasswd), and
RequireAndVerifyClientCert. prescale reaches it with basic_auth (password_file) and a client certificate,
and KEDA's calls (grpcio) get the exact predictions of harness.py. Every way it can go wrong ends the call at
once (well inside --first-load-timeout, set long here) with an error that names what happened: Prometheus's
401 for a wrong password, the x509 reason for an untrusted certificate, the TLS alert for a missing client
certificate. A bearer token (credentials_file) and X-Scope-OrgID go to a small fake API (allowed: Prometheus
cannot check a bearer token), which also sees the new token after the file is rewritten (a service-account
token rotation), and the configured tenant header win over a trigger's customHeaders. prescale's log and
/metrics never hold the password, the token, or the Authorization value.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_prom_secure.py   (PRESCALE_BIN overrides the binary)
"""

import base64
import json
import math
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import certs as certs_mod  # noqa: E402
import harness as h  # noqa: E402
import secure_prom  # noqa: E402

import grpc  # noqa: E402

PASSWORD = "pr0m-Secret-7d1e"
BAD_PASSWORD = "not-the-Password-93a"
TOKEN1 = "tok-1-9f86d081884c7d659a2feaa0c55ad015"
TOKEN2 = "tok-2-3e23e8160039594a33894f6564e1b134"
RPC_TIMEOUT = 30.0
FIRST_LOAD_TIMEOUT = "60s"  # a failure must come long before this: the RPC's deadline is shorter

ENV = CERTS = FAKE = PB2 = PB2_GRPC = None


class FakeAPI:
    """A Prometheus query_range API over TLS that only answers a bearer token it knows and the tenant
    team-a: value 5 at every step asked. It records the token and tenant of each request."""

    def __init__(self, certs):
        self.tokens = {TOKEN1}
        self.seen = []  # (token, tenant) per request
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                auth = self.headers.get("Authorization", "")
                tenants = self.headers.get_all("X-Scope-OrgID") or []
                token = auth[7:] if auth.startswith("Bearer ") else None
                with fake.lock:
                    fake.seen.append((token, tuple(tenants)))
                    ok = token in fake.tokens and tenants == ["team-a"]
                if not ok:
                    body = b"unauthorized\n"
                    self.send_response(401)
                else:
                    q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                    start, end, step = (float(q[k][0]) for k in ("start", "end", "step"))
                    n = int(math.floor((end - start) / step)) + 1
                    values = [[start + i * step, "5"] for i in range(n)]
                    body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
                        {"metric": {"__name__": "fake_load"}, "values": values}]}}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.server.cert, certs.server.key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def tokens_seen(self):
        with self.lock:
            return {t for t, _ in self.seen}

    def tenants_seen(self):
        with self.lock:
            return {ten for _, ten in self.seen}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def write_atomically(path, text):
    """As an atomic writer (and the kubelet) does: a new file renamed over the old one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def config_yaml(env, certs, fake, d):
    """The --prometheus-config file: one entry per case, told apart by url (longest prefix wins)."""
    p = env.prom_url
    tls = f"{{ca_file: {certs.ca.cert}, cert_file: {certs.client.cert}, key_file: {certs.client.key}}}"
    return f"""servers:
  - url: {p}
    basic_auth: {{username: keda, password_file: {d}/password}}
    tls_config: {tls}
  - url: {p}/wrong-password
    basic_auth: {{username: keda, password_file: {d}/bad-password}}
    tls_config: {tls}
  - url: {p}/untrusted
    basic_auth: {{username: keda, password_file: {d}/password}}
    tls_config: {{ca_file: {certs.other_ca.cert}, cert_file: {certs.client.cert}, key_file: {certs.client.key}}}
  - url: {p}/no-client-certificate
    basic_auth: {{username: keda, password_file: {d}/password}}
    tls_config: {{ca_file: {certs.ca.cert}}}
  - url: {fake.url}
    authorization: {{type: Bearer, credentials_file: {d}/token}}
    tls_config: {{ca_file: {certs.ca.cert}}}
    headers: {{X-Scope-OrgID: team-a}}
"""


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, CERTS, FAKE, PB2, PB2_GRPC
    if not os.access(h.prescale_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")
    PB2, PB2_GRPC = h.grpc_modules()
    CERTS = certs_mod.Certs()
    try:
        ENV = secure_prom.SecureEnv(CERTS, users={"keda": PASSWORD}, client_certs=True)
        ENV.start_prometheus_with_history()
        bad = ENV.check_series()
        if bad:
            raise RuntimeError("precondition: Prometheus data differs from the model: " + "; ".join(bad[:5]))
        FAKE = FakeAPI(CERTS)
        d = os.path.join(ENV.tmp, "secrets")
        os.makedirs(d)
        for name, text in (("password", PASSWORD + "\n"), ("bad-password", BAD_PASSWORD), ("token", TOKEN1 + "\n")):
            write_atomically(os.path.join(d, name), text)
        cfg = os.path.join(ENV.tmp, "prometheus-config.yaml")
        with open(cfg, "w") as f:
            f.write(config_yaml(ENV, CERTS, FAKE, d))
        ENV.secrets_dir = d
        ENV.start_prescale(f"--prometheus-config={cfg}", f"--first-load-timeout={FIRST_LOAD_TIMEOUT}")
        Base.env = ENV
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():  # noqa: N802
    global ENV, CERTS, FAKE
    try:
        if FAKE is not None:
            FAKE.stop()
        h.stop_module_env(ENV)
    finally:
        if CERTS is not None:
            CERTS.close()
        ENV = CERTS = FAKE = None


class Base(h.ScalerCase):
    def ref(self, name, **kw):
        return h.scaled_ref(PB2, name=name, namespace="secure", **h.metadata(**kw))

    def get_metrics(self, ref):
        return self.stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"),
                                    timeout=RPC_TIMEOUT)

    def assert_fails_at_once(self, ref, *fragments):
        """UNAVAILABLE naming each fragment, before the RPC's deadline (well before --first-load-timeout)."""
        with self.assertRaises(grpc.RpcError) as cm:
            self.get_metrics(ref)
        e = cm.exception
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, f"{e.code()}: {e.details()!r}")
        for f in fragments:
            self.assertIn(f, e.details() or "", f"grpc-message {e.details()!r} should name {f!r}")
        return e.details()

    def assert_no_secret(self, *more):
        with open(self.env.prescale.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        _, metrics, _ = h.http_get(self.env.http_url + "/metrics")
        basic = base64.b64encode(f"keda:{PASSWORD}".encode()).decode()
        for secret in (PASSWORD, BAD_PASSWORD, TOKEN1, TOKEN2, basic, *more):
            self.assertNotIn(secret, log, "a secret reached prescale's log")
            self.assertNotIn(secret, metrics, "a secret reached /metrics")


class TestSecuredPrometheus(Base):
    def test_predictions_through_tls_basic_auth_and_client_certificate(self):
        """The exact seasonal values of harness.py, read through TLS + basic auth + client certificate."""
        ref = self.ref("tls")
        for _ in range(3):
            w0 = time.time()
            r = self.get_metrics(ref)
            w1 = time.time()
            v = r.metricValues[0].metricValueFloat
            want = {N: h.seasonal_value(N, 30) for N in h.candidate_slots(w0, w1)}
            self.assertTrue(any(h.close_to(v, x) for x in want.values()),
                            f"value {v!r} is none of the expected {sorted(set(want.values()))}")
        self.assert_no_secret()

    def test_wrong_password_is_401_at_once(self):
        port = self.env.prom_port
        msg = self.assert_fails_at_once(self.ref("badpw", serverAddress=f"{self.env.prom_url}/wrong-password"),
                                        "401", f"127.0.0.1:{port}")
        self.assertNotIn(BAD_PASSWORD, msg)
        self.assert_no_secret()

    def test_untrusted_certificate_is_an_x509_error_at_once(self):
        port = self.env.prom_port
        self.assert_fails_at_once(self.ref("untrusted", serverAddress=f"{self.env.prom_url}/untrusted"),
                                  f"tls 127.0.0.1:{port}: x509: unknown authority")

    def test_server_not_listed_uses_the_system_cas(self):
        """localhost is the same Prometheus, but no entry's url is a prefix of it: the defaults apply, and
        the test CA is not among the system's."""
        port = self.env.prom_port
        self.assert_fails_at_once(self.ref("unlisted", serverAddress=f"https://localhost:{port}"),
                                  f"tls 127.0.0.1:{port}: x509: unknown authority")

    def test_missing_client_certificate_is_a_tls_error_at_once(self):
        port = self.env.prom_port
        self.assert_fails_at_once(self.ref("nocert", serverAddress=f"{self.env.prom_url}/no-client-certificate"),
                                  f"tls 127.0.0.1:{port}: ", "certificate")


class TestBearerToken(Base):
    def fake_ref(self, name, **kw):
        md = {"serverAddress": FAKE.url, "query": "fake_load", "threshold": "10", "step": "5s", "model": "last",
              "quantile": "0"}
        md.update(kw)
        return h.scaled_ref(PB2, name=name, namespace="secure", **md)

    def test_token_tenant_rotation_and_sighup(self):
        ref = self.fake_ref("bearer", customHeaders="X-Scope-OrgID=someone-else,X-Extra=1")
        self.assertEqual(self.get_metrics(ref).metricValues[0].metricValueFloat, 5.0)
        self.assertEqual(FAKE.tokens_seen(), {TOKEN1})
        # the configured tenant wins over the trigger's customHeaders: never two, never the trigger's
        self.assertEqual(FAKE.tenants_seen(), {("team-a",)})
        # the token file is rewritten (as the kubelet rotates a service-account token): the next requests
        # carry the new one, read when the watcher sees the change (every 10 s) or at SIGHUP
        FAKE.tokens.add(TOKEN2)
        write_atomically(os.path.join(self.env.secrets_dir, "token"), TOKEN2 + "\n")
        h.wait_until(lambda: TOKEN2 in FAKE.tokens_seen(), 60, what="a request with the rotated token")
        with FAKE.lock:
            FAKE.tokens.discard(TOKEN1)
            n = len(FAKE.seen)
        # and only the new one from then on (a refresh every step)
        h.wait_until(lambda: len(FAKE.seen) > n + 1, 30, what="two more refreshes")
        with FAKE.lock:
            self.assertEqual({t for t, _ in FAKE.seen[n + 1:]}, {TOKEN2})
        self.assertEqual(self.get_metrics(ref).metricValues[0].metricValueFloat, 5.0)
        # SIGHUP re-reads it at once: the next refresh (every 5 s) carries it, before the 10 s poll would
        token3 = "tok-3-2c26b46b68ffc68ff99b453c1d304134"
        with FAKE.lock:
            FAKE.tokens.add(token3)
        write_atomically(os.path.join(self.env.secrets_dir, "token"), token3 + "\n")
        self.env.prescale.signal(signal.SIGHUP)
        h.wait_until(lambda: token3 in FAKE.tokens_seen(), 30, what="a request with the token read at SIGHUP")
        self.assert_no_secret(token3)


class TestUnsafeSsl(Base):
    def test_unsafe_ssl_skips_the_verification(self):
        """The fake API at localhost is not listed: without unsafeSsl its certificate (test CA) does not
        verify against the system CAs; with unsafeSsl "true" the handshake passes, and the fake refuses the
        request that carries no token (its 401), which shows the TLS went through."""
        addr = f"https://localhost:{FAKE.port}"
        md = {"serverAddress": addr, "query": "fake_load", "threshold": "10", "step": "5s", "model": "last",
              "quantile": "0"}
        self.assert_fails_at_once(h.scaled_ref(PB2, name="safe", namespace="secure", **md),
                                  f"tls 127.0.0.1:{FAKE.port}: x509: unknown authority")
        self.assert_fails_at_once(h.scaled_ref(PB2, name="unsafe", namespace="secure", unsafeSsl="true", **md),
                                  "401", f"localhost:{FAKE.port}")

    def test_unsafe_ssl_does_not_change_a_listed_server(self):
        """A server of --prometheus-config gets credentials: its tls_config decides, not a trigger."""
        port = self.env.prom_port
        self.assert_fails_at_once(self.ref("unsafe-listed", serverAddress=f"{self.env.prom_url}/untrusted",
                                           unsafeSsl="true"),
                                  f"tls 127.0.0.1:{port}: x509: unknown authority")


class TestStartupErrors(unittest.TestCase):
    def run_prescale(self, cfg_text):
        d = os.path.join(ENV.tmp, f"startup-{time.monotonic_ns()}")
        os.makedirs(d)
        cfg = os.path.join(d, "cfg.yaml")
        with open(cfg, "w") as f:
            f.write(cfg_text.replace("DIR", d))
        argv = h.prescale_argv(h.free_port(), h.free_port(), "http://127.0.0.1:9", f"--prometheus-config={cfg}")
        return d, subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 timeout=30)

    def test_bad_pem_names_the_key_and_the_file(self):
        d = os.path.join(ENV.tmp, "badpem")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "ca.pem"), "w") as f:
            f.write("this is not a certificate\n")
        _, r = self.run_prescale(f"servers:\n  - url: https://p:9090\n    tls_config: {{ca_file: {d}/ca.pem}}\n")
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 2, err)
        self.assertIn("tls_config.ca_file", err)
        self.assertIn(f"{d}/ca.pem", err)

    def test_key_of_another_certificate(self):
        _, r = self.run_prescale(
            f"servers:\n  - url: https://p:9090\n    tls_config: {{cert_file: {CERTS.client.cert}, "
            f"key_file: {CERTS.server.key}}}\n")
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 2, err)
        self.assertIn("tls_config.cert_file", err)
        self.assertIn(CERTS.server.key, err)
        self.assertNotIn("PRIVATE KEY", err)

    def test_empty_token_file(self):
        d, r = None, None
        d = os.path.join(ENV.tmp, "emptytok")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "token"), "w").close()
        _, r = self.run_prescale(
            f"servers:\n  - url: https://p:9090\n    authorization: {{credentials_file: {d}/token}}\n")
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 2, err)
        self.assertIn("authorization.credentials_file", err)
        self.assertIn(f"{d}/token", err)
        self.assertIn("empty", err)


if __name__ == "__main__":
    unittest.main()
