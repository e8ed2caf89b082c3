"""A real Prometheus behind its own `--web.config.file` (issue 10): TLS, basic auth with bcrypt hashes made by
`htpasswd -nbBC 10` (apache2-utils), optionally client certificates (RequireAndVerifyClientCert).

    with certs.Certs() as c, SecureEnv(c, users={"keda": "s3cret"}, client_certs=True) as env:
        env.start_prometheus_with_history()       # as harness.Env, readiness awaited through TLS + auth
        env.prom_url                              # https://127.0.0.1:PORT
        env.prom_instant("up")                    # the harness helpers go through TLS with the credentials

SecureEnv is harness.Env with the Prometheus side secured: everything else (exporter, backfill, prescale,
the exact expected predictions) is the harness's. Readiness is awaited on /-/ready through TLS (verified
against the test CA, host 127.0.0.1) with the first user's credentials and, when required, the client
certificate, so a broken web config fails here, not later in a test.
"""

import base64
import http.client
import json
import os
import ssl
import subprocess
import urllib.parse

import harness

HTPASSWD = os.environ.get("HTPASSWD_BIN", "htpasswd")


def bcrypt_hash(user, password, cost=10):
    """The bcrypt hash Prometheus's basic_auth_users wants, made by htpasswd (-B bcrypt, -C cost, -n to stdout,
    -b password from argv: test passwords only)."""
    r = subprocess.run([HTPASSWD, "-nbBC", str(cost), user, password], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=True)
    line = r.stdout.decode().strip()
    name, _, h = line.partition(":")
    if name != user or not h.startswith("$2"):
        raise RuntimeError(f"htpasswd gave an unexpected line for {user}")
    return h


def web_config(cert, key, users=None, client_ca=None):
    """The text of a web config file (https://prometheus.io/docs/prometheus/latest/configuration/https/).
    users: {name: password} (hashed here); client_ca: a CA path -> RequireAndVerifyClientCert."""
    lines = ["tls_server_config:", f"  cert_file: {json.dumps(cert)}", f"  key_file: {json.dumps(key)}"]
    if client_ca:
        lines += ["  client_auth_type: RequireAndVerifyClientCert", f"  client_ca_file: {json.dumps(client_ca)}"]
    if users:
        lines.append("basic_auth_users:")
        for name, password in users.items():
            # single quotes: YAML takes a bcrypt hash ($, /, .) verbatim in them
            lines.append(f"  {json.dumps(name)}: '{bcrypt_hash(name, password)}'")
    return "\n".join(lines) + "\n"


def basic_auth_header(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class SecureEnv(harness.Env):
    """harness.Env whose Prometheus serves HTTPS with certs.server, basic auth for `users` and, with
    client_certs, requires a client certificate signed by certs.ca (use certs.client)."""

    def __init__(self, certs, users=None, client_certs=False, **kw):
        super().__init__(**kw)
        self.certs = certs
        self.users = dict(users or {})
        self.client_certs = client_certs
        self.web_config_path = os.path.join(self.tmp, "web.yml")
        with open(self.web_config_path, "w") as f:
            f.write(web_config(certs.server.cert, certs.server.key, self.users,
                               certs.ca.cert if client_certs else None))

    @property
    def prom_url(self):
        return f"https://127.0.0.1:{self.prom_port}"

    def ssl_context(self, client_cert=True):
        ctx = ssl.create_default_context(cafile=self.certs.ca.cert)
        if self.client_certs and client_cert:
            ctx.load_cert_chain(self.certs.client.cert, self.certs.client.key)
        return ctx

    def prom_get(self, path, user=None, password=None, client_cert=True, timeout=10):
        """GET path on Prometheus through TLS: (status, body bytes). Credentials: the given ones, else the
        first user's; user="" sends none."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.prom_port, timeout=timeout,
                                           context=self.ssl_context(client_cert))
        headers = {}
        if user is None and self.users:
            user, password = next(iter(self.users.items()))
        if user:
            headers["Authorization"] = basic_auth_header(user, password)
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def start_prometheus(self):
        argv = [harness.PROMETHEUS_BIN, f"--config.file={os.path.join(self.tmp, 'prometheus.yml')}",
                f"--storage.tsdb.path={self.tsdb}", f"--web.listen-address=127.0.0.1:{self.prom_port}",
                f"--web.config.file={self.web_config_path}", "--storage.tsdb.retention.time=1d",
                "--log.level=warn"]
        self.prometheus = harness.Process("prometheus", argv, os.path.join(self.tmp, "prometheus.log"))

        def ready():
            if not self.prometheus.alive():
                raise RuntimeError(self.prometheus.describe())
            try:
                return self.prom_get("/-/ready", timeout=2)[0] == 200
            except (OSError, http.client.HTTPException):
                return False

        harness.wait_until(ready, 60, what="Prometheus /-/ready through TLS with credentials")
        return self.prometheus

    def prom_api(self, path, params, timeout=10):
        status, body = self.prom_get(path + "?" + urllib.parse.urlencode(params), timeout=timeout)
        if status != 200:
            raise RuntimeError(f"Prometheus answered {status} to {path}: {body[:200]!r}")
        return json.loads(body)

    def start_prometheus_empty(self):
        """Prometheus without history or scrapes (queries such as vector(1) answer at once)."""
        os.makedirs(self.tsdb, exist_ok=True)
        self.prom_port = harness.free_port()
        with open(os.path.join(self.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  evaluation_interval: 1m\n")
        return self.start_prometheus()
