"""End-to-end: `prescale probe` (prescale's own gRPC client) against a running prescale with a real
Prometheus holding backfilled history, compared with what Python's grpcio client sees.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_probe.py   (PRESCALE_BIN overrides the binary)
"""

import json
import math
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ENV = None
PB2 = None
RPC_TIMEOUT = 15.0
PROBE_TIMEOUT = 30.0  # bound on one probe process (its own --timeout is 10 s per call)


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2
    ENV, PB2, _ = h.start_module_env()
    Base.env = ENV


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)


md = h.metadata


def probe_argv(addr, name, metadata, *extra, namespace="probe"):
    argv = [h.prescale_bin(), "probe", "--addr", addr, "--name", name, "--namespace", namespace]
    for k, v in metadata.items():
        argv += ["-m", f"{k}={v}"]
    return argv + list(extra)


def run_probe(argv, timeout=PROBE_TIMEOUT):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Base(h.ScalerCase):
    def ref(self, name, metadata):
        return h.scaled_ref(PB2, name=name, namespace="probe", **metadata)

    def py_value(self, ref, metric="prescale"):
        r = self.stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName=metric), timeout=RPC_TIMEOUT)
        return r.metricValues[0].metricValueFloat

    def assert_one_line_error(self, r, want_rc, pattern):
        self.assertEqual(r.returncode, want_rc, f"stdout={r.stdout!r} stderr={r.stderr!r}")
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"expected one line on stderr, got {r.stderr!r}")
        self.assertRegex(lines[0], pattern)
        return lines[0]


class TestProbeAnswers(Base):
    def probe_between_python_reads(self, name, metadata, *extra):
        """Runs the probe between two Python GetMetrics of the same target; retries (bounded) when a refresh
        fell in between. Returns (python value before, probe result, python value after)."""
        ref = self.ref(name, metadata)
        for _ in range(4):
            before = self.py_value(ref)  # also completes the first load
            r = run_probe(probe_argv(ENV.grpc_addr, name, metadata, *extra))
            after = self.py_value(ref)
            if before == after:
                break
        return before, r, after

    def test_json_matches_the_python_client(self):
        metadata = md()
        before, r, after = self.probe_between_python_reads("json", metadata, "--json")
        self.assertEqual(r.returncode, 0, f"stderr={r.stderr!r}")
        self.assertEqual(r.stderr, "")
        out = json.loads(r.stdout)  # the whole of stdout is one JSON document
        spec = self.stub.GetMetricSpec(self.ref("json", metadata), timeout=RPC_TIMEOUT).metricSpecs
        self.assertEqual(out["metricSpecs"], [{"metricName": s.metricName, "targetSize": s.targetSize,
                                               "targetSizeFloat": s.targetSizeFloat} for s in spec])
        self.assertEqual(out["metricSpecs"][0], {"metricName": "prescale", "targetSize": 10, "targetSizeFloat": 10})
        self.assertEqual(len(out["metricValues"]), 1)
        mv = out["metricValues"][0]
        self.assertEqual(mv["metricName"], "prescale")
        self.assertIn(mv["metricValueFloat"], {before, after},
                      f"probe saw {mv['metricValueFloat']}, python saw {before} before and {after} after")
        self.assertEqual(mv["metricValue"], math.ceil(mv["metricValueFloat"]))
        active = self.stub.IsActive(self.ref("json", metadata), timeout=RPC_TIMEOUT).result
        self.assertIs(out["active"], active)
        self.assertIs(out["active"], mv["metricValueFloat"] > 0)  # activationThreshold defaults to 0
        self.assertEqual((out["addr"], out["namespace"], out["name"]), (ENV.grpc_addr, "probe", "json"))

    def test_readable_output_matches_the_python_client_and_metrics(self):
        metadata = md(threshold="12.5", metricName="rps")
        ref = self.ref("human", metadata)
        self.py_value(ref, "rps")  # first load
        for _ in range(4):
            before = self.py_value(ref, "rps")
            r = run_probe(probe_argv(ENV.grpc_addr, "human", metadata))
            gauge = h.metric_value(ENV.prescale_metrics(), "prescale_target_value", namespace="probe",
                                   name="human", metric="rps")
            after = self.py_value(ref, "rps")
            if before == after:
                break
        self.assertEqual(r.returncode, 0, f"stderr={r.stderr!r}")
        self.assertIn('spec      metric "rps", target 12.5 per replica (targetSize 13, targetSizeFloat 12.5)',
                      r.stdout)
        m = re.search(r"^value     rps = (\S+) \(metricValue (\d+), metricValueFloat (\S+)\)$", r.stdout, re.M)
        self.assertIsNotNone(m, r.stdout)
        value = float(m.group(1))
        self.assertEqual(value, float(m.group(3)))
        self.assertEqual(int(m.group(2)), math.ceil(value))
        self.assertIn(value, {before, after})
        if before == after:
            self.assertEqual(value, gauge, "/metrics prescale_target_value disagrees within one refresh")
        self.assertIn(f"replicas  {math.ceil(value / 12.5)} ", r.stdout)
        self.assertRegex(r.stdout, r"(?m)^active    true$")

    def test_metric_flag_is_sent_as_the_metric_name(self):
        r = run_probe(probe_argv(ENV.grpc_addr, "flag", md(), "--metric", "other"))
        line = self.assert_one_line_error(r, 1, r"^prescale probe: GetMetrics: NOT_FOUND: ")
        self.assertIn('"other"', line)


