from django.contrib import admin

from accounts.models import Profile


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "mention_emails", "last_mention_email_at")
    list_filter = ("mention_emails",)
    search_fields = ("user__username", "user__email")
    # The digests' marks move only in the claim that sends one (messaging.notifications.digests).
    readonly_fields = ("user", "last_mention_email_at", "mention_emailed_upto")

    def has_add_permission(self, request) -> bool:
        # A profile is made with its user when first needed (accounts.services.profile_get);
        # the add form could name no user (it is read-only here): it answered 500.
        return False
