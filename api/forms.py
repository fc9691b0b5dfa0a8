from __future__ import annotations

from django import forms

from rooms.models import Room

EXPIRY_CHOICES = [("", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="What it is for, e.g. “CI deploy notices”.")
    can_read = forms.BooleanField(label="Read: list rooms, read messages, subscribe", required=False, initial=True)
    can_publish = forms.BooleanField(label="Publish: post, edit, delete, clap", required=False, initial=True)
    rooms = forms.ModelMultipleChoiceField(
        queryset=Room.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None chosen: every room you can use.",
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires", choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False
    )

    def __init__(self, *args, rooms=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if rooms is None:
            del self.fields["rooms"]
        else:
            self.fields["rooms"].queryset = rooms

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("can_read") or cleaned.get("can_publish")):
            raise forms.ValidationError("Give the token at least one scope.")
        return cleaned


class BotForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="The bot's name in the room (letters, digits, @.+-_).")


class WebhookForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="Which sender it is for, e.g. “GitHub”.")
    bot = forms.ModelChoiceField(queryset=None, empty_label=None, help_text="Its messages are posted as this bot.")

    def __init__(self, *args, bots=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["bot"].queryset = bots
        self.fields["bot"].label_from_instance = lambda bot: bot.user.get_username()