class TestProbeWatch(Base):
    def read_line(self, proc, timeout):
        """One line of proc's stdout within timeout (None when none came). What a read brings after the
        line is kept for the next call: on a busy machine the probe's lines often arrive together."""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = getattr(proc, "unread", b"")
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    return None
                buf += chunk
        finally:
            sel.close()
        line, proc.unread = buf.split(b"\n", 1)
        return line.decode() + "\n"

    def start_watch(self, addr, name, *extra):
        proc = subprocess.Popen(probe_argv(addr, name, md(), "--watch", "--json", *extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        def stop():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()
            proc.stderr.close()

        self.addCleanup(stop)
        return proc

    def test_watch_prints_the_first_state_then_exits_0_on_sigint(self):
        self.py_value(self.ref("watch", md()))  # history loaded: the stream's first update comes at once
        proc = self.start_watch(ENV.grpc_addr, "watch")
        text = self.read_line(proc, 15)
        self.assertIsNotNone(text, "no answer from the probe within 15 s")
        first = json.loads(text)
        self.assertIn("metricSpecs", first)
        text = self.read_line(proc, 15)
        self.assertIsNotNone(text, "no StreamIsActive update within 15 s")
        update = json.loads(text)
        self.assertIs(update["active"], True)
        self.assertRegex(update["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        t = time.mktime(time.strptime(update["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        self.assertLess(abs(t - time.time()), 30)
        streams_before = h.metric_value(ENV.prescale_metrics(), "prescale_grpc_streams")
        self.assertGreaterEqual(streams_before, 1)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(10)
        self.assertEqual(rc, 0, proc.stderr.read())
        self.assertEqual(proc.stderr.read(), b"")
        # The stream was cancelled, not left open on the server.
        h.wait_until(lambda: h.metric_value(ENV.prescale_metrics(), "prescale_grpc_streams") == streams_before - 1,
                     10, what="prescale to see the stream cancelled")

    def test_watch_ends_with_status_when_the_scaler_shuts_down(self):
        """A second prescale, stopped with SIGTERM while watched: the stream ends UNAVAILABLE, exit 1."""
        gport, hport = h.free_port(), h.free_port()
        other = h.Process("prescale-2", h.prescale_argv(gport, hport, ENV.prom_url),
                          os.path.join(ENV.tmp, "prescale-2.log"))
        self.addCleanup(other.stop)
        h.wait_http_ok(other, f"http://127.0.0.1:{hport}/readyz", 15, "the second prescale")
        proc = self.start_watch(f"127.0.0.1:{gport}", "ending")
        lines = []
        for _ in range(2):  # the JSON answer, then the first update
            line = self.read_line(proc, 15)
            self.assertIsNotNone(line, f"probe printed {lines!r} only")
            lines.append(line)
        other.signal(signal.SIGTERM)
        rc = proc.wait(15)
        err = proc.stderr.read().decode()
        self.assertEqual(rc, 1, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertRegex(err, r"^prescale probe: StreamIsActive: UNAVAILABLE")


class TestProbeErrors(Base):
    def test_unreachable_address(self):
        port = h.free_port()  # nothing listens there
        r = run_probe(probe_argv(f"127.0.0.1:{port}", "web", md()))
        line = self.assert_one_line_error(r, 1, "^prescale probe: cannot connect to ")
        self.assertEqual(line, f"prescale probe: cannot connect to 127.0.0.1:{port}: connection refused")
        self.assertEqual(r.stdout, "")

    def test_rejected_metadata_names_key_and_value(self):
        r = run_probe(probe_argv(ENV.grpc_addr, "bad", md(threshold="abc")))
        line = self.assert_one_line_error(r, 1, "^prescale probe: GetMetricSpec: INVALID_ARGUMENT: ")
        self.assertEqual(line, 'prescale probe: GetMetricSpec: INVALID_ARGUMENT: threshold: "abc" is not a number > 0')
        self.assertEqual(r.stdout, "")

    def test_deadline(self):
        """serverAddress points at a listener that never answers: the first load waits, the probe's 500 ms
        deadline ends GetMetrics with DEADLINE_EXCEEDED well before prescale's 5 s first-load timeout."""
        import socket
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        self.addCleanup(hole.close)
        metadata = md(serverAddress=f"http://127.0.0.1:{hole.getsockname()[1]}")
        t0 = time.monotonic()
        r = run_probe(probe_argv(ENV.grpc_addr, "deadline", metadata, "--timeout", "500ms"))
        took = time.monotonic() - t0
        self.assert_one_line_error(r, 1, "^prescale probe: GetMetrics: DEADLINE_EXCEEDED")
        self.assertLess(took, 4.0)

    def test_usage(self):
        r = run_probe([h.prescale_bin(), "probe", "--name", "x"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--addr", r.stderr)
        r = run_probe([h.prescale_bin(), "probe", "--addr", ENV.grpc_addr, "--name", "x", "-m", "novalue"])
        self.assertEqual(r.returncode, 2)
        self.assertIn('"novalue"', r.stderr)
        r = run_probe([h.prescale_bin(), "probe", "--addr", ENV.grpc_addr, "--name", "x", "--timeout", "soon"])
        self.assertEqual(r.returncode, 2)
        self.assertIn('"soon"', r.stderr)
        r = run_probe([h.prescale_bin(), "probe", "--help"])
        self.assertEqual(r.returncode, 0)
        for flag in ("--addr", "--name", "--namespace", "-m, --metadata", "--metric", "--timeout", "--watch",
                     "--json", "Exit status"):
            self.assertIn(flag, r.stdout)


if __name__ == "__main__":
    unittest.main()
