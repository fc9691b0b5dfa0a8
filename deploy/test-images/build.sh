#!/usr/bin/env bash
# Makes the stand-in images that the container test (tests/container/test_stack.py) runs
# the compose stack on, in the Docker engine at $DOCKER_HOST. Test fixtures, not what
# production runs: see README.md.
#
#   DOCKER_HOST=unix:///path/to/docker.sock deploy/test-images/build.sh
#
# 1. A Debian minbase made by debootstrap, for bookworm and for forky, cached as a tarball
#    under $TEST_IMAGES_CACHE (default /var/cache/pubsub-test-images), one a day: a run on
#    the same day imports the tarball instead of running debootstrap again.
# 2. Imported as pubsub-test/debootstrap:<suite>; pubsub-test/base:<suite> adds apt's
#    settings and the host's extra CA certificates.
# 3. The stand-ins, tagged with the names the Dockerfile and docker-compose.yml use:
#    python:3.11.14-slim-bookworm, redis:7.4, postgres:16 (bookworm), nginx:1.28-alpine (forky).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${TEST_IMAGES_CACHE:-/var/cache/pubsub-test-images}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
docker=${DOCKER:-docker}
# `host` for an engine without NAT (the container test's: dockerd --iptables=false).
build_network=${DOCKER_BUILD_NETWORK:-}
today=$(date -u +%Y%m%d)
export DOCKER_BUILDKIT=0

for tool in debootstrap "$docker"; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done
[ -n "${DOCKER_HOST:-}" ] || echo "build.sh: DOCKER_HOST is not set; using the default engine" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

log() { printf '[test-images %s] %s\n' "$(date -u +%T)" "$*" >&2; }

# Today's debootstrap tarball of a suite: made if missing (under a lock, so two runs at
# once make it once), older ones deleted.
minbase_tarball() {
  local suite=$1 tarball="$cache/$1-minbase-$today.tar" script=()
  # This debootstrap (bookworm's) knows no forky: forky is made as sid is.
  [ "$suite" = forky ] && script=(/usr/share/debootstrap/scripts/sid)
  (
    flock 9
    if [ ! -s "$tarball" ]; then
      local root="$cache/$suite-root.$$" started=$SECONDS
      rm -rf "$root"
      log "debootstrap --variant=minbase $suite (cached in $tarball)"
      if ! debootstrap --variant=minbase "$suite" "$root" "$mirror" "${script[@]}" >"$work/debootstrap-$suite.log" 2>&1; then
        tail -40 "$work/debootstrap-$suite.log" >&2
        rm -rf "$root"
        exit 1
      fi
      rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
      tar -C "$root" --numeric-owner -cf "$tarball.part" .
      mv "$tarball.part" "$tarball"
      rm -rf "$root"
      find "$cache" -maxdepth 1 -name "$suite-minbase-*.tar" ! -name "${tarball##*/}" -delete
      log "debootstrap $suite took $((SECONDS - started)) s"
    fi
  ) 9>"$cache/.$suite.lock"
  echo "$tarball"
}

sources_list() {
  case "$1" in
    bookworm)
      echo "deb $mirror bookworm main"
      echo "deb $mirror bookworm-updates main"
      echo "deb $security_mirror bookworm-security main"
      ;;
    *) echo "deb $mirror $1 main" ;;
  esac
}

# The build context of pubsub-test/base:<suite>: the Dockerfile, and what it copies in
# from the host: apt sources, the extra CA certificates, pip's certificate bundle and
# index (pip inside the containers trusts what the host's pip trusts).
base_context() {
  local suite=$1 context="$work/base-$1"
  mkdir -p "$context/ca-certificates"
  cp "$here/base/Dockerfile" "$context/"
  sources_list "$suite" >"$context/sources.list"
  cat >"$context/90test-images" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
// A mirror frozen at a snapshot serves Release files past their Valid-Until date.
Acquire::Check-Valid-Until "false";
Acquire::GzipIndexes "true";
Acquire::Languages "none";
EOF
  shopt -s nullglob
  for cert in /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt; do
    cp "$cert" "$context/ca-certificates/"
  done
  shopt -u nullglob
  {
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    index=${PIP_INDEX_URL:-$(pip config get global.index-url 2>/dev/null || true)}
    case "$index" in http://* | https://*) echo "index-url = $index" ;; esac
  } >"$context/pip.conf"
  echo "$context"
}

build() {  # tag context [docker build options...]
  local tag=$1 context=$2 started=$SECONDS
  shift 2
  if ! "$docker" build --tag "$tag" ${build_network:+--network "$build_network"} "$@" "$context" >"$work/build-${tag//[:\/]/_}.log" 2>&1; then
    echo "build.sh: building $tag failed:" >&2
    tail -60 "$work/build-${tag//[:\/]/_}.log" >&2
    return 1
  fi
  log "built $tag in $((SECONDS - started)) s"
}

# Both suites' tarballs at once (debootstrap mostly waits for the network).
minbase_tarball bookworm >"$work/bookworm.path" &
bookworm_job=$!
minbase_tarball forky >"$work/forky.path" &
forky_job=$!
wait "$bookworm_job"
wait "$forky_job"

for suite in bookworm forky; do
  started=$SECONDS
  "$docker" import --change 'CMD ["bash"]' "$(cat "$work/$suite.path")" "pubsub-test/debootstrap:$suite" >/dev/null
  log "imported pubsub-test/debootstrap:$suite in $((SECONDS - started)) s"
  build "pubsub-test/base:$suite" "$(base_context "$suite")" --build-arg "SUITE=$suite"
done

# The stand-ins, in parallel.
pids=()
build python:3.11.14-slim-bookworm "$here/python" & pids+=($!)
build redis:7.4 "$here/redis" & pids+=($!)
build postgres:16 "$here/postgres" & pids+=($!)
build nginx:1.28-alpine "$here/nginx" & pids+=($!)
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit "$status"
