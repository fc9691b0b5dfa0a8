"""Reading uploaded images safely: the one place Pillow opens what users send (avatars in
accounts.services, attachments in attachments.images).

``read_upright`` refuses what is not a readable image of the allowed formats and anything
past ``MAX_PIXELS`` (a decompression bomb) before decoding it, and returns it turned the
way its EXIF said; what the caller saves from it carries none of the original's metadata
(GPS position, camera, comments) unless it passes them on itself.
"""

from __future__ import annotations

import io
import warnings

from django.core.exceptions import ValidationError
from PIL import Image, ImageOps, UnidentifiedImageError

RASTER_FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}
MAX_PIXELS = 40_000_000  # a 40-megapixel photo; past it, a decompression bomb
TOO_MANY_PIXELS = "The image has too many pixels: at most 40 megapixels."


def read_upright(data: bytes, *, formats: set[str] = RASTER_FORMATS) -> tuple[Image.Image, str]:
    """The decoded image, turned upright, and its format (Pillow's name: "JPEG", ...).
    Raises ValidationError saying what is wrong."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            if image.format not in formats:
                raise ValidationError("Upload a JPEG, PNG, GIF or WebP image.")
            if image.width * image.height > MAX_PIXELS:
                raise ValidationError(TOO_MANY_PIXELS)
            image_format = image.format
            image.load()
            return ImageOps.exif_transpose(image), image_format
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ValidationError(TOO_MANY_PIXELS) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ValidationError("This file is not an image that can be read.") from None


def flattened(image: Image.Image, background: str = "white") -> Image.Image:
    """An RGB copy of ``image`` with any transparency laid on ``background``."""
    if image.mode in ("RGBA", "LA", "P"):
        base = Image.new("RGB", image.size, background)
        rgba = image.convert("RGBA")
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return image.convert("RGB")
