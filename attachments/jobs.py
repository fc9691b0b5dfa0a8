"""Background jobs of attachments (django-rq): they take ids and call a service."""

from __future__ import annotations

import logging

from django.db import close_old_connections

from attachments.services import attachments_purge, attachments_withdraw

logger = logging.getLogger(__name__)


def withdraw_attachments(room_id: int, seq: int) -> int:
    """The message ``seq`` of the room was deleted or hidden: its attachments' rows are
    marked deleted and their objects removed. Idempotent."""
    close_old_connections()
    try:
        ids = attachments_withdraw(room_id=room_id, seq=seq)
        removed = attachments_purge(ids=ids) if ids else 0
    finally:
        close_old_connections()
    if removed:
        logger.info("removed the objects of %d attachments of %s/%s", removed, room_id, seq)
    return removed
