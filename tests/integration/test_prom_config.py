"""End-to-end: --prometheus-config at startup (src/prom_config.c, docs/prometheus-config.md).

A file that does not load stops prescale before it listens, exit code 2, with one line that names the file,
the line and the key, and never a secret from the file; a good file (with real certificates made by
`openssl` and a token file) starts, says how many servers it holds, and keeps its secrets out of the log.
No Prometheus is needed: the file is read before anything connects.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_prom_config.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SECRET = "s3cr3t-do-not-log"


class TestPromConfig(unittest.TestCase):
    def setUp(self):
        if not os.access(h.prescale_bin(), os.X_OK):
            self.skipTest(f"prescale binary not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")
        self.tmp = tempfile.mkdtemp(prefix="prescale-pcfg-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text, mode=0o644):
        with open(self.path(name), "w") as f:
            f.write(text)
        os.chmod(self.path(name), mode)
        return self.path(name)

    def certificate(self, name):
        """A self-signed certificate and its key, as a CA and as a client certificate would be."""
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", f"/CN={name}", "-keyout", self.path(name + ".key"), "-out",
                        self.path(name + ".pem")], check=True, capture_output=True, timeout=60)
        return self.path(name + ".pem"), self.path(name + ".key")

    def refused(self, config_path, *args, env=None):
        """Runs prescale with the file; it must exit 2 at once. Returns what it printed."""
        argv = h.prescale_argv(h.free_port(), h.free_port(), "http://127.0.0.1:9", *args)
        r = subprocess.run(argv + ([f"--prometheus-config={config_path}"] if config_path else []),
                           capture_output=True, text=True, timeout=30, env=env)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 2, out)
        self.assertNotIn("prescale started", out, "nothing listens when the file does not load")
        self.assertNotIn(SECRET, out)
        return out

    def test_unknown_key_is_a_startup_error_naming_file_line_and_key(self):
        bad = self.write("bad.yaml",
                         "servers:\n"
                         "  - url: https://thanos-querier.openshift-monitoring.svc:9091\n"
                         f"    authorization: {{credentials: {SECRET}}}\n"
                         "    tls_config:\n"
                         "      cafile: /etc/prescale/ca.pem\n")
        out = self.refused(bad)
        self.assertIn(f"prescale: prometheus-config {bad}:5: servers[0].tls_config: unknown key \"cafile\" "
                      "(known: ca_file, cert_file, key_file, server_name, insecure_skip_verify)", out)
        self.assertIn("docs/prometheus-config.md", out)
        # The same file through the environment variable.
        env = dict(os.environ, PRESCALE_PROMETHEUS_CONFIG=bad)
        out = self.refused(None, env=env)
        self.assertIn(f"prometheus-config {bad}:5: servers[0].tls_config: unknown key \"cafile\"", out)

    def test_unsupported_key_and_missing_files(self):
        out = self.refused(self.write("oauth.yaml", "servers:\n- url: https://p:9090\n  oauth2: {client_id: x}\n"))
        self.assertIn(":3: servers[0]: \"oauth2\" is not supported by prescale", out)
        missing = self.write("missing.yaml",
                             "servers:\n- url: https://p:9090\n"
                             "  basic_auth: {username: keda, password_file: prom-password}\n")
        out = self.refused(missing)
        self.assertIn(f"prometheus-config {missing}:3: servers[0].basic_auth.password_file: cannot read "
                      f"\"{self.path('prom-password')}\": No such file or directory", out)
        out = self.refused(self.path("nope.yaml"))
        self.assertIn(f"prometheus-config {self.path('nope.yaml')}: cannot read: No such file or directory", out)
        out = self.refused(self.write("smuggle.yaml", "servers:\n- url: http://p:9090\n  headers:\n"
                                                      f"    X-Token: \"{SECRET}\\r\\nHost: evil\"\n"))
        self.assertIn(":4: servers[0].headers: header \"X-Token\": the value must not contain control characters",
                      out)

    def test_a_good_file_starts_and_keeps_its_secrets_out_of_the_log(self):
        ca, _ = self.certificate("ca")
        cert, key = self.certificate("client")
        self.write("token", SECRET + "\n", 0o600)
        self.write("prom-password", SECRET, 0o600)
        good = self.write("good.yaml",
                          "servers:\n"
                          "  - url: https://thanos-querier.openshift-monitoring.svc:9091\n"
                          "    authorization: {type: Bearer, credentials_file: token}\n"
                          f"    tls_config: {{ca_file: {ca}}}\n"
                          "  - url: https://prometheus.example:9090\n"
                          "    basic_auth: {username: keda, password_file: prom-password}\n"
                          f"    tls_config: {{ca_file: ca.pem, cert_file: {cert}, key_file: {key},\n"
                          "                 server_name: prometheus.example, insecure_skip_verify: false}\n"
                          "    headers: {X-Scope-OrgID: team-a}\n"
                          "  - url: http://mimir:8080/prometheus\n"
                          f"    authorization: {{credentials: {SECRET}}}\n"
                          "  - url: https://lab:9090\n"
                          "    tls_config: {insecure_skip_verify: true}\n")
        p = h.Process("prescale-pcfg", h.prescale_argv(h.free_port(), http_port := h.free_port(),
                                                       "http://127.0.0.1:9", f"--prometheus-config={good}"),
                      self.path("prescale.log"))
        try:
            h.wait_http_ok(p, f"http://127.0.0.1:{http_port}/readyz", 15, "prescale /readyz")
        finally:
            self.assertEqual(p.stop(), 0, p.describe())
        log = h.log_tail(p.log_path, 100000)
        self.assertRegex(log, r'msg="prometheus config loaded" file=\S*good.yaml servers=4')
        self.assertRegex(log, r'level=warn msg="TLS certificate verification is off \(insecure_skip_verify\)" '
                              r'url=https://lab:9090')
        self.assertNotIn(SECRET, log)
        for marker in h.SANITIZER_MARKERS:
            self.assertNotIn(marker, log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
