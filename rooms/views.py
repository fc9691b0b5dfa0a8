import json
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from messaging import moderation as message_moderation
from messaging.notifications import invites
from messaging.pins import room_pins_list
from messaging.selectors import message_get, message_history, report_list_open
from pubsub_site.ratelimit import per_user, rate_limited
from rooms import moderation, room_settings, services
from rooms.details_views import room_details_revision
from rooms.forms import (
    DeleteRoomForm,
    DirectForm,
    InviteForm,
    MemberActForm,
    MuteForm,
    ReasonForm,
    RenameForm,
    ReportForm,
    RoomForm,
    SlowModeForm,
    TopicForm,
)
from rooms.models import Membership
from rooms.selectors import (
    archived_rooms_of_user,
    audit_log_for_room,
    direct_banned_members,
    membership_is_actionable_by,
    report_count_open,
    report_get_for_room,
    room_get_for_moderator,
    room_get_for_reader,
    room_list_for_user,
    room_members,
    room_members_for_moderation,
    room_moved_for_reader,
    room_title_for,
    user_find,
)

PAGE_SIZE = 50


def _apply_validation_error(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.message_dict.items():
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
    else:
        for message in error.messages:
            form.add_error(None, message)


def room_list(request: HttpRequest) -> HttpResponse:
    """The rooms of a signed-in user; to anyone else, what the site is (the landing page)."""
    if not request.user.is_authenticated:
        return render(request, "landing.html")
    rooms = room_list_for_user(user=request.user)
    archived = archived_rooms_of_user(user=request.user)
    return render(request, "rooms/room_list.html", {"rooms": rooms, "archived_rooms": archived})


@login_required
@rate_limited("room_create", key=per_user, message="You have created too many rooms.")
def room_create(request: HttpRequest) -> HttpResponse:
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            room = services.room_create(creator=request.user, **form.cleaned_data)
        except ValidationError as error:
            _apply_validation_error(form, error)
        else:
            return redirect(room)
    return render(request, "rooms/room_form.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        room, membership = room_get_for_reader(slug=slug, user=request.user)
    except Http404:
        moved = room_moved_for_reader(slug=slug, user=request.user)
        if moved is None:
            raise
        # An old address (a direct conversation's, from before it was named after its people).
        query = request.META.get("QUERY_STRING", "")
        return redirect(moved.get_absolute_url() + (f"?{query}" if query else ""), permanent=True)
    # Read before the members: a page that misses a change after it reads them again (protocol.details).
    details = room_details_revision(room)
    # ?around=<seq>: the page around one message (a search result), the newer ones behind a button.
    raw_around = request.GET.get("around", "")
    around = int(raw_around) if raw_around.isascii() and raw_around.isdigit() and len(raw_around) < 16 else None
    history = message_history(room=room, around=around, limit=PAGE_SIZE)
    members = room_members(room=room)
    context = {
        "room": room,
        "details": details,
        "title": room_title_for(room=room, user=request.user),
        "direct_banned": direct_banned_members(room=room),
        "membership": membership,
        "members": members,
        # Messages show their authors' display names (the members' profiles, read with the list).
        "display_names": _display_names(members),
        "messages_page": history.messages,
        "has_more": history.has_more,
        "has_newer": history.has_newer,
        "around": around,
        # With newer messages left out, live ones follow the latest: what is between comes on demand.
        "last_seq": history.latest if history.has_newer else (history.messages[-1]["seq"] if history.messages else 0),
        "invite_form": InviteForm(),
        "open_report_count": report_count_open(room=room) if membership and membership.can_moderate else 0,
        "pins": [] if room.is_direct else room_pins_list(room_id=room.pk),
        "attachments_per_message": settings.ATTACHMENTS_PER_MESSAGE,  # the composer's limit (room-uploads.js)
    }
    return render(request, "rooms/room_detail.html", context)


def _display_names(members) -> dict[int, str]:
    names = {}
    for member in members:
        profile = getattr(member.user, "profile", None)  # selected with the member; None: no profile row
        if profile is not None and profile.display_name:
            names[member.user_id] = profile.display_name
    return names


@login_required
@rate_limited("direct_open", key=per_user, message="You have opened too many conversations.")
def direct_new(request: HttpRequest) -> HttpResponse:
    """The "New message" form (``?to=`` fills it in); its POST, and the buttons on people's names,
    open the conversation with them: the one they already have, or a new one."""
    if request.method == "POST":
        form = DirectForm(request.POST)
        if form.is_valid():
            try:
                room = services.direct_open(opener=request.user, usernames=form.cleaned_data["usernames"])
            except ValidationError as error:
                _apply_validation_error(form, error)
            else:
                return redirect(room)
    else:
        form = DirectForm(initial={"usernames": request.GET.get("to", "")[:1200]})
    context = {"form": form, "max_others": services.DIRECT_MAX_MEMBERS - 1}
    return render(request, "rooms/direct_form.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def room_join(request: HttpRequest, slug: str) -> HttpResponse:
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    try:
        services.room_join(room=room, user=request.user)
    except PermissionDenied as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"You joined {room.name}.")
    return redirect(room)


@login_required
@require_POST
def room_leave(request: HttpRequest, slug: str) -> HttpResponse:
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    title = room_title_for(room=room, user=request.user)
    try:
        services.room_leave(room=room, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(room)
    messages.success(request, f"You left {'the conversation with ' if room.is_direct else ''}{title}.")
    return redirect("room-list")


@login_required
@require_POST
def room_invite(request: HttpRequest, slug: str) -> HttpResponse:
    room, membership = room_get_for_reader(slug=slug, user=request.user)
    if membership is None or not membership.can_moderate:
        raise PermissionDenied("Only the owner and moderators can invite.")
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invited = invites.room_invite(room=room, by=request.user, username=form.cleaned_data["username"])
        except ValidationError as error:
            _apply_validation_error(form, error)
        else:
            messages.success(request, f"{invited.user.username} can now join {room.name}.")
            return redirect(room)
    for errors in form.errors.values():
        for message in errors:
            messages.error(request, message)
    return redirect(room)


@login_required
@require_POST
def room_watch(request: HttpRequest, slug: str) -> HttpResponse:
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    try:
        membership = services.room_watch(room=room, user=request.user)
    except PermissionDenied as error:
        messages.error(request, str(error))
    else:
        if membership.role == Membership.Role.SPECTATOR:
            messages.success(request, f"You are watching {room.name}.")
    return redirect(room)


@login_required
@require_POST
def room_participate(request: HttpRequest, slug: str) -> HttpResponse:
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    try:
        services.room_participate(room=room, user=request.user)
    except PermissionDenied as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"You take part in {room.name}.")
    return redirect(room)


# --- Reports -----------------------------------------------------------------------


def _errors_json(errors: dict[str, list[str]]) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=400)


@login_required
@require_POST
@rate_limited("report", key=per_user, message="You have reported too many messages.", json=True)
def message_report(request: HttpRequest, slug: str, seq: int) -> JsonResponse:
    """Report a message to the room's moderators: ``reason`` as a form field or in a JSON body."""
    room, _ = room_get_for_reader(slug=slug, user=request.user)
    if message_get(room_id=room.pk, seq=seq) is None:
        raise Http404("No such message.")
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return _errors_json({"__all__": ["The body is not valid JSON."]})
        if not isinstance(data, dict):
            return _errors_json({"__all__": ["The body must be a JSON object."]})
    else:
        data = request.POST
    form = ReportForm(data)
    if not form.is_valid():
        return _errors_json({field: list(errors) for field, errors in form.errors.items()})
    try:
        report = message_moderation.report_create(
            room=room, reporter=request.user, seq=seq, reason=form.cleaned_data["reason"]
        )
    except ValidationError as error:
        return _errors_json(error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages})
    return JsonResponse({"status": "reported", "report": report.pk}, status=201)


