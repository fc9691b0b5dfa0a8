"""The installable app (manifest, service worker, offline page) and the subscription endpoints.

The service worker is served at the site's root (``/sw.js``) so that its scope is the whole
site; it is a template so that it names the hashed static files it caches for the offline page.
The subscription endpoints take the browser's ``PushSubscription.toJSON()`` as JSON (with the
CSRF header, as the other POSTs of the client) and answer JSON.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from pubsub_site.vapid import b64url_decode
from webpush.services import push_enabled, subscription_delete, subscription_save

THEME_COLOUR = "#1d4ed8"
BACKGROUND_COLOUR = "#f4f5f7"


@require_GET
@cache_control(max_age=3600)
def manifest(request: HttpRequest) -> HttpResponse:
    """The web app manifest: what Chromium needs to offer to install the site (a template, for
    the static files' hashed names)."""
    context = {"theme_colour": THEME_COLOUR, "background_colour": BACKGROUND_COLOUR}
    return render(request, "webpush/manifest.webmanifest", context, content_type="application/manifest+json")


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    response = render(
        request,
        "webpush/service-worker.js",
        {"offline_url": reverse("offline"), "css_url": static("css/site.css"), "icon_url": static("img/icon-192.png")},
        content_type="text/javascript; charset=utf-8",
    )
    # The browser checks for a new worker at every navigation; it must never read a stale one.
    response["Cache-Control"] = "no-cache"
    response["Service-Worker-Allowed"] = "/"
    return response


@require_GET
def offline(request: HttpRequest) -> HttpResponse:
    """What the service worker shows when a page cannot be fetched (cached at install)."""
    return render(request, "webpush/offline.html")


def _bad(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


def _subscription_from(request: HttpRequest) -> tuple[dict | None, JsonResponse | None]:
    try:
        data = json.loads(request.body)
    except ValueError:
        return None, _bad("The body is not JSON.")
    if not isinstance(data, dict) or not isinstance(data.get("endpoint"), str):
        return None, _bad("An endpoint is required.")
    endpoint = data["endpoint"]
    try:
        URLValidator(schemes=["https"] if settings.PRODUCTION else ["https", "http"])(endpoint)
    except ValidationError:
        return None, _bad("The endpoint is not an https address.")
    if len(endpoint) > 2000:
        return None, _bad("The endpoint is too long.")
    return data, None


@login_required
@require_POST
def subscribe(request: HttpRequest) -> JsonResponse:
    """Store this browser's push subscription for the signed-in user."""
    if not push_enabled():
        return JsonResponse({"error": "Push notifications are not configured on this site."}, status=404)
    data, error = _subscription_from(request)
    if error is not None:
        return error
    keys = data.get("keys")
    if not isinstance(keys, dict) or not isinstance(keys.get("p256dh"), str) or not isinstance(keys.get("auth"), str):
        return _bad("keys.p256dh and keys.auth are required.")
    try:
        p256dh, auth = b64url_decode(keys["p256dh"]), b64url_decode(keys["auth"])
    except ValueError:
        return _bad("keys.p256dh and keys.auth must be base64url.")
    if len(p256dh) != 65 or p256dh[0] != 4 or len(auth) != 16:
        return _bad("keys.p256dh must be a P-256 public key (65 bytes) and keys.auth 16 bytes.")
    subscription = subscription_save(
        user=request.user,
        endpoint=data["endpoint"],
        p256dh=keys["p256dh"],
        auth=keys["auth"],
        user_agent=request.headers.get("User-Agent", ""),
    )
    return JsonResponse({"subscribed": True, "id": subscription.pk}, status=201)


@login_required
@require_POST
def unsubscribe(request: HttpRequest) -> JsonResponse:
    """Forget this browser's subscription (the user turned notifications off on this device)."""
    data, error = _subscription_from(request)
    if error is not None:
        return error
    return JsonResponse({"unsubscribed": subscription_delete(user=request.user, endpoint=data["endpoint"])})
