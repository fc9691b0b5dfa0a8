from __future__ import annotations

from django.conf import settings
from django.db import models


class Profile(models.Model):
    """Who the user shows themselves as, what they chose about e-mail, and what the mention
    digests already covered.

    Made when first needed (a user without a row has the defaults). The two digest fields
    move together, in the one conditional UPDATE with which a worker claims a digest
    (messaging.notifications.digests): two workers never send the same one.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True)
    mention_emails = models.BooleanField(
        "E-mail me about mentions I miss",
        default=True,
        help_text="At most one e-mail an hour, when a mention stays unread for 10 minutes while you are away.",
    )
    # When the last digest went out: the next waits an hour after it.
    last_mention_email_at = models.DateTimeField(null=True, blank=True)
    # The highest Notification id a digest covered (or passed over as read): never e-mailed again.
    mention_emailed_upto = models.PositiveBigIntegerField(default=0)

    # True once the address in ``user.email`` was confirmed by its link (accounts.services):
    # an unconfirmed address gets no password-reset mail and no digest.
    email_verified = models.BooleanField(default=False, db_default=False)
    display_name = models.CharField("Display name", max_length=50, blank=True, db_default="")
    # The storage name (default_storage) of the square avatar made from an upload.
    avatar = models.CharField(max_length=200, blank=True, db_default="")
    status = models.CharField("Status", max_length=80, blank=True, db_default="")
    status_expires_at = models.DateTimeField(null=True, blank=True)
    time_zone = models.CharField("Time zone", max_length=64, blank=True, db_default="")  # blank: the site's

    def __str__(self) -> str:
        return f"profile of {self.user_id}"
