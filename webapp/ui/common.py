"""What every UI tab shares: the server-side caller check, image files for Gradio, small formatters.

Every event handler starts with `guard(...)`: the UI's tabs are hidden by role only for comfort;
this check is the access control, made again on every event (a disabled account stops at once).
"""

from __future__ import annotations

import base64
import html
import io
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import gradio as gr
from PIL import Image

from storage.errors import StorageError
from storage.types import ImageInfo, ReviewStatus, Role, UserInfo
from webapp.auth import ALL_ROLES
from webapp.context import Studio
from webapp.errors import ApiError


def guard(studio: Studio, request: gr.Request | None, roles: Iterable[Role] = ALL_ROLES, *,
          allow_password_change: bool = False) -> UserInfo:
    """The signed-in caller, checked (active, role, no pending password change), or a gr.Error."""
    try:
        user = studio.auth.session_user(getattr(request, "username", None))
        return studio.auth.check(user, roles, allow_password_change=allow_password_change)
    except StorageError as exc:
        raise gr.Error(str(exc), title="Not allowed") from None


def ui_error(exc: Exception) -> gr.Error:
    """A readable message for the UI from the errors the services and the engine raise."""
    if isinstance(exc, ApiError):
        return gr.Error(str(exc.detail))
    return gr.Error(str(exc))


class ImageFiles:
    """Copies of stored PNGs in a private temp folder, named for download (`draftroom-<id>.png`).

    Gradio serves only files it may read from its cache; handing it copies keeps the data
    directory itself out of reach of the UI's file routes wherever it lives.
    """

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.folder = Path(tempfile.mkdtemp(prefix="draftroom-ui-"))

    def image(self, image: ImageInfo) -> str:
        target = self.folder / f"draftroom-{image.id}.png"
        if not target.exists():
            shutil.copyfile(self.studio.storage.images.path_for(image.sha256), target)
        return str(target)

    def upload(self, sha256: str) -> str:
        target = self.folder / f"upload-{sha256[:16]}.png"
        if not target.exists():
            shutil.copyfile(self.studio.storage.upload_store.path_for(sha256), target)
        return str(target)


def thumbnail_uri(path: Path | str, max_side: int = 128) -> str:
    """A small PNG of a stored picture as a data URI, for HTML panels: no file route has to serve it.

    Pictures are shrunk to `max_side` at most (never enlarged: the page scales them up pixelated)."""
    with Image.open(path) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_img(path: Path | str | None, alt: str, css_class: str = "thumb") -> str:
    """An <img> for an HTML panel; a readable note when the file is gone."""
    if path is None or not Path(path).is_file():
        return f'<span class="{css_class} missing">{html.escape(alt)}: file missing</span>'
    return f'<img class="{css_class}" src="{thumbnail_uri(path)}" alt="{html.escape(alt, quote=True)}">'


def export_zip(studio: Studio, user: UserInfo, status: str, folder: Path) -> str:
    """Write the export zip of images in `status` into a new folder under `folder`; its path for gr.File."""
    if status not in {s.value for s in ReviewStatus}:
        raise gr.Error("Images with status: pick one of the list.")
    target = Path(tempfile.mkdtemp(dir=folder)) / f"draftroom-{status}.zip"
    try:
        summary = studio.storage.export.write_zip(user.id, target, status)
    except StorageError as exc:
        raise ui_error(exc) from None
    gr.Info(f"{summary.count} image(s) exported"
            + (f"; {len(summary.missing_image_ids)} missing file(s) left out" if summary.missing_image_ids else ""))
    return str(target)


def parse_day(text: str, field: str, *, end: bool = False) -> datetime | None:
    """'YYYY-MM-DD' as UTC midnight; an end date includes its whole day."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise gr.Error(f"{field}: write the date as YYYY-MM-DD") from None
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment + timedelta(days=1) if end else moment


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def escape_md(text: str) -> str:
    """User text shown in Markdown must stay text: no links, HTML or emphasis from a prompt."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|<>~" else ch for ch in text)
