from django.contrib import admin

from webpush.models import PushSubscription


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("user", "short_endpoint", "created_at", "last_success_at", "last_failure_at", "failures")
    list_filter = ("created_at", "last_failure_at")
    search_fields = ("user__username", "endpoint", "user_agent")
    # What the browser gave: an edited key would only make its pushes undecryptable.
    readonly_fields = (
        "user",
        "endpoint",
        "p256dh",
        "auth",
        "user_agent",
        "created_at",
        "last_success_at",
        "last_failure_at",
        "failures",
        "last_error",
    )

    @admin.display(description="endpoint")
    def short_endpoint(self, obj: PushSubscription) -> str:
        return obj.endpoint if len(obj.endpoint) <= 60 else obj.endpoint[:59] + "…"

    def has_add_permission(self, request) -> bool:
        return False  # made by a browser subscribing, never by hand
