"""Shared harness for prescale's end-to-end tests and `make demo`: real Prometheus, a live exporter,
the prescale binary and generated gRPC stubs, all on 127.0.0.1 with ephemeral ports.

Data model (why expected predictions are exactly computable)
-------------------------------------------------------------
The load is a deterministic function of wall time, piecewise constant on STEP (5 s) slots with a
PERIOD of 180 s (36 slots, every slot value distinct, so a value identifies its slot within the period):

    load_at(t) = SHAPE[floor(t / STEP) mod 36]            (t in Unix seconds; the period is epoch-aligned)

Both the backfilled history and the live exporter publish, for a sample taken at time s, the value
load_at(s - SAMPLE_LAG). Prometheus evaluates a query at time T to the newest sample with timestamp <= T
(lookback 5 min). With samples every 1 s (backfill at k + 0.5, live scrapes at interval 1 s), the newest
sample <= T for a step-aligned T was taken in (T - 1 s, T], so its value is load_at(s - 0.5) with
s - 0.5 in (T - 1.5, T - 0.5]: always the slot *before* T. Hence, for every step-aligned T:

    observed_at(T) = SHAPE[(T / STEP - 1) mod 36]

SAMPLE_LAG (0.5 s) absorbs the delay between the scrape timestamp (taken when Prometheus starts a
scrape) and the moment the exporter reads the clock: it must stay < 0.5 s, and the scrape must not be
more than 4 s late. A missed scrape is harmless (any sample in (T - 4.5, T] gives the same slot).

Continuity between history and live data: the backfill ends at a chosen instant E in the *future*
(E = a step boundary + 0.5 s, at least BACKFILL_LEAD seconds ahead). Prometheus sets its head's minimum
valid time to the last block's max time, so live scrapes before E are dropped ("out of bounds") and the
first accepted one comes within 1 s after E: no step-aligned T ever lacks a sample of its slot.
`Env.check_series()` verifies this against Prometheus itself, so a mismatch in a test is prescale's.

Prediction for a prescale whose newest history slot is N (step-aligned), seasonal model, lookahead L:

    current   = observed_at(N)
    predicted = max(observed_at(t - PERIOD) for t in N+STEP, N+2*STEP, ..., N+L)
    value     = max(current, predicted) * (1 + headroom)

Tolerance: prescale refreshes every step and Prometheus ingests a scrape up to ~1 s late, so at wall
time W the newest slot prescale holds is one of floor(W/STEP)*STEP - {0, 5, 10} s (three slots: one
refresh interval plus scrape/refresh latency). Tests accept exactly the values of those slots (no
numeric slack beyond float rounding of the headroom multiplication); the distinct slot values make an
off-by-one-step error visible as a value outside the set at most phases.
"""

import contextlib
import http.client
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---- locations ---------------------------------------------------------------------------------------

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PROTO_DIR = os.path.join(REPO_ROOT, "proto")
PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
PROMTOOL_BIN = os.environ.get("PROMTOOL_BIN", "/usr/bin/promtool")


def prescale_bin():
    return os.environ.get("PRESCALE_BIN", os.path.join(REPO_ROOT, "build", "src", "prescale"))


# PRESCALE_WRAP: a command put in front of prescale wherever the suites start it through prescale_argv
# (Env.start_prescale included), split as a shell would: valgrind's memcheck, for one (README.md).
def prescale_wrap():
    return shlex.split(os.environ.get("PRESCALE_WRAP", ""))


# PRESCALE_TIMEOUT_SCALE (default 1) multiplies every bound the harness waits with (wait_until, and so
# every readiness wait, and a stop's wait before SIGKILL): memcheck runs prescale 20-50x slower. The bounds
# are upper bounds on events awaited, so a larger one never makes a test pass that should fail.
TIMEOUT_SCALE = float(os.environ.get("PRESCALE_TIMEOUT_SCALE", "1"))


# ---- the load function -------------------------------------------------------------------------------

STEP = 5  # seconds per slot
PERIOD = 180  # seconds: 36 slots
SAMPLE_LAG = 0.5  # see the module docstring
SCRAPE_INTERVAL = 1  # seconds
BACKFILL_LEAD = 12.0  # seconds between now and the end of the backfill (Prometheus must start by then)
METRIC = "prescale_test_load"
JOB = "load"
INSTANCE = "exporter"
QUERY = METRIC  # one series: job and instance are pinned by relabelling so history and live data match

