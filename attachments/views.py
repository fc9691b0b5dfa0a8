"""The upload endpoint and the two URLs an attachment has on the wire (its file, its
thumbnail). Rights: attachments.selectors; limits: attachments.services; serving:
attachments.serving."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from attachments.selectors import attachment_get_for_reader
from attachments.services import UploadRefused, attachment_upload
from attachments.serving import attachment_response
from protocol.wire import attachment_wire
from pubsub_site.ratelimit import per_user, rate_limited
from rooms.selectors import room_get_for_reader


def _refused(code: str, detail: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


@require_POST
@login_required
@rate_limited("attachment_upload", key=per_user, message="You have uploaded too many files.", json=True)
def upload(request: HttpRequest, slug: str) -> HttpResponse:
    """One file (the form field ``file``) for a message the user will send in the room:
    answers its wire form (docs/protocol.md "Attachments"), which the ``send`` names by id."""
    try:
        room, membership = room_get_for_reader(slug=slug, user=request.user)
    except Http404:
        return _refused("not_found", "No such room.", 404)
    if membership is None or not membership.can_post:
        return _refused("forbidden", "Join the room to share files in it.", 403)
    if room.read_only:
        return _refused("room_locked", "Nobody can post in this room now.", 403)
    if membership.is_muted():
        return _refused("muted", "You are muted in this room.", 403)
    files = request.FILES.getlist("file")
    if len(files) != 1:
        return _refused("bad_request", "Send one file, in the field `file`.", 400)
    try:
        attachment = attachment_upload(user=request.user, room=room, upload=files[0])
    except UploadRefused as refused:
        return _refused(refused.code, refused.detail, refused.status)
    return JsonResponse(attachment_wire(attachment), status=201)


@require_GET
def file(request: HttpRequest, attachment_id: str, name: str) -> HttpResponse:
    attachment = attachment_get_for_reader(attachment_id=attachment_id, user=request.user)
    return attachment_response(attachment, thumb=False)


@require_GET
def thumb(request: HttpRequest, attachment_id: str) -> HttpResponse:
    attachment = attachment_get_for_reader(attachment_id=attachment_id, user=request.user)
    return attachment_response(attachment, thumb=True)
