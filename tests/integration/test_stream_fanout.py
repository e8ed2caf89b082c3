"""StreamIsActive watches beyond the default stream limit (issue 11, "Fan-out and scale").

KEDA opens one StreamIsActive per ScaledObject, all on its one connection to the scaler. The connection's
SETTINGS_MAX_CONCURRENT_STREAMS (--grpc-max-streams, 256 by default) bounds how many are open at once. With
the flag at 300, python3-grpcio opens 300 watches on one channel, every one gets its first state from a real
Prometheus and all 300 are open at once on one connection; at the default they are not (tried: 134 of 300
open at once, the client holding the others back)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

STREAMS = 300


class TestStreamsBeyondTheDefaultLimit(unittest.TestCase):
    def test_300_watches_on_one_connection_with_grpc_max_streams_300(self):
        if not os.access(h.prescale_bin(), os.X_OK):
            self.skipTest(f"prescale binary not built: {h.prescale_bin()}")
        pb2, pb2_grpc = h.grpc_modules()
        env = h.Env(tmp_prefix="prescale-streams-")
        calls = []
        channel = None
        try:
            env.prom_port = h.free_port()
            with open(os.path.join(env.tmp, "prometheus.yml"), "w") as f:
                f.write("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
            env.start_prometheus()
            env.start_prescale("--grpc-max-streams", str(STREAMS))
            channel = h.grpc_channel(env.grpc_addr)
            stub = pb2_grpc.ExternalScalerStub(channel)
            for i in range(STREAMS):
                ref = h.scaled_ref(pb2, name=f"w{i % 10}", namespace="streams", query="vector(7)",
                                   threshold="1", activationThreshold="5", step="15s", history="2m",
                                   model="last")
                calls.append(stub.StreamIsActive(ref, timeout=120))
            firsts = [next(c).result for c in calls]
            self.assertEqual(firsts, [True] * STREAMS)
            h.wait_until(lambda: h.metric_value(env.prescale_metrics(), "prescale_grpc_streams") == STREAMS,
                         30, what=f"{STREAMS} streams open at once")
            self.assertEqual(h.metric_value(env.prescale_metrics(), "prescale_grpc_connections"), 1)
        finally:
            for c in calls:
                c.cancel()
            if channel is not None:
                channel.close()
            problems = env.close()
        self.assertEqual(problems, [])


if __name__ == "__main__":
    unittest.main()