# --- Moderation ----------------------------------------------------------------------

AUDIT_PAGE_SIZE = 50


@login_required
def room_moderation(request: HttpRequest, slug: str) -> HttpResponse:
    """The moderation page of a room: members, the room's settings, open reports, the audit log."""
    room, membership = room_get_for_moderator(slug=slug, user=request.user)
    audit_page = Paginator(audit_log_for_room(room=room), AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "room": room,
        "membership": membership,
        "is_owner": membership.role == Membership.Role.OWNER,
        "members": [
            (member, membership_is_actionable_by(target=member, actor=membership))
            for member in room_members_for_moderation(room=room)
        ],
        "reports": report_list_open(room=room),
        "audit_page": audit_page,
        "mute_durations": list(moderation.MUTE_DURATIONS),
        "slow_mode_choices": moderation.SLOW_MODE_CHOICES,
    }
    return render(request, "rooms/moderation.html", context)


def _refusal_text(error: PermissionDenied | ValidationError) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error) or "You may not do this."


def _form_errors_text(form) -> str:
    return " ".join(message for errors in form.errors.values() for message in errors)


def _back_url(request: HttpRequest, *, default: str) -> str:
    """Where to go after an act: the page it came from (``next``, a path on this site only), else
    ``default``. (A word is no path: redirect() would read it as a URL pattern's name.)"""
    target = request.POST.get("next", "")
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def _moderate(
    request: HttpRequest, slug: str, form_class: type, act: Callable[..., str], **act_kwargs: object
) -> HttpResponse:
    """Run one moderation act from a POSTed form, tell how it went, and go back to the moderation page."""
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    back = redirect(_back_url(request, default=reverse("room-moderation", kwargs={"slug": room.slug})))
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors_text(form))
        return back
    try:
        done = act(room=room, data=form.cleaned_data, **act_kwargs)
    except (PermissionDenied, ValidationError) as error:
        messages.error(request, _refusal_text(error))
    else:
        messages.success(request, done)
    return back


