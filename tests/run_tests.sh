#!/usr/bin/env bash
# Runs every test suite and ends with exactly one line: `N passed, N failed` (test cases, over all suites).
# Exits non-zero when anything failed, crashed, timed out or could not run.
#
#   tests/run_tests.sh [--unit-only] [BUILD [ASAN_BUILD | unit]]
#
#   BUILD        meson build dir (default: build). Its unit suites run, then the integration suites
#                (tests/integration/test_*.py) against BUILD/src/prescale (passed as PRESCALE_BIN).
#   ASAN_BUILD   a second build dir (e.g. ASan+UBSan) whose unit suites run too.
#   unit         (or --unit-only, or RUN_TESTS=unit in the environment) runs the unit suites only.
#
# Unit suites run under `meson test --suite unit` (one at a time unless MESON_TESTTHREADS says otherwise),
# which parses their TAP; their cases are counted from its testlog.junit.xml. A suite that crashes or
# times out counts its unreported cases as failed, and one that exits non-zero with no failed case, one.
# Integration files run under unittest, a process each; one that crashes or times out is one failure.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
export MESON_TESTTHREADS=${MESON_TESTTHREADS:-1}
# Sanitizers stop at the first error so that it fails the case it happened in (meson test does the same).
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1:print_stacktrace=1}

unit_only=false
[[ "${RUN_TESTS:-}" == unit ]] && unit_only=true
dirs=()
for a in "$@"; do
  case "$a" in
  --unit-only | unit) unit_only=true ;;
  -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' && exit 0 ;;
  -*) echo "run_tests: unknown option: $a" >&2 && exit 2 ;;
  *) dirs+=("$a") ;;
  esac
done
[[ ${#dirs[@]} -eq 0 ]] && dirs=(build)
[[ ${#dirs[@]} -gt 2 ]] && echo "run_tests: at most two build dirs, got: ${dirs[*]}" >&2 && exit 2

passed=0 failed=0 skipped=0
add() { passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3)); }
work=$(mktemp -d /tmp/prescale-tests.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Prints "PASSED FAILED SKIPPED" for the last `meson test` in build dir $1 (each failed suite on stderr).
count_unit() {
  "$PY" - "$1/meson-logs" <<'EOF'
import json, re, sys, xml.etree.ElementTree as ET
logs, passed, failed, skipped = sys.argv[1], 0, 0, 0
suites = {s.get("name").split(".", 1)[-1]: s for s in ET.parse(f"{logs}/testlog.junit.xml").getroot()}
for t in map(json.loads, open(f"{logs}/testlog.json")):
    s = suites.get(t["name"], {})
    n, skip = int(s.get("tests", 0)), int(s.get("skipped", 0))
    bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
    plan = re.search(r"^1\.\.(\d+)", t.get("stdout") or "", re.M)
    lost = max(int(plan.group(1)) - n, 0) if plan else 0  # never reported: a crash or a timeout
    lost += t["result"] not in ("OK", "EXPECTEDFAIL") and bad + lost == 0  # a bad exit, or no result at all
    if bad + lost:
        print(f"run_tests: {logs}: {t['name']}: {t['result']}, {bad + lost} failed", file=sys.stderr)
    passed, failed, skipped = passed + n - skip - bad, failed + bad + lost, skipped + skip
print(passed, failed, skipped) if passed + failed else sys.exit(f"run_tests: {logs}: no unit suite ran")
EOF
}

for d in "${dirs[@]}"; do
  echo "=== unit suites of $d"
  rm -f "$d/meson-logs/testlog.json" # a build that fails must not leave the last run's results behind
  meson test -C "$d" --suite unit --print-errorlogs
  [[ -s "$d/meson-logs/testlog.json" ]] && read -r p f s < <(count_unit "$d") || p=0 f=1 s=0
  add "$p" "$f" "$s"
done

# Integration: unittest's own result object gives the counts.
if ! $unit_only; then
  bin=$(cd "${dirs[0]}" && pwd)/src/prescale
  [[ -x "$bin" ]] || { echo "run_tests: $bin is not built: the integration suites cannot run" >&2 && add 0 1 0; }
  for f in "$REPO"/tests/integration/test_*.py; do
    [[ -x "$bin" ]] || break
    echo "=== integration/${f##*/}"
    rm -f "$work/result"
    (cd "$REPO" && PRESCALE_BIN="$bin" timeout --kill-after=10 "${INTEGRATION_TIMEOUT:-900}" "$PY" -c '
import sys, unittest
r = unittest.main(module=None, argv=["unittest", "-v", sys.argv[1]], exit=False).result
bad = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
print(max(r.testsRun - bad - len(r.skipped), 0), bad, len(r.skipped), file=open(sys.argv[2], "w"))
' "$f" "$work/result") </dev/null
    read -r p n s 2>/dev/null <"$work/result" || { echo "run_tests: ${f##*/}: no result (crash or timeout)" >&2 && p=0 n=1 s=0; }
    add "$p" "$n" "$s"
  done
fi

[[ $skipped -gt 0 ]] && echo "($skipped skipped, not counted)"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
