from django.contrib import admin

from attachments.models import Attachment


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Read-only: files come from uploads and go with their messages (attachments.services)."""

    list_display = ("name", "content_type", "size", "uploader", "room", "seq", "created_at", "deleted_at")
    list_filter = ("content_type", "created_at", "deleted_at")
    search_fields = ("name", "uploader__username", "room__slug")
    readonly_fields = [field.name for field in Attachment._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
