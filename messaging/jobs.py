"""Background jobs (django-rq). Jobs take ids and call a service."""

from __future__ import annotations

import logging

from django.db import close_old_connections

from messaging import metrics
from messaging.persistence import messages_persist_server

logger = logging.getLogger(__name__)


def persist_messages(server: int = 0) -> int:
    # The worker runs jobs in its own process, one after another (SimpleWorker): like a
    # request, a job starts and ends by dropping a connection that is broken or too old
    # (PostgreSQL restarted in between, CONN_MAX_AGE).
    close_old_connections()
    try:
        written = messages_persist_server(server=server)
    except Exception:
        metrics.JOBS.labels("persist_messages", "failed").inc()
        raise
    finally:
        close_old_connections()
    metrics.JOBS.labels("persist_messages", "ok").inc()
    logger.info("persisted %d messages from room server %d", written, server)
    return written
