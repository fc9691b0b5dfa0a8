from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters

from accounts.forms import SignUpForm
from pubsub_site.ratelimit import per_ip, rate_limited


@sensitive_post_parameters("password1", "password2")
@rate_limited("signup", key=per_ip, message="Too many sign-ups from your address.")
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("room-list")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("room-list")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)
