"""The site itself: where it lives, its profile and its secret, and how Django serves it.

BASE_DIR and VAR_DIR (the checkout and its var/), DJANGO_ENV (the profile; PRODUCTION),
SECRET_KEY, DEBUG, ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS from the environment; then the
apps, the middleware, the URLs, the ASGI entry and the templates, internationalisation, the
security headers (HTTPS and HSTS in production, SECURE_SSL_REDIRECT and SECURE_HSTS_SECONDS
from the environment) and LOGGING (LOG_LEVEL). The other parts import PRODUCTION, DEBUG,
BASE_DIR, VAR_DIR and ALLOWED_HOSTS from here.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from pubsub_site.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r}: use 'development' or 'production'.")
PRODUCTION = DJANGO_ENV == "production"

# Development only: it is in this public repository, so production refuses it.
DEVELOPMENT_SECRET_KEY = "dev-insecure-9x!q2m#v7w@k4e8r1t5y0u3i6o-p_a&s*d(f)g=h+j"  # noqa: S105
if PRODUCTION:
    SECRET_KEY = env_str("SECRET_KEY")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters in production.")
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY or SECRET_KEY.startswith("dev-insecure-"):
        raise ImproperlyConfigured("SECRET_KEY is the development key, which is public: set a secret one.")
else:
    SECRET_KEY = env_str("SECRET_KEY", DEVELOPMENT_SECRET_KEY)

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    # DEBUG shows settings and tracebacks to anyone, and keeps every query in memory.
    raise ImproperlyConfigured("DEBUG cannot be on with DJANGO_ENV=production; unset DEBUG.")
ALLOWED_HOSTS = (
    env_list("ALLOWED_HOSTS")
    if PRODUCTION
    else env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "servestatic",
    "channels",
    "django_rq",
    "axes",
    "accounts",
    "rooms",
    "messaging",
    "outgoing_webhooks",
    "ninja",  # the API's docs page from its own static files (no CDN)
    "api",
    "webpush",
    "attachments",
]

MIDDLEWARE = [
    # First: /metrics is answered before the Host check and the HTTPS redirect (Prometheus
    # asks each replica by its address); every other request passes through untouched.
    "pubsub_site.metrics_http.MetricsEndpointMiddleware",
    # Second: the API's requests (/api/v1/) skip the browser's middleware (api/middleware.py).
    "api.middleware.ApiMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "pubsub_site.middleware.ContentSecurityPolicyMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pubsub_site.middleware.RqDashboardIndexMiddleware",
    # Last, as django-axes asks: it turns a lock-out into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pubsub_site.urls"
ASGI_APPLICATION = "pubsub_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "messaging.context_processors.navigation",
                "webpush.context_processors.push",
            ],
        },
    },
]

# --- Internationalisation --------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Security --------------------------------------------------------------

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # django-axes logs every successful log-in at INFO; failures and lock-outs are warnings.
        "axes": {"level": "WARNING"},
    },
}
