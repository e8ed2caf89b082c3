"""End-to-end: grpcblast, the bench's load client (tests/bench/grpcblast.c), against a real prescale and a real
Prometheus: that it counts an answer as OK only when it is the right one, so that a grpc_bench figure taken
with it is of right answers.

- N requests (-n) over a few connections: exactly N answers OK, each with the exact bytes of prescale's
  GetMetrics answer (as prescale encodes it, read by a real grpcio call), and prescale counted exactly N
  GetMetrics calls OK;
- the same with one byte of the expected answer changed: grpcblast exits non-zero, with every answer failed
  on its DATA bytes (prescale answered them all OK);
- a request prescale refuses (no query in the metadata): every answer failed on its grpc-status, not OK;
- stream ids used up every 20 requests (-S 41): each connection is drained, closed with GOAWAY and opened
  again, and every answer is still right (prescale counts the connections);
- prescale's --max-connection-age: its GOAWAY tells grpcblast to open no more streams there; it finishes the
  ones in flight and reconnects, with no answer lost.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_grpcblast.py   (PRESCALE_BIN overrides the binary;
grpcblast is BUILD/tests/bench/grpcblast of the same build, or GRPCBLAST_BIN)
"""

import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ENV = None
PB2 = None
MD = {"query": "vector(100)", "threshold": "10", "step": "5s", "period": "3m", "lookahead": "30s"}
PATH = "/externalscaler.ExternalScaler/GetMetrics"
HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
RUN_TIMEOUT = 120  # seconds, generous for a busy machine; each run takes well under one on an idle one


