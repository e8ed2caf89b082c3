"""Prometheus fan-out (docs/reliability.md, "Prometheus fan-out"): 200 targets with distinct queries
against a real Prometheus with --prometheus-max-inflight 4. Every target gets its own answer, while
/metrics never shows more than 4 requests in flight and the process never holds more than 4 connections
to Prometheus (sampled from /proc/<pid>/fd and /proc/net/tcp throughout)."""
import os
import socket
import sys
import threading
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

import grpc  # noqa: E402

N = 200
CAP = 4
ENV = None
PB2 = PB2_GRPC = None


def setUpModule():  # noqa: N802 - unittest's naming
    global ENV, PB2, PB2_GRPC
    if not os.access(h.prescale_bin(), os.X_OK):
        raise unittest.SkipTest(f"prescale binary not built: {h.prescale_bin()}")
    PB2, PB2_GRPC = h.grpc_modules()
    ENV = h.Env(tmp_prefix="prescale-fanout-")
    try:
        # A Prometheus with no scrapes: vector(i) needs no data, and every query is distinct.
        with open(os.path.join(ENV.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 15s\n")
        ENV.prom_port = h.free_port()
        ENV.start_prometheus()
        ENV.start_prescale("--prometheus-max-inflight", str(CAP), "--log-level=info")
    except BaseException:
        ENV.close()
        raise


def tearDownModule():  # noqa: N802
    h.stop_module_env(ENV)



class TestFanout(unittest.TestCase):
    def test_200_targets_with_a_cap_of_4(self):
        stub = PB2_GRPC.ExternalScalerStub(h.grpc_channel(ENV.grpc_addr))
        stop = threading.Event()
        seen = {"inflight": 0.0, "sockets": 0, "samples": 0}

        def sample():
            pid = ENV.prescale.proc.pid
            while not stop.is_set():
                m = ENV.prescale_metrics()
                inflight = max([v for (name, _), v in m.items() if name == "prescale_prometheus_inflight"],
                               default=0.0)
                seen["inflight"] = max(seen["inflight"], inflight)
                seen["sockets"] = max(seen["sockets"], h.tcp_sockets_to(pid, ENV.prom_port))
                seen["samples"] += 1
                stop.wait(0.02)

        def one(i):
            ref = h.scaled_ref(PB2, name=f"fan{i}", namespace="fanout", query=f"vector({i})", threshold="1",
                               step="5s", history="1m", model="last")
            r = stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=60)
            return i, r.metricValues[0].metricValueFloat

        t = threading.Thread(target=sample)
        t.start()
        try:
            with ThreadPoolExecutor(32) as ex:
                results = list(ex.map(one, range(N)))
        finally:
            stop.set()
            t.join()
        for i, v in results:
            self.assertEqual(v, float(i), f"target {i} answered {v}")
        self.assertGreater(seen["samples"], 0)
        self.assertLessEqual(seen["inflight"], CAP, f"/metrics showed {seen['inflight']} requests in flight")
        self.assertLessEqual(seen["sockets"], CAP, f"{seen['sockets']} connections to Prometheus at once")
        m = ENV.prescale_metrics()
        self.assertEqual(h.metric_value(m, "prescale_prometheus_request_timeouts_total"), 0)
        self.assertEqual(h.metric_value(m, "prescale_prometheus_connections_limit") > 0, True)


class TestBlackHoleUnderLowNofile(unittest.TestCase):
    """The issue's case: `ulimit -n 256` and a black-hole serverAddress (a socket that never accepts, so
    connects hang) for 300 targets. Connections to it stay at the cap, /healthz answers and new gRPC
    connections get in while the first loads wait."""

    def test_black_hole_with_ulimit_256(self):
        cap = 16  # --prometheus-max-inflight's default
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        hole_port = hole.getsockname()[1]
        env = h.Env(tmp_prefix="prescale-blackhole-")
        try:
            env.grpc_port, env.http_port = h.free_port(), h.free_port()
            argv = ["bash", "-c", 'ulimit -n 256 && exec "$@"', "bash",
                    *h.prescale_argv(env.grpc_port, env.http_port, f"http://127.0.0.1:{hole_port}",
                                     "--first-load-timeout=1s")]
            env.prescale = h.Process("prescale", argv, os.path.join(env.tmp, "prescale.log"))
            h.wait_http_ok(env.prescale, env.http_url + "/readyz", 15, "prescale /readyz")
            pid = env.prescale.proc.pid
            stub = PB2_GRPC.ExternalScalerStub(h.grpc_channel(env.grpc_addr))

            def one(i):
                ref = h.scaled_ref(PB2, name=f"hole{i}", namespace="fanout", query=f"vector({i})",
                                   threshold="1", step="15s", history="1m", model="last")
                try:
                    stub.GetMetrics(PB2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"),
                                    timeout=30)
                    return "ok"
                except grpc.RpcError as e:  # the load cannot finish against a black hole
                    return e.code().name

            with ThreadPoolExecutor(100) as ex:
                futs = [ex.submit(one, i) for i in range(300)]
                most, health, fresh = 0, [], []
                while not all(f.done() for f in futs):
                    most = max(most, h.tcp_sockets_to(pid, hole_port, states=("01", "02")))
                    health.append(h.http_get(env.http_url + "/healthz")[0])
                    ch = h.grpc_channel(env.grpc_addr)
                    ref = h.scaled_ref(PB2, name="spec", namespace="fanout", query="vector(1)", threshold="3")
                    r = PB2_GRPC.ExternalScalerStub(ch).GetMetricSpec(ref, timeout=10)
                    fresh.append(r.metricSpecs[0].targetSize)
                    ch.close()
                codes = [f.result() for f in futs]
            print(f"black hole: at most {most} sockets, {len(health)} health checks", file=sys.stderr)
            self.assertLessEqual(most, cap, f"{most} sockets to the black hole at once (cap {cap})")
            self.assertGreater(most, 0, "the black hole was never connected to")
            self.assertGreater(len(health), 0)
            self.assertTrue(all(s == 200 for s in health), health)
            self.assertTrue(all(v == 3 for v in fresh), fresh)
            self.assertNotIn("ok", codes)
        finally:
            problems = env.close()
            hole.close()
        self.assertEqual(problems, [])


if __name__ == "__main__":
    unittest.main()
