from django.contrib import admin

from rooms.models import Membership, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "banned", "muted_until", "joined_at", "last_read_seq"]
    readonly_fields = ["joined_at", "last_read_seq"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "visibility", "locked", "created_by", "created_at"]
    list_filter = ["visibility", "locked", "created_at"]
    search_fields = ["name", "slug", "topic", "created_by__username"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["created_by"]
    inlines = [MembershipInline]
    date_hierarchy = "created_at"


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "room", "role", "banned", "muted_until", "joined_at"]
    list_filter = ["role", "banned", "room__visibility"]
    search_fields = ["user__username", "room__name", "room__slug"]
    autocomplete_fields = ["user", "room"]
    list_select_related = ["user", "room"]
