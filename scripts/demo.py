#!/usr/bin/python3
"""prescale demo (`make demo`): proactive vs reactive scaling on loopback, no cluster needed.

Starts, all on 127.0.0.1 with ephemeral ports:
  * a live exporter serving a periodic request-rate-like load (period 3 min: low plateau, ramp up,
    high plateau, ramp down), scraped every second by
  * a real Prometheus whose TSDB holds 75 min of backfilled history of the same series,
  * prescale, pointed at that Prometheus,
then acts like KEDA: every 5 s it calls GetMetricSpec, GetMetrics and IsActive and prints one row.

Usage: /usr/bin/python3 scripts/demo.py --prescale build/src/prescale [--duration 180] [--keep]
"""

import argparse
import math
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness as h  # noqa: E402

THRESHOLD = 10.0  # requests/s one replica handles: the trigger's `threshold`
ACTIVATION = 50.0
METADATA = {"query": h.QUERY, "threshold": f"{THRESHOLD:g}", "activationThreshold": f"{ACTIVATION:g}",
            "step": "1s", "period": "3m", "lookahead": "30s", "model": "seasonal"}

HEADER = f"""
Every {{interval:g}} s this client does what KEDA does with an external scaler (GetMetricSpec, GetMetrics,
IsActive) for a ScaledObject with threshold={THRESHOLD:g} per replica, lookahead=30s, period=3m, step=1s:

  time      wall clock
  phase     where the synthetic load is in its 3-minute cycle
  observed  the load now (Prometheus instant query of `{h.QUERY}`)
  prescale  what prescale answers in GetMetrics (metricValueFloat): the load it expects within the
            next 30 s, learned from the same moment one period ago (never below the current load)
  active    IsActive (prescale's value > activationThreshold={ACTIVATION:g})
  reactive  replicas a reactive autoscaler would run now   = ceil(observed / {THRESHOLD:g})
  proactive replicas the HPA runs with prescale             = ceil(prescale / {THRESHOLD:g})

Watch the ramps: the proactive column rises about 30 s before the reactive one. '<<' marks rows where
prescale already runs more replicas than a reactive autoscaler would.
"""


def phase_name(t):
    i = int(math.floor(t / h.STEP)) % len(h.SHAPE)
    if i < 12:
        return "low"
    if i < 18:
        return "ramp up"
    if i < 30:
        return "high"
    return "ramp down"


def bar(n, width=12):
    n = max(0, min(int(n), width))
    return "#" * n + "." * (width - n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prescale", default=h.prescale_bin(), help="path of the prescale binary")
    ap.add_argument("--duration", type=float, default=180.0, help="seconds to run (default 180)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between KEDA-like polls (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (logs, TSDB)")
    args = ap.parse_args()

    prescale = os.path.abspath(args.prescale)
    if not os.access(prescale, os.X_OK):
        print(f"demo: prescale binary not found: {prescale} (run `make` first)", file=sys.stderr)
        return 2

    # SIGINT (also when inherited as ignored, e.g. started in the background) and SIGTERM both end the
    # demo through KeyboardInterrupt, so the finally block always stops what we started.
    def on_signal(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    import grpc
    pb2, pb2_grpc = h.grpc_modules()
    env = h.Env(keep=args.keep, tmp_prefix="prescale-demo-")
    rc = 0
    try:
        print(f"demo: temp files in {env.tmp}")
        print("demo: backfilling 75 min of history and starting Prometheus ...", flush=True)
        env.start_prometheus_with_history()
        print(f"demo: Prometheus on {env.prom_url} (scraping the exporter on 127.0.0.1:{env.exporter.port} every "
              f"{h.SCRAPE_INTERVAL}s)")
        env.start_prescale("--log-level=info", binary=prescale)
        print(f"demo: prescale gRPC on {env.grpc_addr}, HTTP on {env.http_url}")
        print(HEADER.format(interval=args.interval))
        print(f"{'time':8}  {'phase':9}  {'observed':>8}  {'prescale':>8}  {'active':6}  "
              f"{'reactive':16}  {'proactive':16}")
        print("-" * 86, flush=True)

        ref = pb2.ScaledObjectRef(name="web", namespace="demo", scalerMetadata=METADATA)
        with h.grpc_channel(env.grpc_addr) as ch:
            stub = pb2_grpc.ExternalScalerStub(ch)
            start = time.monotonic()
            k = 0
            while time.monotonic() - start < args.duration:
                now = time.time()
                row = f"{time.strftime('%H:%M:%S', time.localtime(now))}  {phase_name(now):9}"
                try:
                    spec = stub.GetMetricSpec(ref, timeout=10).metricSpecs[0]
                    mv = stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName),
                                         timeout=10).metricValues[0]
                    active = stub.IsActive(ref, timeout=10).result
                    observed = env.prom_instant(h.QUERY)
                    target = spec.targetSizeFloat or float(spec.targetSize)
                    reactive = math.ceil(observed / target) if observed is not None else 0
                    proactive = math.ceil(mv.metricValueFloat / target)
                    obs_s = f"{observed:8.1f}" if observed is not None else f"{'-':>8}"
                    mark = "  <<" if proactive > reactive else ""
                    row += (f"  {obs_s}  {mv.metricValueFloat:8.1f}  {str(active):6}  {reactive:3d} {bar(reactive)}"
                            f"  {proactive:3d} {bar(proactive)}{mark}")
                except grpc.RpcError as e:
                    row += f"  gRPC error {e.code().name}: {e.details()}"
                except OSError as e:
                    row += f"  error: {e}"
                print(row, flush=True)
                k += 1
                # Fixed schedule, no drift: the next poll is at start + k * interval.
                delay = start + k * args.interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        print("-" * 86)
        print(f"demo: done after {args.duration:g}s")
    except KeyboardInterrupt:
        print("\ndemo: interrupted")
        rc = 130
    except Exception as e:  # noqa: BLE001 - report, then clean up
        print(f"demo: failed: {e}", file=sys.stderr)
        for p in (env.prometheus, env.prescale):
            if p is not None:
                print(p.describe(), file=sys.stderr)
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        env.close()
        where = env.tmp
        print(f"demo: stopped prescale, Prometheus and the exporter; temp files were in {where} "
              f"({'kept' if args.keep else 'removed'})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
