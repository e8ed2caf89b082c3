// replay.js: replays a real request-rate trace against prescale-demo-app, compressed in time.
//
//   k6 run -e TRACE=/work/shared/data/traces/nasa-http-1995-07-60s.csv -e FACTOR=60 k6/replay.js
//
// TRACE (required): a CSV `timestamp_seconds,value` with a header line and one row per fixed interval,
// `value` being the requests that arrived in the interval (the format of /work/shared/data/traces/).
// FACTOR (default 60): time compression. An interval of the trace lasts interval / FACTOR seconds here,
// so with 60 s rows and FACTOR=60 a day of traffic replays in 24 minutes, and a ScaledObject that should
// learn the daily cycle needs `period: 24m` (trace period / FACTOR).
// START_ROW (default 0), ROWS (default: to the end): the slice of the trace to replay.
// PEAK_RPS (default 200): the trace is scaled so that its busiest interval (in the slice) is sent at this
// many requests per second; PEAK_RPS=0 sends the trace's own rate (value / interval) times RATE_SCALE
// (default 1).
// TARGETS (default: both demo apps through the KinD port mappings): comma-separated URLs; each arrival
// sends one GET to every target, so all targets see the same load.
// PRE_VUS (default 50), MAX_VUS (default 1000): VUs k6 may use to keep up with the arrival rate.
//
// The rate between two rows is interpolated linearly (a ramping-arrival-rate stage per row).
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';

function envNum(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: "${v}" is not a non-negative number`);
  return n;
}

const TRACE = __ENV.TRACE;
if (!TRACE) throw new Error('TRACE is required: -e TRACE=path/to/trace.csv (timestamp_seconds,value)');
const FACTOR = envNum('FACTOR', 60);
const START_ROW = envNum('START_ROW', 0);
const ROWS = envNum('ROWS', 0);
const PEAK_RPS = envNum('PEAK_RPS', 200);
const RATE_SCALE = envNum('RATE_SCALE', 1);
const PRE_VUS = envNum('PRE_VUS', 50);
const MAX_VUS = envNum('MAX_VUS', 1000);
const TARGETS = (__ENV.TARGETS || 'http://127.0.0.1:30080/,http://127.0.0.1:30081/')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s.length > 0);
if (FACTOR <= 0) throw new Error('FACTOR must be > 0');
if (TARGETS.length === 0) throw new Error('TARGETS is empty');

// Parsed once and shared by every VU. Each row: [timestamp_seconds, value].
const rows = new SharedArray('trace', function () {
  const out = [];
  const lines = open(TRACE).split('\n');
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const parts = line.split(',');
    const t = Number(parts[0]);
    const v = Number(parts[1]);
    if (parts.length !== 2 || !Number.isFinite(t) || !Number.isFinite(v) || v < 0)
      throw new Error(`${TRACE}:${i + 1}: "${line}" is not timestamp_seconds,value`);
    out.push([t, v]);
  }
  if (out.length < 2) throw new Error(`${TRACE}: needs at least two rows`);
  const end = ROWS > 0 ? Math.min(out.length, START_ROW + ROWS) : out.length;
  const slice = out.slice(START_ROW, end);
  if (slice.length < 2) throw new Error(`${TRACE}: START_ROW/ROWS leave fewer than two rows`);
  return slice;
});

const interval = rows[1][0] - rows[0][0];
if (!(interval > 0)) throw new Error(`${TRACE}: timestamps must increase`);

let peak = 0;
for (let i = 0; i < rows.length; i++) peak = Math.max(peak, rows[i][1] / interval);
const scale = PEAK_RPS > 0 ? (peak > 0 ? PEAK_RPS / peak : 0) : RATE_SCALE;

// One stage per row: reach that row's rate over the compressed interval.
const stageMs = Math.max(1, Math.round((interval * 1000) / FACTOR));
const stages = [];
for (let i = 0; i < rows.length; i++) {
  // Arrivals per minute keep two more significant digits than per second for low rates.
  stages.push({ duration: `${stageMs}ms`, target: Math.round((rows[i][1] / interval) * scale * 60) });
}

export const options = {
  scenarios: {
    replay: {
      executor: 'ramping-arrival-rate',
      startRate: Math.round((rows[0][1] / interval) * scale * 60),
      timeUnit: '1m',
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      stages,
    },
  },
  noVUConnectionReuse: true,
  thresholds: {
    http_req_failed: ['rate<0.01'],
  },
};

export default function () {
  const responses = http.batch(TARGETS.map((url) => ['GET', url, null, { tags: { name: url } }]));
  for (const r of responses) check(r, { 'status is 200': (res) => res.status === 200 });
}
