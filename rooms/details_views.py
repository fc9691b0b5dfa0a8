"""The room page's details read again: what a page that missed a change to the room's name,
topic, archive state or members shows (protocol.details says when; static/js/panels.js asks).

The details revision is read before the room and its members, so the answer holds every
change up to the revision it names, and maybe later ones (whose frames, also applied by the
page, change nothing then).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from protocol.details import details_read
from rooms.selectors import room_get_for_reader, room_members


@login_required
@require_GET
@never_cache
def room_details(request: HttpRequest, slug: str) -> JsonResponse:
    """``{"details": revision or null, "name", "topic", "archived", "members": the member list's
    items (HTML, as on the page)}``, to the room's readers (404 to anyone else)."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    details = room_details_revision(room)
    members = render_to_string("rooms/_members.html", {"members": room_members(room=room)}, request=request)
    return JsonResponse(
        {"details": details, "name": room.name, "topic": room.topic, "archived": room.archived, "members": members}
    )


def room_details_revision(room) -> int | None:
    """The room's details revision, then its name, topic and archive state read again after it
    (``room``'s row was read before): a change told before the revision is in what the page shows."""
    details = details_read(room.pk)
    room.refresh_from_db(fields=["name", "topic", "archived"])
    return details
