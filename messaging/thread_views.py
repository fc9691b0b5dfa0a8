"""The thread endpoints of a room's page: the threads one follows, follow/unfollow, read.

Every one reads the room through ``room_get_for_reader`` (404 to an outsider) and the thread
through ``thread_root_get`` (404 for a message the room does not have or a thread reply)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from messaging.threads.selectors import NoSuchThread, thread_root_get, threads_followed
from messaging.threads.services import thread_follow_set, thread_mark_read
from messaging.threads.summaries import thread_summaries
from rooms.selectors import room_get_for_reader


@login_required
def threads_list(request: HttpRequest, slug: str) -> JsonResponse:
    """The threads of the room the user follows, with their unread replies."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    return JsonResponse({"room": room.slug, "threads": threads_followed(room=room, user_id=request.user.pk)})


def _thread_or_404(room, seq: int):
    try:
        return thread_root_get(room_id=room.pk, seq=seq)
    except NoSuchThread as error:
        return JsonResponse({"error": "not_found", "detail": str(error)}, status=404)


@login_required
@require_POST
def thread_follow(request: HttpRequest, slug: str, seq: int) -> JsonResponse:
    """POST ``following`` = ``1`` or ``0``."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    found = _thread_or_404(room, seq)
    if isinstance(found, JsonResponse):
        return found
    raw = request.POST.get("following")
    if raw not in ("0", "1"):
        return JsonResponse({"error": "bad_request", "detail": "`following` must be 1 or 0."}, status=400)
    follow = thread_follow_set(room=room, user_id=request.user.pk, root=seq, following=raw == "1")
    return JsonResponse({"room": room.slug, "thread": seq, "following": follow.following})


@login_required
@require_POST
def thread_read(request: HttpRequest, slug: str, seq: int) -> JsonResponse:
    """POST ``seq``: the user has read the thread up to that reply."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    found = _thread_or_404(room, seq)
    if isinstance(found, JsonResponse):
        return found
    raw = request.POST.get("seq", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
        return JsonResponse({"error": "bad_request", "detail": "`seq` must be a non-negative integer."}, status=400)
    record, _ = found
    summary = thread_summaries(room_id=room.pk, seqs=[seq]).get(seq)
    summary_repliers = {a["id"] for a in summary[0]["repliers"]} if summary else set()
    mine = record["author"]["id"] == request.user.pk or request.user.pk in summary_repliers
    thread_mark_read(room=room, user_id=request.user.pk, root=seq, seq=int(raw), follows_by_default=mine)
    return JsonResponse({"room": room.slug, "thread": seq, "read": int(raw)})
