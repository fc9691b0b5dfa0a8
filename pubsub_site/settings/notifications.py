"""What the site sends out: e-mail, outgoing webhooks and Web Push, and SITE_URL for their links.

SITE_URL (in production by default https:// and the first of ALLOWED_HOSTS), the e-mail
sender and SMTP server (EMAIL_HOST; the console without it), the mention digests' sweep, the
outgoing webhooks' timeouts, retries and log, and the VAPID keys of Web Push
(pubsub_site.vapid: the environment's, or in development a pair kept in VAR_DIR), from the
environment.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from pubsub_site.env import env_bool, env_float, env_int, env_str
from pubsub_site.settings.core import ALLOWED_HOSTS, PRODUCTION, VAR_DIR
from pubsub_site.vapid import vapid_keys_from_env

# --- E-mail (the digests of missed mentions: messaging.notifications.digests) -------

# The site's address as people reach it, for links in e-mails. Production: https and the
# first ALLOWED_HOSTS, unless set.
_site_host = ALLOWED_HOSTS[0].lstrip(".") if ALLOWED_HOSTS else "localhost"
if PRODUCTION:
    SITE_URL = env_str("SITE_URL", "" if _site_host == "*" else f"https://{_site_host}")
    if not SITE_URL:
        raise ImproperlyConfigured("SITE_URL is required when ALLOWED_HOSTS starts with '*'.")
else:
    SITE_URL = env_str("SITE_URL", "http://localhost:8000")
if urlsplit(SITE_URL).scheme not in {"http", "https"} or not urlsplit(SITE_URL).netloc:
    raise ImproperlyConfigured(f"SITE_URL={SITE_URL!r} is not an address; write e.g. https://chat.example.com.")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"pubsub <noreply@{urlsplit(SITE_URL).hostname}>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# With EMAIL_HOST, e-mail goes out by SMTP (port 587 with STARTTLS unless told otherwise).
# Without it, the console backend writes e-mails to the log: fine in development; in
# production accounts.apps warns at every start that nothing is being sent.
EMAIL_HOST = env_str("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = 10  # a hung SMTP server fails the digest (retried), not the worker
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# How often one of the workers queues the job that sends the digests that are due (seconds;
# the workers' sweep thread runs every PERSIST_SWEEP_SECONDS, so no more often than that).
MENTION_EMAIL_SWEEP_SECONDS = env_int("MENTION_EMAIL_SWEEP_SECONDS", 60)

# --- Outgoing webhooks (outgoing_webhooks/services.py; docs/api.md "Outgoing webhooks") ---
# Each request: this timeout, this much of the answer read at most, no redirect followed.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 5.0)
WEBHOOK_RESPONSE_MAX_BYTES = env_int("WEBHOOK_RESPONSE_MAX_BYTES", 65536)
# A failed delivery waits BASE * 2**(attempts-1) seconds (at most MAX), its second half random.
WEBHOOK_RETRY_BASE_SECONDS = env_float("WEBHOOK_RETRY_BASE_SECONDS", 10.0)
WEBHOOK_RETRY_MAX_SECONDS = env_float("WEBHOOK_RETRY_MAX_SECONDS", 3600.0)
# An endpoint is disabled (and the room's admins e-mailed) after this many failures in a row,
# or after failing this long without a success.
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 15)
WEBHOOK_DISABLE_AFTER_HOURS = env_float("WEBHOOK_DISABLE_AFTER_HOURS", 24.0)
# One delivery job sends for this long, then queues itself again (the worker persists messages too).
WEBHOOK_JOB_BUDGET_SECONDS = env_float("WEBHOOK_JOB_BUDGET_SECONDS", 10.0)
# Delivered rows are kept in the log this many days.
WEBHOOK_LOG_DAYS = env_int("WEBHOOK_LOG_DAYS", 7)

# --- Web Push ----------------------------------------------------------------
# The VAPID pair that signs pushes (pubsub_site/vapid.py): None turns push off and the pages
# offer nothing. Development makes a pair once, in var/vapid.json; production uses the
# environment's or none. WEBPUSH_COALESCE_SECONDS: after a push, a user's next events wait
# this long and go out as one (webpush.services).
WEBPUSH_VAPID = vapid_keys_from_env(production=PRODUCTION, var_dir=VAR_DIR, site_host=urlsplit(SITE_URL).hostname)
WEBPUSH_COALESCE_SECONDS = env_float("WEBPUSH_COALESCE_SECONDS", 5.0)