_MEMBER_ACTS: dict[str, tuple[Callable[..., object], str]] = {
    "promote": (moderation.membership_promote, "{username} is now a moderator."),
    "demote": (moderation.membership_demote, "{username} is no longer a moderator."),
    "mute": (moderation.membership_mute, "{username} is muted."),
    "unmute": (moderation.membership_unmute, "{username} can post again."),
    "ban": (moderation.membership_ban, "{username} is banned."),
    "unban": (moderation.membership_unban, "{username} is no longer banned."),
    "remove": (moderation.membership_remove, "{username} was removed from the room."),
}


@login_required
@require_POST
def room_member_act(request: HttpRequest, slug: str, act: str) -> HttpResponse:
    """Promote, demote, mute, unmute, ban, unban or remove the user named in the form."""
    service, done = _MEMBER_ACTS[act]

    def run(*, room, data: dict) -> str:
        user = user_find(username=data["username"])
        if user is None:
            raise ValidationError("There is no user with this name.")
        extra = {"duration": data["duration"]} if act == "mute" else {}
        service(room=room, actor=request.user, user=user, reason=data["reason"], **extra)
        return done.format(username=user.get_username())

    return _moderate(request, slug, MuteForm if act == "mute" else MemberActForm, run)


@login_required
@require_POST
def room_lock(request: HttpRequest, slug: str) -> HttpResponse:
    def run(*, room, data: dict) -> str:
        moderation.room_lock(room=room, actor=request.user, reason=data["reason"])
        return "The room is locked: nobody can post until it is unlocked."

    return _moderate(request, slug, ReasonForm, run)


@login_required
@require_POST
def room_unlock(request: HttpRequest, slug: str) -> HttpResponse:
    def run(*, room, data: dict) -> str:
        moderation.room_unlock(room=room, actor=request.user, reason=data["reason"])
        return "The room is unlocked."

    return _moderate(request, slug, ReasonForm, run)


