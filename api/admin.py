from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from api.models import ApiToken, BotAccount, IncomingWebhook
from api.services import PREFIX_LENGTH
from api.tokens import new_secret, secret_hash


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "can_read", "can_publish", "all_rooms", "last_used_at", "revoked_at")
    list_filter = ("can_read", "can_publish", "all_rooms")
    search_fields = ("name", "prefix", "user__username")
    raw_id_fields = ("user",)
    filter_horizontal = ("rooms",)
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    fields = ("user", "name", "can_read", "can_publish", "all_rooms", "rooms", "expires_at", *readonly_fields)
    actions = ["revoke"]

    def save_model(self, request, obj: ApiToken, form, change: bool) -> None:
        if not change:
            # Made here as on the settings page: the secret is shown once, its hash kept.
            secret = new_secret()
            obj.prefix, obj.hash = secret[:PREFIX_LENGTH], secret_hash(secret)
            self.message_user(request, f"The new token (shown this once): {secret}", messages.WARNING)
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} token(s) revoked.")


@admin.register(BotAccount)
class BotAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "room", "created_by", "created_at")
    raw_id_fields = ("user", "room", "created_by")
    search_fields = ("user__username", "room__slug")


@admin.register(IncomingWebhook)
class IncomingWebhookAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "room", "bot", "last_used_at", "revoked_at")
    raw_id_fields = ("room", "bot", "created_by")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    fields = ("name", "room", "bot", "created_by", *readonly_fields)
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # made on the room's page, which shows its URL once

    @admin.action(description="Revoke the selected webhooks")
    def revoke(self, request, queryset) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} webhook(s) revoked.")
