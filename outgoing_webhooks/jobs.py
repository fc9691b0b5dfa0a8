"""The delivery job (django-rq): takes an endpoint's id and calls the service."""

from __future__ import annotations

import logging

from django.db import close_old_connections

from outgoing_webhooks.services import endpoint_deliver

logger = logging.getLogger(__name__)


def deliver(endpoint_id: int) -> int:
    close_old_connections()
    try:
        delivered = endpoint_deliver(endpoint_id=endpoint_id)
    finally:
        close_old_connections()
    if delivered:
        logger.info("webhook %s: %d events delivered", endpoint_id, delivered)
    return delivered
