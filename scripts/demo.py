#!/usr/bin/python3
"""prescale demo (`make demo`): proactive vs reactive scaling of a real HTTP workload, no cluster needed.

Starts, all on 127.0.0.1 with ephemeral ports:
  * prescale-demo-app, an HTTP server answering every GET after a 20 ms service time and counting
    http_requests_total{code="200"};
  * scripts/loadgen.py, virtual users sending it real keep-alive GETs in a 3-minute cycle (30 s low at
    10 VUs, ramp, about 2 min high at 50 VUs, ramp, low: 50 then 250 req/s);
  * a real Prometheus scraping the app every second, whose TSDB also holds an hour of backfilled
    history of the same counter, in phase with the live cycle;
  * prescale, asked for `sum(rate(http_requests_total[15s]))` with a 30 s lookahead;
then acts like KEDA: every 5 s it calls GetMetricSpec, GetMetrics and IsActive and prints one row
(it samples every second for the chart). At the end it writes an SVG chart and a CSV of the run.

Usage: /usr/bin/python3 scripts/demo.py --prescale build/src/prescale [--duration 180] [--out-dir DIR]
"""

import argparse
import contextlib
import csv
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)
import harness as h  # noqa: E402
import loadgen  # noqa: E402
import svg_chart  # noqa: E402

# ---- the scenario --------------------------------------------------------------------------------------

# req/s one replica serves: the trigger's `threshold`. Low 50 req/s -> 2 replicas, high 250 -> 9; neither
# plateau sits on a multiple of it, so ceil() does not flicker with the noise of the measured rate.
THRESHOLD = 30.0
ACTIVATION = 100.0  # IsActive above this: false on the low plateau, true ahead of and during the high one
LOW_VUS, HIGH_VUS, PACE = 10, 50, 0.2  # 5 req/s per VU
SERVICE_TIME = "20ms"
SCRAPE_INTERVAL_S = 1
JOB, INSTANCE = "demo", "demo-app"
# rate() over 15 scrapes: smooth (irate would follow the per-second jitter of 250 req/s), and its lag of
# about half the window (~7 s) is small beside the 30 s lookahead. Reactive and proactive read the same
# query, so the comparison is fair whatever the window.
RATE_WINDOW_S = 15
QUERY = f'sum(rate(http_requests_total{{job="{JOB}"}}[{RATE_WINDOW_S}s]))'
LOOKAHEAD_S = 30
METADATA = {"query": QUERY, "threshold": f"{THRESHOLD:g}", "activationThreshold": f"{ACTIVATION:g}",
            "step": "1s", "period": f"{loadgen.PERIOD:g}s", "lookahead": f"{LOOKAHEAD_S}s", "model": "seasonal"}
HISTORY_S = 3600 + 2 * RATE_WINDOW_S  # prescale loads 1 h (its default `history`); rate() needs a window more
BACKFILL_LEAD_S = 8  # live traffic starts this far after we start: promtool + Prometheus start well within
DEFAULT_START_PHASE = 170.0  # the cycle's phase when live traffic starts: prescale rises ~10 s later, reactive ~40 s
SAMPLE_S = 1.0  # sampling period for the chart and the lead measurement

# ---- limits ----------------------------------------------------------------------------------------------

MAX_DURATION_S = 3600.0
MIN_INTERVAL_S = 1.0
RPC_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 15.0
LOADGEN_STOP_TIMEOUT_S = loadgen.JOIN_TIMEOUT_S + 5.0
LOADGEN_SLACK_S = 60.0  # the load generator's own --duration exceeds the demo's by this (we stop it first)
SETPRIV = shutil.which("setpriv")  # util-linux: children get SIGTERM if the demo dies without cleaning up

