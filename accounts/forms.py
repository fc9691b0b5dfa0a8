from django import forms
from django.contrib.auth.forms import UserCreationForm

from accounts.models import Profile


class SignUpForm(UserCreationForm):
    """Django's own sign-up form: username, password1, password2."""


class EmailSettingsForm(forms.Form):
    email = forms.EmailField(
        label="E-mail address",
        required=False,
        help_text="Only for the e-mails below; never shown to anyone.",
    )
    mention_emails = forms.BooleanField(
        label=Profile._meta.get_field("mention_emails").verbose_name,
        help_text=Profile._meta.get_field("mention_emails").help_text,
        required=False,
    )
