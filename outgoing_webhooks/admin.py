from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils import timezone

from outgoing_webhooks import services
from outgoing_webhooks.models import WebhookDelivery, WebhookEndpoint
from outgoing_webhooks.signing import secret_new
from rooms.admin import run_moderation_action


class EndpointAdminForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https", label="URL")
    events = forms.MultipleChoiceField(choices=WebhookEndpoint.Event.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["room", "url", "events", "description"]

    def clean_url(self) -> str:
        try:
            return services.endpoint_url_check(self.cleaned_data["url"])
        except ValidationError as error:
            raise ValidationError(error.messages) from error

    def clean(self):
        data = super().clean()
        room = data.get("room")
        if room is not None and room.is_direct:
            raise ValidationError("A direct conversation has no webhooks.")
        return data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointAdminForm
    list_display = ["room", "url", "events", "active", "consecutive_failures", "disabled_at", "created_at"]
    list_filter = ["active", "room"]
    search_fields = ["url", "room__slug", "room__name", "description"]
    list_select_related = ["room"]
    autocomplete_fields = ["room"]
    readonly_fields = [
        "created_by",
        "created_at",
        "active",
        "disabled_at",
        "disabled_reason",
        "consecutive_failures",
        "failing_since",
    ]
    actions = ["enable_endpoints", "disable_endpoints"]

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            secret = secret_new()
            obj.secret, obj.created_by = secret, request.user
            obj.save()
            self.message_user(
                request,
                f"The webhook's signing secret, shown this once: {secret}",
                messages.WARNING,
            )
            return
        obj.save()

    @admin.action(description="Enable selected webhooks (their pending events go out)", permissions=["change"])
    def enable_endpoints(self, request, queryset):
        run_moderation_action(
            self,
            request,
            queryset.select_related("room"),
            lambda e: services.endpoint_set_active(endpoint=e, actor=request.user, active=True, acting_as_staff=True),
            "{count} webhook(s) enabled.",
        )

    @admin.action(description="Disable selected webhooks", permissions=["change"])
    def disable_endpoints(self, request, queryset):
        run_moderation_action(
            self,
            request,
            queryset.select_related("room"),
            lambda e: services.endpoint_set_active(endpoint=e, actor=request.user, active=False, acting_as_staff=True),
            "{count} webhook(s) disabled.",
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: read-only, as the delivery job writes it."""

    list_display = [
        "event_id",
        "type",
        "endpoint",
        "status",
        "attempts",
        "last_response_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "type", "endpoint__room"]
    search_fields = ["event_id", "endpoint__url", "endpoint__room__slug"]
    list_select_related = ["endpoint", "endpoint__room"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    date_hierarchy = "created_at"
    actions = ["retry_now"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # events are recorded by the persistence job

    @admin.action(description="Try selected pending deliveries now", permissions=["change"])
    def retry_now(self, request, queryset):
        pending = queryset.filter(status=WebhookDelivery.Status.PENDING)
        endpoint_ids = set(pending.values_list("endpoint_id", flat=True))
        count = pending.update(next_attempt_at=timezone.now())
        for endpoint_id in endpoint_ids:
            services.delivery_enqueue(endpoint_id=endpoint_id)
        self.message_user(request, f"{count} deliveries due now.", messages.SUCCESS)
