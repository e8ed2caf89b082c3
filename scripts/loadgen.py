#!/usr/bin/python3
"""Periodic HTTP load generator for `make demo`: virtual users (VUs) looping keep-alive GETs.

  /usr/bin/python3 scripts/loadgen.py --url http://127.0.0.1:8081/ [--duration 180] [--origin UNIX]
                                      [--start-at UNIX] [--low-vus 10] [--high-vus 50] [--pace 200ms]
                                      [--summary FILE]

The number of active VUs follows a cycle of PERIOD (180 s), the demo's timescale for a day of traffic,
the cycle of the project's k6 script (k6/periodic.js: 30 s at 10 VUs, 2 min at 50, 30 s at 10, with
1-s ramps between them):

    phase   0 -  30 s   low        --low-vus
    phase  30 -  31 s   ramp up    linear, integer VUs (k6's ramping-vus)
    phase  31 - 150 s   high       --high-vus
    phase 150 - 151 s   ramp down
    phase 151 - 180 s   low        (so about 60 s of low load separate two high plateaus)

phase = (t - origin) mod PERIOD, t in Unix seconds: the demo picks the origin, and the history it backfills
uses the same functions (vus_at, rate_at, requests_between), so history and live traffic are in phase.

Each VU owns one keep-alive HTTP/1.1 connection (http.client) and starts one request every --pace: it
sleeps pace - elapsed after each request and never bursts to catch up. This constant pacing (where
k6/periodic.js uses a fixed think time) makes the offered rate exactly active VUs / pace whatever the
response time, so the history the demo computes from the same functions matches the live rate: 50 req/s
low and 250 req/s high with the defaults, which the 2-core demo machine handles with room to spare. Stops by itself after --duration seconds, or on
SIGTERM/SIGINT (the current requests finish, bounded by REQUEST_TIMEOUT_S), then prints one summary
line and, with --summary, writes a JSON summary (totals, requests per second, latency percentiles).
"""

import argparse
import http.client
import json
import math
import os
import random
import signal
import sys
import threading
import time
import urllib.parse

# ---- limits ------------------------------------------------------------------------------------------

PERIOD = 180.0  # seconds per cycle
LOW_END = 30.0  # end of the first low plateau (phase, s)
RAMP_S = 1.0  # length of each ramp (s), as in k6/periodic.js
HIGH_END = 150.0  # end of the high plateau (phase, s)
MAX_VUS = 200  # threads; the demo uses 50
MIN_PACE_S = 0.01  # one request per VU per 10 ms at most
MAX_RATE = 2000.0  # req/s the generator will ever offer (high VUs / pace)
MAX_DURATION_S = 24 * 3600.0
MAX_START_DELAY_S = 600.0  # --start-at at most this far ahead
REQUEST_TIMEOUT_S = 5.0  # connect + response of one request
INACTIVE_POLL_S = 0.1  # how often an inactive VU checks whether it is needed
JOIN_TIMEOUT_S = REQUEST_TIMEOUT_S + 2.0
MAX_LATENCIES_PER_VU = 200_000  # bounded memory for the percentiles


# ---- the pattern (shared with scripts/demo.py) ---------------------------------------------------------


class Pattern:
    """Active VUs and offered rate as functions of wall time. Pure: no I/O, no clock reads."""

    def __init__(self, origin=0.0, low_vus=10, high_vus=50, pace=0.2):
        self.origin, self.low, self.high, self.pace = float(origin), int(low_vus), int(high_vus), float(pace)

    def phase(self, t):
        return (t - self.origin) % PERIOD

    def vus_at(self, t):
        p = self.phase(t)
        span = self.high - self.low
        if p < LOW_END or p >= HIGH_END + RAMP_S:
            return self.low
        if p < LOW_END + RAMP_S:  # ramp up: low + floor(span * fraction), integer VUs as k6 runs them
            return self.low + int(math.floor(span * (p - LOW_END) / RAMP_S))
        if p < HIGH_END:
            return self.high
        return self.high - int(math.floor(span * (p - HIGH_END) / RAMP_S))

    def rate_at(self, t):
        """Offered requests per second at time t."""
        return self.vus_at(t) / self.pace

    def phase_name(self, t):
        p = self.phase(t)
        if p < LOW_END or p >= HIGH_END + RAMP_S:
            return "low"
        if p < LOW_END + RAMP_S:
            return "ramp up"
        return "high" if p < HIGH_END else "ramp down"

    def breakpoints(self, t0, t1):
        """Times in (t0, t1) where vus_at may change: every VU step of the ramps and the plateau edges."""
        span = max(1, abs(self.high - self.low))
        edges = [LOW_END + RAMP_S * k / span for k in range(span + 1)]
        edges += [HIGH_END + RAMP_S * k / span for k in range(span + 1)]
        out = []
        c0 = math.floor((t0 - self.origin) / PERIOD)
        c1 = math.floor((t1 - self.origin) / PERIOD)
        for c in range(c0, c1 + 1):
            base = self.origin + c * PERIOD
            for e in edges + [PERIOD]:
                x = base + e
                if t0 < x < t1:
                    out.append(x)
        return sorted(set(out))

    def requests_between(self, t0, t1):
        """Exact integral of rate_at over [t0, t1]: what a counter grows by (vus_at is piecewise constant)."""
        if t1 <= t0:
            return 0.0
        pts = [t0] + self.breakpoints(t0, t1) + [t1]
        total = 0.0
        for a, b in zip(pts, pts[1:]):
            total += self.rate_at((a + b) / 2.0) * (b - a)
        return total


