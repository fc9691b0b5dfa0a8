import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger(__name__)


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        if settings.PRODUCTION and not settings.EMAIL_HOST:
            # Said at every start of every process: a site that sends no e-mail should know.
            logger.warning(
                "EMAIL_HOST is not set: e-mails (the digests of missed mentions) are written to "
                "the log, not sent. Set EMAIL_HOST and the other EMAIL_* variables (README, Configuration)."
            )
