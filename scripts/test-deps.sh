#!/usr/bin/env bash
# What the test suite needs from the system, besides the Python packages `make venv`
# installs: Chromium for the browser tests, docker-compose to check the compose files,
# an emoji font for the screenshots, redis-server for the fault tests' own Redis servers,
# Node.js to run the client's formatting (static/js/format.js) through the shared cases, and
# npm, with which the browser tests install axe-core for their accessibility audit
# (`npm ci` in tests/browser, into its git-ignored node_modules: tests/browser/axe.py);
# for the container tests (tests/container), Debian's Docker engine (docker.io: dockerd,
# which the test starts itself), debootstrap for the stand-in base images and openssl
# for the test's certificate.
# Installs what is missing with apt when run as root; otherwise stops at once with the one
# command to run. No test is skipped for want of a tool: a missing one fails the run here.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
[ -x /usr/sbin/dockerd ] || command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /usr/sbin/debootstrap ] || command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || missing+=(fonts-noto-color-emoji)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing what the test suite needs: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  exit 0
fi
echo "The test suite needs: ${missing[*]}. Install them with:" >&2
echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
exit 1
