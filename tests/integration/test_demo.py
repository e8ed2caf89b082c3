"""`make demo` end to end: scripts/demo.py with a short --duration against the real binaries.

Runs the demo once (prescale-demo-app, the load generator, Prometheus with backfilled history, prescale,
the KEDA-like client) and checks what a user sees: exit status 0, the table header and one row per
interval with real traffic on the low plateau, prescale ahead of the reactive column once the history
shows the coming ramp, a well-formed SVG chart with every series, the load generator's summary, and that
nothing it started survives it.

Binaries: PRESCALE_BIN (default build/src/prescale) and prescale-demo-app next to it
(<dir of PRESCALE_BIN>/demo_app/prescale-demo-app), as `make demo` finds them.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

DEMO = os.path.join(h.REPO_ROOT, "scripts", "demo.py")
DURATION_S = 40
INTERVAL_S = 5
# Phase 170 of the 180 s cycle at the start: the low plateau for the whole run, and prescale's
# history shows the ramp up (phase 30) coming within its 30 s lookahead after about 10 s.
START_PHASE = 170
RUN_TIMEOUT_S = DURATION_S + 120  # startup (backfill, Prometheus) and shutdown are ~15 s together
SVG_NS = "{http://www.w3.org/2000/svg}"
SERIES = ("offered", "observed", "prescale", "reactive", "proactive")
ROW_RE = re.compile(r"^(\d\d:\d\d:\d\d)  (low|ramp up|high|ramp down)\s+(\d+)\s+([\d.]+|-)\s+([\d.]+)\s+"
                    r"(True|False)\s+(\d+) [#.]{12}\s+(\d+) [#.]{12}(  <<)?$")
LOW_RATE = 50.0  # 10 VUs at one request per 200 ms


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


class DemoTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        prescale = h.prescale_bin()
        app = os.path.join(os.path.dirname(prescale), "demo_app", "prescale-demo-app")
        for path in (prescale, app):
            if not os.access(path, os.X_OK):
                raise FileNotFoundError(f"binary not found or not executable: {path} (build first)")
        cls.out_dir = tempfile.mkdtemp(prefix="prescale-demo-test-")
        argv = [sys.executable, DEMO, "--prescale", prescale, "--demo-app", app, f"--duration={DURATION_S}",
                f"--interval={INTERVAL_S}", f"--start-phase={START_PHASE}", "--out-dir", cls.out_dir]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        try:
            cls.out, cls.err = p.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)  # the demo cleans up on SIGTERM
            try:
                cls.out, cls.err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                cls.out, cls.err = p.communicate()
            cls.out += f"\n[test: demo timed out after {RUN_TIMEOUT_S}s]"
        cls.rc = p.returncode
        cls.lines = cls.out.splitlines()
        cls.rows = [m for m in (ROW_RE.match(ln) for ln in cls.lines) if m]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out_dir, ignore_errors=True)

    def context(self):
        return f"\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"

    def printed(self, prefix):
        """Value after `demo: <prefix>` in the output, or None."""
        for ln in self.lines:
            if ln.startswith("demo: " + prefix):
                return ln[len("demo: " + prefix):].strip()
        return None

    def test_exits_zero(self):
        self.assertEqual(self.rc, 0, self.context())
        self.assertIn(f"demo: done after {DURATION_S}s", self.lines, self.context())

    def test_table_header_and_rows(self):
        header = [ln for ln in self.lines if ln.split()[:3] == ["time", "phase", "vus"]]
        self.assertEqual(len(header), 1, self.context())
        for col in ("observed", "prescale", "active", "reactive", "proactive"):
            self.assertIn(col, header[0])
        # One row every INTERVAL_S over DURATION_S (the first at 0 s), all of them complete.
        self.assertGreaterEqual(len(self.rows), DURATION_S // INTERVAL_S - 1, self.context())
        self.assertLessEqual(len(self.rows), DURATION_S // INTERVAL_S + 1, self.context())
        self.assertFalse([ln for ln in self.lines if "gRPC error" in ln or re.match(r"^\d\d:\d\d:\d\d .*error", ln)],
                         self.context())

    def test_real_traffic_observed_on_the_low_plateau(self):
        low = [m for m in self.rows if m.group(2) == "low"]
        self.assertGreaterEqual(len(low), 5, self.context())
        for m in low:
            self.assertEqual(int(m.group(3)), 10, m.group(0))
            self.assertNotEqual(m.group(4), "-", m.group(0))
            # Prometheus's rate of the app's counter: 10 VUs x 5 req/s, continuous across the backfill seam.
            self.assertAlmostEqual(float(m.group(4)), LOW_RATE, delta=0.2 * LOW_RATE, msg=m.group(0))

    def seconds_since_live_start(self, hhmmss):
        start = self.printed("Prometheus on")
        m = re.search(r"live load starts at (\d\d):(\d\d):(\d\d)$", start or "")
        self.assertIsNotNone(m, self.context())
        e = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
        hh, mm, ss = (int(x) for x in hhmmss.split(":"))
        return (hh * 3600 + mm * 60 + ss - e) % 86400

    def test_prescale_ahead_of_reactive_before_the_ramp(self):
        # Live load starts at phase 170. The ramp up (phase 30) enters prescale's 30 s lookahead at phase
        # 180 and shows in rate() a few seconds later, so prescale must match the reactive column for the
        # first rows (phase < 176) and run more replicas than it from phase 190 on while the load is still
        # low. History out of phase with the live cycle, or prescale not predicting, fails one of the two.
        late = 0
        for m in self.rows:
            dt = self.seconds_since_live_start(m.group(1))
            reactive, proactive = int(m.group(7)), int(m.group(8))
            self.assertEqual(m.group(6), "True" if float(m.group(5)) > 100 else "False", m.group(0))
            if dt <= 6:
                self.assertEqual(proactive, reactive, f"prescale ahead too early: {m.group(0)}" + self.context())
                self.assertIsNone(m.group(9), m.group(0))
            elif dt >= 21 and m.group(2) == "low":
                late += 1
                self.assertGreater(proactive, reactive, f"prescale not ahead: {m.group(0)}" + self.context())
                self.assertEqual(m.group(9), "  <<", m.group(0))
        self.assertGreaterEqual(late, 2, self.context())

    def test_svg_chart(self):
        path = self.printed("chart:")
        self.assertIsNotNone(path, self.context())
        self.assertTrue(os.path.isabs(path) and path.startswith(self.out_dir) and path.endswith(".svg"), path)
        root = ET.parse(path).getroot()
        self.assertEqual(root.tag, SVG_NS + "svg")
        paths = {e.get("id"): e for e in root.iter(SVG_NS + "path") if e.get("class") == "series"}
        self.assertEqual(set(paths), set(SERIES))
        for sid, e in paths.items():
            # One sample per second for DURATION_S seconds.
            self.assertGreaterEqual(int(e.get("data-points")), DURATION_S - 5, sid)
            self.assertTrue(e.get("d").startswith("M"), sid)
            self.assertIn(e.get("data-axis"), ("left", "right"))
        self.assertEqual(paths["reactive"].get("data-axis"), "right")
        self.assertEqual(paths["observed"].get("data-axis"), "left")
        csv_path = self.printed("data:")
        self.assertIsNotNone(csv_path)
        with open(csv_path) as f:
            rows = f.read().splitlines()
        self.assertTrue(rows[0].startswith("unix_time,seconds,phase,vus,offered,observed,prescale"), rows[0])
        self.assertGreaterEqual(len(rows) - 1, DURATION_S - 5)

    def test_load_generator_summary(self):
        line = self.printed("load:")
        self.assertIsNotNone(line, self.context())
        m = re.match(r"(\d+) requests in (\d+) s, ([\d.]+) req/s average, .* (\d+) errors;", line)
        self.assertIsNotNone(m, line)
        self.assertEqual(int(m.group(4)), 0, line)
        self.assertAlmostEqual(float(m.group(3)), LOW_RATE, delta=0.2 * LOW_RATE, msg=line)

    def test_nothing_left_behind(self):
        pids = {}
        for ln in self.lines:
            m = re.match(r"demo: started (\S+), pid (\d+)$", ln)
            if m:
                pids[m.group(1)] = int(m.group(2))
        self.assertEqual(set(pids), {"prescale-demo-app", "loadgen", "prometheus", "prescale"}, self.context())
        for name, pid in pids.items():
            cmd = proc_cmdline(pid)
            # A reused pid running something else is not ours.
            self.assertFalse(cmd is not None and (name in cmd or "loadgen.py" in cmd),
                             f"{name} (pid {pid}) still running: {cmd}")
        tmp = self.printed("removed the temp files in")
        self.assertIsNotNone(tmp, self.context())
        self.assertFalse(os.path.exists(tmp), tmp)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                cmd = proc_cmdline(entry)
                self.assertFalse(cmd and tmp in cmd, f"pid {entry} still uses {tmp}: {cmd}")


if __name__ == "__main__":
    unittest.main()
