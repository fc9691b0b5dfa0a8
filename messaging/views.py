from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse

from messaging.selectors import HISTORY_MAX_LIMIT, message_history
from rooms.selectors import room_get_for_reader


def _seq_param(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 15:
        raise ValueError(f"`{name}` must be a non-negative integer.")
    return int(raw)


@login_required
def history(request: HttpRequest, slug: str) -> JsonResponse:
    """JSON history: ``?before=<seq>`` or ``?after=<seq>``, with ``limit`` up to 200."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    try:
        before = _seq_param(request, "before")
        after = _seq_param(request, "after")
        limit = _seq_param(request, "limit")
    except ValueError as error:
        return JsonResponse({"error": "bad_request", "detail": str(error)}, status=400)
    if before is not None and after is not None:
        return JsonResponse({"error": "bad_request", "detail": "Give `before` or `after`, not both."}, status=400)
    if limit is not None and not 1 <= limit <= HISTORY_MAX_LIMIT:
        return JsonResponse(
            {"error": "bad_request", "detail": f"`limit` must be between 1 and {HISTORY_MAX_LIMIT}."}, status=400
        )
    page = message_history(room=room, before=before, after=after, limit=limit or 50)
    return JsonResponse({"room": room.slug, "messages": page.messages, "has_more": page.has_more})
