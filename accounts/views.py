from __future__ import annotations

import zoneinfo

import django_rq
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django.views.static import serve

from accounts.forms import AvatarForm, EmailSettingsForm, PasswordConfirmForm, ProfileForm, SignUpForm
from accounts.jobs import password_reset_mail
from accounts.selectors import avatar_url, profile_card_for
from accounts.services import (
    account_delete,
    email_verification_send,
    email_verify,
    password_changed,
    profile_get,
    profile_remove_avatar,
    profile_set_avatar,
    profile_update,
    profile_update_email,
)
from protocol.events import sessions_end_told_by_caller
from pubsub_site.ratelimit import login_failed, login_refused, per_ip, rate_limited
from rooms.services import room_welcome

_login_view = auth_views.LoginView.as_view(redirect_authenticated_user=True)


@sensitive_post_parameters("password")
def log_in(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """Django's log-in page, with the spraying limits of pubsub_site.ratelimit around it: a
    log-in POST from an address or for an account past its failures is answered 429 unread;
    a POST the form refused (a wrong password: 200) counts one failure for both."""
    if request.method != "POST":
        return _login_view(request, *args, **kwargs)
    refused = login_refused(request)
    if refused is not None:
        return refused
    response = _login_view(request, *args, **kwargs)
    if response.status_code == 200:
        login_failed(request)
    return response


@sensitive_post_parameters("password1", "password2")
@rate_limited("signup", key=per_ip, message="Too many sign-ups from your address.")
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("room-list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        if form.cleaned_data.get("email"):
            if email_verification_send(user=user, email=form.cleaned_data["email"]):
                messages.info(
                    request, f"We sent a link to {form.cleaned_data['email']}: follow it to confirm the address."
                )
            else:
                messages.error(request, "We could not send the confirmation link: ask for it again in Settings.")
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        room = room_welcome(user=user)
        if room is None:
            messages.success(request, f"Welcome to pubsub, {user.get_username()}! Join a room to start talking.")
            return redirect("room-list")
        messages.success(
            request,
            f"Welcome to pubsub, {user.get_username()}! This is {room.name}, where everyone starts: say hello. "
            "Other rooms are in the room list; anyone's name opens a direct message.",
        )
        return redirect(room)
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    """The user's e-mail address and whether mentions they miss are e-mailed (the digests'
    unsubscribe link leads here)."""
    profile = profile_get(user=request.user)
    initial = {"email": request.user.email, "mention_emails": profile.mention_emails}
    form = EmailSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        if profile_update_email(user=request.user, **form.cleaned_data):
            messages.info(
                request, f"We sent a link to {form.cleaned_data['email']}: the address changes when you follow it."
            )
        elif form.cleaned_data["email"] and form.cleaned_data["email"] != request.user.email:
            messages.error(
                request, "The link to the new address could not be sent (too many asked for?): try again later."
            )
        messages.success(request, "Settings saved.")
        return redirect("account-settings")
    context = {"form": form, "profile": profile, "email_verified": profile.email_verified and bool(request.user.email)}
    return render(request, "accounts/settings.html", context, status=400 if form.errors else 200)


def email_verify_view(request: HttpRequest, token: str) -> HttpResponse:
    """Follow an address's verification link (signed, timestamped: no log-in needed)."""
    try:
        user = email_verify(token=token)
    except ValidationError as error:
        return render(request, "accounts/email_verified.html", {"error": error.messages[0]}, status=400)
    return render(request, "accounts/email_verified.html", {"email": user.email})


@login_required
@require_POST
def email_verify_resend(request: HttpRequest) -> HttpResponse:
    if request.user.email and not profile_get(user=request.user).email_verified:
        if email_verification_send(user=request.user, email=request.user.email):
            messages.info(request, f"We sent a new link to {request.user.email}.")
        else:
            messages.error(request, "The link could not be sent (too many asked for?): try again later.")
    return redirect("account-settings")


def _reset_email_key(request: HttpRequest) -> str:
    return "email:" + request.POST.get("email", "")[:254].strip().lower()


@method_decorator(
    rate_limited("password_reset", key=per_ip, message="Too many password resets asked for from your address."),
    name="dispatch",
)
@method_decorator(
    rate_limited(
        "password_reset_email", key=_reset_email_key, message="Too many password resets asked for this address."
    ),
    name="dispatch",
)
class PasswordResetView(auth_views.PasswordResetView):
    """Django's view, answering every address the same way: it enqueues one job
    (accounts.jobs.password_reset_mail) whether or not the address is an account's,
    and redirects to the same page."""

    def form_valid(self, form):
        django_rq.get_queue("default").enqueue(password_reset_mail, email=form.cleaned_data["email"])
        return redirect(self.get_success_url())


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's view (the token expires after PASSWORD_RESET_TIMEOUT and is spent by the
    reset); the user's open sockets end."""

    def form_valid(self, form):
        sessions_end_told_by_caller(form.user)
        response = super().form_valid(form)
        password_changed(user=form.user)
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's view: this browser stays logged in, every other session and its sockets end."""

    success_url = reverse_lazy("password_change_done")

    def form_valid(self, form):
        old_key = self.request.session.session_key
        sessions_end_told_by_caller(form.user)
        response = super().form_valid(form)  # update_session_auth_hash: a new key for this browser
        password_changed(user=form.user, keep_session_keys=[old_key, self.request.session.session_key])
        return response


@login_required
@sensitive_post_parameters("password")
def account_delete_view(request: HttpRequest) -> HttpResponse:
    form = PasswordConfirmForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        account_delete(user=request.user)
        logout(request)
        messages.info(request, "Your account was deleted.")
        return redirect("login")
    return render(request, "accounts/delete.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def profile_edit(request: HttpRequest) -> HttpResponse:
    """Display name, status (and when it clears), time zone, and the avatar. The time the
    status clears is shown and read in the user's time zone (the one saved before this POST)."""
    profile = profile_get(user=request.user)
    with timezone.override(zoneinfo.ZoneInfo(profile.time_zone) if profile.time_zone else None):
        return _profile_edit(request, profile)


def _profile_edit(request: HttpRequest, profile) -> HttpResponse:
    initial = {
        "display_name": profile.display_name,
        "status": profile.status,
        "status_expires_at": profile.status_expires_at,
        "time_zone": profile.time_zone,
    }
    form = ProfileForm(request.POST if request.POST.get("form") == "profile" else None, initial=initial)
    avatar_form = AvatarForm(
        request.POST if request.POST.get("form") == "avatar" else None,
        request.FILES if request.POST.get("form") == "avatar" else None,
    )
    if request.method == "POST":
        if request.POST.get("form") == "profile" and form.is_valid():
            try:
                profile_update(user=request.user, **form.cleaned_data)
            except ValidationError as error:
                form.add_error("time_zone", error)
            else:
                messages.success(request, "Profile saved.")
                return redirect("profile-edit")
        elif request.POST.get("form") == "avatar" and avatar_form.is_valid():
            try:
                profile_set_avatar(user=request.user, upload=avatar_form.cleaned_data["avatar"])
            except ValidationError as error:
                avatar_form.add_error("avatar", error)
            else:
                messages.success(request, "Avatar saved.")
                return redirect("profile-edit")
        elif request.POST.get("form") == "avatar-remove":
            profile_remove_avatar(user=request.user)
            messages.success(request, "Avatar removed.")
            return redirect("profile-edit")
    status = 400 if form.errors or avatar_form.errors else 200
    return render(
        request,
        "accounts/profile.html",
        {"form": form, "avatar_form": avatar_form, "profile": profile, "avatar_url": avatar_url(profile)},
        status=status,
    )


@login_required
def profile_card(request: HttpRequest, user_id: int) -> HttpResponse:
    """A person's card (an HTML fragment for the page's dialog): only for someone who
    shares a room with them (or themselves); 404 otherwise, as for an unknown id."""
    card = profile_card_for(viewer=request.user, user_id=user_id)
    if card is None:
        raise Http404("No such person.")
    return render(request, "accounts/_profile_card.html", {"card": card})


def media(request: HttpRequest, path: str) -> HttpResponse:
    """Uploads under MEDIA_ROOT (avatars), when the site serves them itself (SERVE_MEDIA)."""
    if not settings.SERVE_MEDIA:
        raise Http404
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "public, max-age=31536000, immutable"  # names are random, never reused
    return response
