"""End-to-end: prescale-demo-app, the workload of the demo and the Kubernetes walkthrough.

Drives a real prescale-demo-app on a free loopback port with h2load (nghttp2-client) and raw sockets.

What is counted (the contract the checks rely on): http_requests_total{code} counts every workload
response the app has queued, by status code; a response is queued before the request leaves
http_requests_in_flight. Requests to /metrics and /healthz are never counted. So once h2load has
received all its responses, the counter has grown by exactly h2load's "succeeded" count, and the
/metrics scrapes made by the test add nothing.

The binary: $DEMO_APP_BIN, else demo_app/prescale-demo-app next to $PRESCALE_BIN's directory
(build/src/demo_app/ for build/src/prescale), else build/src/demo_app/prescale-demo-app.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_demo_app.py
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import weakref

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

H2LOAD = shutil.which("h2load") or "/usr/bin/h2load"
COUNTER = "http_requests_total"
GAUGE = "http_requests_in_flight"


def demo_bin():
    if os.environ.get("DEMO_APP_BIN"):
        return os.environ["DEMO_APP_BIN"]
    if os.environ.get("PRESCALE_BIN"):
        return os.path.join(os.path.dirname(os.environ["PRESCALE_BIN"]), "demo_app", "prescale-demo-app")
    return os.path.join(h.REPO_ROOT, "build", "src", "demo_app", "prescale-demo-app")


def require_bin(test):
    if not os.access(demo_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale-demo-app not built: {demo_bin()} (build it or set DEMO_APP_BIN)")


class DemoApp:
    """One prescale-demo-app process on 127.0.0.1, its log in a temp file."""

    def __init__(self, *args):
        self.port = h.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="demo-app-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([demo_bin(), "--listen", f"127.0.0.1:{self.port}", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            h.wait_until(lambda: self.proc.poll() is None and h.http_get(self.url + "/healthz", 1)[0] == 200,
                         10, what="prescale-demo-app /healthz")
        except BaseException:
            self.stop()
            raise

    def metrics(self):
        status, body, _ = h.http_get(self.url + "/metrics")
        assert status == 200, status
        return h.parse_metrics(body)

    def counter(self, code="200"):
        return self.metrics().get((COUNTER, frozenset({("code", code)})), 0.0)

    def in_flight(self):
        return self.metrics()[(GAUGE, frozenset())]

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signals the process and returns its exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def log_text(self):
        return h.log_tail(self.log.name, 60)

    def close(self):
        """Stops the app and removes its log; returns the sanitizer reports found in it (ASan builds)."""
        self.stop()
        self.log.close()
        with open(self.log.name, errors="replace") as f:
            reports = [line for line in f if "Sanitizer" in line or "runtime error:" in line]
        os.unlink(self.log.name)
        return reports


def raw_request(port, path="/", method="GET", extra=b""):
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n").encode() + extra + b"\r\n"


# Bytes read from a socket past the responses asked for (pipelined answers that came in the same recv, as
# they do on a busy machine): the next read on that socket starts with them.
_unread = weakref.WeakKeyDictionary()


def read_head(sock, timeout=10):
    """Reads until a response head is complete (e.g. a HEAD's answer); returns all it read, so that bytes
    after the head show."""
    sock.settimeout(timeout)
    buf = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError("connection closed inside a response head")
        buf += chunk
    return buf


def read_responses(sock, n, timeout=10):
    """Reads n complete HTTP/1.1 responses (Content-Length framed); returns [(status, body)]."""
    sock.settimeout(timeout)
    buf = _unread.pop(sock, b"")
    out = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {len(out)} responses")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(m.group(1)) if m else 0
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed inside a body")
            rest += chunk
        out.append((status, rest[:length]))
        buf = rest[length:]
    _unread[sock] = buf
    return out


def h2load(url, n, c, timeout=120):
    """Runs h2load over HTTP/1.1; returns (succeeded, output)."""
    r = subprocess.run([H2LOAD, "--h1", "-n", str(n), "-c", str(c), url], capture_output=True, text=True,
                       timeout=timeout)
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", r.stdout)
    if r.returncode != 0 or m is None:
        raise AssertionError(f"h2load failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    return int(m.group(3)), r.stdout


class TestLoad(unittest.TestCase):
    """One app with a 20 ms service time, loaded by h2load."""

    SERVICE_MS = 20

    @classmethod
    def setUpClass(cls):
        require_bin(cls)
        if not os.access(H2LOAD, os.X_OK):
            raise unittest.SkipTest("h2load not installed (Debian package nghttp2-client)")
        cls.app = DemoApp("--service-time", f"{cls.SERVICE_MS}ms")

    @classmethod
    def tearDownClass(cls):
        rc = cls.app.stop()
        log = cls.app.log_text()
        reports = cls.app.close()
        if rc != 0 or reports:
            raise AssertionError(f"prescale-demo-app exited with {rc} after SIGTERM:\n{log}")

    def test_h2load_counted_exactly(self):
        before = self.app.counter()
        self.assertEqual(self.app.counter(), before, "a /metrics scrape must not count itself")
        started = time.monotonic()
        succeeded, out = h2load(self.app.url + "/work", 2000, 20)
        elapsed = time.monotonic() - started
        self.assertEqual(succeeded, 2000, out)
        self.assertIn("status codes: 2000 2xx", out)
        self.assertEqual(self.app.counter() - before, succeeded)
        self.assertEqual(self.app.in_flight(), 0)
        # 20 connections, one request in service each: 2000 x 20 ms / 20 = 2 s at the very least.
        self.assertGreaterEqual(elapsed, 2000 * self.SERVICE_MS / 1000 / 20 * 0.95)

    def test_single_request_takes_the_service_time(self):
        with socket.create_connection(("127.0.0.1", self.app.port), timeout=5) as s:
            for _ in range(3):
                t0 = time.monotonic()
                s.sendall(raw_request(self.app.port, "/timed"))
                [(status, body)] = read_responses(s, 1)
                dt = time.monotonic() - t0
                self.assertEqual(status, 200)
                self.assertEqual(body, b"hello from prescale-demo-app\n")
                # libuv times a timer on its millisecond clock (uv_now, the time truncated to whole ms when the
                # loop last read it): a 20 ms timer started 0.6 ms into a millisecond fires 19.4 ms later.
                self.assertGreaterEqual(dt, (self.SERVICE_MS - 1) / 1000)

    def test_healthz_and_metrics_are_immediate_and_not_counted(self):
        before = self.app.counter()
        for path in ("/healthz", "/metrics", "/healthz?x=1"):
            t0 = time.monotonic()
            status, _, headers = h.http_get(self.app.url + path)
            self.assertEqual(status, 200, path)
            self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(self.app.counter(), before)
        _, body, headers = h.http_get(self.app.url + "/metrics")
        self.assertTrue(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"), headers)
        self.assertIn("# TYPE http_requests_total counter", body)
        self.assertIn("# TYPE http_requests_in_flight gauge", body)

    def test_pipelined_requests_answered_in_order(self):
        before = self.app.counter()
        with socket.create_connection(("127.0.0.1", self.app.port), timeout=5) as s:
            s.sendall(raw_request(self.app.port, "/a") + raw_request(self.app.port, "/healthz")
                      + raw_request(self.app.port, "/b", method="HEAD"))
            res = read_responses(s, 2)
            self.assertEqual(res[0], (200, b"hello from prescale-demo-app\n"))
            self.assertEqual(res[1], (200, b"ok\n"))
            # HEAD: same header fields, no content; read its head only.
            head = read_head(s, 5)
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            self.assertTrue(head.endswith(b"\r\n\r\n"), head)
        self.assertEqual(self.app.counter() - before, 2)

    def test_other_methods_405_counted_by_code(self):
        before = self.app.counter("405")
        with socket.create_connection(("127.0.0.1", self.app.port), timeout=5) as s:
            s.sendall(raw_request(self.app.port, "/x", method="POST", extra=b"Content-Length: 0\r\n"))
            [(status, _)] = read_responses(s, 1)
        self.assertEqual(status, 405)
        self.assertEqual(self.app.counter("405") - before, 1)

    def test_garbage_gets_400_and_close(self):
        with socket.create_connection(("127.0.0.1", self.app.port), timeout=5) as s:
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            [(status, _)] = read_responses(s, 1)
            self.assertEqual(status, 400)
            s.settimeout(5)
            self.assertEqual(s.recv(1), b"")


class TestSlowService(unittest.TestCase):
    """A 3 s service time makes in-flight requests observable and shows the loop never blocks. The tests here
    act while a request is in service (see it in the gauge, close its client, send SIGTERM): the service time
    is the window they have for it, long enough for a /metrics scrape on a busy machine."""

    SERVICE_MS = 3000

    def setUp(self):
        require_bin(self)
        self.app = DemoApp("--service-time", f"{self.SERVICE_MS}ms")

    def tearDown(self):
        reports = self.app.close()
        self.assertEqual(reports, [])

    def test_in_flight_gauge_follows_requests(self):
        socks = [socket.create_connection(("127.0.0.1", self.app.port), timeout=5) for _ in range(3)]
        try:
            for s in socks:
                s.sendall(raw_request(self.app.port, "/slow"))
            h.wait_until(lambda: self.app.in_flight() == 3, 5, interval=0.02, what="3 requests in flight")
            for s in socks:
                self.assertEqual(read_responses(s, 1)[0][0], 200)
        finally:
            for s in socks:
                s.close()
        self.assertEqual(self.app.in_flight(), 0)
        self.assertEqual(self.app.counter(), 3)

    def test_concurrent_requests_do_not_queue(self):
        if not os.access(H2LOAD, os.X_OK):
            self.skipTest("h2load not installed")
        t0 = time.monotonic()
        succeeded, out = h2load(self.app.url + "/", 20, 20)
        elapsed = time.monotonic() - t0
        self.assertEqual(succeeded, 20, out)
        # A server that blocked per request would need 20 x 3 s = 60 s; concurrent, it takes 3 s (plus the
        # connections' setup on a busy machine).
        self.assertLess(elapsed, 10 * self.SERVICE_MS / 1000, out)
        self.assertGreaterEqual(elapsed, self.SERVICE_MS / 1000)

    def test_client_gone_mid_service_is_not_counted(self):
        s = socket.create_connection(("127.0.0.1", self.app.port), timeout=5)
        s.sendall(raw_request(self.app.port, "/gone"))
        h.wait_until(lambda: self.app.in_flight() == 1, 5, interval=0.02, what="1 request in flight")
        s.close()
        h.wait_until(lambda: self.app.in_flight() == 0, 5, interval=0.02, what="in-flight back to 0")
        self.assertEqual(self.app.counter(), 0)

    def test_sigterm_finishes_requests_in_service_then_exits_0(self):
        s = socket.create_connection(("127.0.0.1", self.app.port), timeout=5)
        try:
            s.sendall(raw_request(self.app.port, "/last"))
            h.wait_until(lambda: self.app.in_flight() == 1, 5, interval=0.02, what="1 request in flight")
            self.app.proc.send_signal(signal.SIGTERM)
            s.settimeout(self.SERVICE_MS / 1000 + 10)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertIn(b"Connection: close\r\n", data)
        self.assertEqual(self.app.proc.wait(10), 0, self.app.log_text())


class TestLifecycle(unittest.TestCase):
    def setUp(self):
        require_bin(self)

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            app = DemoApp()
            try:
                t0 = time.monotonic()
                self.assertEqual(app.stop(sig), 0, app.log_text())
                self.assertLess(time.monotonic() - t0, 5.0)
                self.assertIn("msg=stopped", app.log_text())
            finally:
                self.assertEqual(app.close(), [])

    def test_flags(self):
        r = subprocess.run([demo_bin(), "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        for flag in ("--listen", "--service-time", "--log-level"):
            self.assertIn(flag, r.stdout)
        for args, needle in ((["--service-time", "soon"], '--service-time: "soon"'),
                             (["--service-time=-1s"], '--service-time: "-1s"'),
                             (["--listen", "nowhere"], '--listen: "nowhere"'),
                             (["--log-level", "loud"], '--log-level: "loud"'),
                             (["--bogus"], 'unknown flag "--bogus"')):
            r = subprocess.run([demo_bin(), *args], capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(needle, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_port_in_use_exits_1(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            r = subprocess.run([demo_bin(), "--listen", f"127.0.0.1:{port}"], capture_output=True, text=True,
                               timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot listen", r.stderr)


if __name__ == "__main__":
    unittest.main()
