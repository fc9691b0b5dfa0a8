"""Who gets in, and how often people and API clients may ask for things.

Passwords and their reset links, e-mail verification, sign-up and the default room,
the log-in backends and django-axes' lock-outs, the page rate limits (RATE_LIMITS,
pubsub_site.ratelimit) and the API's (API_RATE_LIMIT), from the environment; rates are in
the `limits` notation (pubsub_site.env.env_rate).
"""

from __future__ import annotations

from datetime import timedelta

from pubsub_site.env import env_bool, env_int, env_rate, env_str

# --- Auth ------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# A password-reset link works this long (seconds), and once: Django's token is made from the
# password's hash and the last log-in, so using it (or logging in) spends it.
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)
# An address-verification link (accounts.services) works this long (seconds).
EMAIL_VERIFY_TIMEOUT = env_int("EMAIL_VERIFY_TIMEOUT", 3 * 24 * 3600)
# Whether sign-up asks for an e-mail address (it is always verified before it is used).
SIGNUP_EMAIL_REQUIRED = env_bool("SIGNUP_EMAIL_REQUIRED", False)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "room-list"
# The room every new account joins and lands in after signing up, by name (created, public,
# by the first one to sign up when it does not exist yet); empty: new accounts land on the room list.
DEFAULT_ROOM = env_str("DEFAULT_ROOM", "Lobby").strip()
LOGOUT_REDIRECT_URL = "login"

# django-axes checks every log-in first; ModelBackend then authenticates (and is
# the backend sessions name, e.g. after sign-up).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After AXES_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is locked out for AXES_COOLOFF_TIME (counted from the last failure); the
# log-in page answers 429 with Retry-After. Attempts are kept in the database
# (visible in the admin); a successful log-in resets the count.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HTTP_RESPONSE_CODE = 429
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "pubsub_site.ratelimit.axes_lockout_response"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"

# Page rate limits (pubsub_site/ratelimit.py), counted in Redis over a moving window.
RATE_LIMITS = {
    "signup": env_rate("RATE_LIMIT_SIGNUP", "10/hour"),  # sign-up attempts per client address
    "room_create": env_rate("RATE_LIMIT_ROOM_CREATE", "10/hour"),  # room creation attempts per user
    "report": env_rate("RATE_LIMIT_REPORT", "30/hour"),  # message reports per user
    "direct_open": env_rate("RATE_LIMIT_DIRECT_OPEN", "60/hour"),  # direct conversations opened per user
    "search": env_rate("RATE_LIMIT_SEARCH", "30/minute"),  # searches (/search/ with a query) per user
    "attachment_upload": env_rate("RATE_LIMIT_ATTACHMENT_UPLOAD", "60/minute"),  # attachment uploads per user
    # Password spraying (pubsub_site.ratelimit.login_refused): failed log-ins per address over
    # every username (more than AXES_FAILURE_LIMIT), and per username over every address.
    "login_address": env_rate("RATE_LIMIT_LOGIN_FAILURES_PER_ADDRESS", "20/hour"),
    "login_account": env_rate("RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT", "15/hour"),
    # Password-reset requests per client address, per e-mail address asked about, and the
    # mails actually sent per account (accounts.jobs: whatever the spelling of the address).
    "password_reset": env_rate("RATE_LIMIT_PASSWORD_RESET", "20/hour"),
    "password_reset_email": env_rate("RATE_LIMIT_PASSWORD_RESET_EMAIL", "5/hour"),
    "password_reset_account": env_rate("RATE_LIMIT_PASSWORD_RESET_ACCOUNT", "5/hour"),
    # Verification links sent per user (sign-up address, address changes).
    "email_verify": env_rate("RATE_LIMIT_EMAIL_VERIFY", "10/hour"),
}

# Requests per API token (or incoming webhook), whatever they ask (api/auth.py); what they
# do is limited as a socket's is (WS_RATE_LIMITS: sends, edits, claps per user).
API_RATE_LIMIT = env_rate("API_RATE_LIMIT", "600/minute")