def grpcblast_bin():
    build = os.path.dirname(os.path.dirname(os.path.abspath(h.prescale_bin())))
    return os.environ.get("GRPCBLAST_BIN", os.path.join(build, "tests", "bench", "grpcblast"))


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2
    if not os.access(h.prescale_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()}")
    PB2, _ = h.grpc_modules()
    ENV = h.Env(tmp_prefix="prescale-blast-")
    try:
        with open(os.path.join(ENV.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        ENV.prom_port = h.free_port()
        ENV.start_prometheus()
        ENV.start_prescale()
    except BaseException:
        ENV.close()
        raise


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)


def raw_get_metrics(addr, req):
    """A real grpcio call; the answer's message as prescale encoded it."""
    with h.grpc_channel(addr) as ch:
        call = ch.unary_unary(PATH, request_serializer=lambda m: m.SerializeToString(), response_deserializer=bytes)
        return call(req, timeout=30)


def framed(msg):
    """A gRPC message with its 5-byte prefix (not compressed, the length big-endian)."""
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


class Grpcblast(unittest.TestCase):
    def setUp(self):
        self.bin = grpcblast_bin()
        self.assertTrue(os.access(self.bin, os.X_OK), f"grpcblast is not built: {self.bin}")
        self.tmp = tempfile.mkdtemp(prefix="blast-", dir=ENV.tmp)

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def request(self, **md):
        return PB2.GetMetricsRequest(scaledObjectRef=h.scaled_ref(PB2, **md), metricName="prescale")

    def counts(self, env, family="prescale_grpc_requests_total", **labels):
        v = h.metric_value(env.prescale_metrics(), family, **labels)
        return int(v or 0)

    def blast(self, env, reqfile, expected, *args):
        """Runs grpcblast; returns (exit status, its fields, its stderr)."""
        p = subprocess.run([self.bin, *args, "-g", *HEADERS, "-d", reqfile, "-e", expected,
                            f"http://{env.grpc_addr}{PATH}"], capture_output=True, text=True, timeout=RUN_TIMEOUT)
        m = re.search(r"^grpcblast: (.*)$", p.stdout, re.M)
        self.assertIsNotNone(m, f"no result line: {p.stdout!r} {p.stderr!r}")
        return p.returncode, {k: float(v) for k, v in (kv.split("=", 1) for kv in m.group(1).split())}, p.stderr

    def warm(self, env):
        """The target loaded (the first call reads Prometheus); the request and its exact framed answer."""
        req = self.request(**MD)
        answer = raw_get_metrics(env.grpc_addr, req)
        self.assertGreater(len(answer), 0)
        return self.write("req.bin", framed(req.SerializeToString())), framed(answer)

    def test_every_answer_right_and_counted(self):
        reqfile, answer = self.warm(ENV)
        ok0 = self.counts(ENV, method="GetMetrics", code="OK")
        rc, f, err = self.blast(ENV, reqfile, self.write("answer.bin", answer), "-c", "3", "-m", "8", "-n", "3000")
        self.assertEqual(rc, 0, err)
        self.assertEqual((f["ok"], f["total_ok"], f["failed"], f["conn_errors"]), (3000, 3000, 0, 0))
        self.assertEqual(self.counts(ENV, method="GetMetrics", code="OK") - ok0, 3000)
        self.assertGreater(f["p99_ms"], 0)
        self.assertGreaterEqual(f["p99_ms"], f["p50_ms"])

    def test_a_wrong_byte_fails_every_answer(self):
        reqfile, answer = self.warm(ENV)
        wrong = answer[:-1] + bytes([answer[-1] ^ 0x01])
        ok0 = self.counts(ENV, method="GetMetrics", code="OK")
        rc, f, err = self.blast(ENV, reqfile, self.write("wrong.bin", wrong), "-c", "2", "-m", "4", "-n", "400")
        self.assertEqual(rc, 1)
        self.assertEqual((f["ok"], f["failed"]), (0, 400))
        self.assertIn("DATA not the expected bytes", err)
        # prescale answered each one, right: the difference is the client's check alone
        self.assertEqual(self.counts(ENV, method="GetMetrics", code="OK") - ok0, 400)
        # one byte short is as wrong as one byte changed
        rc, f, err = self.blast(ENV, reqfile, self.write("short.bin", answer[:-1]), "-n", "10")
        self.assertEqual((rc, f["ok"], f["failed"]), (1, 0, 10), f"{f} {err}")
        self.assertIn("DATA not the expected bytes", err)

    def test_a_grpc_error_is_not_ok(self):
        md = dict(MD)
        del md["query"]
        req = self.request(**md)
        reqfile = self.write("bad_req.bin", framed(req.SerializeToString()))
        bad0 = self.counts(ENV, method="GetMetrics", code="INVALID_ARGUMENT")
        # No DATA expected (an error answer has none): only its grpc-status can fail it.
        rc, f, err = self.blast(ENV, reqfile, self.write("empty.bin", b""), "-c", "2", "-m", "4", "-n", "200")
        self.assertEqual((rc, f["ok"], f["failed"]), (1, 0, 200))
        self.assertIn("no grpc-status 0", err)
        self.assertEqual(self.counts(ENV, method="GetMetrics", code="INVALID_ARGUMENT") - bad0, 200)

    def test_stream_ids_used_up_reopen_the_connection(self):
        reqfile, answer = self.warm(ENV)
        opened0 = self.counts(ENV, "prescale_grpc_connections_opened_total")
        # -S 41: ids 1..41, 21 requests a connection at most, then it is drained and opened again
        rc, f, err = self.blast(ENV, reqfile, self.write("answer.bin", answer), "-c", "2", "-m", "4", "-n", "600",
                                "-S", "41")
        self.assertEqual(rc, 0, err)
        self.assertEqual((f["ok"], f["failed"]), (600, 0))
        self.assertGreaterEqual(f["reconnects"], 600 / 21 - 2)
        # each reopening was a real new connection (prescale may accept the last ones a moment later)
        h.wait_until(lambda: self.counts(ENV, "prescale_grpc_connections_opened_total") - opened0
                     == 2 + f["reconnects"], 30, what="prescale to count every connection grpcblast opened")

    def test_goaway_from_prescale_loses_nothing(self):
        env = h.start_prescale_beside(ENV, "--max-connection-age=300ms", "--max-connection-age-grace=10s",
                                      tmp_prefix="prescale-blast-age-")
        try:
            reqfile, answer = self.warm(env)
            # Long enough for several ages of the connections (ends by its own clock, not asserted on).
            rc, f, err = self.blast(env, reqfile, self.write("answer.bin", answer), "-c", "2", "-m", "8", "-D", "2",
                                    "-W", "0")
            aged = self.counts(env, "prescale_grpc_connections_aged_total")
        finally:
            problems = env.close()
        self.assertEqual(problems, [])
        self.assertEqual(rc, 0, err)
        self.assertEqual((f["failed"], f["conn_errors"]), (0, 0))
        self.assertGreater(f["ok"], 0)
        # every connection prescale aged was given up by grpcblast and opened again (the last ones may have
        # been aged after the run stopped sending)
        self.assertGreaterEqual(aged, 1)
        self.assertGreaterEqual(f["reconnects"], 1)
        self.assertLessEqual(f["reconnects"], aged)


if __name__ == "__main__":
    unittest.main()
