"""Container health checks, run by Docker inside the web and worker containers.

    python deploy/healthcheck.py web      # GET /healthz on this container's web server
    python deploy/healthcheck.py worker   # this container's rq worker is registered in Redis

Exit status 0 means healthy. The web check sends a Host header taken from
ALLOWED_HOSTS: Django answers 400 to a Host it does not allow, and the container's
own address is never in that list. The check imports no Django, so it stays cheap
when Docker runs it every 10 seconds.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path


def allowed_host() -> str:
    """A Host header that Django's ALLOWED_HOSTS accepts."""
    first = os.environ.get("ALLOWED_HOSTS", "").split(",")[0].strip()
    if first in {"", "*"}:
        return "localhost"
    # ".example.com" allows example.com and its subdomains.
    return first.lstrip(".")


def check_web() -> bool:
    port = int(os.environ.get("PORT", "8000"))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Host": allowed_host()})
    try:
        # A fixed http:// URL on this container, never one from outside.
        with urllib.request.urlopen(request, timeout=4) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError) as error:
        print(f"web unhealthy: {error}", file=sys.stderr)
        return False


def check_worker() -> bool:
    """An rq worker of this host (container) is registered and its heartbeat is alive.

    rq keeps a worker's key alive with a heartbeat; a worker that died or hung stops
    renewing it, and rq drops it from the registry once the key expires.
    """
    import redis  # noqa: PLC0415 (the worker check alone needs redis and rq; the web check imports neither)
    from rq import Worker  # noqa: PLC0415 (the worker check alone needs redis and rq; the web check imports neither)

    connection = redis_client(os.environ["REDIS_URL"])
    hostname = socket.gethostname()
    try:
        workers = Worker.all(connection=connection)
    except redis.RedisError as error:
        print(f"worker unhealthy: {error}", file=sys.stderr)
        return False
    if any(worker.hostname == hostname for worker in workers):
        return True
    print(f"worker unhealthy: no rq worker registered for host {hostname}", file=sys.stderr)
    return False


def redis_client(url: str):
    """A client for REDIS_URL, plain or a Sentinel service (redis+sentinel://...): the site's
    own reading of it (pubsub_site.redis.urls, which imports no Django either)."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from pubsub_site.redis.urls import sync_client  # noqa: PLC0415 (once the project's root is on sys.path, above)

    return sync_client(url, socket_connect_timeout=3, socket_timeout=3)


CHECKS = {"web": check_web, "worker": check_worker}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {{{'|'.join(CHECKS)}}}", file=sys.stderr)
        return 2
    return 0 if CHECKS[argv[0]]() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
