#!/usr/bin/python3
"""Writes the demo/test load as an OpenMetrics backfill file and optionally turns it into TSDB blocks.

  /usr/bin/python3 scripts/gen_history.py --out load.om [--minutes 75] [--end UNIX_SECONDS] [--tsdb DIR]

The series is `prescale_test_load{job="load",instance="exporter"}`, one sample per second, the periodic
load of tests/integration/harness.py (period 3 min). With --tsdb, runs
`promtool tsdb create-blocks-from openmetrics OUT DIR` so Prometheus started with
--storage.tsdb.path=DIR serves the history (scrape the same job/instance to continue it live).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness as h  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="OpenMetrics file to write")
    ap.add_argument("--minutes", type=float, default=75.0, help="length of the history (default 75)")
    ap.add_argument("--end", type=float, default=None, help="end time, Unix seconds (default: now)")
    ap.add_argument("--tsdb", default=None, help="also create TSDB blocks in this directory (promtool)")
    args = ap.parse_args()
    if args.minutes <= 0:
        ap.error(f"--minutes: {args.minutes!r} is not > 0")
    end = time.time() if args.end is None else args.end
    h.write_backfill(args.out, end - args.minutes * 60, end)
    print(f"wrote {args.out}: {args.minutes:g} min of {h.METRIC} ending at {end:.1f}", flush=True)
    if args.tsdb:
        os.makedirs(args.tsdb, exist_ok=True)
        h.create_blocks(args.out, args.tsdb, sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None)
        print(f"created blocks in {args.tsdb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
