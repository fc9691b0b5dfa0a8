"""Limits on pages that create things (sign-ups, rooms, reports) or cost a query of their own
(searches), and the log-in lock-out page.

Counters live in Redis (``settings.REDIS_URL``) through the ``limits`` library,
in a moving window. Every POST counts, accepted or not: a form that answers
"this name is taken" must not become a free oracle. A view may count other
requests instead (``counts``: the searches of ``/search/`` are GETs). Past the
limit the view is not called and the answer is 429 with ``Retry-After``.

The limits are read from ``settings.RATE_LIMITS`` at each request, so tests can
lower them. When Redis fails the request goes through (and is logged): these
limits slow abuse down, they do not guard data.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from limits import parse
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from pubsub_site.redis.client import get_redis

logger = logging.getLogger(__name__)

_limiters: dict[str, MovingWindowRateLimiter] = {}


def _limiter() -> MovingWindowRateLimiter:
    url = settings.REDIS_URL
    limiter = _limiters.get(url)
    if limiter is None:
        storage = RedisStorage(
            url, connection_pool=get_redis(url=url).connection_pool, key_prefix="pubsub:ratelimit", wrap_exceptions=True
        )
        limiter = _limiters[url] = MovingWindowRateLimiter(storage)
    return limiter


def client_ip(request: HttpRequest) -> str:
    """The client's address, as django-axes sees it (one definition for lock-outs and limits)."""
    from axes.helpers import get_client_ip_address  # noqa: PLC0415 (django-axes' helpers, imported at their first use, once the apps are ready)

    return get_client_ip_address(request) or "unknown"


def per_ip(request: HttpRequest) -> str:
    return f"ip:{client_ip(request)}"


def per_user(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


def _wait_text(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def too_many_requests(request: HttpRequest, *, message: str, retry_after: int, json: bool = False) -> HttpResponse:
    """The 429 answer: what happened, and when to come back (also in ``Retry-After``)."""
    retry_after = max(1, retry_after)
    detail = f"{message} Try again in {_wait_text(retry_after)}."
    if json:
        response: HttpResponse = JsonResponse(
            {"error": "rate_limited", "detail": detail, "retry_after": retry_after}, status=429
        )
    else:
        response = render(request, "rooms/rate_limited.html", {"detail": detail}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def allow(scope: str, identity: str) -> bool:
    """Count one event of ``scope`` for ``identity`` outside a view (a job's own limit):
    False past ``settings.RATE_LIMITS[scope]``; True when Redis fails, as for the views."""
    try:
        return _limiter().hit(parse(settings.RATE_LIMITS[scope]), scope, identity)
    except StorageError:
        logger.warning("rate limit %s not checked: Redis failed", scope, exc_info=True)
        return True


def is_post(request: HttpRequest) -> bool:
    return request.method == "POST"


def rate_limited(
    scope: str,
    *,
    key: Callable[[HttpRequest], str],
    message: str,
    json: bool = False,
    counts: Callable[[HttpRequest], bool] = is_post,
):
    """Limit a view's requests that ``counts`` (its POSTs unless told) to
    ``settings.RATE_LIMITS[scope]`` (e.g. "10/hour") per ``key(request)``; the others always pass."""

    def decorator(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not counts(request):
                return view(request, *args, **kwargs)
            item = parse(settings.RATE_LIMITS[scope])
            identity = key(request)
            limiter = _limiter()
            try:
                allowed = limiter.hit(item, scope, identity)
                if not allowed:
                    reset_at, _ = limiter.get_window_stats(item, scope, identity)
            except StorageError:
                logger.warning("rate limit %s not checked: Redis failed", scope, exc_info=True)
                allowed = True
            if not allowed:
                return too_many_requests(
                    request, message=message, retry_after=math.ceil(reset_at - time.time()), json=json
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class _LockedOutForm(AuthenticationForm):
    """The log-in form, showing the lock-out as its error (it authenticates nothing)."""

    def __init__(self, *args, message: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.message = message
        for field in self.fields.values():
            field.required = False

    def clean(self):
        raise ValidationError(self.message, code="locked_out")


def axes_lockout_response(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """django-axes' answer to a locked-out log-in: the log-in page with a clear error, 429.

    (``AXES_LOCKOUT_CALLABLE``; axes passes the original response and the credentials
    in an order that differs between its sync and async paths, so neither is used.)
    """
    from axes.helpers import get_cool_off  # noqa: PLC0415 (django-axes' helpers, imported at their first use, once the apps are ready)

    cool_off = get_cool_off(request) or timedelta(hours=1)
    retry_after = max(1, int(cool_off.total_seconds()))
    form = _LockedOutForm(
        request,
        data={"username": request.POST.get("username", "")[:150]},
        message="Too many failed log-in attempts for this account from your address. "
        f"Try again in {_wait_text(retry_after)}.",
    )
    response = render(
        request,
        "registration/login.html",
        {"form": form, "next": request.POST.get("next", "")},
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )
    response["Retry-After"] = str(retry_after)
    return response


# --- Password spraying ----------------------------------------------------------------
# django-axes locks a (username, address) pair out after AXES_FAILURE_LIMIT failures: one
# address may still try a password on every account, and a botnet every password on one
# account. Two counters more, of failed log-ins only: per address across usernames
# (RATE_LIMITS["login_address"], higher than the pair's limit) and per username across
# addresses (RATE_LIMITS["login_account"]). Past either, log-in POSTs answer 429 before any
# password is checked. A success resets neither: a sprayer could sign in to an account of
# their own to wipe the slate.

_LOGIN_SCOPES = {
    "login_address": "Too many failed log-ins from your address.",
    "login_account": "Too many failed log-ins for this account.",
}


def _login_identities(request: HttpRequest) -> dict[str, str]:
    username = str(request.POST.get("username", ""))[:150].strip().casefold()
    return {"login_address": f"ip:{client_ip(request)}", "login_account": f"name:{username}"}


def login_refused(request: HttpRequest) -> HttpResponse | None:
    """The 429 log-in page when the address or the account has used up its failures, else None."""
    limiter = _limiter()
    for scope, identity in _login_identities(request).items():
        if scope not in settings.RATE_LIMITS:  # a test that set other limits only
            continue
        item = parse(settings.RATE_LIMITS[scope])
        try:
            if limiter.test(item, scope, identity):
                continue
            reset_at, _ = limiter.get_window_stats(item, scope, identity)
        except StorageError:
            logger.warning("log-in limit %s not checked: Redis failed", scope, exc_info=True)
            continue
        retry_after = max(1, math.ceil(reset_at - time.time()))
        return _login_page_refusal(
            request, f"{_LOGIN_SCOPES[scope]} Try again in {_wait_text(retry_after)}.", retry_after
        )
    return None


def login_failed(request: HttpRequest) -> None:
    """Count one failed log-in against its address and its account."""
    limiter = _limiter()
    for scope, identity in _login_identities(request).items():
        if scope not in settings.RATE_LIMITS:
            continue
        try:
            limiter.hit(parse(settings.RATE_LIMITS[scope]), scope, identity)
        except StorageError:
            logger.warning("log-in failure not counted (%s): Redis failed", scope, exc_info=True)


def _login_page_refusal(request: HttpRequest, message: str, retry_after: int) -> HttpResponse:
    form = _LockedOutForm(request, data={"username": request.POST.get("username", "")[:150]}, message=message)
    response = render(
        request, "registration/login.html", {"form": form, "next": request.POST.get("next", "")}, status=429
    )
    response["Retry-After"] = str(retry_after)
    return response
