"""What an uploaded image becomes: the stored original without its metadata, and a thumbnail.

The original is decoded (pubsub_site.images.read_upright: decompression bombs refused, the
EXIF orientation applied) and encoded again in its own format, so that nothing of its EXIF
(GPS position, camera, owner) or other metadata is kept; an animated GIF or WebP keeps its
bytes when it carries no EXIF (re-encoding would drop its frames), and loses its animation
otherwise. The thumbnail is a WebP at most THUMB_SIZE pixels on its longer side.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from pubsub_site.images import flattened, read_upright

THUMB_SIZE = 400
FORMAT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes  # the original to store
    content_type: str
    width: int
    height: int
    thumb: bytes  # WebP


def _has_metadata(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        return bool(image.getexif()) or "exif" in image.info or "xmp" in image.info


def process_image(data: bytes) -> ProcessedImage:
    """Raises ValidationError when ``data`` is not an image that can be read."""
    image, image_format = read_upright(data)
    animated = _is_animated(data)  # (the upright copy has one frame only)
    out = io.BytesIO()
    if animated and not _has_metadata(data):
        stored = data
    else:
        if image_format == "JPEG":
            flattened(image).save(out, format="JPEG", quality=90)
        elif image_format == "GIF":
            image.save(out, format="GIF")
        else:
            image.save(out, format=image_format)  # PNG and WebP keep their transparency
        stored = out.getvalue()
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA")
    thumb_out = io.BytesIO()
    thumb.save(thumb_out, format="WEBP", quality=80)
    return ProcessedImage(
        data=stored,
        content_type=FORMAT_TYPES[image_format],
        width=image.width,
        height=image.height,
        thumb=thumb_out.getvalue(),
    )


def _is_animated(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        return getattr(image, "n_frames", 1) > 1
