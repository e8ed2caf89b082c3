// periodic.js: the load cycle of prescale's demo, against prescale-demo-app.
//
//   k6 run k6/periodic.js
//   k6 run -e TARGETS=http://127.0.0.1:30080/ -e CYCLES=5 k6/periodic.js
//
// One cycle is 3 minutes: 30 s at LOW_VUS (10), 2 min at HIGH_VUS (50), 30 s at LOW_VUS, repeated CYCLES
// times (default 10, i.e. 30 minutes). The period (3m) is the `period` of k8s/base/scaledobject-proactive.yaml.
//
// Every iteration sends one GET to each URL of TARGETS at once (default: demo-proactive and
// demo-reactive through the KinD port mappings), so both copies of the app see the same load and the
// two ScaledObjects can be compared side by side. Each VU then waits THINK_SECONDS (0.1).
//
// With the default 20 ms service time a VU makes about 8 requests/s per target: ~80 req/s at 10 VUs and
// ~400 req/s at 50 VUs, i.e. 2 and 8 replicas at the ScaledObjects' threshold of 50 req/s per replica.
//
// noVUConnectionReuse: each iteration opens new connections, so pods added by a scale-up get their
// share of the traffic at once (kube-proxy balances connections, not requests).
import http from 'k6/http';
import { check, sleep } from 'k6';

function envInt(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}: "${v}" is not a non-negative integer`);
  return n;
}

function envNum(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: "${v}" is not a non-negative number`);
  return n;
}

const TARGETS = (__ENV.TARGETS || 'http://127.0.0.1:30080/,http://127.0.0.1:30081/')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s.length > 0);
const LOW_VUS = envInt('LOW_VUS', 10);
const HIGH_VUS = envInt('HIGH_VUS', 50);
const CYCLES = envInt('CYCLES', 10);
const THINK_SECONDS = envNum('THINK_SECONDS', 0.1);

if (TARGETS.length === 0) throw new Error('TARGETS is empty');
if (CYCLES < 1) throw new Error('CYCLES must be at least 1');

// k6 ramps linearly from one stage's target to the next; a 1 s stage makes each change a step.
function cycle() {
  return [
    { duration: '1s', target: LOW_VUS },
    { duration: '29s', target: LOW_VUS },
    { duration: '1s', target: HIGH_VUS },
    { duration: '1m59s', target: HIGH_VUS },
    { duration: '1s', target: LOW_VUS },
    { duration: '29s', target: LOW_VUS },
  ];
}

const stages = [];
for (let i = 0; i < CYCLES; i++) stages.push(...cycle());

export const options = {
  scenarios: {
    periodic: {
      executor: 'ramping-vus',
      startVUs: LOW_VUS,
      stages,
      gracefulRampDown: '5s',
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
  sleep(THINK_SECONDS);
}
