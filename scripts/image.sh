#!/usr/bin/env bash
# Builds the container image from Containerfile with podman and tags it prescale:latest and
# prescale:<version> (the version of meson.build). `make image` runs this; so does
# tests/integration/test_image.py, which then finds the image in podman's local storage.
#
#   bash scripts/image.sh              build (layers cached by podman: a rebuild recompiles only when the
#                                      sources changed, and never reruns apt for a new revision)
#   bash scripts/image.sh run-args     print, one per line, the podman options this host needs for
#                                      `podman run` (the test runs its containers with them)
#
# Base images. The Containerfile names two (its ARGs DEBIAN_IMAGE and DEBIAN_SLIM_IMAGE, Docker Hub's
# debian:bookworm and debian:bookworm-slim). When one is not in local storage it is made here, with no
# registry involved: `mmdebstrap` bootstraps Debian bookworm from the Debian mirror the way the official
# images are made (debuerreotype: minbase, merged /usr, no Recommends, bookworm + bookworm-updates +
# bookworm-security, the official images' apt and dpkg settings written below; the slim one also drops
# documentation, man pages and translations) and `podman import` stores it under exactly the name the
# Containerfile uses. PRESCALE_IMAGE_PULL=1 pulls the missing ones from their registry instead, and
# PRESCALE_IMAGE_REBASE=1 remakes (or re-pulls) them even when present, e.g. for newer security updates.
#
# Environment:
#   PRESCALE_IMAGE_PULL=1         pull missing base images instead of making them with mmdebstrap
#   PRESCALE_IMAGE_REBASE=1       make (or pull) the base images even when local storage has them
#   PRESCALE_DEBIAN_MIRROR=URL    the Debian mirror mmdebstrap uses (default http://deb.debian.org/debian;
#                                 security updates from .../debian-security on the same host)
#   PRESCALE_IMAGE=NAME           the image name (default prescale)
#   SOURCE_DATE_EPOCH=SECONDS     the image's `created` label (default: now)
#   PODMAN=PATH                   the podman binary (default podman)
#
# Host quirks handled here (each seen on Debian 12's podman 4.3 in a sandboxed VM; harmless elsewhere):
#   - `--runtime runc`: crun 1.8.1 (podman's preferred runtime when installed) refuses to run on a host with
#     hybrid cgroups (v1 controllers plus the unified hierarchy); runc 1.1 runs there.
#   - `--ulimit nofile=... --ulimit nproc=...`: for root, podman asks the runtime to give each container
#     nofile 1048576 and nproc 4194304, above the hard limits of this sandbox (and without
#     CAP_SYS_RESOURCE to raise them), so every container fails with "error setting rlimit type 7 (or 6):
#     operation not permitted". We pass limits the host allows: nofile at our own hard limit, nproc 4096
#     (conmon itself runs with at most 32768 here, and a build or prescale needs a few threads).
#   - `--network=host` for the build: apt in the RUN steps must reach the Debian mirror. The build
#     containers' default network (a netavark bridge: a veth, iptables rules, forwarding) did not reach it
#     on some of the sandboxed hosts this was built on; the host's own network namespace, route and
#     resolver always do. Only the build steps use it, and nothing of it ends up in the image.
#   - mmdebstrap runs in its "root" mode when we are root (chroot, no user namespace). As a user it would
#     pick its "unshare" mode, which needs the subuid/subgid ranges of `uidmap`; rootless use of this
#     script has not been tried.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PODMAN=${PODMAN:-podman}
NAME=${PRESCALE_IMAGE:-prescale}
MIRROR=${PRESCALE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

die() { echo "image: $*" >&2 && exit 1; }

# The --ulimit values described above: the container's open files at our hard limit (podman's own
# default when that is unlimited), processes 4096.
nofile=$(ulimit -Hn)
[[ "$nofile" == unlimited ]] && nofile=1048576
RUN_ARGS=(--runtime runc --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)

if [[ "${1:-}" == run-args ]]; then
  printf '%s\n' "${RUN_ARGS[@]}"
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: scripts/image.sh [run-args]"

command -v "$PODMAN" >/dev/null || die "podman is not installed (Debian: apt-get install podman runc; scripts/deps.sh)"
command -v runc >/dev/null || die "runc is not installed (Debian: apt-get install runc)"

# ---- the base images ----------------------------------------------------------------------------------

# The default of a global ARG of the Containerfile, e.g. docker.io/library/debian:bookworm.
containerfile_arg() {
  sed -n "s/^ARG $1=//p" "$REPO/Containerfile" | head -n1
}

# Writes the files the official Debian images add on top of a bootstrap (debuerreotype's
# "minimizing config" and, with slim, its "slimify" dpkg filter) into directory $1, as a tree to copy
# into the new root. Same settings, our words.
write_image_config() {
  local root=$1 slim=$2
  mkdir -p "$root/etc/apt/apt.conf.d" "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/sources.list.d" "$root/usr/sbin"
  # Each `apt-get install` in a build step is a layer: keep neither downloaded .debs nor apt's binary
  # caches (/var/cache/apt/*.bin) in it.
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
# Package installs happen in image build steps, each one a layer: apt's caches would only make the layer
# bigger. The same as running "apt-get clean" after every dpkg run and every update.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests" <<'EOF'
# "apt-get purge --auto-remove" after a build removes what the build pulled in, even when something else
# merely suggests it.
Apt::AutoRemove::SuggestsImportant "false";
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-gzip-indexes" <<'EOF'
# Package lists a build step leaves behind stay compressed on disk.
Acquire::GzipIndexes "true";
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
# No translated package descriptions: faster "apt-get update", smaller lists.
Acquire::Languages "none";
EOF
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup" <<'EOF'
# A build step that loses power is redone from scratch anyway: dpkg need not sync after each file.
force-unsafe-io
EOF
  # No service starts inside a build step (invoke-rc.d asks this script; 101 = action forbidden).
  printf '#!/bin/sh\n# Services are never started inside an image build (101: action forbidden).\nexit 101\n' \
    >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  local host=${MIRROR%/debian}
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $host/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  if $slim; then
    # The slim variant: no documentation (but the copyright files), man pages, info, lintian overrides
    # or translations, now (the cleanup hook below) and for every later install (this dpkg filter).
    {
      echo "# The slim variant: files a container does not need are not installed (dpkg path-exclude)."
      for p in doc groff info linda lintian/overrides locale man; do echo "path-exclude /usr/share/$p/*"; done
      for p in doc/*/copyright locale/locale.alias; do echo "path-include /usr/share/$p"; done
    } >"$root/etc/dpkg/dpkg.cfg.d/docker"
  fi
}

# Makes base image $1 (an exact name from the Containerfile) with mmdebstrap; slim when $2 is true.
make_base() {
  local name=$1 slim=$2 work
  work=$(mktemp -d /tmp/prescale-image.XXXXXX)
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" RETURN
  write_image_config "$work/config" "$slim"
  # shellcheck disable=SC2016 # "$1" in a hook is the new root, expanded by mmdebstrap's shell
  local hooks=(
    # Merged /usr the way debootstrap (and so the official images) set it up: /bin, /lib, /sbin are
    # symlinks into /usr, and usr-is-merged is installed.
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    # The dpkg settings before the packages are unpacked, so the slim filter applies to them too.
    --setup-hook="mkdir -p \"\$1/etc/dpkg/dpkg.cfg.d\" && cp '$work/config/etc/dpkg/dpkg.cfg.d/'* \"\$1/etc/dpkg/dpkg.cfg.d/\""
    --customize-hook="sync-in '$work/config' /"
    # mmdebstrap's cleanup removes apt's caches with `apt-get clean`, which with docker-clean's empty
    # Dir::Cache::pkgcache no longer knows where they are: 72 MB of pkgcache.bin and srcpkgcache.bin would
    # stay in the image. Removed here, as the official images have none.
    --customize-hook='rm -f "$1"/var/cache/apt/*.bin'
    # The sources as the official images have them (deb822 in sources.list.d), not mmdebstrap's one-line list.
    --customize-hook='rm -f "$1/etc/apt/sources.list"'
  )
  if $slim; then
    # shellcheck disable=SC2016 # as above
    # What was unpacked before the filter existed (mmdebstrap's own extraction of the Essential set).
    hooks+=(--customize-hook='chroot "$1" sh -c "
      for d in doc groff info linda lintian/overrides locale man; do
        [ -d /usr/share/\$d ] || continue
        find /usr/share/\$d -mindepth 1 ! -type d ! -path \"/usr/share/doc/*/copyright\" ! -path /usr/share/locale/locale.alias -delete
        find /usr/share/\$d -mindepth 1 -depth -type d -empty -delete
      done"')
  fi
  echo "image: making $name with mmdebstrap from $MIRROR (no registry)"
  # minbase: the Essential set and apt. mmdebstrap installs no Recommends and leaves no package lists or
  # apt caches in the result.
  mmdebstrap --quiet --variant=minbase --format=tar "${hooks[@]}" \
    "$SUITE" "$work/rootfs.tar" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb ${MIRROR%/debian}/debian-security $SUITE-security main" \
    || die "mmdebstrap failed for $name (is $MIRROR reachable?)"
  # CMD as the official images have it.
  "$PODMAN" import --quiet --change 'CMD ["bash"]' --message "mmdebstrap --variant=minbase $SUITE (scripts/image.sh)" \
    "$work/rootfs.tar" "$name" >/dev/null
}

ensure_base() {
  local name=$1 slim=$2
  if [[ "${PRESCALE_IMAGE_REBASE:-}" != 1 ]] && "$PODMAN" image exists "$name"; then
    return
  fi
  if [[ "${PRESCALE_IMAGE_PULL:-}" == 1 ]]; then
    "$PODMAN" pull "$name"
  else
    command -v mmdebstrap >/dev/null || die "$name is not in local storage and mmdebstrap is not installed (apt-get install mmdebstrap; or PRESCALE_IMAGE_PULL=1 to pull it)"
    make_base "$name" "$slim"
  fi
}

base=$(containerfile_arg DEBIAN_IMAGE)
slim_base=$(containerfile_arg DEBIAN_SLIM_IMAGE)
[[ -n "$base" && -n "$slim_base" ]] || die "Containerfile names no DEBIAN_IMAGE or DEBIAN_SLIM_IMAGE default"
ensure_base "$base" false
ensure_base "$slim_base" true

# ---- the image ----------------------------------------------------------------------------------------

version=$(sed -n "s/^  version: '\([^']*\)',.*/\1/p" "$REPO/meson.build" | head -n1)
[[ -n "$version" ]] || die "no version in meson.build"
revision=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
[[ "$revision" != unknown && -n "$(git -C "$REPO" status --porcelain 2>/dev/null)" ]] && revision+="-dirty"
created=$(date -u ${SOURCE_DATE_EPOCH:+-d "@$SOURCE_DATE_EPOCH"} +%Y-%m-%dT%H:%M:%SZ)

echo "image: building $NAME:$version ($revision)"
# VERSION, REVISION and CREATED are declared after the runtime stage's apt step, so that a new value only
# reruns the steps after it (Docker, newer buildah); the compile step reruns only when the build context
# changed. Quirk: buildah 1.28 (Debian 12's podman 4.3) leaves build-arg values out of its layer cache
# keys, so a cached LABEL step would keep the first build's revision and date. The same labels are also
# given with --label, which buildah applies to the final image after the cached steps.
labels=(version="$version" revision="$revision" created="$created")
"$PODMAN" build "${RUN_ARGS[@]}" --network=host --layers \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
  "${labels[@]/#/--label=org.opencontainers.image.}" \
  -f "$REPO/Containerfile" -t "$NAME:$version" -t "$NAME:latest" "$REPO"
echo "image: $NAME:$version and $NAME:latest, $("$PODMAN" image inspect --format '{{.Size}}' "$NAME:$version") bytes"
