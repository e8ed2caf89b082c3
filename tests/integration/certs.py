"""Test certificates, generated with the `openssl` CLI into a temp dir (issue 10). No network, EC P-256 keys
(a whole set takes well under a second).

    with Certs() as c:
        c.ca.cert                  # PEM path of the CA that signed server, expired, wrong_san, client
        c.server.cert, .key        # server cert for 127.0.0.1 / localhost (SAN IP and DNS), signed by ca
        c.expired                  # same names, signed by ca, validity ended in 2021
        c.wrong_san                # signed by ca, valid, for wrong.invalid only
        c.client                   # client cert (extendedKeyUsage clientAuth) signed by ca
        c.other_ca, c.other_client # an unrelated CA (another subject and key) and a client cert it signed
        c.issue_server("server-2") # a fresh server cert/key (a rotation), same SANs, new key and serial
        c.read(c.ca.cert)          # the PEM bytes (grpc.ssl_channel_credentials wants bytes)

A rotation as the kubelet does it for a mounted Secret (an atomic symlink swap of `..data`, so the cert and key
change together and a reader never sees a half-written file):

        d = c.secret_dir("tls", {"tls.crt": c.server.cert, "tls.key": c.server.key})
        d.path("tls.crt")          # <tmp>/tls/tls.crt -> ..data/tls.crt
        d.update({"tls.crt": new.cert, "tls.key": new.key})

Every certificate carries the extensions that Go's crypto/x509 (Prometheus, grpc-go) and OpenSSL check:
basicConstraints, keyUsage, extendedKeyUsage serverAuth/clientAuth, subject/authority key identifiers.
The two CAs have different subjects, so a certificate of one checked against the other is
"unable to get local issuer certificate" (x509: unknown authority), never a signature failure.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import namedtuple

OPENSSL = os.environ.get("OPENSSL_BIN", "openssl")

# The names the loopback servers of the tests answer on.
SERVER_SANS = ("IP:127.0.0.1", "DNS:localhost")

Pair = namedtuple("Pair", "cert key")

# Our own config: the system openssl.cnf may add extensions (v3_ca) or require fields we do not want.
_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::PS_CERT_SANS}
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca]
default_ca = expired_ca
[expired_ca]
database = $ENV::PS_CA_DIR/index.txt
new_certs_dir = $ENV::PS_CA_DIR
serial = $ENV::PS_CA_DIR/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
"""


