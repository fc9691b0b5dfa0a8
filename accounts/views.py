from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters

from accounts.forms import EmailSettingsForm, SignUpForm
from accounts.services import profile_get, profile_update_email
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
        profile_update_email(user=request.user, **form.cleaned_data)
        messages.success(request, "Settings saved.")
        return redirect("account-settings")
    return render(request, "accounts/settings.html", {"form": form}, status=400 if form.errors else 200)
