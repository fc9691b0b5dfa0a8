"""The admin as moderation console: its actions call the same moderation services as the
pages (as site staff, ``acting_as_staff=True``), so every act is checked, audited and
broadcast the same way. Fields with live effects (lock, slow mode, role, ban, mute) are
read-only here: they change only through those actions.
"""

from collections.abc import Callable, Iterable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest

from messaging import moderation as message_moderation
from protocol.events import user_kicked_on_commit
from rooms import moderation, room_settings
from rooms.models import AuditLog, Membership, Report, Room

ADMIN_REMOVED = "A site administrator removed you from this room."


def kick_removed_members(memberships: Iterable[Membership]) -> None:
    """Memberships deleted here: their users' open sockets leave the room on commit, as a
    kick's do (the moderation services and room_leave tell them themselves)."""
    for membership in memberships:
        user_kicked_on_commit(user_id=membership.user_id, room=membership.room, reason=ADMIN_REMOVED)


def run_moderation_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable,
    act: Callable[[object], object],
    done: str,
) -> None:
    """Apply ``act`` to each object; say how many were done and why the others were refused."""
    count = 0
    for obj in objects:
        try:
            act(obj)
        except (PermissionDenied, ValidationError) as error:
            text = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
            modeladmin.message_user(request, f"{obj}: {text}", messages.WARNING)
        else:
            count += 1
    if count:
        modeladmin.message_user(request, done.format(count=count), messages.SUCCESS)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "banned", "muted_until", "joined_at", "last_read_seq"]
    readonly_fields = ["role", "banned", "muted_until", "joined_at", "last_read_seq"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "slug",
        "visibility",
        "locked",
        "archived",
        "slow_mode_seconds",
        "created_by",
        "created_at",
    ]
    list_filter = ["kind", "visibility", "locked", "archived", "created_at"]
    search_fields = ["name", "slug", "topic", "created_by__username"]
    # Site staff see direct conversations here (the site's pages and sockets never let anyone
    # but their people in); what they are and who is in them is set by rooms.services.direct_open.
    readonly_fields = ["created_at", "locked", "archived", "slow_mode_seconds", "kind", "dm_key"]
    autocomplete_fields = ["created_by"]
    inlines = [MembershipInline]
    date_hierarchy = "created_at"
    actions = ["lock_rooms", "unlock_rooms", "archive_rooms", "unarchive_rooms"]

    @admin.action(description="Archive selected rooms", permissions=["change"])
    def archive_rooms(self, request, queryset):
        run_moderation_action(
            self,
            request,
            queryset,
            lambda room: room_settings.room_archive(room=room, actor=request.user, acting_as_staff=True),
            "{count} room(s) archived.",
        )

    @admin.action(description="Unarchive selected rooms", permissions=["change"])
    def unarchive_rooms(self, request, queryset):
        run_moderation_action(
            self,
            request,
            queryset,
            lambda room: room_settings.room_unarchive(room=room, actor=request.user, acting_as_staff=True),
            "{count} room(s) unarchived.",
        )

    def save_formset(self, request, form, formset, change) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is Membership:
            kick_removed_members(formset.deleted_objects)

    @admin.action(description="Lock selected rooms", permissions=["change"])
    def lock_rooms(self, request, queryset):
        run_moderation_action(
            self,
            request,
            queryset,
            lambda room: moderation.room_lock(room=room, actor=request.user, acting_as_staff=True),
            "{count} room(s) locked.",
        )

    @admin.action(description="Unlock selected rooms", permissions=["change"])
    def unlock_rooms(self, request, queryset):
        run_moderation_action(
            self,
            request,
            queryset,
            lambda room: moderation.room_unlock(room=room, actor=request.user, acting_as_staff=True),
            "{count} room(s) unlocked.",
        )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "room", "role", "banned", "muted_until", "joined_at"]
    list_filter = ["role", "banned", "room__kind", "room__visibility"]
    search_fields = ["user__username", "room__name", "room__slug"]
    autocomplete_fields = ["user", "room"]
    list_select_related = ["user", "room"]
    actions = ["ban_members", "unban_members", "promote_members", "demote_members", "unmute_members"]

    def delete_model(self, request, obj: Membership) -> None:
        super().delete_model(request, obj)
        kick_removed_members([obj])

    def delete_queryset(self, request, queryset) -> None:
        removed = list(queryset.select_related("room"))
        super().delete_queryset(request, queryset)
        kick_removed_members(removed)

    def get_readonly_fields(self, request, obj=None):
        # A new membership starts as a plain member; afterwards only the actions change it.
        live = ["banned", "muted_until", "joined_at", "last_read_seq"]
        return ["user", "room", "role", *live] if obj is not None else live

    def _each(self, request, queryset, service, done: str) -> None:
        run_moderation_action(
            self,
            request,
            queryset.select_related("room", "user"),
            lambda m: service(room=m.room, actor=request.user, user=m.user, acting_as_staff=True),
            done,
        )

    @admin.action(description="Ban selected members", permissions=["change"])
    def ban_members(self, request, queryset):
        self._each(request, queryset, moderation.membership_ban, "{count} member(s) banned.")

    @admin.action(description="Unban selected members", permissions=["change"])
    def unban_members(self, request, queryset):
        self._each(request, queryset, moderation.membership_unban, "{count} member(s) unbanned.")

    @admin.action(description="Make selected members moderators", permissions=["change"])
    def promote_members(self, request, queryset):
        self._each(request, queryset, moderation.membership_promote, "{count} member(s) made moderators.")

    @admin.action(description="Make selected moderators plain members", permissions=["change"])
    def demote_members(self, request, queryset):
        self._each(request, queryset, moderation.membership_demote, "{count} moderator(s) demoted.")

    @admin.action(description="Unmute selected members", permissions=["change"])
    def unmute_members(self, request, queryset):
        self._each(request, queryset, moderation.membership_unmute, "{count} member(s) unmuted.")


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "seq", "reporter", "short_reason", "status", "created_at", "resolved_by"]
    list_filter = ["status", "created_at", "room"]
    search_fields = ["reason", "reporter__username", "room__name", "room__slug"]
    list_select_related = ["room", "reporter", "resolved_by"]
    readonly_fields = ["room", "seq", "reporter", "reason", "created_at", "status", "resolved_by", "resolved_at"]
    date_hierarchy = "created_at"
    actions = ["resolve_reports", "dismiss_reports", "hide_reported_messages"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # members report from the room page

    @admin.display(description="reason")
    def short_reason(self, report: Report) -> str:
        return report.reason if len(report.reason) <= 80 else report.reason[:79] + "…"

    def _each(self, request, queryset, service, done: str) -> None:
        run_moderation_action(
            self,
            request,
            queryset.select_related("room", "reporter").order_by("pk"),
            lambda report: service(report=report, actor=request.user, acting_as_staff=True),
            done,
        )

    @admin.action(description="Resolve selected reports", permissions=["change"])
    def resolve_reports(self, request, queryset):
        self._each(request, queryset, message_moderation.report_resolve, "{count} report(s) resolved.")

    @admin.action(description="Dismiss selected reports", permissions=["change"])
    def dismiss_reports(self, request, queryset):
        self._each(request, queryset, message_moderation.report_dismiss, "{count} report(s) dismissed.")

    @admin.action(description="Hide the reported messages (and resolve their reports)", permissions=["change"])
    def hide_reported_messages(self, request, queryset):
        self._each(request, queryset, message_moderation.report_hide_message, "Messages of {count} report(s) hidden.")


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    """Read-only: entries are written by the moderation services and never changed."""

    list_display = ["created_at", "room", "actor", "as_staff", "action", "target", "seq", "reason"]
    list_filter = ["action", "as_staff", "created_at", "room"]
    search_fields = ["reason", "actor__username", "target__username", "room__name", "room__slug"]
    list_select_related = ["room", "actor", "target"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
