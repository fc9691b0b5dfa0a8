from __future__ import annotations

import zoneinfo

from django import forms
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm, UserCreationForm

from accounts.models import Profile
from pubsub_site.ratelimit import allow


class SignUpForm(UserCreationForm):
    """Django's own sign-up form (username, password1, password2) and an e-mail address,
    optional unless ``SIGNUP_EMAIL_REQUIRED``; it is used once its link is followed."""

    email = forms.EmailField(label="E-mail address", required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].required = settings.SIGNUP_EMAIL_REQUIRED
        self.fields["email"].help_text = (
            "We send a link to confirm it; it lets you reset a forgotten password."
            if settings.SIGNUP_EMAIL_REQUIRED
            else "Optional. We send a link to confirm it; it lets you reset a forgotten password."
        )

    def save(self, commit: bool = True):
        # The address is set when its link is followed (accounts.services.email_verify).
        user = super().save(commit=False)
        user.email = ""
        if commit:
            user.save()
        return user


class VerifiedPasswordResetForm(PasswordResetForm):
    """Django's reset form, sending only to verified addresses, and at most
    ``RATE_LIMITS["password_reset_account"]`` mails per account (whatever the spelling)."""

    def get_users(self, email: str):
        for user in super().get_users(email):
            if Profile.objects.filter(user=user, email_verified=True).exists() and allow(
                "password_reset_account", f"user:{user.pk}"
            ):
                yield user


class EmailSettingsForm(forms.Form):
    email = forms.EmailField(
        label="E-mail address",
        required=False,
        help_text="Only for the e-mails below and password resets; never shown to anyone. "
        "A new address is used once you follow the link we send to it.",
    )
    mention_emails = forms.BooleanField(
        label=Profile._meta.get_field("mention_emails").verbose_name,
        help_text=Profile._meta.get_field("mention_emails").help_text,
        required=False,
    )


def _time_zone_choices() -> list[tuple[str, str]]:
    return [("", "The site's (UTC)")] + [(name, name) for name in sorted(zoneinfo.available_timezones())]


class ProfileForm(forms.Form):
    display_name = forms.CharField(label="Display name", max_length=50, required=False)
    status = forms.CharField(label="Status", max_length=80, required=False, help_text="A few words, e.g. “on holiday”.")
    status_expires_at = forms.DateTimeField(
        label="Clear the status at",
        required=False,
        help_text="Optional, in your time zone.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    time_zone = forms.ChoiceField(label="Time zone", choices=_time_zone_choices, required=False)


class AvatarForm(forms.Form):
    avatar = forms.FileField(
        label="Avatar",
        help_text="A JPEG, PNG, GIF or WebP image; it is cut to a square.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,image/gif,image/webp"}),
    )


class PasswordConfirmForm(forms.Form):
    """Asks for the password before something that cannot be undone."""

    password = forms.CharField(label="Your password", strip=False, widget=forms.PasswordInput)

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.", code="password_incorrect")
        return password
