"""The VAPID key pair that signs Web Push requests (RFC 8292), read from the environment.

``WEBPUSH_VAPID_PUBLIC_KEY`` is the uncompressed P-256 point (65 bytes) and
``WEBPUSH_VAPID_PRIVATE_KEY`` the private scalar (32 bytes), both base64url without padding:
what ``manage.py make_vapid_keys`` prints, and the form browsers take as
``applicationServerKey``. ``WEBPUSH_VAPID_SUBJECT`` is a ``mailto:`` or ``https:`` address the
push services may write to. A pair that does not match, or a key that is not a P-256 key,
stops the process with a clear message.

Without keys push is off (the pages offer nothing). In development a pair is made once and
kept in ``var/vapid.json`` so that push works out of the box; production never makes one:
keys that changed would silently invalidate every subscription.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ImproperlyConfigured

from pubsub_site.env import env_str


@dataclass(frozen=True)
class VapidKeys:
    public_key: str
    private_key: str
    subject: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vapid_pair_new() -> tuple[str, str]:
    """A new (public, private) pair in the environment's form."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(public), b64url(private)


def vapid_public_of(private_key: str) -> str:
    """The public key that belongs to ``private_key``; ValueError if it is not a P-256 scalar."""
    raw = b64url_decode(private_key)
    if len(raw) != 32:
        raise ValueError("a VAPID private key is 32 bytes, base64url-encoded")
    key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    return b64url(
        key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def _development_pair(var_dir: Path) -> tuple[str, str]:
    """The pair kept in var/vapid.json, made by the first process that needs it (the web
    process and the worker must sign with one key: of two made at once, one file wins and
    both read it)."""
    path = var_dir / "vapid.json"
    if not path.exists():
        public, private = vapid_pair_new()
        var_dir.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=var_dir, prefix=".vapid-")
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps({"public_key": public, "private_key": private}) + "\n")
        try:
            os.link(temporary, path)  # atomic, and refused if another process was first
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    try:
        stored = json.loads(path.read_text())
        return stored["public_key"], stored["private_key"]
    except (OSError, ValueError, KeyError) as error:
        raise ImproperlyConfigured(
            f"{path} is not a VAPID key pair ({error!r}); delete it to make a new one."
        ) from None


def vapid_keys_from_env(*, production: bool, var_dir: Path, site_host: str) -> VapidKeys | None:
    """The configured keys, a development pair, or None (push off)."""
    public = env_str("WEBPUSH_VAPID_PUBLIC_KEY", "").strip()
    private = env_str("WEBPUSH_VAPID_PRIVATE_KEY", "").strip()
    subject = env_str("WEBPUSH_VAPID_SUBJECT", f"mailto:admin@{site_host}").strip()
    if bool(public) != bool(private):
        raise ImproperlyConfigured(
            "Set both WEBPUSH_VAPID_PUBLIC_KEY and WEBPUSH_VAPID_PRIVATE_KEY (manage.py make_vapid_keys), or neither."
        )
    if not public:
        if production:
            return None
        public, private = _development_pair(var_dir)
    try:
        derived = vapid_public_of(private)
    except ValueError as error:
        raise ImproperlyConfigured(f"WEBPUSH_VAPID_PRIVATE_KEY: {error}.") from None
    if derived != public:
        raise ImproperlyConfigured(
            "WEBPUSH_VAPID_PUBLIC_KEY is not the public key of WEBPUSH_VAPID_PRIVATE_KEY "
            "(its public key is " + derived + ")."
        )
    if not subject.startswith(("mailto:", "https://")):
        raise ImproperlyConfigured(
            f"WEBPUSH_VAPID_SUBJECT={subject!r}: use mailto:you@example.com or an https:// address."
        )
    return VapidKeys(public_key=public, private_key=private, subject=subject)
