# The production image. One image runs every process of the site:
#   web     uvicorn, HTTP and WebSocket (the default command)
#   worker  python manage.py jobs_worker
#   migrate python manage.py migrate --noinput
# docker-compose.yml wires them together; docs/deploy.md tells how to run it.

# --- build: the dependencies in a virtualenv, in a layer of their own -------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
# requirements.txt alone first: this layer is rebuilt only when the pins change.
COPY requirements.txt /tmp/requirements.txt
# Every pin has a manylinux wheel (psycopg[binary], orjson...): no compiler needed.
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# --- runtime -----------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_ENV=production

# The processes run as an unprivileged user that owns nothing in /app.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY . .

# Static files are collected into var/staticfiles at build time, hashed and
# compressed, and served by the app itself (ServeStatic middleware). Production
# settings insist on these variables; the dummy values live only in this step and
# nothing here connects to a database or to Redis.
RUN DJANGO_ENV=production \
    SECRET_KEY=collectstatic-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz \
    ALLOWED_HOSTS=localhost \
    DATABASE_URL=sqlite:////tmp/collectstatic-unused.sqlite3 \
    REDIS_URL=redis://127.0.0.1:6379/0 \
    python manage.py collectstatic --noinput

# Numeric, so that the host and Kubernetes-style runtimes can check it is not root.
USER 10001:10001
EXPOSE 8000

# Liveness: /healthz answers 200 while the process serves requests. It is exempt
# from the HTTPS redirect; the script sends a Host that ALLOWED_HOSTS accepts.
# The worker overrides this check in docker-compose.yml (it serves no HTTP).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "deploy/healthcheck.py", "web"]

# uvicorn with websockets-sansio on uvloop: the fastest server in `make bench` that passes
# the fault suite (docs/benchmarks.md). Per-message deflate is off: compressing every copy
# of a room's message costs more CPU than the fan-out itself. --ws-max-size is the
# consumer's frame limit (settings.WS_FRAME_MAX_BYTES, 64 KiB): a bigger frame is
# refused with 1009 from its header, before its payload is buffered (uvicorn's default is
# 16 MiB). A socket whose keepalive ping (every 20 s) is not answered within 60 s is closed
# (1011): uvicorn's default of 20 s made a busy process take its own clients, slow for a moment,
# for dead ones and close them, each a handshake more, until a reconnect storm fed itself
# (docs/benchmarks.md, "The storm's survivors closed their own sockets"). X-Forwarded-For
# and X-Forwarded-Proto (--proxy-headers) are believed only from the addresses in
# FORWARDED_ALLOW_IPS, which uvicorn reads from the environment: here loopback only;
# docker-compose.yml sets it to the proxy's own address on its network.
# --lifespan on: on SIGTERM the app first drains its WebSockets (1012, spread over
# WS_DRAIN_SECONDS; messaging.realtime.drain) and lingers WS_DRAIN_LINGER_SECONDS not
# listening, then uvicorn waits for what still runs for --timeout-graceful-shutdown
# seconds: all within compose's stop_grace_period (25 s).
ENV FORWARDED_ALLOW_IPS=127.0.0.1
CMD ["uvicorn", "pubsub_site.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--ws-max-size", "65536", \
     "--ws-ping-interval", "20", "--ws-ping-timeout", "60", \
     "--loop", "uvloop", "--http", "httptools", "--lifespan", "on", "--timeout-graceful-shutdown", "10", \
     "--no-access-log", "--proxy-headers"]
