"""Files: static files, media (avatars), STORAGES and the attachments.

STATIC_ROOT and the static files' storage (compressed and hashed in production), MEDIA_ROOT
and SERVE_MEDIA, the avatars' limits, and the attachments' limits and types with their
storage: the filesystem under ATTACHMENT_ROOT (in VAR_DIR), or an S3 bucket when
AWS_STORAGE_BUCKET_NAME is set, all from the environment.
"""

from __future__ import annotations

from pubsub_site.env import env_bool, env_int, env_list, env_str
from pubsub_site.settings.core import BASE_DIR, DEBUG, PRODUCTION, VAR_DIR

# --- Static files ----------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
# Uploads (avatars), through default_storage. The site serves MEDIA_URL itself unless
# SERVE_MEDIA is off (a proxy or a bucket serving it instead: docs/deploy.md).
MEDIA_URL = "/media/"
MEDIA_ROOT = env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media"))
SERVE_MEDIA = env_bool("SERVE_MEDIA", True)
AVATAR_MAX_BYTES = env_int("AVATAR_MAX_BYTES", 5 * 1024 * 1024)
AVATAR_SIZE = 256  # pixels, square
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "servestatic.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
SERVESTATIC_USE_FINDERS = DEBUG

# --- Attachments (attachments/: docs/protocol.md "Attachments", docs/deploy.md) ---------
# Files go through the "attachments" storage: the filesystem under ATTACHMENT_ROOT (var/)
# unless AWS_STORAGE_BUCKET_NAME names a (private) S3 bucket; then django-storages' S3
# backend, with presigned URLs of ATTACHMENT_URL_SECONDS. AWS_S3_ENDPOINT_URL points it at
# an S3-compatible server (SeaweedFS in the tests and the compose stack). Credentials: the
# instance's IAM role (boto3's chain), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 25 * 1024 * 1024)
ATTACHMENT_DAILY_BYTES = env_int("ATTACHMENT_DAILY_BYTES", 500 * 1024 * 1024)  # per user, a rolling 24 h
ATTACHMENTS_PER_MESSAGE = env_int("ATTACHMENTS_PER_MESSAGE", 10)
# Content types (as guessed from the file's name; images are checked by decoding them):
# exact ("application/pdf") or a family ("image/*").
ATTACHMENT_TYPES = env_list(
    "ATTACHMENT_TYPES",
    [
        "image/*",
        "audio/*",
        "video/*",
        "text/*",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/json",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.*",
        "application/vnd.oasis.opendocument.*",
    ],
)
ATTACHMENT_URL_SECONDS = env_int("ATTACHMENT_URL_SECONDS", 60)  # a presigned URL's life
# Uploads never sent by then are removed by `manage.py attachments_cleanup` (docs/deploy.md).
ATTACHMENT_UNCLAIMED_HOURS = env_int("ATTACHMENT_UNCLAIMED_HOURS", 24)
# Set when nginx fronts the app and serves ATTACHMENT_ROOT from this internal
# location (deploy/nginx.conf): the app then answers with X-Accel-Redirect.
ATTACHMENT_X_ACCEL_PREFIX = env_str("ATTACHMENT_X_ACCEL_PREFIX", "")
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "")
# Where browsers reach the endpoint, when not at AWS_S3_ENDPOINT_URL: a proxy that forwards to
# it with the endpoint's Host (the compose stack's nginx, /_s3), so that the signature holds.
AWS_S3_PUBLIC_URL = env_str("AWS_S3_PUBLIC_URL", "")
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["attachments"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("AWS_S3_REGION_NAME", "") or None,
            "default_acl": None,  # the bucket's: private, no public ACL
            "querystring_auth": True,
            "querystring_expire": ATTACHMENT_URL_SECONDS,
            "file_overwrite": False,
            "signature_version": "s3v4",
            "addressing_style": env_str("AWS_S3_ADDRESSING_STYLE", "") or None,
        },
    }
else:
    STORAGES["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Outside MEDIA_ROOT: /media/ must never serve them (attachments.views does, checking).
        "OPTIONS": {"location": env_str("ATTACHMENT_ROOT", str(VAR_DIR / "attachments"))},
    }
