"""The pages: a user's API tokens (account settings), a room's bots and incoming webhooks
(the room's moderators). A new token's or webhook's secret is shown once, on the answer
to the POST that made it; it is never stored."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from api import selectors, services
from api.forms import BotForm, TokenForm, WebhookForm
from rooms.models import Room
from rooms.selectors import room_get_for_moderator


def _expiry(days: int | None):
    return timezone.now() + timedelta(days=days) if days else None


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    """The user's tokens: list, make (the secret shown once), revoke."""
    my_rooms = Room.objects.filter(memberships__user=request.user, memberships__banned=False).order_by("name")
    form = TokenForm(request.POST or None, rooms=my_rooms)
    made = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        made = services.token_create(
            user=request.user,
            name=data["name"],
            can_read=data["can_read"],
            can_publish=data["can_publish"],
            rooms=list(data["rooms"]) or None,
            expires_at=_expiry(data["expires_in_days"]),
        )
        form = TokenForm(rooms=my_rooms)
    context = {"form": form, "made": made, "tokens": selectors.tokens_of_user(user=request.user), "now": timezone.now()}
    status = 400 if form.errors else 201 if made else 200
    return render(request, "api/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = selectors.token_get_for_owner(token_id=token_id, user=request.user)
    services.token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("api-tokens")


@login_required
def integrations(request: HttpRequest, slug: str) -> HttpResponse:
    """A room's bots, their tokens and its incoming webhooks (its owner and moderators)."""
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    return _integrations_page(request, room)


def _integrations_page(request: HttpRequest, room: Room, **extra) -> HttpResponse:
    bots = selectors.bots_of_room(room=room)
    context = {
        "room": room,
        "bots": bots,
        "bot_tokens": selectors.bot_tokens_of_room(room=room),
        "webhooks": selectors.webhooks_of_room(room=room),
        "bot_form": extra.pop("bot_form", None) or BotForm(),
        "token_form": extra.pop("token_form", None) or TokenForm(),
        "webhook_form": extra.pop("webhook_form", None) or WebhookForm(bots=bots),
        "hook_url_base": request.build_absolute_uri("/api/v1/hooks/"),
        "now": timezone.now(),
        **extra,
    }
    failed = any(context[name].errors for name in ("bot_form", "token_form", "webhook_form"))
    status = 400 if failed else 201 if "made" in context else 200
    return render(request, "api/integrations.html", context, status=status)


@login_required
@require_POST
def bot_new(request: HttpRequest, slug: str) -> HttpResponse:
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    form = BotForm(request.POST)
    if form.is_valid():
        try:
            services.bot_create(room=room, created_by=request.user, username=form.cleaned_data["username"])
        except ValidationError as error:
            form.add_error("username", error)
        else:
            messages.success(request, f"Bot “{form.cleaned_data['username']}” made: give it a token below.")
            return redirect("room-integrations", slug=room.slug)
    return _integrations_page(request, room, bot_form=form)


@login_required
@require_POST
def bot_token_new(request: HttpRequest, slug: str, bot_user_id: int) -> HttpResponse:
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    bot = selectors.bot_get_for_room(room=room, bot_user_id=bot_user_id)
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _integrations_page(request, room, token_form=form)
    data = form.cleaned_data
    made = services.token_create(
        user=bot.user,
        name=data["name"],
        can_read=data["can_read"],
        can_publish=data["can_publish"],
        rooms=[room],  # a bot's token reaches its own room only
        expires_at=_expiry(data["expires_in_days"]),
    )
    return _integrations_page(request, room, made=made, made_label=f"Token for {bot.user.get_username()}")


@login_required
@require_POST
def bot_token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    services.token_revoke(token=selectors.bot_token_get_for_room(room=room, token_id=token_id))
    messages.success(request, "Token revoked.")
    return redirect("room-integrations", slug=room.slug)


@login_required
@require_POST
def webhook_new(request: HttpRequest, slug: str) -> HttpResponse:
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    form = WebhookForm(request.POST, bots=selectors.bots_of_room(room=room))
    if not form.is_valid():
        return _integrations_page(request, room, webhook_form=form)
    data = form.cleaned_data
    made = services.webhook_create(bot=data["bot"], created_by=request.user, name=data["name"])
    url = request.build_absolute_uri(reverse("api-v1:hook_post", kwargs={"secret": made.secret}))
    return _integrations_page(request, room, made=made, made_label="Webhook URL", made_url=url)


@login_required
@require_POST
def webhook_revoke(request: HttpRequest, slug: str, hook_id: int) -> HttpResponse:
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    services.webhook_revoke(hook=selectors.webhook_get_for_room(room=room, hook_id=hook_id))
    messages.success(request, "Webhook revoked: its URL posts nothing any more.")
    return redirect("room-integrations", slug=room.slug)
