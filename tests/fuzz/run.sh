#!/usr/bin/env bash
# `make fuzz`: runs every libFuzzer target for a while (FUZZ_SECONDS each, default 30), starting from its
# seed corpus. New inputs go to a scratch folder, never into the repo; a crash leaves its input there and
# fails the run.
set -euo pipefail
build=${1:-build-fuzz}
secs=${FUZZ_SECONDS:-30}
cd "$(dirname "$0")/../.."
scratch=$(mktemp -d /tmp/prescale-fuzz.XXXXXX)
status=0
for exe in "$build"/tests/fuzz/fuzz_*; do
  [[ -x "$exe" && -f "$exe" ]] || continue
  name=${exe##*/fuzz_}
  mkdir -p "$scratch/$name"
  seeds=tests/fuzz/corpus/$name
  [[ -d "$seeds" ]] || seeds=
  if "$exe" -max_total_time="$secs" -artifact_prefix="$scratch/$name/" "$scratch/$name" $seeds \
    >"$scratch/$name.log" 2>&1; then
    echo "fuzz_$name: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$scratch/$name.log" | tail -1)s, no crash"
  else
    echo "fuzz_$name: FAILED, see $scratch/$name.log and the crash input in $scratch/$name/"
    status=1
  fi
done
[[ $status -eq 0 ]] && rm -rf "$scratch"
exit $status
