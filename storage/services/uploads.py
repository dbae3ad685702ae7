"""Uploaded images (guidance images, mix ingredients), checked and kept in their own content-addressed store.

Every upload is decoded and re-encoded as PNG: that proves it is a real image, applies its EXIF
rotation and drops the rest of its metadata (GPS positions, camera serials) before anyone sees it.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select

from model.engine.request_fields import MAX_IMAGE_ASPECT_RATIO, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE

from ..db import Database
from ..errors import ValidationFailed
from ..images import ImageStore
from ..models import Upload
from ..types import Actor, UploadInfo
from .helpers import Service, acting_person, get_or_404, upload_info

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = MAX_IMAGE_PIXELS
MAX_SIDE = MAX_IMAGE_SIDE
MAX_ASPECT_RATIO = MAX_IMAGE_ASPECT_RATIO
FORMATS = ("PNG", "JPEG", "WEBP")


def shape_problem(width: int, height: int) -> str | None:
    """Why an image of this size is refused (naming the limit it breaks), or None when it is accepted.

    Read from the header, before any decode; the web layer maps the answer to its HTTP status."""
    if width < 1 or height < 1:
        return "The image has no pixels."
    if max(width, height) > MAX_SIDE:
        return f"The image is {width}x{height}; the limit is {MAX_SIDE} pixels per side."
    if width * height > MAX_PIXELS:
        return f"The image has more than {MAX_PIXELS:,} pixels."
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return f"The image is {width}x{height}; the aspect ratio limit is 1:{MAX_ASPECT_RATIO}."
    return None


def normalise_upload(data: bytes) -> tuple[bytes, int, int]:
    """(PNG bytes, width, height) of an uploaded image, or ValidationFailed naming the problem."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise ValidationFailed("image", "The upload is empty.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValidationFailed("image", f"The upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
            width, height = opened.size
            problem = shape_problem(width, height)  # checked from the header, before decoding
            if problem:
                raise ValidationFailed("image", problem)
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            clean = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValidationFailed("image", "The upload is not a readable PNG, JPEG or WebP image.") from exc
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG")
    return buffer.getvalue(), clean.width, clean.height


class UploadService(Service):
    def __init__(self, db: Database, store: ImageStore) -> None:
        super().__init__(db)
        self.store = store

    def add(self, actor: Actor, data: bytes) -> UploadInfo:
        """Check, normalise and store an upload. The same picture uploaded twice by one user is one upload."""
        with self.db.read() as session:
            acting_person(session, actor)
        png, width, height = normalise_upload(bytes(data))
        stored = self.store.put(png)
        try:
            with self.write() as session:
                uploader = acting_person(session, actor)
                existing = session.scalar(
                    select(Upload).where(Upload.uploader_id == uploader.id, Upload.sha256 == stored.sha256)
                )
                if existing is not None:
                    return upload_info(existing)
                upload = Upload(
                    uploader_id=uploader.id,
                    sha256=stored.sha256,
                    relpath=stored.relpath,
                    size=stored.size,
                    width=width,
                    height=height,
                    file_missing=False,
                )
                session.add(upload)
                session.flush()
                return upload_info(upload)
        except BaseException:
            if stored.created:
                self.store.delete(stored.sha256)
            raise

    def get(self, actor: Actor, upload_id: int) -> UploadInfo:
        """Any active user may read an upload: shared prompts refer to their authors' uploads."""
        with self.db.read() as session:
            acting_person(session, actor)
            return upload_info(get_or_404(session, Upload, upload_id, "Upload"))
