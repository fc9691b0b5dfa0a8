"""Typed readers for the environment: the one place settings come from.

Each reader fails loudly with ImproperlyConfigured on a value it cannot parse,
so a typo in a deployment stops the process at start instead of running with a
silent default.
"""

from __future__ import annotations

import os

import limits
from django.core.exceptions import ImproperlyConfigured

from pubsub_site.redis.urls import RedisUrlError, parse_redis_url, split_redis_urls

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class _Missing:
    pass


MISSING = _Missing()


def env_str(name: str, default: str | _Missing = MISSING) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if isinstance(default, _Missing):
            raise ImproperlyConfigured(f"The environment variable {name} is required.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def _env_number(name: str, default, convert, what: str):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return convert(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not {what}.") from None


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def env_list(name: str, default: list[str] | _Missing = MISSING) -> list[str]:
    """A comma-separated list; blanks around items are ignored."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        if isinstance(default, _Missing):
            raise ImproperlyConfigured(f"The environment variable {name} is required (comma-separated).")
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_redis_url(name: str, default: str | _Missing = MISSING) -> str:
    """A Redis URL: plain (``redis://host:port/db``) or a Sentinel service
    (``redis+sentinel://host:port,host:port/master/db``; ``pubsub_site.redis.urls``)."""
    value = env_str(name, default).strip()
    try:
        parse_redis_url(value)
    except RedisUrlError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None
    return value


def env_redis_urls(name: str, default: list[str] | _Missing = MISSING) -> list[str]:
    """A comma-separated list of Redis URLs, Sentinel URLs (with commas of their own) included."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        if isinstance(default, _Missing):
            raise ImproperlyConfigured(f"The environment variable {name} is required (comma-separated).")
        return list(default)
    try:
        return split_redis_urls(value)
    except RedisUrlError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None


def env_nonnegative_int(name: str, default: int) -> int:
    value = env_int(name, default)
    if value < 0:
        raise ImproperlyConfigured(f"{name}={value} must be 0 or more.")
    return value


def env_rate(name: str, default: str) -> str:
    """A rate in the `limits` notation, e.g. "10/hour" or "5 per minute"."""
    value = env_str(name, default)
    try:
        limits.parse(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate; write e.g. '10/hour'.") from None
    return value


def env_positive_int(name: str, default: int) -> int:
    value = env_int(name, default)
    if value < 1:
        raise ImproperlyConfigured(f"{name}={value}: at least 1.")
    return value
