"""The API's requests past the browser's middleware.

Under ASGI each of Django's middleware classes written as ``MiddlewareMixin`` (sessions,
CSRF, authentication, messages, django-axes, clickjacking, common) runs its hooks in Django's
one sync thread: a hop there and back per hook, a dozen per request, every request of every
connection queueing for that one thread. The API needs none of them: a token authenticates
it (no cookie, so no session and no CSRF), and it renders no page. So ``ApiMiddleware``,
placed first, answers ``/api/v1/`` itself with the API's (async) views, applying what still
matters on the event loop: the host check (``ALLOWED_HOSTS``), the security middleware's
HTTPS redirect and headers, and the site's Content-Security-Policy. The schema and the docs
page (sync views, a page) take the ordinary stack.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, resolve

PREFIX = "/api/v1/"


class ApiMiddleware:
    async_capable = True
    sync_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)  # its hooks only, called directly
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(PREFIX):
            return await self.get_response(request)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return await self.get_response(request)
        if not iscoroutinefunction(match.func):
            return await self.get_response(request)  # the schema and the docs page
        request.get_host()  # ALLOWED_HOSTS: DisallowedHost is a 400, as on every other path
        redirect = self.security.process_request(request)
        if redirect is not None:
            return redirect
        request.resolver_match = match
        response = await match.func(request, *match.args, **match.kwargs)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return self.security.process_response(request, response)
