"""The API's one error shape: ``{"error": {"code", "detail"}}``, with the socket contract's codes.

Every refusal becomes an ``ApiError`` (or is one already): a service's ``ActionRefused``, a
frame checker's ``ClientError``, a schema's validation error, an unknown token. The status
follows the code (``STATUS_OF_CODE``); a 429 carries ``Retry-After``.
"""

from __future__ import annotations

import math

from django.http import HttpRequest, HttpResponse, JsonResponse

from messaging.frames import ClientError
from messaging.services import ActionRefused

STATUS_OF_CODE = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "muted": 403,
    "not_found": 404,
    "room_locked": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}


class ApiError(Exception):
    def __init__(self, code: str, detail: str, *, status: int | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status or STATUS_OF_CODE.get(code, 400)
        self.extra = extra

    @classmethod
    def of(cls, refusal: ActionRefused | ClientError) -> ApiError:
        return cls(refusal.code, refusal.detail, **refusal.extra)

    def body(self) -> dict:
        return {"error": {"code": self.code, "detail": self.detail, **self.extra}}


def error_response(error: ApiError) -> HttpResponse:
    response = JsonResponse(error.body(), status=error.status)
    retry_after = error.extra.get("retry_after")
    if error.status == 429 and isinstance(retry_after, (int, float)):
        response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def not_found(detail: str = "No such room.") -> ApiError:
    return ApiError("not_found", detail)


def handle(request: HttpRequest, error: Exception) -> HttpResponse:
    """An exception handler of the API (api.endpoints) for the refusals above."""
    if isinstance(error, (ActionRefused, ClientError)):
        error = ApiError.of(error)
    return error_response(error)
