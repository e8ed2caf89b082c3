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
# Unit suites are the criterion binaries meson registers in suite `unit` (meson introspect --tests), run
# the way `meson test --suite unit` runs them (their args: --tap -j1; their timeout); every `ok`/`not ok`
# TAP line is one case. Integration files are run with /usr/bin/python3 -m unittest -v and counted from
# unittest's summary. A binary or file that crashes, times out or prints no result counts as failed.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
UNIT_TIMEOUT_DEFAULT=120
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-900}

unit_only=false
[[ "${RUN_TESTS:-}" == unit ]] && unit_only=true
dirs=()
for a in "$@"; do
  case "$a" in
  --unit-only | unit) unit_only=true ;;
  -h | --help)
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  -*)
    echo "run_tests: unknown option: $a" >&2
    exit 2
    ;;
  *) dirs+=("$a") ;;
  esac
done
[[ ${#dirs[@]} -eq 0 ]] && dirs=(build)
if [[ ${#dirs[@]} -gt 2 ]]; then
  echo "run_tests: at most two build dirs, got: ${dirs[*]}" >&2
  exit 2
fi

total_pass=0
total_fail=0
total_skip=0
failed_names=()
work=$(mktemp -d /tmp/prescale-tests.XXXXXX)
trap 'rm -rf "$work"' EXIT

abs_dir() {
  if [[ "$1" = /* ]]; then echo "$1"; else echo "$PWD/$1"; fi
}

# Sanitizers stop at the first error so that it fails the case it happened in (meson test does the same).
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_summary=1:print_stacktrace=1}

# ---- unit suites ------------------------------------------------------------------------------------

# Prints one line per unit test of build dir $1: name, timeout, workdir, cmd+args (JSON), env (JSON),
# separated by \x1f (not a tab: read would merge the empty workdir field into its neighbours).
list_unit_tests() {
  local dir=$1
  meson introspect --tests "$dir" 2>/dev/null | "$PY" -c '
import json, sys
for t in json.load(sys.stdin):
    if not any(s == "unit" or s.endswith(":unit") for s in t.get("suite", [])):
        continue
    env = t.get("env") or {}
    print("\x1f".join([t["name"], str(t.get("timeout") or 0), t.get("workdir") or "",
                     json.dumps(t["cmd"]), json.dumps(env)]))
'
}

# Runs one criterion binary, echoing its output, and adds its cases to the totals.
run_unit() {
  local label=$1 tmo=$2 wdir=$3 cmdjson=$4 envjson=$5
  local out="$work/unit.out"
  local -a cmd
  mapfile -t cmd < <("$PY" -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$cmdjson")
  local -a envs=()
  mapfile -t envs < <("$PY" -c 'import json,sys; [print(f"{k}={v}") for k,v in json.loads(sys.argv[1]).items()]' "$envjson")
  echo "=== unit: $label"
  if [[ ! -x "${cmd[0]}" ]]; then
    echo "run_tests: $label: ${cmd[0]} is not built" >&2
    total_fail=$((total_fail + 1))
    failed_names+=("$label (not built)")
    return
  fi
  [[ "$tmo" -gt 0 ]] || tmo=$UNIT_TIMEOUT_DEFAULT
  (
    cd "${wdir:-$REPO}" || exit 97
    env "${envs[@]}" timeout --kill-after=10 "$tmo" "${cmd[@]}"
  ) 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}

  local plan ok notok skip
  plan=$(grep -m1 -oE '^1\.\.[0-9]+' "$out" | cut -d. -f3)
  ok=$(grep -cE '^ok ' "$out")
  skip=$(grep -ciE '^ok .*# skip' "$out")
  notok=$(grep -cE '^not ok' "$out")
  local pass=$((ok - skip)) fail=$notok
  if [[ -n "$plan" && $((ok + notok)) -lt $plan ]]; then
    echo "run_tests: $label: only $((ok + notok)) of $plan cases reported (crash or timeout, exit $rc)" >&2
    fail=$((fail + plan - ok - notok))
  fi
  if [[ $rc -ne 0 && $fail -eq 0 ]]; then
    echo "run_tests: $label: exited with status $rc${plan:+ after all cases passed}" >&2
    fail=1
  fi
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "run_tests: $label: timed out after ${tmo}s" >&2
  fi
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  total_skip=$((total_skip + skip))
  if [[ $fail -gt 0 ]]; then
    local names
    names=$(grep -E '^not ok' "$out" | sed -E 's/^not ok( [0-9]+)? - ([^ ]+).*/\2/' | tr '\n' ' ')
    failed_names+=("$label: ${names:-exit $rc}")
  fi
}

run_unit_dir() {
  local dir
  dir=$(abs_dir "$1")
  if [[ ! -f "$dir/meson-info/intro-tests.json" ]]; then
    echo "run_tests: $1 is not a configured meson build dir (meson setup $1)" >&2
    total_fail=$((total_fail + 1))
    failed_names+=("$1 (no build dir)")
    return
  fi
  local lines
  lines=$(list_unit_tests "$dir")
  if [[ -z "$lines" ]]; then
    echo "run_tests: no unit suites registered in $1" >&2
    total_fail=$((total_fail + 1))
    failed_names+=("$1 (no unit suites)")
    return
  fi
  local name tmo wdir cmdjson envjson
  while IFS=$'\x1f' read -r name tmo wdir cmdjson envjson; do
    run_unit "$1/$name" "$tmo" "${wdir:-$dir}" "$cmdjson" "$envjson" </dev/null
  done <<<"$lines"
}

# ---- integration suites ----------------------------------------------------------------------------

run_integration() {
  local file=$1 bin=$2
  local label="integration/${file##*/}"
  local out="$work/integ.out"
  echo "=== $label"
  (
    cd "$REPO" || exit 97
    PRESCALE_BIN="$bin" timeout --kill-after=10 "$INTEGRATION_TIMEOUT" "$PY" -m unittest -v "$file"
  ) 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}

  # unittest's summary: "Ran N tests in T" then "OK [(skipped=S, ...)]" or "FAILED (failures=F, errors=E, ...)".
  local ran status
  ran=$(grep -oE '^Ran [0-9]+ tests?' "$out" | tail -1 | grep -oE '[0-9]+')
  status=$(grep -E '^(OK|FAILED)( \(.*\))?$' "$out" | tail -1)
  field() { echo "$status" | grep -oE "(^|[ (])$1=[0-9]+" | grep -oE '[0-9]+$' || echo 0; }
  local f e s u pass fail
  f=$(field failures)
  e=$(field errors)
  s=$(field skipped)
  u=$(field "unexpected successes")
  if [[ -z "$ran" || -z "$status" ]]; then
    echo "run_tests: $label: no unittest summary (crash or timeout, exit $rc)" >&2
    pass=0
    fail=1
  else
    fail=$((f + e + u))
    pass=$((ran - fail - s))
    ((pass < 0)) && pass=0
    if [[ $rc -ne 0 && $fail -eq 0 ]]; then
      echo "run_tests: $label: exited with status $rc after reporting $status" >&2
      fail=1
    fi
  fi
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  total_skip=$((total_skip + s))
  [[ $fail -gt 0 ]] && failed_names+=("$label: ${status:-exit $rc}")
}

run_integration_all() {
  local dir bin
  dir=$(abs_dir "$1")
  bin="$dir/src/prescale"
  local files=()
  for f in "$REPO"/tests/integration/test_*.py; do
    [[ -e "$f" ]] && files+=("$f")
  done
  [[ ${#files[@]} -eq 0 ]] && return
  if [[ ! -x "$bin" ]]; then
    # The suites would skip themselves; a run that silently tests nothing must not pass.
    echo "run_tests: $bin is not built: ${#files[@]} integration suites cannot run" >&2
    total_fail=$((total_fail + ${#files[@]}))
    failed_names+=("integration (prescale not built)")
    return
  fi
  for f in "${files[@]}"; do
    run_integration "$f" "$bin" </dev/null
  done
}

# ---- main -------------------------------------------------------------------------------------------

for d in "${dirs[@]}"; do
  run_unit_dir "$d"
done
$unit_only || run_integration_all "${dirs[0]}"

echo "==="
if [[ ${#failed_names[@]} -gt 0 ]]; then
  echo "failed:"
  printf '  %s\n' "${failed_names[@]}"
fi
[[ $total_skip -gt 0 ]] && echo "($total_skip skipped, not counted)"
echo "$total_pass passed, $total_fail failed"
[[ $total_fail -eq 0 ]]
