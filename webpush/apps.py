import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger(__name__)


class WebpushConfig(AppConfig):
    name = "webpush"
    verbose_name = "Web Push"

    def ready(self) -> None:
        if settings.PRODUCTION and settings.WEBPUSH_VAPID is None:
            # Said at every start, like a missing EMAIL_HOST: a site without push should know.
            logger.warning(
                "WEBPUSH_VAPID_PUBLIC_KEY and WEBPUSH_VAPID_PRIVATE_KEY are not set: Web Push is off. "
                '`python manage.py make_vapid_keys` prints a pair (docs/deploy.md, "Web Push").'
            )
        # Imported here: they import models, which the app registry must have loaded first.
        from messaging.management.commands import jobs_worker
        from messaging.store import persistence
        from webpush.services import push_after_batch, push_flush_due

        # After the mentions hook (messaging registers it first: "messaging" comes before "webpush"
        # in INSTALLED_APPS), so that a batch's mention notifications exist when it runs.
        if push_after_batch not in persistence.AFTER_BATCH:
            persistence.AFTER_BATCH.append(push_after_batch)
        # Coalesced pushes whose window ended while nobody sent anything are sent by the sweep.
        if push_flush_due not in jobs_worker.EVERY_SWEEP:
            jobs_worker.EVERY_SWEEP.append(push_flush_due)