# ---- parsing -------------------------------------------------------------------------------------------


def parse_duration(s):
    """'200ms', '30s', '3m', '1h' or plain seconds -> float seconds. Raises ValueError naming the value."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    txt = s.strip()
    for suffix, mult in units:
        if txt.endswith(suffix) and not (suffix == "s" and txt.endswith("ms")):
            num = txt[: -len(suffix)]
            break
    else:
        num, mult = txt, 1.0
    try:
        v = float(num) * mult
    except ValueError:
        raise ValueError(f"not a duration: {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"not a duration: {s!r}")
    return v


# ---- virtual users -------------------------------------------------------------------------------------


class VuStats:
    """Owned by one VU thread while it runs; read by the main thread only after join()."""

    def __init__(self):
        self.ok = 0
        self.errors = 0
        self.reconnects = 0
        self.per_second = {}  # int(unix second of completion) -> requests completed with 200
        self.latencies = []  # seconds, bounded by MAX_LATENCIES_PER_VU
        self.last_error = None


class Vu(threading.Thread):
    def __init__(self, index, gen):
        super().__init__(name=f"vu-{index}", daemon=True)
        self.index, self.gen = index, gen
        self.stats = VuStats()
        self.conn = None
        self.rng = random.Random(index)

    def close_conn(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request_once(self):
        """One GET on the keep-alive connection. Returns the status; raises on transport errors."""
        g = self.gen
        if self.conn is None:
            self.conn = http.client.HTTPConnection(g.host, g.port, timeout=REQUEST_TIMEOUT_S)
        self.conn.request("GET", g.path)
        r = self.conn.getresponse()
        r.read()
        if r.will_close:
            self.close_conn()
        return r.status

    def one_request(self):
        st = self.stats
        t0 = time.monotonic()
        reused = self.conn is not None
        try:
            try:
                status = self.request_once()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: retry a GET once on a new one, as
                # HTTP clients do for idempotent requests (RFC 9110, 9.2.2). A fresh connection failing is an error.
                self.close_conn()
                if not reused:
                    raise
                st.reconnects += 1
                status = self.request_once()
        except (OSError, http.client.HTTPException) as e:
            self.close_conn()
            st.errors += 1
            st.last_error = f"{type(e).__name__}: {e}"
            return
        if status != 200:
            st.errors += 1
            st.last_error = f"HTTP {status}"
            return
        st.ok += 1
        sec = int(time.time())
        st.per_second[sec] = st.per_second.get(sec, 0) + 1
        if len(st.latencies) < MAX_LATENCIES_PER_VU:
            st.latencies.append(time.monotonic() - t0)

    def run(self):
        g = self.gen
        stop = g.stop
        next_t = None  # wall time of this VU's next request; None while inactive
        try:
            while not stop.is_set():
                now = time.time()
                if self.index >= g.pattern.vus_at(now):
                    next_t = None
                    stop.wait(INACTIVE_POLL_S)
                    continue
                if next_t is None:
                    # A VU joining starts at a random point of its pace, so that VUs do not fire together.
                    next_t = now + self.rng.uniform(0.0, g.pattern.pace)
                delay = next_t - now
                if delay > 0:
                    stop.wait(delay)
                    continue
                self.one_request()
                next_t += g.pattern.pace
                # Behind by more than one pace (a slow response): drop the missed iterations, no burst.
                if next_t < time.time() - g.pattern.pace:
                    next_t = time.time()
        finally:
            self.close_conn()


class LoadGen:
    def __init__(self, url, pattern):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"--url: only http://HOST:PORT/PATH is supported, got {url!r}")
        self.host, self.port = u.hostname, u.port or 80
        self.path = (u.path or "/") + (("?" + u.query) if u.query else "")
        self.pattern = pattern
        self.stop = threading.Event()
        self.vus = [Vu(i, self) for i in range(max(pattern.low, pattern.high))]

    def run(self, start_at, duration):
        """Sleeps until start_at, runs until start_at + duration or stop; returns the summary dict."""
        while not self.stop.is_set() and time.time() < start_at:
            self.stop.wait(min(0.5, start_at - time.time()))
        t_start = time.time()
        for v in self.vus:
            v.start()
        end = t_start + duration
        while not self.stop.is_set():
            left = end - time.time()
            if left <= 0:
                break
            self.stop.wait(min(left, 0.5))
        self.stop.set()
        t_end = time.time()
        for v in self.vus:
            v.join(JOIN_TIMEOUT_S)
        return self.summary(t_start, t_end)

    def summary(self, t_start, t_end):
        ok = sum(v.stats.ok for v in self.vus)
        errors = sum(v.stats.errors for v in self.vus)
        per_second = {}
        lat = []
        for v in self.vus:
            for s, n in v.stats.per_second.items():
                per_second[s] = per_second.get(s, 0) + n
            lat.extend(v.stats.latencies)
        lat.sort()

        def pct(q):
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000.0, 2) if lat else None

        seconds = max(1e-9, t_end - t_start)
        full = [per_second.get(s, 0) for s in range(int(t_start) + 1, int(t_end))]  # whole seconds only
        last_errors = sorted({v.stats.last_error for v in self.vus if v.stats.last_error})
        return {
            "url": f"http://{self.host}:{self.port}{self.path}",
            "start": round(t_start, 3), "end": round(t_end, 3), "seconds": round(seconds, 3),
            "requests": ok, "errors": errors, "reconnects": sum(v.stats.reconnects for v in self.vus),
            "rate_avg": round(ok / seconds, 2), "rate_max_1s": max(full) if full else None,
            "rate_min_1s": min(full) if full else None,
            "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
            "per_second": {str(s): n for s, n in sorted(per_second.items())},
            "last_errors": last_errors[:5],
        }


# ---- command line ----------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="http://HOST:PORT/PATH to GET")
    ap.add_argument("--duration", default="180s", help="how long to run once started (default 180s)")
    ap.add_argument("--origin", type=float, default=0.0, help="Unix time where phase 0 of the cycle falls")
    ap.add_argument("--start-at", type=float, default=None, help="Unix time to start at (default: now)")
    ap.add_argument("--low-vus", type=int, default=10, help="VUs on the low plateaus (default 10)")
    ap.add_argument("--high-vus", type=int, default=50, help="VUs on the high plateau (default 50)")
    ap.add_argument("--pace", default="200ms", help="one request per VU every PACE (default 200ms)")
    ap.add_argument("--summary", default=None, help="write the JSON summary to this file")
    a = ap.parse_args(argv)

    try:
        duration = parse_duration(a.duration)
        pace = parse_duration(a.pace)
    except ValueError as e:
        ap.error(str(e))
    if not 0 < duration <= MAX_DURATION_S:
        ap.error(f"--duration: {a.duration!r} is not in (0, {MAX_DURATION_S:g}s]")
    if pace < MIN_PACE_S:
        ap.error(f"--pace: {a.pace!r} is below {MIN_PACE_S * 1000:g}ms")
    for name, v in (("--low-vus", a.low_vus), ("--high-vus", a.high_vus)):
        if not 0 <= v <= MAX_VUS:
            ap.error(f"{name}: {v} is not in [0, {MAX_VUS}]")
    if max(a.low_vus, a.high_vus) / pace > MAX_RATE:
        ap.error(f"--high-vus {a.high_vus} / --pace {a.pace} offers more than {MAX_RATE:g} req/s")
    now = time.time()
    start_at = now if a.start_at is None else a.start_at
    if start_at - now > MAX_START_DELAY_S:
        ap.error(f"--start-at: {a.start_at!r} is more than {MAX_START_DELAY_S:g}s ahead")

    try:
        gen = LoadGen(a.url, Pattern(a.origin, a.low_vus, a.high_vus, pace))
    except ValueError as e:
        ap.error(str(e))

    def on_signal(signum, frame):
        gen.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    s = gen.run(start_at, duration)
    lat = s["latency_ms"]
    print(f"loadgen: {s['requests']} requests in {s['seconds']:.1f}s ({s['rate_avg']:.1f} req/s average, "
          f"1-s min/max {s['rate_min_1s']}/{s['rate_max_1s']}), {s['errors']} errors, "
          f"{s['reconnects']} reconnects; latency p50 {lat['p50']} ms, p99 {lat['p99']} ms", flush=True)
    for e in s["last_errors"]:
        print(f"loadgen: error: {e}", flush=True)
    if a.summary:
        tmp = a.summary + ".tmp"
        with open(tmp, "w") as f:
            json.dump(s, f)
        os.replace(tmp, a.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
