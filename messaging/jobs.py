"""Background jobs (django-rq). Jobs take ids and call a service."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import close_old_connections

from messaging import metrics
from messaging.notifications.digests import mention_digests_send
from messaging.previews import link_previews_apply
from messaging.store.persistence import messages_persist_server

logger = logging.getLogger(__name__)


def run_job(name: str, work: Callable[[], int]) -> int:
    """Run one job's work as the worker runs jobs: in its own process, one after another
    (SimpleWorker). Like a request, a job starts and ends by dropping a connection that is
    broken or too old (PostgreSQL restarted in between, CONN_MAX_AGE); its outcome is counted."""
    close_old_connections()
    try:
        done = work()
    except Exception:
        metrics.JOBS.labels(name, "failed").inc()
        raise
    finally:
        close_old_connections()
    metrics.JOBS.labels(name, "ok").inc()
    return done


def persist_messages(server: int = 0) -> int:
    written = run_job("persist_messages", lambda: messages_persist_server(server=server))
    logger.info("persisted %d messages from room server %d", written, server)
    return written


def fetch_link_previews(room_id: int, items: list) -> int:
    """Set the link cards of these messages, ``[seq, url, edit_rev]`` each (messaging.previews)."""
    work = [(int(seq), str(url), int(edit_rev)) for seq, url, edit_rev in items]
    return run_job("fetch_link_previews", lambda: link_previews_apply(room_id=room_id, items=work))


def send_mention_digests() -> int:
    """E-mail the digests of missed mentions that are due (messaging.notifications.digests)."""
    sent = run_job("send_mention_digests", mention_digests_send)
    if sent:
        logger.info("sent %d mention digests", sent)
    return sent
