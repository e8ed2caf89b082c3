#!/usr/bin/env bash
# `make bench`: benchmarks that print figures measured side by side in one run (never pass/fail on speed).
#   tests/bench/run.sh [BUILD [grpc_bench.py options]]
# 1. grpc_bench.py: the RPC path beside nghttpd's static POST and the grpc-go reference scaler (refscaler/,
#    built here with Debian's grpc-go in GOPATH mode), at 4x32, 4x16 and 1000x4 (clients x streams):
#    req/s, p50/p99 latency and CPU per request, medians of 5 alternating rounds and their ratios; and memory
#    per target; then the same loads with --pin: each server on CPU 0 alone (grpc-go with GOMAXPROCS=1) and
#    h2load on CPU 1 alone, so that every server gets the same one core, and its requests per CPU-second;
#    then the pinned loads again with grpcblast (BUILD/tests/bench/grpcblast) as the client: one h2load
#    thread runs out of its core before the server under test does, grpcblast (a fraction of its CPU per
#    request) does not, and it checks every answer's bytes;
# 2. engine_bench.c: the forecasting engine per target (refresh, refit, first load, bytes per sample),
#    compiled here against BUILD's libprescale.a, so it measures the very objects the server runs.
# 3. prom_bench.c: a 30 MB Prometheus answer read as before (cJSON, one go) and now (streaming, capped):
#    the longest loop stall and the peak RSS; compiled the same way.
# 4. fanout_bench.py: FANOUT_TARGETS (10000) targets with distinct queries against a real Prometheus for
#    FANOUT_SECONDS (120; e.g. FANOUT_SECONDS=20 for a quick run): refresh timeouts, connections to
#    Prometheus, /healthz p99.
# 5. restart_bench.py: RESTART_TARGETS (1000) series of a week at 1 minute backfilled with promtool into a
#    real Prometheus, prescale started fresh, one GetMetrics per target: time from the first RPC to the last
#    target ready, prescale's CPU, the longest /healthz wait. RESTART_BASELINE=path/to/an/older/prescale
#    runs that binary the same way first and prints the ratios (e.g. a build of main before the bulk load:
#    git worktree add /tmp/base 683ef92 && meson setup /tmp/base/build && ninja -C /tmp/base/build).
# 6. stream_bench.py: STREAM_STREAMS (10000) StreamIsActive streams over 10 connections (raw HTTP/2, a
#    process of its own), one target each, all flipped by one Prometheus answer: change -> first and last
#    stream, first -> last, prescale's CPU time in between, STREAM_ROUNDS (5) rounds. STREAM_BASELINE=path
#    runs an older prescale (with --grpc-max-streams) the same way first.
# 7. scale_bench.py: SCALE_SERIES (1000) series of a week backfilled; RSS at rest; Prometheus bytes per
#    target per refresh for a history of a day and of a week; RSS with SCALE_TARGETS (10000) targets of a
#    week at 1 minute, in bytes per stored sample.
# 8. close_bench.c: 1,000 to 10,000 targets closed at once by the registry's close (shutdown) and by an idle
#    sweep: the CPU time of that one call (the loop's stall), medians of 5 rounds; compiled like engine_bench.
# 9. shutdown_bench.py: SHUTDOWN_TARGETS (10000) targets loaded from a real Prometheus, then SIGTERM: the CPU
#    and wall time to exit, medians of 3 rounds. SHUTDOWN_BASELINE=path runs an older prescale first.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/../.."
/usr/bin/python3 tests/bench/grpc_bench.py --prescale "$build/src/prescale" "${@:2}"
echo
/usr/bin/python3 tests/bench/grpc_bench.py --prescale "$build/src/prescale" --pin --targets 0 "${@:2}"
echo
/usr/bin/python3 tests/bench/grpc_bench.py --prescale "$build/src/prescale" --pin --targets 0 --client grpcblast \
  --grpcblast "$build/tests/bench/grpcblast" "${@:2}"
echo
lib="$build/src/libprescale.a"
if [[ ! -f "$lib" ]]; then
  echo "engine bench: $lib not built (run ninja -C $build first)" >&2
  exit 1
fi
${CC:-cc} -O2 -g -std=gnu11 -Isrc -Isrc/forecast tests/bench/engine_bench.c "$lib" -lm -o "$build/engine_bench"
"$build/engine_bench" ${ENGINE_BENCH_ARGS:-}
echo
${CC:-cc} -O2 -g -std=gnu11 -Isrc tests/bench/prom_bench.c "$lib" "$build/third_party/libllhttp.a" -luv -lcjson -lm \
  -lpthread -o "$build/prom_bench"
"$build/prom_bench"

/usr/bin/python3 tests/bench/fanout_bench.py --prescale "$build/src/prescale" --targets "${FANOUT_TARGETS:-10000}" \
  --duration "${FANOUT_SECONDS:-120}"

echo
/usr/bin/python3 tests/bench/restart_bench.py --prescale "$build/src/prescale" --targets "${RESTART_TARGETS:-1000}" \
  ${RESTART_BASELINE:+--baseline "$RESTART_BASELINE"}

echo
/usr/bin/python3 tests/bench/stream_bench.py --prescale "$build/src/prescale" ${STREAM_BASELINE:+--baseline "$STREAM_BASELINE"}

echo
/usr/bin/python3 tests/bench/scale_bench.py --prescale "$build/src/prescale"

echo
${CC:-cc} -O2 -g -std=gnu11 -Isrc tests/bench/close_bench.c "$lib" "$build/third_party/libllhttp.a" -luv -lcjson -lyaml \
  -lssl -lcrypto -lm -lpthread -o "$build/close_bench"
"$build/close_bench"

echo
/usr/bin/python3 tests/bench/shutdown_bench.py --prescale "$build/src/prescale" --targets "${SHUTDOWN_TARGETS:-10000}" \
  ${SHUTDOWN_BASELINE:+--baseline "$SHUTDOWN_BASELINE"}
