from django.apps import AppConfig


class AttachmentsConfig(AppConfig):
    name = "attachments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The persistence job links each written message's attachments to its row
        # (attachments.services.attachments_link_persisted), after every batch.
        from attachments.services import attachments_link_persisted  # inside ready(): models load first
        from messaging.store import persistence  # idem

        if attachments_link_persisted not in persistence.AFTER_BATCH:
            persistence.AFTER_BATCH.append(attachments_link_persisted)
