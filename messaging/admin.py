from django.contrib import admin

from messaging.models import Clap, Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "author", "short_body", "sent_at", "edited_at", "deleted_at", "hidden_by"]
    list_filter = [
        "room",
        "sent_at",
        ("deleted_at", admin.EmptyFieldListFilter),
        ("hidden_by", admin.EmptyFieldListFilter),
    ]
    search_fields = ["body", "author__username", "room__name", "room__slug"]
    list_select_related = ["room", "author", "hidden_by"]
    readonly_fields = ["room", "seq", "author", "client_id", "sent_at", "rev"]
    date_hierarchy = "sent_at"

    @admin.display(description="body")
    def short_body(self, message: Message) -> str:
        return message.body if len(message.body) <= 80 else message.body[:79] + "…"


@admin.register(Clap)
class ClapAdmin(admin.ModelAdmin):
    list_display = ["message", "user", "count"]
    list_filter = ["message__room"]
    search_fields = ["user__username", "message__body"]
    list_select_related = ["message", "message__room", "user"]
    raw_id_fields = ["message"]
    autocomplete_fields = ["user"]
