from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max

from accounts.models import Profile
from messaging.models import Notification


def profile_get(*, user: AbstractBaseUser) -> Profile:
    """The user's profile, made with the defaults the first time."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


@transaction.atomic
def profile_update_email(*, user: AbstractBaseUser, email: str, mention_emails: bool) -> Profile:
    """Change the user's address and whether they get e-mail about mentions they miss.

    Turned back on, the e-mails start from the next mention: the ones made while they were
    off count as covered (``mention_emailed_upto``), never e-mailed."""
    if user.email != email:
        user.email = email
        user.save(update_fields=["email"])
    profile_get(user=user)
    profile = Profile.objects.select_for_update().get(user=user)  # a digest claim moves the same row
    if profile.mention_emails != mention_emails:
        profile.mention_emails = mention_emails
        fields = ["mention_emails"]
        if mention_emails:
            latest = Notification.objects.filter(user=user).aggregate(latest=Max("pk"))["latest"] or 0
            profile.mention_emailed_upto = max(profile.mention_emailed_upto, latest)
            fields.append("mention_emailed_upto")
        profile.save(update_fields=fields)
    return profile
