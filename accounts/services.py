from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from accounts.models import Profile


def profile_get(*, user: AbstractBaseUser) -> Profile:
    """The user's profile, made with the defaults the first time."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


@transaction.atomic
def profile_update_email(*, user: AbstractBaseUser, email: str, mention_emails: bool) -> Profile:
    """Change the user's address and whether they get e-mail about mentions they miss."""
    if user.email != email:
        user.email = email
        user.save(update_fields=["email"])
    profile = profile_get(user=user)
    if profile.mention_emails != mention_emails:
        profile.mention_emails = mention_emails
        profile.save(update_fields=["mention_emails"])
    return profile