@login_required
@require_POST
def room_slow_mode(request: HttpRequest, slug: str) -> HttpResponse:
    def run(*, room, data: dict) -> str:
        seconds = data["seconds"]
        moderation.room_set_slow_mode(room=room, actor=request.user, seconds=seconds, reason=data["reason"])
        return f"Slow mode: one message every {seconds} seconds per member." if seconds else "Slow mode is off."

    return _moderate(request, slug, SlowModeForm, run)


@login_required
@require_POST
def room_message_hide(request: HttpRequest, slug: str, seq: int) -> HttpResponse:
    def run(*, room, data: dict) -> str:
        message_moderation.room_message_hide(room=room, actor=request.user, seq=seq, reason=data["reason"])
        return f"Message #{seq} is hidden."

    return _moderate(request, slug, ReasonForm, run)


_REPORT_ACTS: dict[str, Callable[..., object]] = {
    "resolve": message_moderation.report_resolve,
    "dismiss": message_moderation.report_dismiss,
    "hide": message_moderation.report_hide_message,
}
_REPORT_DONE = {
    "resolve": "The report is resolved.",
    "dismiss": "The report is dismissed.",
    "hide": "The message is hidden and its reports are resolved.",
}


@login_required
@require_POST
def room_report_act(request: HttpRequest, slug: str, report_id: int, act: str) -> HttpResponse:
    """Resolve or dismiss a report, or hide the reported message."""

    def run(*, room, data: dict) -> str:
        report = report_get_for_room(room=room, report_id=report_id)
        _REPORT_ACTS[act](report=report, actor=request.user)
        return _REPORT_DONE[act]

    return _moderate(request, slug, ReasonForm, run)


# --- Room settings (rooms/room_settings.py) ---------------------------------------


@login_required
@require_POST
def room_rename(request: HttpRequest, slug: str) -> HttpResponse:
    def run(*, room, data: dict) -> str:
        room_settings.room_rename(room=room, actor=request.user, name=data["name"], reason=data["reason"])
        return f"The room is now called {room.name}."

    return _moderate(request, slug, RenameForm, run)


@login_required
@require_POST
def room_topic(request: HttpRequest, slug: str) -> HttpResponse:
    def run(*, room, data: dict) -> str:
        room_settings.room_set_topic(room=room, actor=request.user, topic=data["topic"], reason=data["reason"])
        return "The topic is saved." if room.topic else "The topic is removed."

    return _moderate(request, slug, TopicForm, run)


@login_required
@require_POST
def room_archive(request: HttpRequest, slug: str) -> HttpResponse:
    def run(*, room, data: dict) -> str:
        room_settings.room_archive(room=room, actor=request.user, reason=data["reason"])
        return "The room is archived: it is read-only and no longer in the room list."

    return _moderate(request, slug, ReasonForm, run)


@login_required
@require_POST
def room_unarchive(request: HttpRequest, slug: str) -> HttpResponse:
    def run(*, room, data: dict) -> str:
        room_settings.room_unarchive(room=room, actor=request.user, reason=data["reason"])
        return "The room is back: members can post again."

    return _moderate(request, slug, ReasonForm, run)


@login_required
@require_POST
def room_delete(request: HttpRequest, slug: str) -> HttpResponse:
    """Delete the room (its owner, naming it to confirm); then the room list."""
    room, _ = room_get_for_moderator(slug=slug, user=request.user)
    back = redirect("room-moderation", slug=room.slug)
    form = DeleteRoomForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_errors_text(form))
        return back
    name = room.name
    try:
        room_settings.room_delete(
            room=room, actor=request.user, confirm=form.cleaned_data["confirm"], reason=form.cleaned_data["reason"]
        )
    except (PermissionDenied, ValidationError) as error:
        messages.error(request, _refusal_text(error))
        return back
    messages.success(request, f"{name} is deleted.")
    return redirect("room-list")
