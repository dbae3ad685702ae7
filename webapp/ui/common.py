"""What every UI tab shares: the server-side caller check, the check on files a browser sends, image files
for Gradio, small formatters.

Every event handler starts with `guard(...)`: the UI's tabs are hidden by role only for comfort;
this check is the access control, made again on every event (a disabled account stops at once).
Every handler that takes a file passes it through `uploaded_file(...)` first.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from storage.errors import StorageError
from storage.types import ImageInfo, Role, UserInfo
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


def uploaded_file(path: str | None, field: str) -> Path | None:
    """The file a browser uploaded for `field`, or a gr.Error when the path lies outside Gradio's upload folder.

    A Gradio event carries a file as a server path the caller wrote; Gradio itself refuses paths outside
    its upload folder (webapp.server makes that check run), and this repeats it where the file is used,
    so a path such as the database or /etc/passwd never reaches a handler's reads or outputs.
    """
    if not path:
        return None
    folder = Path(get_upload_folder()).resolve()
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(folder) or not resolved.is_file():
        raise gr.Error(f"{field}: not a file uploaded to the studio; add the image again", title="Not allowed")
    return resolved


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
