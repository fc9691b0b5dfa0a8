"""The push jobs (django-rq): they take ids and call webpush.services."""

from __future__ import annotations

from collections.abc import Callable

from django.db import close_old_connections

from messaging import metrics
from webpush.services import push_deliver, push_send_pending


def _run_job(name: str, work: Callable[[], object]):
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


def send_pushes(user_id: int) -> int:
    """Push the user's pending events, coalesced into one notification per device."""
    return _run_job("send_pushes", lambda: push_send_pending(user_id=user_id))


def retry_push(subscription_id: int, data: str, attempt: int) -> str:
    """Try a failed push again (webpush.services.PUSH_RETRY_DELAYS)."""
    return _run_job("retry_push", lambda: push_deliver(subscription_id=subscription_id, data=data, attempt=attempt))
