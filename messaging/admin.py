from django.contrib import admin

from messaging import moderation
from messaging.models import Clap, LinkPreview, Message
from rooms.admin import run_moderation_action


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
    # Redis holds a message's current state: the row changes only through the services
    # (the action below), never by editing it here.
    readonly_fields = [
        "room",
        "seq",
        "author",
        "body",
        "client_id",
        "sent_at",
        "edited_at",
        "deleted_at",
        "hidden_by",
        "rev",
    ]
    date_hierarchy = "sent_at"
    actions = ["hide_messages"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # messages come from the rooms, through the buffer

    @admin.action(description="Hide selected messages", permissions=["change"])
    def hide_messages(self, request, queryset):
        run_moderation_action(
            self,
            request,
            queryset.select_related("room").order_by("room_id", "seq"),
            lambda message: moderation.room_message_hide(
                room=message.room, actor=request.user, seq=message.seq, acting_as_staff=True
            ),
            "{count} message(s) hidden.",
        )

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


@admin.register(LinkPreview)
class LinkPreviewAdmin(admin.ModelAdmin):
    """The cache of link cards (messaging.previews): looked at, or deleted to fetch a URL again."""

    list_display = ["url", "status", "title", "site_name", "fetched_at"]
    list_filter = ["status", "fetched_at"]
    search_fields = ["url", "title"]
    readonly_fields = ["url", "title", "description", "site_name", "image", "status", "error", "fetched_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # fetched by the job, never typed in