HEADER = f"""
Every @INTERVAL@ s this client does what KEDA does with an external scaler (GetMetricSpec, GetMetrics,
IsActive) for a ScaledObject with threshold={THRESHOLD:g} req/s per replica, lookahead={LOOKAHEAD_S}s,
period=3m, step=1s, query {QUERY}:

  time      wall clock
  phase     where the load generator is in its 3-minute cycle;  vus: its active virtual users
  observed  the request rate now, as Prometheus computes it from the app's counter
  prescale  what prescale answers in GetMetrics: the rate it expects within the next {LOOKAHEAD_S} s, learned
            from the same moment one period ago (never below the current rate)
  active    IsActive (prescale's value > activationThreshold={ACTIVATION:g})
  reactive  replicas a reactive autoscaler would run now   = ceil(observed / {THRESHOLD:g})
  proactive replicas the HPA runs with prescale             = ceil(prescale / {THRESHOLD:g})

Watch the ramp up: the proactive column rises about {LOOKAHEAD_S} s before the reactive one. '<<' marks rows
where prescale already runs more replicas than a reactive autoscaler would.
"""
COLUMNS = (f"{'time':8}  {'phase':9}  {'vus':>3}  {'observed':>8}  {'prescale':>8}  {'active':6}  "
           f"{'reactive':16}  {'proactive':16}")
RULE = "-" * 91

# ---- small helpers ---------------------------------------------------------------------------------------

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: no proxies


def say(msg):
    print(f"demo: {msg}", flush=True)


