from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from messaging.selectors import message_history
from rooms import services
from rooms.forms import InviteForm, RoomForm
from rooms.selectors import room_get_for_reader, room_list_for_user, room_members

PAGE_SIZE = 50


def _apply_validation_error(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.message_dict.items():
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
    else:
        for message in error.messages:
            form.add_error(None, message)


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    rooms = room_list_for_user(user=request.user)
    return render(request, "rooms/room_list.html", {"rooms": rooms})


@login_required
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
    room, membership = room_get_for_reader(slug=slug, user=request.user)
    history = message_history(room=room, limit=PAGE_SIZE)
    context = {
        "room": room,
        "membership": membership,
        "members": room_members(room=room),
        "messages_page": history.messages,
        "has_more": history.has_more,
        "last_seq": history.messages[-1]["seq"] if history.messages else 0,
        "invite_form": InviteForm(),
    }
    return render(request, "rooms/room_detail.html", context)


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
    try:
        services.room_leave(room=room, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(room)
    messages.success(request, f"You left {room.name}.")
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
            invited = services.room_invite(room=room, by=request.user, username=form.cleaned_data["username"])
        except ValidationError as error:
            _apply_validation_error(form, error)
        else:
            messages.success(request, f"{invited.user.username} can now join {room.name}.")
            return redirect(room)
    for errors in form.errors.values():
        for message in errors:
            messages.error(request, message)
    return redirect(room)
