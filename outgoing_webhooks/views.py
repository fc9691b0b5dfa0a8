"""The room's outgoing webhooks page: its owner and moderators register, disable and remove endpoints."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from outgoing_webhooks import services
from outgoing_webhooks.forms import EndpointForm
from outgoing_webhooks.selectors import endpoint_get_for_admin, endpoints_for_room
from outgoing_webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER
from rooms.selectors import room_get_for_moderator


def _refusal_text(error: PermissionDenied | ValidationError) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error) or "You may not do this."


@login_required
def webhook_list(request: HttpRequest, slug: str) -> HttpResponse:
    """The page; a POST registers an endpoint and shows its secret, once."""
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    form = EndpointForm(request.POST or None)
    created, secret = None, None
    if request.method == "POST" and form.is_valid():
        try:
            created, secret = services.endpoint_create(
                room=room,
                actor=request.user,
                url=form.cleaned_data["url"],
                events=form.cleaned_data["events"],
                description=form.cleaned_data["description"],
            )
        except ValidationError as error:
            form.add_error(None, error)  # {"url": ...} lands on the URL field
        else:
            form = EndpointForm()
    context = {
        "room": room,
        "form": form,
        "endpoints": endpoints_for_room(room=room),
        "created": created,
        "secret": secret,
        "signature_header": SIGNATURE_HEADER,
        "event_id_header": EVENT_ID_HEADER,
    }
    return render(request, "outgoing_webhooks/endpoints.html", context, status=201 if created else 200)


@login_required
@require_POST
def webhook_act(request: HttpRequest, slug: str, endpoint_id: int, act: str) -> HttpResponse:
    endpoint = endpoint_get_for_admin(slug=slug, endpoint_id=endpoint_id, user=request.user)
    try:
        if act == "delete":
            services.endpoint_delete(endpoint=endpoint, actor=request.user)
            messages.success(request, f"The webhook to {endpoint.url} is removed.")
        else:
            services.endpoint_set_active(endpoint=endpoint, actor=request.user, active=act == "enable")
            messages.success(
                request, f"The webhook to {endpoint.url} is {'enabled' if act == 'enable' else 'disabled'}."
            )
    except (PermissionDenied, ValidationError) as error:
        messages.error(request, _refusal_text(error))
    return redirect("webhook-list", slug=endpoint.room.slug)
