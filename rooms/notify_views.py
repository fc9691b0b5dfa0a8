"""Pages of the notification settings: the control on a room's page, and the list of all one's rooms.

Both post to ``room_notify`` (rooms.notify_settings does the writing); the page's script
posts with ``Accept: application/json`` and gets the settings back, a plain form is
redirected back where it came from.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from protocol.wire import notify_settings_frame
from rooms import notify_settings
from rooms.selectors import directs_of_user, notify_settings_of_user, room_get_for_reader, rooms_of_user


def _time_zone(user) -> str:
    try:
        return user.profile.time_zone or settings.TIME_ZONE
    except ObjectDoesNotExist:
        return settings.TIME_ZONE


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@login_required
@require_POST
def room_notify(request: HttpRequest, slug: str) -> HttpResponse:
    """Set the level (``level``: all, mentions, nothing) or snooze the room (``snooze``: 1h,
    8h, tomorrow, or off). 404 to anyone who is not a member of the room."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    level, snooze = request.POST.get("level"), request.POST.get("snooze")
    try:
        if level is not None:
            membership = notify_settings.membership_notify_level_set(room=room, user=request.user, level=level)
        elif snooze == "off":
            membership = notify_settings.membership_snooze(room=room, user=request.user, until=None)
        elif snooze is not None:
            until = notify_settings.snooze_end(snooze, tz_name=_time_zone(request.user))
            membership = notify_settings.membership_snooze(room=room, user=request.user, until=until)
        else:
            raise ValidationError("Choose a level or a snooze.")
    except ValidationError as error:
        if _wants_json(request):
            return JsonResponse({"error": " ".join(error.messages)}, status=400)
        messages.error(request, " ".join(error.messages))
        return redirect(_back(request, room))
    if _wants_json(request):
        return JsonResponse(
            notify_settings_frame(
                room=room.slug,
                level=membership.notify_level,
                snoozed_until=membership.notifications_snoozed_until,
            )
        )
    return redirect(_back(request, room))


def _back(request: HttpRequest, room) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return room.get_absolute_url()


@login_required
def notification_settings(request: HttpRequest) -> HttpResponse:
    """Every room and direct conversation of the user, each with its notification settings."""
    rooms = rooms_of_user(user=request.user)
    directs = directs_of_user(user=request.user)
    by_room = notify_settings_of_user(user=request.user, room_ids=[r.pk for r in [*rooms, *directs]])
    for room in [*rooms, *directs]:
        room.notify = by_room.get(room.pk)
    context = {
        "rooms": [r for r in rooms if r.notify is not None],
        "directs": [r for r in directs if r.notify is not None],
        "snoozes": notify_settings.SNOOZES,
        "here": reverse("notification-settings"),
    }
    return render(request, "rooms/notification_settings.html", context)