class Certs:
    """A CA, an unrelated second CA, server and client certificates, in a temp dir removed by close()."""

    def __init__(self, tmp_prefix="prescale-certs-", days=30):
        self.dir = tempfile.mkdtemp(prefix=tmp_prefix)
        self.days = days
        self._cnf = os.path.join(self.dir, "openssl.cnf")
        with open(self._cnf, "w") as f:
            f.write(_CNF)
        self.ca = self._new_ca("ca", "prescale test CA")
        self.other_ca = self._new_ca("other-ca", "prescale unrelated test CA")
        self.server = self.issue_server("server")
        self.wrong_san = self.issue_server("wrong-san", sans=("DNS:wrong.invalid",), cn="wrong.invalid")
        self.expired = self._issue_expired("expired")
        self.client = self.issue_client("client")
        self.other_client = self.issue_client("other-client", ca=self.other_ca)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    # ---- issuing -------------------------------------------------------------------------------------

    def issue_server(self, name, sans=SERVER_SANS, ca=None, cn="localhost"):
        """A fresh key and server certificate signed by ca (default: self.ca), valid for self.days days."""
        return self._issue(name, cn, "server_ext", ca or self.ca, sans)

    def issue_client(self, name, ca=None, cn="prescale-test-client"):
        return self._issue(name, cn, "client_ext", ca or self.ca, SERVER_SANS)

    def _run(self, *argv, env=None):
        e = dict(os.environ, PS_CERT_SANS=",".join(SERVER_SANS), PS_CA_DIR=self.dir)
        e.pop("OPENSSL_CONF", None)
        e.update(env or {})
        r = subprocess.run([OPENSSL, *argv], cwd=self.dir, env=e, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(argv)} failed ({r.returncode}): "
                               f"{r.stderr.decode(errors='replace')}")
        return r

    def _paths(self, name):
        return Pair(os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key"))

    def _new_ca(self, name, cn):
        p = self._paths(name)
        self._run("req", "-config", self._cnf, "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", p.key, "-out", p.cert, "-subj", f"/CN={cn}", "-days", str(self.days + 1),
                  "-sha256", "-extensions", "ca_ext", "-set_serial", str(secrets.randbits(63)))
        return p

    def _csr(self, name, cn):
        p = self._paths(name)
        csr = os.path.join(self.dir, name + ".csr")
        self._run("req", "-config", self._cnf, "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", p.key, "-out", csr, "-subj", f"/CN={cn}")
        return p, csr

    def _issue(self, name, cn, ext, ca, sans):
        p, csr = self._csr(name, cn)
        self._run("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-out", p.cert,
                  "-days", str(self.days), "-sha256", "-set_serial", str(secrets.randbits(63)),
                  "-extfile", self._cnf, "-extensions", ext, env={"PS_CERT_SANS": ",".join(sans)})
        return p

    def _issue_expired(self, name):
        """`openssl x509 -req` cannot set dates in the past; `openssl ca` can (-startdate/-enddate)."""
        p, csr = self._csr(name, "localhost")
        index = os.path.join(self.dir, "index.txt")
        if not os.path.exists(index):
            open(index, "w").close()
            with open(os.path.join(self.dir, "serial"), "w") as f:
                f.write(f"{secrets.randbits(63):016X}\n")
        self._run("ca", "-batch", "-config", self._cnf, "-notext", "-in", csr, "-cert", self.ca.cert,
                  "-keyfile", self.ca.key, "-out", p.cert, "-startdate", "20200101000000Z",
                  "-enddate", "20210101000000Z", "-extfile", self._cnf, "-extensions", "server_ext")
        return p

    # ---- files as a mounted Secret -------------------------------------------------------------------

    def secret_dir(self, name, files):
        """A directory laid out as the kubelet mounts a Secret; files maps a key to the path of its content."""
        return SecretDir(os.path.join(self.dir, name), files)


class SecretDir:
    """The kubelet's AtomicWriter layout: <dir>/<key> -> ..data/<key>, ..data -> ..<timestamp>/; update()
    writes a new timestamped dir, then renames a new ..data symlink over the old one (one atomic step)."""

    def __init__(self, path, files):
        self.dir = path
        os.makedirs(path)
        self._gen = 0
        self._current = None
        self.update(files)
        for key in files:
            os.symlink(os.path.join("..data", key), os.path.join(path, key))

    def path(self, key):
        return os.path.join(self.dir, key)

    def update(self, files):
        self._gen += 1
        ts = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self._gen}"
        os.makedirs(os.path.join(self.dir, ts))
        for key, src in files.items():
            shutil.copyfile(src, os.path.join(self.dir, ts, key))
        tmp_link = os.path.join(self.dir, "..data_tmp")
        os.symlink(ts, tmp_link)
        os.replace(tmp_link, os.path.join(self.dir, "..data"))
        if self._current:
            shutil.rmtree(os.path.join(self.dir, self._current))
        self._current = ts


def verify(ca_cert, cert, purpose="sslserver"):
    """`openssl verify`'s verdict (True, "OK") or (False, its error line): lets a test check a fixture."""
    r = subprocess.run([OPENSSL, "verify", "-purpose", purpose, "-CAfile", ca_cert, cert], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode(errors="replace").strip()
    return r.returncode == 0, out


if __name__ == "__main__":
    # Self-check: `python3 tests/integration/certs.py` prints each certificate's verdict against the CA.
    t0 = time.monotonic()
    with Certs() as c:
        made = time.monotonic() - t0
        for label, cert, ca, purpose in (("server", c.server.cert, c.ca.cert, "sslserver"),
                                         ("expired", c.expired.cert, c.ca.cert, "sslserver"),
                                         ("wrong_san", c.wrong_san.cert, c.ca.cert, "sslserver"),
                                         ("server vs other_ca", c.server.cert, c.other_ca.cert, "sslserver"),
                                         ("client", c.client.cert, c.ca.cert, "sslclient"),
                                         ("other_client", c.other_client.cert, c.other_ca.cert, "sslclient"),
                                         ("other_client vs ca", c.other_client.cert, c.ca.cert, "sslclient")):
            print(f"{label:20} {verify(ca, cert, purpose)}")
        print(f"generated in {made:.2f}s")
