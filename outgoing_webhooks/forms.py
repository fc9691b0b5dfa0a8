from django import forms

from outgoing_webhooks.models import WebhookEndpoint


class EndpointForm(forms.Form):
    url = forms.URLField(max_length=2000, assume_scheme="https", label="URL")
    events = forms.MultipleChoiceField(
        choices=WebhookEndpoint.Event.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[WebhookEndpoint.Event.MESSAGE],
    )
    description = forms.CharField(max_length=200, required=False)
