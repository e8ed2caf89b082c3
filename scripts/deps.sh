#!/usr/bin/env bash
# Installs the Debian packages prescale builds and tests with, when any is missing. Idempotent and quiet:
# prints nothing when everything is installed, one line per step otherwise, apt's log only on failure.
#
#   bash scripts/deps.sh            (as root, or with everything already installed)
#
# Debian's prometheus package starts a system Prometheus on :9090 when installed; the tests start their
# own Prometheus, so the service is kept from starting (policy-rc.d) and stopped if it runs anyway.
set -euo pipefail

PACKAGES=(
  libuv1-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libcjson-dev libcriterion-dev
  meson ninja-build pkg-config node-llhttp
  libssl-dev libyaml-dev openssl ca-certificates
  prometheus apache2-utils
  python3-grpcio python3-grpc-tools python3-yaml python3-jsonschema python3-h2
  nghttp2-client nghttp2-server
  golang-go golang-google-grpc-dev
  golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  podman runc mmdebstrap uidmap
  clang gcc make valgrind
)

installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == ii* ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

# A system Prometheus left running from an earlier install would hold :9090 and answer the tests' queries
# with the wrong data; stop it whether or not anything is installed now.
stop_system_prometheus() {
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    if systemctl is-active --quiet prometheus 2>/dev/null || systemctl is-enabled --quiet prometheus 2>/dev/null; then
      if [[ $(id -u) -eq 0 ]]; then
        echo "deps: stopping and disabling the system prometheus service (tests run their own)"
        systemctl disable --now prometheus >/dev/null 2>&1 || true
      elif systemctl is-active --quiet prometheus 2>/dev/null; then
        echo "deps: warning: a system prometheus service is running; stop it as root (systemctl disable --now prometheus)" >&2
      fi
    fi
  elif [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
      echo "deps: stopping the system prometheus service (tests run their own)"
      /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    else
      echo "deps: warning: a system prometheus service is running; stop it as root (/etc/init.d/prometheus stop)" >&2
    fi
  fi
}

if [[ ${#missing[@]} -eq 0 ]]; then
  stop_system_prometheus
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: run as root to install them: sudo bash scripts/deps.sh" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing packages (${missing[*]}) and no apt-get: this script supports Debian/Ubuntu only" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/prescale-deps.XXXXXX.log)

# Keep package maintainer scripts from starting services (invoke-rc.d honours policy-rc.d; exit 101 means
# "action forbidden"). An existing policy-rc.d is left alone and restored exactly.
policy=/usr/sbin/policy-rc.d
policy_backup=""
cleanup() {
  if [[ -n "$policy_backup" ]]; then
    mv -f "$policy_backup" "$policy"
  else
    rm -f "$policy"
  fi
}
if [[ -e "$policy" ]]; then
  policy_backup=$(mktemp /tmp/prescale-policy-rc.d.XXXXXX)
  cp -p "$policy" "$policy_backup"
fi
trap cleanup EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

echo "deps: installing ${missing[*]}"
if ! apt-get update -q >>"$log" 2>&1; then
  echo "deps: apt-get update failed (full log: $log); its end:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  echo "deps: apt-get install failed (full log: $log); its end:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi

still=()
for p in "${missing[@]}"; do
  installed "$p" || still+=("$p")
done
if [[ ${#still[@]} -gt 0 ]]; then
  echo "deps: still missing after apt-get install: ${still[*]} (see $log)" >&2
  exit 1
fi

stop_system_prometheus
rm -f "$log"
echo "deps: done"
