"""Checks an uploaded file is a real, reasonably sized PNG, JPEG or WebP before anything keeps it.

The order matters: the byte cap is enforced while reading, the pixel cap from the header before any
decode (so a 20000x20000 "bomb" never allocates), then `verify()` and a full decode prove the file
is an image and not something renamed to `.png`. SVG, HTML and every other format are refused.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from storage.services.uploads import FORMATS as ALLOWED_FORMATS
from storage.services.uploads import MAX_PIXELS as MAX_UPLOAD_PIXELS
from storage.services.uploads import MAX_SIDE, MAX_UPLOAD_BYTES, shape_problem
from webapp.errors import ApiError

# The limits are the storage service's (which re-checks on store); this module only maps each failure to
# the right HTTP status (413 too big, 415 not an allowed format, 422 damaged) before anything is kept.
_READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class CheckedImage:
    """An upload that passed every check; `data` is the original bytes, `image` the decoded RGB picture."""

    data: bytes
    sha256: str
    format: str
    width: int
    height: int
    image: Image.Image


def read_capped(stream: BinaryIO, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """Read at most `max_bytes`; a longer stream is refused without reading it all into memory."""
    parts: list[bytes] = []
    total = 0
    while chunk := stream.read(_READ_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(413, "payload_too_large", f"file: larger than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


def check_image(
    data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS
) -> CheckedImage:
    """Return the decoded image or raise `ApiError` (413 size, 415 not an allowed image, 422 corrupt)."""
    if len(data) > max_bytes:
        raise ApiError(413, "payload_too_large", f"file: larger than {max_bytes} bytes")
    if not data:
        raise ApiError(422, "invalid_image", "file: the upload is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:
                fmt, (width, height) = probe.format, probe.size
                _check_pixels(width, height, max_pixels)
                probe.verify()
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as decoded:
                decoded.load()
                image = decoded.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ApiError(413, "image_too_large", f"file: more than {max_pixels} pixels") from None
        except UnidentifiedImageError:
            claimed = _claimed_format(data)
            if claimed:  # damaged beyond Pillow's recognition: say so rather than "not a PNG"
                raise ApiError(
                    422, "invalid_image", f"file: a damaged {claimed} image that cannot be read"
                ) from None
            raise ApiError(415, "unsupported_media_type", "file: not a PNG, JPEG or WebP image") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ApiError(422, "invalid_image", f"file: the image cannot be decoded ({exc})") from None
    return CheckedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt or "",
        width=width,
        height=height,
        image=image,
    )


def _claimed_format(data: bytes) -> str | None:
    """The allowed format whose signature the file starts with, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    """413 for a side or a pixel count over its limit, 422 for no pixels or too elongated a shape."""
    if width * height > max_pixels:
        raise ApiError(413, "image_too_large", f"file: {width}x{height} is more than {max_pixels} pixels")
    problem = shape_problem(width, height)
    if problem:
        too_large = max(width, height) > MAX_SIDE
        raise ApiError(
            413 if too_large else 422, "image_too_large" if too_large else "invalid_image", f"file: {problem}"
        )
