"""Jobs of the accounts app (rq): they take plain values and call Django's own code."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from accounts.forms import VerifiedPasswordResetForm


def password_reset_mail(*, email: str) -> None:
    """Send the reset link to the verified account(s) of ``email``, if any: Django's
    PasswordResetForm.save, with its token (PASSWORD_RESET_TIMEOUT, spent by the reset).

    The request only enqueues this job, the same for every address: whether one exists is
    found out here, where the asker cannot time it."""
    form = VerifiedPasswordResetForm(data={"email": email})
    if not form.is_valid():
        return
    site = urlsplit(settings.SITE_URL)
    form.save(
        domain_override=site.netloc,
        use_https=site.scheme == "https",
        subject_template_name="registration/password_reset_subject.txt",
        email_template_name="registration/password_reset_email.txt",
    )