def prom_query(base, query, t=None, timeout=5.0):
    """Instant query -> float, or None for an empty result."""
    params = {"query": query}
    if t is not None:
        params["time"] = f"{t:.3f}"
    with _opener.open(f"{base}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=timeout) as r:
        res = json.load(r)["data"]["result"]
    return float(res[0]["value"][1]) if res else None


def bar(n, width=12):
    n = max(0, min(int(n), width))
    return "#" * n + "." * (width - n)


def start_child(name, argv, tmp):
    """A child process with its output in tmp/<name>.log; with setpriv it gets SIGTERM if we die."""
    prefix = [SETPRIV, "--pdeathsig", "TERM", "--"] if SETPRIV else []
    p = h.Process(name, prefix + argv, os.path.join(tmp, f"{name}.log"))
    say(f"started {name}, pid {p.proc.pid}")
    return p


# ---- history ---------------------------------------------------------------------------------------------


def write_backfill(path, pattern, end):
    """One OpenMetrics counter sample per second over (end - HISTORY_S, end], ending exactly at `end`.

    The value grows by exactly what the load generator sends (pattern.requests_between), so rate() over
    history equals the live offered rate at the same phase. Live data continues the same series: the app's
    counter is 0 at `end` (the load starts then, and the app counts nothing else), so Prometheus sees one
    counter reset between the last backfilled sample and the first live scrape. rate() treats the first
    live value as the increase since the reset, which is exactly the requests sent since `end`: the rate
    stays continuous across the seam."""
    labels = f'code="200",instance="{INSTANCE}",job="{JOB}"'
    start = end - HISTORY_S
    with open(path, "w") as f:
        f.write("# HELP http_requests Requests served (backfilled history of the demo).\n"
                "# TYPE http_requests counter\n")
        value = 0.0
        prev = start
        for t in range(start, end + 1):
            value += pattern.requests_between(prev, t)
            prev = t
            f.write(f"http_requests_total{{{labels}}} {value:.3f} {t}\n")
        f.write("# EOF\n")


def write_prometheus_config(path, app_port):
    with open(path, "w") as f:
        f.write(f"""global:
  scrape_interval: {SCRAPE_INTERVAL_S}s
  scrape_timeout: {SCRAPE_INTERVAL_S}s
  evaluation_interval: 15s
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ['127.0.0.1:{app_port}']
    relabel_configs:
      # a fixed instance label: live samples continue the backfilled series
      - target_label: instance
        replacement: {INSTANCE}
""")


# ---- results ----------------------------------------------------------------------------------------------


def crossings_up(samples, key, level):
    """Times where samples[key] goes from < level to >= level."""
    out, prev = [], None
    for s in samples:
        v = s.get(key)
        if v is None:
            continue
        if prev is not None and prev < level <= v:
            out.append(s["t"])
        prev = v
    return out


def measure_leads(samples, pattern):
    """For each ramp up seen by both columns: how many seconds before reactive prescale reached the mid
    and the peak replica counts. Returns a list of (level, t_proactive, t_reactive)."""
    low_r = math.ceil(pattern.low / pattern.pace / THRESHOLD)
    high_r = math.ceil(pattern.high / pattern.pace / THRESHOLD)
    out = []
    for level in (math.ceil((low_r + high_r) / 2), high_r):
        pro = crossings_up(samples, "proactive", level)
        for tr in crossings_up(samples, "reactive", level):
            before = [tp for tp in pro if tp <= tr]
            if before:
                out.append((level, before[-1], tr))
    return out


def write_outputs(out_dir, samples, pattern, t0, leads, rate_note):
    """Writes the CSV and the SVG chart; returns (svg path, csv path)."""
    os.makedirs(out_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t0))
    csv_path = os.path.join(out_dir, f"demo-{stamp}.csv")
    svg_path = os.path.join(out_dir, f"demo-{stamp}.svg")
    keys = ("t", "phase", "vus", "offered", "observed", "prescale", "active", "reactive", "proactive")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("unix_time", "seconds") + keys[1:])
        for s in samples:
            w.writerow([f"{s['t']:.3f}", f"{s['t'] - t0:.1f}"] + ["" if s.get(k) is None else s[k] for k in keys[1:]])

    def pts(key):
        return [(s["t"] - t0, s.get(key)) for s in samples]

    S = svg_chart.Series
    series = [
        S("offered", "offered by the load generator", pts("offered"), "#8a8a8a", dash="5 4", width=1.5),
        S("reactive", "replicas, reactive", pts("reactive"), "#1f6fc5", axis="right", step=True, width=5,
          opacity=0.35),
        S("proactive", "replicas, prescale", pts("proactive"), "#e07000", axis="right", step=True, dash="6 3",
          width=2),
        S("observed", "observed load (Prometheus)", pts("observed"), "#1f6fc5", width=2.5),
        S("prescale", "prescale's value", pts("prescale"), "#e07000", width=2.5),
    ]
    # Shade the high part of the cycle (ramps included) as the load generator ran it.
    bands, t_end = [], samples[-1]["t"] if samples else t0
    c = math.floor((t0 - pattern.origin) / loadgen.PERIOD) - 1
    while pattern.origin + c * loadgen.PERIOD <= t_end:
        base = pattern.origin + c * loadgen.PERIOD
        bands.append((base + loadgen.LOW_END - t0, base + loadgen.HIGH_END + loadgen.RAMP_S - t0,
                      "high load (ramps included)", "#f1f1f1"))
        c += 1
    markers, spans = [], []
    for level, tp, tr in leads:
        markers.append((tp - t0, f"prescale {level}", "#e07000"))
        markers.append((tr - t0, f"reactive {level}", "#1f6fc5"))
        spans.append((tp - t0, tr - t0, (level - 0.5) * THRESHOLD, f"{tr - tp:.0f} s ahead", "#c05000"))
    lead_txt = "; ".join(f"prescale reached {lvl} replicas {tr - tp:.0f} s before reactive" for lvl, tp, tr in leads)
    subtitle = (f"query {QUERY}, threshold {THRESHOLD:g} req/s per replica, lookahead {LOOKAHEAD_S} s\n"
                f"{lead_txt or 'no complete ramp up in this run'}\n{rate_note}")
    svg = svg_chart.render("prescale demo: proactive vs reactive replicas", series, subtitle=subtitle,
                           x_label=f"seconds since {time.strftime('%H:%M:%S', time.localtime(t0))}",
                           left_label="requests per second", right_label="replicas",
                           right_unit=THRESHOLD, markers=markers, bands=bands, spans=spans)
    with open(svg_path, "w") as f:
        f.write(svg)
    return svg_path, csv_path


