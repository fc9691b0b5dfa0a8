from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from messaging.models import Notification
from messaging.search import QUERY_MAX_CHARS, RESULTS_PER_PAGE, message_search
from messaging.selectors import (
    HISTORY_MAX_LIMIT,
    clap_board,
    message_history,
    notifications_not_deleted,
    notifications_readable,
    top_clapped_messages,
)
from messaging.store import changes
from messaging.threads.selectors import NoSuchThread, thread_page
from pubsub_site.ratelimit import per_user, rate_limited
from rooms.selectors import room_get_for_reader


class HtmlSafeJSONEncoder(DjangoJSONEncoder):
    """JSON whose text holds no raw <, > or &, so user text is inert even if sniffed as HTML."""

    _ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})

    def encode(self, o) -> str:
        return super().encode(o).translate(self._ESCAPES)


def _seq_param(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
        raise ValueError(f"`{name}` must be a non-negative integer.")
    return int(raw)


@login_required
def history(request: HttpRequest, slug: str) -> JsonResponse:
    """JSON history: ``?before=<seq>``, ``?after=<seq>`` or ``?around=<seq>``, with ``limit`` up to 200."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    try:
        before = _seq_param(request, "before")
        after = _seq_param(request, "after")
        around = _seq_param(request, "around")
        thread = _seq_param(request, "thread")
        limit = _seq_param(request, "limit")
    except ValueError as error:
        return JsonResponse({"error": "bad_request", "detail": str(error)}, status=400)
    if thread is not None:
        return _thread_history(room, thread, before=before, after=after, around=around, limit=limit)
    if sum(value is not None for value in (before, after, around)) > 1:
        return JsonResponse(
            {"error": "bad_request", "detail": "Give one of `before`, `after` and `around`."}, status=400
        )
    if limit is not None and not 1 <= limit <= HISTORY_MAX_LIMIT:
        return JsonResponse(
            {"error": "bad_request", "detail": f"`limit` must be between 1 and {HISTORY_MAX_LIMIT}."}, status=400
        )
    page = message_history(room=room, before=before, after=after, around=around, limit=limit or 50)
    body = {"room": room.slug, "messages": page.messages, "has_more": page.has_more}
    if around is not None:
        body["has_newer"] = page.has_newer
    return JsonResponse(body, encoder=HtmlSafeJSONEncoder)


def _thread_history(room, thread: int, *, before, after, around, limit) -> JsonResponse:
    """``?thread=<seq>``: the thread's root and its replies, a page at a time (``before``)."""
    if after is not None or around is not None:
        return JsonResponse({"error": "bad_request", "detail": "A thread pages with `before` only."}, status=400)
    if limit is not None and not 1 <= limit <= HISTORY_MAX_LIMIT:
        return JsonResponse(
            {"error": "bad_request", "detail": f"`limit` must be between 1 and {HISTORY_MAX_LIMIT}."}, status=400
        )
    try:
        page = thread_page(room=room, root=thread, before=before, limit=limit or 50)
    except NoSuchThread as error:
        return JsonResponse({"error": "not_found", "detail": str(error)}, status=404)
    body = {"room": room.slug, "thread": thread, "root": page.root, "messages": page.replies, "has_more": page.has_more}
    return JsonResponse(body, encoder=HtmlSafeJSONEncoder)


def _searches(request: HttpRequest) -> bool:
    """A request that runs a search (each page of results is one): what the search limit counts."""
    return bool(request.GET.get("q", "").strip())


@login_required
@rate_limited("search", key=per_user, message="You have searched too often.", counts=_searches)
def search(request: HttpRequest) -> HttpResponse:
    """Messages the user may read matching ``q`` (messaging/search/), newest first, a page at a time.

    Each search costs a full-text query: ``RATE_LIMITS["search"]`` per user, past it a 429 page."""
    # PostgreSQL takes no NUL in a string: it would fail the query (a 500), and it means nothing.
    q = request.GET.get("q", "")[:QUERY_MAX_CHARS].replace("\x00", "")
    page = message_search(user=request.user, q=q, before=request.GET.get("before"))
    context = {"q": q, "search_q": q, "page": page, "per_page": RESULTS_PER_PAGE}
    return render(request, "messaging/search.html", context)


@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    """The user's notifications, newest first; viewing them marks them read."""
    readable = notifications_readable(user=request.user).select_related("room", "from_user")
    page = Paginator(readable, 50).get_page(request.GET.get("page"))
    page.object_list = notifications_not_deleted(list(page.object_list))
    unread_ids = [n.pk for n in page if n.read_at is None]
    response = render(request, "messaging/notifications.html", {"page": page, "unread_ids": set(unread_ids)})
    Notification.objects.filter(pk__in=unread_ids).update(read_at=timezone.now())
    return response


@login_required
def top_clapped(request: HttpRequest, slug: str) -> HttpResponse:
    room, membership = room_get_for_reader(slug=slug, user=request.user)
    context = {
        "room": room,
        "membership": membership,
        "top": top_clapped_messages(room=room),
        "board": clap_board(room=room),
    }
    return render(request, "messaging/top.html", context)


@login_required
def claps(request: HttpRequest, slug: str) -> JsonResponse:
    """The room's clap board, and the user's own claps on the messages in ``?seqs=1,2,3``."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    raw = request.GET.get("seqs", "")
    seqs = [int(s) for s in raw.split(",") if s.isascii() and s.isdigit() and len(s) < 16][:200]
    mine = changes.user_claps(room_id=room.pk, user_id=request.user.pk, seqs=seqs)
    return JsonResponse({"room": room.slug, "board": clap_board(room=room), "mine": mine})
