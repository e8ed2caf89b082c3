#!/usr/bin/env bash
# `make bench`: benchmarks that print figures measured side by side in one run (never pass/fail on speed).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/../.."
/usr/bin/python3 tests/bench/grpc_bench.py --prescale "$build/src/prescale" "${@:2}"
