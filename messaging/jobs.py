"""Background jobs (django-rq). Jobs take ids and call a service."""

from __future__ import annotations

import logging

from messaging.persistence import messages_persist_server

logger = logging.getLogger(__name__)


def persist_messages(server: int = 0) -> int:
    written = messages_persist_server(server=server)
    logger.info("persisted %d messages from room server %d", written, server)
    return written