# A request-rate-like day in 3 minutes: low plateau (60 s), linear ramp up (30 s), high plateau (60 s),
# a decaying ramp down (30 s). Non-symmetric, every slot distinct.
SHAPE = (
    [18.0, 18.1, 18.2, 18.3, 18.4, 18.5, 18.6, 18.7, 18.8, 18.9, 19.0, 19.1]  # slots 0-11: low
    + [30.0, 42.0, 54.0, 66.0, 78.0, 86.0]  # slots 12-17: ramp up
    + [91.0, 91.1, 91.2, 91.3, 91.4, 91.5, 91.6, 91.7, 91.8, 91.9, 92.0, 92.1]  # slots 18-29: high
    + [72.5, 55.5, 41.5, 31.5, 24.5, 20.5]  # slots 30-35: ramp down
)
assert len(SHAPE) * STEP == PERIOD and len(set(SHAPE)) == len(SHAPE)


def load_at(t):
    return SHAPE[int(math.floor(t / STEP)) % len(SHAPE)]


def sample_value(s):
    """What a sample taken at time s carries (backfill and exporter alike)."""
    return load_at(s - SAMPLE_LAG)


def observed_at(T):
    """What Prometheus returns for an evaluation at the step-aligned time T (module docstring)."""
    assert T % STEP == 0, T
    return SHAPE[(T // STEP - 1) % len(SHAPE)]


def align(t, step=STEP):
    return int(math.floor(t / step)) * step


def predicted_at(N, lookahead=30, period=PERIOD, step=STEP):
    """Seasonal forecast of prescale whose newest slot is N: max over t in (N, N+lookahead] of value(t-period)."""
    return max(observed_at(N + k * step - period) for k in range(1, lookahead // step + 1))


def seasonal_value(N, lookahead=30, headroom=0.0):
    return max(observed_at(N), predicted_at(N, lookahead)) * (1.0 + headroom)


def candidate_slots(w_before, w_after, lag_slots=2):
    """Step-aligned slots prescale may hold as newest between two wall times (module docstring)."""
    lo = align(w_before) - lag_slots * STEP
    return list(range(lo, align(w_after) + STEP, STEP))


def close_to(a, b, rel=1e-6):
    """prescale's engine keeps history as 32-bit floats (about 7 significant digits; 4 bytes a sample),
    so forecasts built from history carry a relative rounding of up to 6e-8; the current value is exact."""
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


# ---- small utilities -----------------------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout, interval=0.1, what="condition"):
    """Polls cond() until it returns a truthy value, bounded by timeout (times TIMEOUT_SCALE); returns that
    value."""
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - report the last failure on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


# No proxies: everything is loopback, and a proxy from the environment must not intercept it.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tcp_sockets_to(pid, port, states=("01",)):
    """TCP sockets of process pid whose peer port is `port`, in `states` (/proc/net/tcp codes: 01
    established, 02 SYN sent), matched by inode between /proc/<pid>/fd and /proc/net/tcp{,6}."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[2].split(":")[-1], 16) == port and cols[3] in states and cols[9] in inodes:
                    n += 1
    return n


def http_get(url, timeout=5.0):
    """Returns (status, body text, headers) and never raises for an HTTP status."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", u.path + (("?" + u.query) if u.query else ""))
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace"), dict(r.getheaders())
    finally:
        conn.close()


def log_tail(path, lines=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def parse_metrics(text):
    """Prometheus text format -> {(name, frozenset(labels.items())): value}. Enough for our assertions."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_s, value_s = rest.rsplit("}", 1)
            labels = {}
            i = 0
            while i < len(labels_s):
                eq = labels_s.index("=", i)
                key = labels_s[i:eq].strip().lstrip(",").strip()
                j = eq + 2  # past ="
                val = []
                while labels_s[j] != '"':
                    if labels_s[j] == "\\":
                        j += 1
                        val.append({"n": "\n"}.get(labels_s[j], labels_s[j]))
                    else:
                        val.append(labels_s[j])
                    j += 1
                labels[key] = "".join(val)
                i = j + 1
                while i < len(labels_s) and labels_s[i] in ", ":
                    i += 1
            parts = value_s.split()
        else:
            parts = line.split()
            name, parts = parts[0], parts[1:]
            labels = {}
        out[(name, frozenset(labels.items()))] = float(parts[0])
    return out


def metric_value(metrics, family, /, **labels):
    return metrics.get((family, frozenset(labels.items())))


# ---- gRPC stubs ---------------------------------------------------------------------------------------

_stubs = None


def grpc_modules():
    """Generates the python stubs from proto/externalscaler.proto once per process; returns (pb2, pb2_grpc)."""
    global _stubs
    if _stubs is None:
        out = tempfile.mkdtemp(prefix="prescale-stubs-")
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", PROTO_DIR, "--python_out", out,
                        "--grpc_python_out", out, os.path.join(PROTO_DIR, "externalscaler.proto")],
                       check=True, capture_output=True)
        sys.path.insert(0, out)
        import externalscaler_pb2  # noqa: E402
        import externalscaler_pb2_grpc  # noqa: E402
        _stubs = (externalscaler_pb2, externalscaler_pb2_grpc)
        import atexit
        atexit.register(shutil.rmtree, out, True)
    return _stubs


def grpc_channel(addr):
    import grpc
    # grpc honours http_proxy by default; loopback traffic must go direct.
    return grpc.insecure_channel(addr, options=[("grpc.enable_http_proxy", 0)])


# ---- the live exporter -------------------------------------------------------------------------------


class Exporter:
    """Serves METRIC = sample_value(now) at /metrics from a thread of this process."""

    def __init__(self):
        self.port = free_port()
        self.scrapes = 0
        exp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                v = sample_value(time.time())
                exp.scrapes += 1
                body = (f"# HELP {METRIC} Synthetic periodic load.\n# TYPE {METRIC} gauge\n"
                        f"{METRIC} {v!r}\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="exporter", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# ---- backfill ----------------------------------------------------------------------------------------


def write_backfill(path, start, end):
    """OpenMetrics samples every second at k + 0.5 in [start, end], ending with `# EOF`."""
    with open(path, "w") as f:
        f.write(f"# HELP {METRIC} Synthetic periodic load.\n# TYPE {METRIC} gauge\n")
        s = math.floor(start) + 0.5
        while s <= end:
            f.write(f'{METRIC}{{instance="{INSTANCE}",job="{JOB}"}} {sample_value(s)!r} {s:.1f}\n')
            s += 1.0
        f.write("# EOF\n")


def create_blocks(openmetrics_file, tsdb_dir, log):
    r = subprocess.run([PROMTOOL_BIN, "tsdb", "create-blocks-from", "openmetrics", openmetrics_file, tsdb_dir],
                       stdout=log, stderr=subprocess.STDOUT, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from failed with {r.returncode}; see {log.name}")


# ---- processes ---------------------------------------------------------------------------------------


class Process:
    """A child we started; stopped by its own pid only."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        """SIGTERM, wait (bounded, times TIMEOUT_SCALE), then SIGKILL. Returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * TIMEOUT_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode

    def describe(self):
        rc = self.proc.poll()
        state = "running" if rc is None else f"exited with {rc}"
        return f"{self.name} ({state}); last log lines of {self.log_path}:\n{log_tail(self.log_path)}"


def wait_http_ok(proc, url, timeout, what):
    """Polls url until it answers 200, bounded by timeout; on timeout the error names proc's state and log
    when proc has exited (a readiness wait for a child that died)."""

    def ok():
        if not proc.alive():
            raise RuntimeError(proc.describe())
        try:
            return http_get(url, timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(ok, timeout, what=what)


def prescale_argv(grpc_port, http_port, prom_url, *extra, binary=None):
    """prescale's command line listening on 127.0.0.1 at the two ports, polling prom_url (after
    PRESCALE_WRAP's command, if any)."""
    return [*prescale_wrap(), binary or prescale_bin(), f"--grpc-listen=127.0.0.1:{grpc_port}",
            f"--http-listen=127.0.0.1:{http_port}", f"--prometheus-url={prom_url}", *extra]


# What ASan, LSan and UBSan print in a report: any of them in prescale's log fails the test.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
# What valgrind prints (each line "==pid== "; with -q only its reports): any in prescale's log fails the test.
VALGRIND_REPORT = re.compile(r"^==\d+== \S", re.M)


class Env:
    """One test/demo environment: temp dir, exporter, Prometheus with backfilled history, prescale.

    Use as a context manager, or call start_* and close() (close is idempotent and safe after failures)."""

    def __init__(self, history_s=75 * 60, keep=False, tmp_prefix="prescale-e2e-"):
        self.tmp = tempfile.mkdtemp(prefix=tmp_prefix)
        self.keep = keep
        self.history_s = history_s
        self.exporter = None
        self.prometheus = None
        self.prescale = None
        self.prom_port = None
        self.tsdb = os.path.join(self.tmp, "tsdb")
        self.backfill_end = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- Prometheus ------------------------------------------------------------------------------------

    @property
    def prom_url(self):
        return f"http://127.0.0.1:{self.prom_port}"

    def start_exporter(self):
        self.exporter = Exporter().start()
        return self.exporter

    def start_prometheus_with_history(self):
        """Backfills history_s seconds ending BACKFILL_LEAD s from now, starts Prometheus scraping the
        exporter, and returns once the history is queryable and live samples arrive after it."""
        if self.exporter is None:
            self.start_exporter()
        os.makedirs(self.tsdb, exist_ok=True)
        # E = a step boundary + 0.5 s at least BACKFILL_LEAD ahead (module docstring).
        self.backfill_end = align(time.time() + BACKFILL_LEAD) + STEP + SAMPLE_LAG
        om = os.path.join(self.tmp, "backfill.om")
        write_backfill(om, self.backfill_end - self.history_s, self.backfill_end)
        with open(os.path.join(self.tmp, "promtool.log"), "ab") as log:
            create_blocks(om, self.tsdb, log)
        os.unlink(om)
        self.prom_port = free_port()
        with open(os.path.join(self.tmp, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: {SCRAPE_INTERVAL}s
  scrape_timeout: {SCRAPE_INTERVAL}s
  evaluation_interval: 15s
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ['127.0.0.1:{self.exporter.port}']
    relabel_configs:
      # pin instance so live samples continue the backfilled series exactly
      - target_label: instance
        replacement: {INSTANCE}
""")
        self.start_prometheus()
        # History queryable: a backfilled point well inside the blocks.
        probe_t = self.backfill_end - self.history_s / 2
        wait_until(lambda: self.prom_instant(QUERY, probe_t) is not None, 30,
                   what="the backfilled series to be queryable")
        # Live samples accepted after the end of the backfill.
        wait_until(lambda: (self.prom_instant(f"timestamp({QUERY})") or 0) > self.backfill_end, 40,
                   interval=0.25, what="live scrapes after the end of the backfill")
        return self

    def start_prometheus(self):
        """(Re)starts Prometheus on self.prom_port with self.tsdb; waits for /-/ready (bounded)."""
        argv = [PROMETHEUS_BIN, f"--config.file={os.path.join(self.tmp, 'prometheus.yml')}",
                f"--storage.tsdb.path={self.tsdb}", f"--web.listen-address=127.0.0.1:{self.prom_port}",
                "--storage.tsdb.retention.time=1d", "--log.level=warn"]
        self.prometheus = Process("prometheus", argv, os.path.join(self.tmp, "prometheus.log"))
        wait_http_ok(self.prometheus, self.prom_url + "/-/ready", 60, "Prometheus /-/ready")
        return self.prometheus

    def stop_prometheus(self):
        if self.prometheus is not None:
            rc = self.prometheus.stop()
            return rc
        return None

    def prom_api(self, path, params, timeout=10):
        url = self.prom_url + path + "?" + urllib.parse.urlencode(params)
        with _opener.open(url, timeout=timeout) as r:
            return json.load(r)

    def prom_api_error(self, path, params):
        """For a request Prometheus rejects: returns its JSON body ({'status': 'error', 'error': ...})."""
        try:
            return self.prom_api(path, params)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def prom_instant(self, query, t=None):
        params = {"query": query}
        if t is not None:
            params["time"] = f"{t:.3f}"
        res = self.prom_api("/api/v1/query", params)["data"]["result"]
        if not res:
            return None
        return float(res[0]["value"][1])

    def prom_range(self, query, start, end, step=STEP):
        d = self.prom_api("/api/v1/query_range", {"query": query, "start": start, "end": end, "step": step})
        res = d["data"]["result"]
        if not res:
            return []
        return [(int(float(t)), float(v)) for t, v in res[0]["values"]]

    def check_series(self, start=None, end=None):
        """Precondition check: Prometheus returns observed_at(T) at every step-aligned T of [start, end].
        Returns a list of mismatch strings (empty when the data is exactly as the model says)."""
        end = align(time.time() - 2) if end is None else end
        start = end - 3600 if start is None else start
        got = dict(self.prom_range(QUERY, align(start), end))
        bad = []
        for T in range(align(start), end + 1, STEP):
            want = observed_at(T)
            if got.get(T) != want:
                bad.append(f"T={T}: Prometheus has {got.get(T)}, model says {want}")
        return bad

    # -- prescale -------------------------------------------------------------------------------------

    def start_prescale(self, *extra, binary=None):
        binary = binary or prescale_bin()
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"prescale binary not found or not executable: {binary} (set PRESCALE_BIN)")
        self.grpc_port, self.http_port = free_port(), free_port()
        prom_url = self.prom_url if self.prom_port else "http://127.0.0.1:9"
        argv = prescale_argv(self.grpc_port, self.http_port, prom_url, "--log-level=debug", *extra, binary=binary)
        self.prescale = Process("prescale", argv, os.path.join(self.tmp, "prescale.log"))
        wait_http_ok(self.prescale, self.http_url + "/readyz", 15, "prescale /readyz")
        return self.prescale

    @property
    def grpc_addr(self):
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def prescale_metrics(self):
        status, body, _ = http_get(self.http_url + "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(body)

    # -- teardown -------------------------------------------------------------------------------------

    def close(self):
        """Stops everything. Returns a list of problems found with prescale's own exit: a non-zero status
        after SIGTERM, or sanitizer reports in its log (tests turn these into failures)."""
        problems = []
        if self.prescale is not None:
            try:
                rc = self.prescale.stop()
                if rc != 0:
                    problems.append(f"prescale exited with {rc} after SIGTERM")
                text = log_tail(self.prescale.log_path, 100000)
                for marker in SANITIZER_MARKERS:
                    if marker in text:
                        i = text.index(marker)
                        problems.append(f"sanitizer report in prescale's log: {text[max(0, i - 200):i + 2000]}")
                m = VALGRIND_REPORT.search(text)
                if m:
                    problems.append(f"valgrind report in prescale's log: {text[m.start():m.start() + 4000]}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"stopping prescale failed: {e!r}")
        if self.prometheus is not None:
            with contextlib.suppress(Exception):
                self.prometheus.stop()
        if self.exporter is not None:
            with contextlib.suppress(Exception):
                self.exporter.stop()
            self.exporter = None
        if not self.keep and self.tmp and os.path.isdir(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems


def scaled_ref(pb2, name="web", namespace="default", **metadata):
    return pb2.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=metadata)


# The exact-answer tests pin the seasonal model (the default is auto, whose choice depends on its errors).
TEST_METADATA = {"query": QUERY, "threshold": "10", "step": "5s", "period": "3m", "lookahead": "30s",
                 "model": "seasonal"}


# ---- the module fixture of the end-to-end suites ----------------------------------------------------


def start_module_env(*prescale_args, prescale=True):
    """Prometheus with backfilled history that matches the model exactly, then (unless prescale=False:
    the module starts its own) prescale with extra flags. Skips the module when the binary is missing;
    closes what it started if a step fails. Returns (env, pb2, pb2_grpc)."""
    if not os.access(prescale_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale binary not built: {prescale_bin()} (build it or set PRESCALE_BIN)")
    pb2, pb2_grpc = grpc_modules()
    env = Env()
    try:
        env.start_prometheus_with_history()
        bad = env.check_series()
        if bad:
            raise RuntimeError("precondition: Prometheus data differs from the model: " + "; ".join(bad[:5]))
        if prescale:
            env.start_prescale(*prescale_args)
    except BaseException:
        env.close()
        raise
    return env, pb2, pb2_grpc


def start_prescale_beside(module_env, *flags, tmp_prefix="prescale-"):
    """A prescale of its own, with extra flags, on the Prometheus of module_env (start_module_env's), ready.
    Close it with its close(); it is closed here if it fails to start."""
    env = Env(tmp_prefix=tmp_prefix)
    env.prom_port = module_env.prom_port
    try:
        env.start_prescale(*flags)
    except BaseException:
        env.close()
        raise
    return env


class ScalerCase(unittest.TestCase):
    """Base of the suites that share one prescale per module: a channel to it and an ExternalScaler stub
    per test, and a test after which prescale is dead fails. The module's setUpModule sets `env` on its
    subclass."""

    env = None

    def setUp(self):
        self.channel = grpc_channel(self.env.grpc_addr)
        self.stub = grpc_modules()[1].ExternalScalerStub(self.channel)

    def tearDown(self):
        self.channel.close()
        if not self.env.prescale.alive():
            self.fail("prescale died: " + self.env.prescale.describe())


def stop_module_env(env):
    """Closes the environment; fails the module if prescale did not shut down cleanly."""
    if env is not None:
        problems = env.close()
        if problems:
            raise AssertionError("prescale at shutdown: " + "; ".join(problems))


def metadata(**kw):
    """TEST_METADATA with keys replaced; a value of None removes the key."""
    m = dict(TEST_METADATA)
    for k, v in kw.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    return m
