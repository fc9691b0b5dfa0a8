"""How a file the reader may have (attachments.selectors) reaches them.

On S3: a redirect to a presigned URL that lives ATTACHMENT_URL_SECONDS, with the headers
the object must be served with written into the signature. On the filesystem: an
``X-Accel-Redirect`` to nginx's internal location when ATTACHMENT_X_ACCEL_PREFIX says
nginx fronts the app (deploy/nginx.conf), else the file itself (FileResponse).

Only a safe raster image (SAFE_INLINE_TYPES) is served inline; anything else (SVG and
HTML included) is ``Content-Disposition: attachment``, and every answer carries
``X-Content-Type-Options: nosniff`` and a sandboxing CSP, so that no upload ever runs as a
page of the site. Answers are never cached by a shared cache and not kept by the browser
past a deletion (``private, no-cache``).
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.utils.http import content_disposition_header

from attachments.models import SAFE_INLINE_TYPES, Attachment
from attachments.services import attachment_storage

THUMB_TYPE = "image/webp"


def storage_is_s3(storage) -> bool:
    return hasattr(storage, "bucket_name")


def attachment_response(attachment: Attachment, *, thumb: bool) -> HttpResponse:
    key = attachment.thumb_key if thumb else attachment.storage_key
    if not key:
        raise Http404("No such file.")
    content_type = THUMB_TYPE if thumb else attachment.content_type
    inline = content_type in SAFE_INLINE_TYPES
    name = f"{attachment.name}.webp" if thumb else attachment.name
    disposition = content_disposition_header(not inline, name)
    storage = attachment_storage()
    if storage_is_s3(storage):
        url = storage.url(
            key,
            parameters={"ResponseContentDisposition": disposition, "ResponseContentType": content_type},
            expire=settings.ATTACHMENT_URL_SECONDS,
        )
        endpoint = storage.endpoint_url
        if settings.AWS_S3_PUBLIC_URL and endpoint and url.startswith(endpoint.rstrip("/") + "/"):
            url = settings.AWS_S3_PUBLIC_URL.rstrip("/") + url[len(endpoint.rstrip("/")) :]
        response: HttpResponse = HttpResponseRedirect(url)
        response["Cache-Control"] = "private, no-store"
    else:
        if settings.ATTACHMENT_X_ACCEL_PREFIX:
            response = HttpResponse(content_type=content_type)
            response["X-Accel-Redirect"] = settings.ATTACHMENT_X_ACCEL_PREFIX.rstrip("/") + "/" + quote(key)
        else:
            try:
                response = FileResponse(storage.open(key, "rb"), content_type=content_type)
            except FileNotFoundError:
                raise Http404("No such file.") from None
        response["Cache-Control"] = "private, no-cache"
    response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
