from django.apps import AppConfig


class OutgoingWebhooksConfig(AppConfig):
    name = "outgoing_webhooks"
    verbose_name = "Outgoing webhooks"

    def ready(self) -> None:
        # Hooks, not imports: the store and the rooms' services never import this app.
        from messaging.management.commands import jobs_worker
        from messaging.store import persistence
        from outgoing_webhooks import events, services
        from rooms import joins

        if events.messages_persisted not in persistence.AFTER_BATCH:
            persistence.AFTER_BATCH.append(events.messages_persisted)
        if events.changes_persisted not in persistence.AFTER_CHANGES:
            persistence.AFTER_CHANGES.append(events.changes_persisted)
        if events.members_joined not in joins.MEMBERS_JOINED:
            joins.MEMBERS_JOINED.append(events.members_joined)
        if services.webhooks_sweep not in jobs_worker.EVERY_SWEEP:
            jobs_worker.EVERY_SWEEP.append(services.webhooks_sweep)
