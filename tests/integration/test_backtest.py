"""End-to-end: `prescale backtest` on small synthetic traces this test writes itself.

Checks the text, JSON, CSV and SVG outputs (the SVG parsed with xml.etree), the cost curve of --sweep, the errors for bad files
(line number and content), non-fixed intervals and short traces, the exit codes, and that a trace as
long as the WorldCup one (125k rows) replays in seconds.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_backtest.py
"""

import csv
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SVG_NS = "{http://www.w3.org/2000/svg}"


def setUpModule():  # noqa: N802
    if not os.access(h.prescale_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")


def periodic(rows, step=60, period_rows=60, t0=1_700_000_000):
    """A daily-like shape: a base, a smooth bump once per period and a short burst, as (t, requests)."""
    out = []
    for i in range(rows):
        phase = (i % period_rows) / period_rows
        rate = 20 + 60 * max(0.0, math.sin(2 * math.pi * phase)) + (40 if (i % period_rows) == period_rows // 3 else 0)
        out.append((t0 + i * step, round(rate * step)))
    return out


class Backtest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="prescale-backtest-")
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def write_trace(self, rows, name="trace.csv", header="timestamp_seconds,value"):
        p = self.path(name)
        with open(p, "w") as f:
            if header is not None:
                f.write(header + "\n")
            for t, v in rows:
                f.write(f"{t},{v}\n")
        return p

    def run_bt(self, *args, timeout=120):
        return subprocess.run([h.prescale_bin(), "backtest", *args], capture_output=True, text=True, timeout=timeout)

    # ---- outputs --------------------------------------------------------------------------------------

    def test_text_output(self):
        p = self.write_trace(periodic(600))
        r = self.run_bt(p)
        self.assertEqual(r.returncode, 0, r.stderr)
        for word in ("reactive", "seed", "auto", "MAE", "RMSE", "MASE", "under pod-s", "pod-s", "events"):
            self.assertIn(word, r.stdout)
        self.assertIn("600 rows at 1m", r.stdout)

    def test_json_fields(self):
        rows = periodic(600)
        p = self.write_trace(rows)
        r = self.run_bt(p, "--json", "--lookahead", "3m", "--startup=30s", "--threshold", "5", "--period", "1h")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["rows"], 600)
        self.assertEqual(doc["interval_seconds"], 60)
        self.assertEqual(doc["lookahead_seconds"], 180)
        self.assertEqual(doc["horizon_rows"], 3)
        self.assertEqual(doc["startup_seconds"], 30)
        self.assertEqual(doc["threshold"], 5)
        self.assertEqual(doc["threshold_source"], "flag")
        self.assertEqual(doc["model"], "auto")
        self.assertEqual(doc["period"], "1h")
        self.assertEqual(doc["period_seconds"], 3600)
        self.assertEqual(set(doc["results"]), {"reactive", "seed", "model"})
        self.assertEqual(doc["results"]["model"]["name"], "auto")
        for who, res in doc["results"].items():
            for key in ("mae", "rmse", "mase", "under_provisioned_pod_seconds", "under_provisioned_fraction",
                        "pod_seconds", "scaling_events", "scored"):
                self.assertIn(key, res, who)
            self.assertEqual(res["scored"], 600 - 3, who)
            self.assertGreaterEqual(res["under_provisioned_pod_seconds"], 0, who)
            self.assertTrue(0 <= res["under_provisioned_fraction"] <= 1, who)
            # at least one pod for the whole replay
            self.assertGreaterEqual(res["pod_seconds"], 600 * 60, who)
        self.assertAlmostEqual(doc["results"]["reactive"]["mase"], 1.0)
        # With the period given, the seed sees each bump one period ahead.
        self.assertEqual(doc["results"]["seed"]["period_seconds"], 3600)
        self.assertLess(doc["results"]["seed"]["under_provisioned_pod_seconds"],
                        doc["results"]["reactive"]["under_provisioned_pod_seconds"])
        self.assertAlmostEqual(sum(doc["results"]["model"]["answered"].values()), 1.0, places=6)

    def test_default_threshold_is_median_rate_over_5(self):
        rows = [(i * 10, 50 if i % 2 else 100) for i in range(101)]  # rates 5 and 10; median 10
        p = self.write_trace(rows)
        r = self.run_bt(p, "--json", "--lookahead", "30s")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertAlmostEqual(doc["threshold"], 2.0)
        self.assertEqual(doc["period"], "auto")
        self.assertIsNone(doc["period_seconds"])
        self.assertEqual(doc["threshold_source"], "median rate / 5")

    def test_csv_output(self):
        rows = periodic(300)
        p = self.write_trace(rows)
        out = self.path("rows.csv")
        r = self.run_bt(p, "--csv", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            data = list(csv.reader(f))
        self.assertEqual(data[0], ["timestamp", "demand", "forecast", "value", "replicas_reactive",
                                   "replicas_prescale"])
        self.assertEqual(len(data) - 1, 300)
        for (t, v), row in zip(rows, data[1:]):
            self.assertEqual(int(row[0]), t)
            self.assertAlmostEqual(float(row[1]), v / 60, places=6)
            # the engine keeps samples as float: equal to the rate within float precision
            self.assertGreaterEqual(float(row[3]), float(row[1]) * (1 - 1e-6), "value is floored at the current rate")
            self.assertGreaterEqual(int(row[4]), 1)
            self.assertGreaterEqual(int(row[5]), 1)

    def test_svg_is_well_formed_and_downsampled(self):
        rows = [(i, 3 + (i // 100) % 5) for i in range(6000)]  # 1 s rows: more than the chart keeps
        p = self.write_trace(rows)
        out = self.path("chart.svg")
        r = self.run_bt(p, "--svg", out, "--lookahead", "30s")
        self.assertEqual(r.returncode, 0, r.stderr)
        root = ET.parse(out).getroot()
        self.assertEqual(root.tag, SVG_NS + "svg")
        lines = root.findall(f".//{SVG_NS}polyline")
        self.assertEqual(len(lines), 4, "demand, forecast, two ready capacities")
        for pl in lines:
            pts = pl.get("points").split()
            self.assertGreater(len(pts), 100)
            self.assertLessEqual(len(pts), 2000)
            for pt in pts:
                x, y = (float(c) for c in pt.split(","))
                self.assertTrue(0 <= x <= float(root.get("width")) and 0 <= y <= float(root.get("height")), pt)
        texts = "".join(t.text or "" for t in root.iter(SVG_NS + "text"))
        self.assertIn("demand", texts)
        self.assertIn("ready capacity, reactive", texts)

    def test_svg_escapes_the_trace_name(self):
        p = self.write_trace(periodic(100), name="a&b<c>.csv")
        out = self.path("chart.svg")
        r = self.run_bt(p, "--svg", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        root = ET.parse(out).getroot()
        self.assertIn("a&b<c>.csv", "".join(t.text or "" for t in root.iter(SVG_NS + "text")))

    # ---- --sweep --------------------------------------------------------------------------------------

    SWEEP_QUANTILES = [0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99]
    SWEEP_COVERAGES = [0.8, 0.82, 0.9, 0.95, 0.99]

    @staticmethod
    def curve_at(points, pods):
        """The curve read at `pods` as the backtest reads it: linear between the points around, by pod-s."""
        pts = sorted((p["pod_seconds"], p["under_provisioned_pod_seconds"]) for p in points)
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x0 <= pods <= x1:
                return y0 + (pods - x0) / (x1 - x0) * (y1 - y0) if x1 > x0 else y0
        return None

    def test_sweep_json(self):
        p = self.write_trace(periodic(2000))
        r = self.run_bt(p, "--sweep", "--json", "--lookahead", "2m", "--startup", "60s", "--period", "1h")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(set(doc["results"]), {"reactive", "seed", "model"}, "the usual results stay")
        sw = doc["sweep"]
        every = sw["points"]
        pts = [pt for pt in every if pt["setting"] == "quantile"]
        cov = [pt for pt in every if pt["setting"] == "target_coverage"]
        self.assertEqual(every, pts + cov, "the quantiles, then the target coverages")
        self.assertEqual([pt["quantile"] for pt in pts], self.SWEEP_QUANTILES)
        self.assertEqual([pt["target_coverage"] for pt in cov], self.SWEEP_COVERAGES)
        for pt in every:
            self.assertEqual(set(pt), {"setting", pt["setting"], "pod_seconds", "under_provisioned_pod_seconds",
                                       "under_provisioned_fraction", "scaling_events", "coverage"})
            self.assertGreaterEqual(pt["pod_seconds"], 2000 * 60)
            self.assertTrue(0 <= pt["coverage"] <= 1)
        # The point of the default target coverage (0.82) is the model's own replay.
        c82 = cov[self.SWEEP_COVERAGES.index(0.82)]
        self.assertEqual(doc["target_coverage"], 0.82)
        for key in ("pod_seconds", "under_provisioned_pod_seconds", "scaling_events", "coverage"):
            self.assertEqual(c82[key], doc["results"]["model"][key], key)
        # More margin costs pods and buys capacity, end to end.
        self.assertGreater(pts[-1]["pod_seconds"], pts[0]["pod_seconds"])
        self.assertLess(pts[-1]["under_provisioned_pod_seconds"], pts[0]["under_provisioned_pod_seconds"])
        seed, rea = doc["results"]["seed"], doc["results"]["reactive"]
        at_s, at_r = sw["at_seed_pod_seconds"], sw["at_reactive_pod_seconds_plus_10pct"]
        self.assertEqual(at_s["pod_seconds"], seed["pod_seconds"])
        self.assertAlmostEqual(at_r["pod_seconds"], 1.1 * rea["pod_seconds"], delta=1e-6 * rea["pod_seconds"])
        for at, base in ((at_s, seed), (at_r, rea)):
            want = self.curve_at(every, at["pod_seconds"])
            if want is None:
                self.assertIsNone(at["under_provisioned_pod_seconds"])
                self.assertIsNone(at["ratio"])
                most = max(every, key=lambda pt: pt["pod_seconds"])
                if at["pod_seconds"] > most["pod_seconds"]:
                    self.assertEqual(at["off_curve"], "more_pods")
                    self.assertEqual(at["at_most_under_provisioned_pod_seconds"], most["under_provisioned_pod_seconds"])
                else:
                    self.assertEqual(at["off_curve"], "fewer_pods")
                    self.assertIsNone(at["at_most_under_provisioned_pod_seconds"])
            else:
                self.assertIsNone(at["off_curve"])
                self.assertAlmostEqual(at["under_provisioned_pod_seconds"], want, delta=1e-6 * max(want, 1))
                self.assertAlmostEqual(at["ratio"], want / base["under_provisioned_pod_seconds"], places=6)

    def test_target_coverage(self):
        """--target-coverage: the report and --json show the realised coverage, whole and day by day."""
        # A forecast of a noiseless trace is exact and covers every window whatever the margin: noise.
        rnd = random.Random(7)
        p = self.write_trace([(t, round(v * (0.7 + 0.6 * rnd.random()))) for t, v in periodic(3 * 1440 + 100)])
        r = self.run_bt(p, "--json", "--lookahead", "2m", "--target-coverage", "0.9", "--period", "1h")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["target_coverage"], 0.9)
        self.assertEqual(doc["quantile"], 0)
        c = doc["coverage"]
        self.assertEqual(c["target"], 0.9)
        self.assertEqual(c["realised"], doc["results"]["model"]["coverage"])
        self.assertLess(abs(c["realised"] - 0.9), 0.02, c)
        self.assertEqual([d["day"] for d in c["days"]], [1, 2, 3, 4])
        self.assertEqual(sum(d["windows"] for d in c["days"]), 3 * 1440 + 100 - 2)
        self.assertEqual(c["days"][1]["start"] - c["days"][0]["start"], 86400)
        full = [d for d in c["days"] if d["windows"] >= 720]
        self.assertEqual(c["worst_day_coverage"], min(d["coverage"] for d in full))
        self.assertEqual(c["best_day_coverage"], max(d["coverage"] for d in full))
        for who in ("reactive", "seed"):
            self.assertTrue(0 <= doc["results"][who]["coverage"] <= 1)
        r = self.run_bt(p, "--lookahead", "2m", "--target-coverage", "0.9", "--period", "1h")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("target coverage 0.9", r.stdout)
        self.assertRegex(r.stdout, r"coverage  the answer covered its window's peak in \d+\.\d\d% of the windows "
                                   r"\(target 90%\)")
        self.assertRegex(r.stdout, r"by day of the trace \(4\): worst \d+\.\d\d% \(day \d\)")
        r = self.run_bt(p, "--target-coverage", "0.9", "--quantile", "0.8")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--quantile: \"0.8\" cannot be set with targetCoverage", r.stderr)

    def test_sweep_adds_the_flags_quantile(self):
        p = self.write_trace(periodic(300))
        r = self.run_bt(p, "--sweep", "--json", "--quantile", "0.75")
        self.assertEqual(r.returncode, 0, r.stderr)
        qs = [pt["quantile"] for pt in json.loads(r.stdout)["sweep"]["points"] if pt["setting"] == "quantile"]
        self.assertEqual(qs, sorted(self.SWEEP_QUANTILES + [0.75]))

    def test_sweep_text_csv_and_svg(self):
        p = self.write_trace(periodic(1500), name="we<b&b>.csv")
        csv_out, svg_out = self.path("curve.csv"), self.path("curve.svg")
        r = self.run_bt(p, "--sweep", "--csv", csv_out, "--svg", svg_out, "--period", "1h")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cost curve", r.stdout)
        for q in self.SWEEP_QUANTILES:
            self.assertIn(f"quantile {q:g} ", r.stdout)
        self.assertIn("at seed's pod-seconds", r.stdout)
        self.assertIn("at reactive's pod-seconds + 10%", r.stdout)
        with open(csv_out) as f:
            data = list(csv.reader(f))
        self.assertEqual(data[0], ["approach", "quantile", "pod_seconds", "under_provisioned_pod_seconds",
                                   "under_provisioned_fraction", "scaling_events", "target_coverage", "coverage"])
        nq, nc = len(self.SWEEP_QUANTILES), len(self.SWEEP_COVERAGES)
        self.assertEqual([row[0] for row in data[1:]], ["auto"] * (nq + nc) + ["reactive", "seed"])
        self.assertEqual([float(row[1]) for row in data[1:nq + 1]], self.SWEEP_QUANTILES)
        self.assertEqual([float(row[6]) for row in data[nq + 1:nq + nc + 1]], self.SWEEP_COVERAGES)
        self.assertEqual([row[1] for row in data[nq + 1:]], [""] * (nc + 2))
        for row in data[1:]:
            self.assertTrue(0 <= float(row[7]) <= 1, row)
        for q in self.SWEEP_COVERAGES:
            self.assertIn(f"coverage {q:g} ", r.stdout)
        root = ET.parse(svg_out).getroot()
        self.assertEqual(root.tag, SVG_NS + "svg")
        lines = root.findall(f".//{SVG_NS}polyline")
        self.assertEqual(len(lines), 1, "the curve")
        pts = lines[0].get("points").split()
        self.assertEqual(len(pts), nq + nc, "every setting, joined by pod-seconds")
        w, hgt = float(root.get("width")), float(root.get("height"))
        xs = []
        for pt in pts:
            x, y = (float(c) for c in pt.split(","))
            self.assertTrue(0 <= x <= w and 0 <= y <= hgt, pt)
            xs.append(x)
        texts = [t.text or "" for t in root.iter(SVG_NS + "text")]
        joined = "\n".join(texts)
        for word in ("we<b&b>.csv", "seed", "reactive", "c0.82 (--target-coverage)", "c: target coverage",
                     "pod-seconds paid", "under-provisioned pod-seconds",
                     "the curve at seed's pod-seconds"):
            self.assertIn(word, joined)
        # the seed and reactive marks are drawn (a square and a diamond)
        self.assertGreaterEqual(len(root.findall(f".//{SVG_NS}rect")), 3)
        self.assertGreaterEqual(len(root.findall(f".//{SVG_NS}polygon")), 1)

    def test_sweep_output_errors(self):
        p = self.write_trace(periodic(100))
        r = self.run_bt(p, "--sweep", "--svg", "/nonexistent/dir/c.svg")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--svg", r.stderr)

    def test_sweep_of_a_long_trace_takes_seconds(self):
        p = self.write_trace(periodic(125_000, period_rows=1440))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = self.run_bt(p, "--sweep", "--json", timeout=300)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        took = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(json.loads(r.stdout)["sweep"]["points"]), 9 + 5, "9 quantiles, 5 target coverages")
        limit = 120 if "asan" in h.prescale_bin() else 30
        self.assertLess(took, limit, f"a sweep over 125k rows took {took:.1f} s of CPU")

    # ---- errors ---------------------------------------------------------------------------------------

    def test_bad_line_names_line_and_content(self):
        p = self.path("bad.csv")
        with open(p, "w") as f:
            f.write("timestamp_seconds,value\n0,1\n60,oops\n120,3\n")
        r = self.run_bt(p)
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 3", r.stderr)
        self.assertIn('"60,oops"', r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)

    def test_non_fixed_interval(self):
        rows = periodic(50)
        del rows[20]
        r = self.run_bt(self.write_trace(rows))
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 22", r.stderr)
        self.assertIn("interval is 60.000 s", r.stderr)

    def test_too_short(self):
        r = self.run_bt(self.write_trace(periodic(5)))
        self.assertEqual(r.returncode, 1)
        self.assertIn("5 rows", r.stderr)
        r = self.run_bt(self.write_trace(periodic(1)))
        self.assertEqual(r.returncode, 1)
        self.assertIn("at least 2", r.stderr)

    def test_missing_file(self):
        r = self.run_bt(self.path("nope.csv"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("nope.csv", r.stderr)

    def test_usage_errors(self):
        p = self.write_trace(periodic(100))
        for args in (["--lookahead", "soon"], ["--period", "90s"], ["--model", "x"], ["--nope"], ["--headroom", "-1"],
                     ["--threshold", "0"], [p + ".other"]):
            r = self.run_bt(p, *args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn("prescale backtest:", r.stderr)
        r = subprocess.run([h.prescale_bin(), "backtest"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)

    def test_help(self):
        r = self.run_bt("--help")
        self.assertEqual(r.returncode, 0)
        for word in ("--lookahead", "--startup", "--threshold", "--svg", "--csv", "--sweep", "0.1",
                     "300 s", "Under-provisioned"):
            self.assertIn(word, r.stdout)

    # ---- performance ----------------------------------------------------------------------------------

    def test_long_trace_replays_in_seconds(self):
        p = self.write_trace(periodic(125_000, period_rows=1440))
        # The CPU time the replay used, not the wall time: on a busy machine the wall time also counts the
        # other processes' turns.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = self.run_bt(p, "--json", timeout=300)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        took = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["rows"], 125_000)
        limit = 120 if "asan" in h.prescale_bin() else 30
        self.assertLess(took, limit, f"125k rows took {took:.1f} s of CPU")


if __name__ == "__main__":
    unittest.main()
