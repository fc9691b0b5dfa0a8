from django.apps import AppConfig


class OutgoingWebhooksConfig(AppConfig):
    name = "outgoing_webhooks"
    verbose_name = "Outgoing webhooks"

    def ready(self) -> None:
        # Hooks, not imports: the store and the rooms' services never import this app.
        from messaging.store import persistence
        from outgoing_webhooks import events
        from rooms import joins

        if events.messages_persisted not in persistence.AFTER_BATCH:
            persistence.AFTER_BATCH.append(events.messages_persisted)
        if events.changes_persisted not in persistence.AFTER_CHANGES:
            persistence.AFTER_CHANGES.append(events.changes_persisted)
        if events.members_joined not in joins.MEMBERS_JOINED:
            joins.MEMBERS_JOINED.append(events.members_joined)