# ---- the run ------------------------------------------------------------------------------------------------


def poll_loop(args, stub, pb2, ref, prom_url, pattern, samples):
    """Samples every SAMPLE_S until args.duration has passed; prints a row every args.interval."""
    import grpc
    start = time.monotonic()
    every = max(1, round(args.interval / SAMPLE_S))
    k = 0
    while time.monotonic() - start < args.duration:
        now = time.time()
        s = {"t": now, "phase": pattern.phase_name(now), "vus": pattern.vus_at(now),
             "offered": pattern.rate_at(now)}
        err = None
        try:
            spec = stub.GetMetricSpec(ref, timeout=RPC_TIMEOUT_S).metricSpecs[0]
            mv = stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName),
                                 timeout=RPC_TIMEOUT_S).metricValues[0]
            s["active"] = stub.IsActive(ref, timeout=RPC_TIMEOUT_S).result
            target = spec.targetSizeFloat or float(spec.targetSize)
            s["prescale"] = mv.metricValueFloat
            s["proactive"] = math.ceil(mv.metricValueFloat / target)
            s["observed"] = prom_query(prom_url, QUERY)
            if s["observed"] is not None:
                s["reactive"] = math.ceil(s["observed"] / target)
        except grpc.RpcError as e:
            err = f"gRPC error {e.code().name}: {e.details()}"
        except OSError as e:
            err = f"error: {e}"
        samples.append(s)
        if k % every == 0:
            row = f"{time.strftime('%H:%M:%S', time.localtime(now))}  {s['phase']:9}  {s['vus']:3d}"
            if err is not None:
                row += f"  {err}"
            else:
                obs = s.get("observed")
                obs_s = f"{obs:8.1f}" if obs is not None else f"{'-':>8}"
                reactive = s.get("reactive", 0)
                mark = "  <<" if s["proactive"] > reactive else ""
                row += (f"  {obs_s}  {s['prescale']:8.1f}  {str(s['active']):6}  {reactive:3d} {bar(reactive)}"
                        f"  {s['proactive']:3d} {bar(s['proactive'])}{mark}")
            print(row, flush=True)
        k += 1
        # Fixed schedule, no drift: sample k is at start + k * SAMPLE_S.
        delay = start + k * SAMPLE_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prescale", default=h.prescale_bin(), help="path of the prescale binary")
    ap.add_argument("--demo-app", default=None,
                    help="path of prescale-demo-app (default: demo_app/prescale-demo-app next to --prescale)")
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of table (default 180)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between printed rows (default 5)")
    ap.add_argument("--start-phase", type=float, default=DEFAULT_START_PHASE,
                    help=f"phase of the 3-minute cycle (s) when the live load starts (default {DEFAULT_START_PHASE:g}:"
                         " the ramp up comes about 40 s later)")
    ap.add_argument("--out-dir", default=os.path.join(h.REPO_ROOT, "demo-out"),
                    help="where the SVG chart and the CSV go (default: demo-out/ in the repository)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (logs, TSDB)")
    args = ap.parse_args()

    if not 0 < args.duration <= MAX_DURATION_S:
        ap.error(f"--duration: {args.duration:g} is not in (0, {MAX_DURATION_S:g}]")
    if not MIN_INTERVAL_S <= args.interval <= args.duration:
        ap.error(f"--interval: {args.interval:g} is not in [{MIN_INTERVAL_S:g}, --duration]")
    if not 0 <= args.start_phase < loadgen.PERIOD:
        ap.error(f"--start-phase: {args.start_phase:g} is not in [0, {loadgen.PERIOD:g})")
    prescale = os.path.abspath(args.prescale)
    app_bin = os.path.abspath(args.demo_app or os.path.join(os.path.dirname(prescale), "demo_app",
                                                            "prescale-demo-app"))
    for what, path in (("prescale", prescale), ("prescale-demo-app", app_bin)):
        if not os.access(path, os.X_OK):
            print(f"demo: {what} binary not found: {path} (run `make build` first)", file=sys.stderr)
            return 2

    # SIGINT (also when inherited as ignored, e.g. started in the background) and SIGTERM both end the
    # demo through KeyboardInterrupt, so the finally block always stops what we started.
    def on_signal(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    import grpc  # noqa: F401 - fail early if grpcio is missing
    pb2, pb2_grpc = h.grpc_modules()
    tmp = tempfile.mkdtemp(prefix="prescale-demo-")
    procs = {}  # name -> h.Process, in start order
    samples = []
    pattern = None
    rc = 0
    try:
        say(f"temp files in {tmp}")
        app_port = h.free_port()
        procs["prescale-demo-app"] = start_child(
            "prescale-demo-app", [app_bin, f"--listen=127.0.0.1:{app_port}", f"--service-time={SERVICE_TIME}"], tmp)
        h.wait_http_ok(procs["prescale-demo-app"], f"http://127.0.0.1:{app_port}/healthz", 10,
                     "prescale-demo-app /healthz")

        # E: where history ends and live traffic starts (a whole second, in the near future).
        E = int(math.ceil(time.time())) + BACKFILL_LEAD_S
        pattern = loadgen.Pattern(origin=E - args.start_phase, low_vus=LOW_VUS, high_vus=HIGH_VUS, pace=PACE)
        summary_path = os.path.join(tmp, "loadgen.json")
        procs["loadgen"] = start_child("loadgen", [
            sys.executable, os.path.join(HERE, "loadgen.py"), f"--url=http://127.0.0.1:{app_port}/",
            f"--duration={args.duration + LOADGEN_SLACK_S:g}s", f"--origin={pattern.origin:.3f}",
            f"--start-at={E}", f"--low-vus={LOW_VUS}", f"--high-vus={HIGH_VUS}", f"--pace={PACE * 1000:g}ms",
            f"--summary={summary_path}"], tmp)

        say(f"backfilling {HISTORY_S // 60} min of http_requests_total history, in phase with the live cycle ...")
        tsdb = os.path.join(tmp, "tsdb")
        os.makedirs(tsdb)
        om = os.path.join(tmp, "backfill.om")
        write_backfill(om, pattern, E)
        with open(os.path.join(tmp, "promtool.log"), "ab") as log:
            h.create_blocks(om, tsdb, log)
        os.unlink(om)

        prom_port = h.free_port()
        prom_url = f"http://127.0.0.1:{prom_port}"
        config = os.path.join(tmp, "prometheus.yml")
        write_prometheus_config(config, app_port)
        procs["prometheus"] = start_child("prometheus", [
            h.PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1d",
            "--log.level=warn"], tmp)
        h.wait_http_ok(procs["prometheus"], prom_url + "/-/ready", 60, "Prometheus /-/ready")
        h.wait_until(lambda: prom_query(prom_url, QUERY, E - HISTORY_S / 2) is not None, 30,
                     what="the backfilled history to be queryable")
        say(f"Prometheus on {prom_url}, scraping prescale-demo-app on 127.0.0.1:{app_port} every "
            f"{SCRAPE_INTERVAL_S}s; live load starts at {time.strftime('%H:%M:%S', time.localtime(E))}")
        h.wait_until(lambda: (prom_query(prom_url, f'timestamp(http_requests_total{{job="{JOB}"}})') or 0) > E,
                     BACKFILL_LEAD_S + 30, interval=0.25, what="live scrapes after the end of the backfill")

        grpc_port, http_port = h.free_port(), h.free_port()
        procs["prescale"] = start_child(
            "prescale", h.prescale_argv(grpc_port, http_port, prom_url, "--log-level=info", binary=prescale), tmp)
        h.wait_http_ok(procs["prescale"], f"http://127.0.0.1:{http_port}/readyz", 15, "prescale /readyz")
        say(f"prescale gRPC on 127.0.0.1:{grpc_port}, HTTP on 127.0.0.1:{http_port}")
        print(HEADER.replace("@INTERVAL@", f"{args.interval:g}"))
        print(COLUMNS)
        print(RULE, flush=True)
        ref = pb2.ScaledObjectRef(name="web", namespace="demo", scalerMetadata=METADATA)
        with h.grpc_channel(f"127.0.0.1:{grpc_port}") as ch:
            poll_loop(args, pb2_grpc.ExternalScalerStub(ch), pb2, ref, prom_url, pattern, samples)
        print(RULE)
        say(f"done after {args.duration:g}s")
    except KeyboardInterrupt:
        print("\ndemo: interrupted")
        rc = 130
    except Exception as e:  # noqa: BLE001 - report, then clean up
        print(f"demo: failed: {e}", file=sys.stderr)
        for p in procs.values():
            print(p.describe(), file=sys.stderr)
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The load stops first (its counter stops), the app last (Prometheus scrapes it until it stops).
        for name in ("loadgen", "prescale", "prometheus", "prescale-demo-app"):
            p = procs.get(name)
            if p is None:
                continue
            try:
                code = p.stop(LOADGEN_STOP_TIMEOUT_S if name == "loadgen" else STOP_TIMEOUT_S)
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                say(f"stopping {name} (pid {p.proc.pid}) failed: {e!r}")
                continue
            if code not in (0, -signal.SIGTERM):
                say(f"{name} (pid {p.proc.pid}) exited with {code}; last lines of its log:\n"
                    f"{h.log_tail(p.log_path, 10)}")
        say("stopped " + ", ".join(f"{n} (pid {p.proc.pid})" for n, p in procs.items()))
        rate_note = report_load(os.path.join(tmp, "loadgen.json"))
        if pattern is not None and len(samples) >= 2:
            with contextlib.suppress(KeyboardInterrupt):
                try:
                    leads = measure_leads(samples, pattern)
                    for level, tp, tr in leads:
                        say(f"ramp up: prescale reached {level} replicas at "
                            f"{time.strftime('%H:%M:%S', time.localtime(tp))}, reactive at "
                            f"{time.strftime('%H:%M:%S', time.localtime(tr))}: {tr - tp:.0f} s earlier")
                    if not leads:
                        say("no complete ramp up in this run (run longer to see the lead of prescale)")
                    svg, csv_path = write_outputs(args.out_dir, samples, pattern, samples[0]["t"], leads, rate_note)
                    say(f"chart: {svg}")
                    say(f"data:  {csv_path}")
                except OSError as e:
                    say(f"cannot write the chart: {e}")
                    rc = rc or 1
        if args.keep:
            say(f"temp files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            say(f"removed the temp files in {tmp}")
    return rc


def report_load(summary_path):
    """Prints the load generator's summary; returns a one-line note for the chart."""
    try:
        with open(summary_path) as f:
            s = json.load(f)
    except (OSError, ValueError):
        return ""
    if not s["requests"]:
        say(f"load: no request completed ({s['errors']} errors)")
        return ""
    lat = s["latency_ms"]
    say(f"load: {s['requests']} requests in {s['seconds']:.0f} s, {s['rate_avg']:.1f} req/s average, "
        f"{s['rate_max_1s']} req/s in the busiest second, {s['errors']} errors; latency p50 {lat['p50']} ms, "
        f"p99 {lat['p99']} ms")
    return (f"Load: {s['requests']} requests, {s['rate_avg']:.0f} req/s average, {s['rate_max_1s']} req/s peak, "
            f"{s['errors']} errors.")


if __name__ == "__main__":
    sys.exit(main())
