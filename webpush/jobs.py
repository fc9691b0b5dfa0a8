"""The push jobs (django-rq): they take ids and call webpush.services."""

from __future__ import annotations

from messaging.jobs import run_job
from webpush.services import push_deliver, push_send_pending


def send_pushes(user_id: int) -> int:
    """Push the user's pending events, coalesced into one notification per device."""
    return run_job("send_pushes", lambda: push_send_pending(user_id=user_id))


def retry_push(subscription_id: int, data: str, attempt: int) -> str:
    """Try a failed push again (webpush.services.PUSH_RETRY_DELAYS)."""
    return run_job("retry_push", lambda: push_deliver(subscription_id=subscription_id, data=data, attempt=attempt))
