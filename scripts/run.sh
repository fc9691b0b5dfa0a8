#!/usr/bin/env bash
# Start the site for development: migrate, then uvicorn and a django-rq worker under
# honcho (Ctrl-C stops both). Redis: $REDIS_URL, else the one on 127.0.0.1:6379,
# else a redis-server started here under var/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
PORT=${PORT:-8000}
if ! [[ "$PORT" =~ ^[0-9]+$ ]] || (( PORT < 1 || PORT > 65535 )); then
  echo "PORT=$PORT is not a port number: pick one from 1 to 65535, e.g. make run PORT=8080" >&2
  exit 2
fi
mkdir -p var

redis_answers() {
  "$PY" - "$1" <<'PYEOF' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PYEOF
}

if [ -z "${REDIS_URL:-}" ]; then
  if redis_answers "redis://127.0.0.1:6379/0"; then
    export REDIS_URL="redis://127.0.0.1:6379/0"
  elif command -v redis-server >/dev/null; then
    port=6390
    if ! redis_answers "redis://127.0.0.1:$port/0"; then
      echo "Starting redis-server on 127.0.0.1:$port (data in var/redis)"
      mkdir -p var/redis
      redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$PWD/var/redis" \
        --appendonly yes --pidfile "$PWD/var/redis/redis.pid" --logfile "$PWD/var/redis/redis.log"
      for _ in $(seq 50); do redis_answers "redis://127.0.0.1:$port/0" && break; sleep 0.1; done
    fi
    export REDIS_URL="redis://127.0.0.1:$port/0"
  else
    echo "No Redis is answering on 127.0.0.1:6379 and redis-server is not installed."
    echo "Install it with:  sudo apt-get install redis-server   (or set REDIS_URL)"
    exit 1
  fi
fi
redis_answers "$REDIS_URL" || { echo "Redis at $REDIS_URL does not answer."; exit 1; }

export DJANGO_SETTINGS_MODULE=pubsub_site.settings
export PATH="$PWD/$VENV/bin:$PATH"
"$PY" manage.py migrate --noinput
if [ -n "${DEMO:-}" ]; then
  "$PY" manage.py load_demo
fi

# Prometheus: the web process and the worker keep their metrics in files of this directory,
# which /metrics adds up; emptied before they start, as prometheus_client asks.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/prometheus}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete

echo
echo "  pubsub is running at http://127.0.0.1:$PORT/   (Redis: $REDIS_URL)"
echo "  Metrics: http://127.0.0.1:$PORT/metrics (from this machine); staff: /admin/live-status/"
echo "  Press Ctrl-C to stop the web server and the worker."
echo
exec "$VENV/bin/honcho" -f Procfile start -p "$PORT"
