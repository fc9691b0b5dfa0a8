from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotFound
from django.urls import Resolver404, resolve


class ContentSecurityPolicyMiddleware:
    """Sets the Content-Security-Policy header (Django 5.2 has none built in)."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        return self._add_header(self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self._add_header(await self.get_response(request))

    @staticmethod
    def _add_header(response: HttpResponse) -> HttpResponse:
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


class RqDashboardIndexMiddleware:
    """django-rq's dashboard (staff only: /admin/rq/ and the admin's /admin/django_rq/) indexes
    its list of queues with the URL's number unchecked: a number past the list was a 500
    (IndexError). Here such a URL is a 404, as any URL naming nothing; so is one naming a job or
    a worker that does not exist, or the schedulers' pages without rq-scheduler (django-rq lets
    those out as NoSuchJobError, ValueError and ImproperlyConfigured: 500s)."""

    async_capable = True
    sync_capable = True
    PREFIXES = ("/admin/rq/", "/admin/django_rq/")
    INDEXES = ("queue_index", "scheduler_index")  # both index django_rq.queues.get_queues_list()

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if request.path_info.startswith(self.PREFIXES):
            self._check(request.path_info)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from rq.exceptions import NoSuchJobError  # noqa: PLC0415 (rq, only for the dashboard's pages)

        if request.path_info.startswith(self.PREFIXES) and isinstance(
            exception, NoSuchJobError | ValueError | ImproperlyConfigured
        ):
            return HttpResponseNotFound("No such queue, job, worker or scheduler.")
        return None

    def _check(self, path: str) -> None:
        from django_rq.queues import get_queues_list  # noqa: PLC0415 (django-rq's settings, read at the first dashboard URL)

        try:
            kwargs = resolve(path).kwargs
        except Resolver404:
            return
        if any(kwargs.get(name, 0) >= len(get_queues_list()) for name in self.INDEXES):
            raise Http404("No such queue.")
