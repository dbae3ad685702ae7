"""What every UI tab shares: the server-side caller check, the check on files a browser sends, image files
for Gradio, small formatters.

Every event handler starts with `guard(...)`: the UI's tabs are hidden by role only for comfort;
this check is the access control, made again on every event (a disabled account stops at once).
Every handler that takes a file passes it through `uploaded_file(...)` first.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image

from model.engine.engine_common import EngineClosed, QueueFull
from storage.errors import StorageError
from storage.types import ImageInfo, ReviewStatus, Role, UserInfo
from webapp.auth import ALL_ROLES
from webapp.context import Studio
from webapp.errors import ApiError

log = logging.getLogger(__name__)

TEMP_MAX_AGE_S = 24 * 3600
"""Image copies handed to Gradio, and Gradio's own cached files (`Blocks(delete_cache=...)`), live a day."""
EXPORT_MAX_AGE_S = 3600
"""An export zip is for downloading at once; each is a full copy of the approved images, so it lives an hour."""
SWEEP_EVERY_S = 600


def guard(
    studio: Studio,
    request: gr.Request | None,
    roles: Iterable[Role] = ALL_ROLES,
    *,
    allow_password_change: bool = False,
) -> UserInfo:
    """The signed-in caller, checked (active, role, no pending password change), or a gr.Error."""
    try:
        user = studio.auth.session_user(getattr(request, "username", None))
        return studio.auth.check(user, roles, allow_password_change=allow_password_change)
    except StorageError as exc:
        raise user_error(str(exc), title="Not allowed") from None


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
        raise user_error(
            f"{field}: not a file uploaded to the studio; add the image again", title="Not allowed"
        )
    return resolved


def user_error(message: str, *, title: str = "Error") -> gr.Error:
    """A toast for something the user can fix (the message names the field): logged as one line, never as
    a traceback, which Gradio prints for every gr.Error unless told not to."""
    log.info("refused in the UI: %s", message)
    return gr.Error(message, title=title, print_exception=False)


def ui_error(exc: Exception) -> gr.Error:
    """A readable toast from the errors the services and the engine raise for a user's input or state
    (StorageError: NotFound, PermissionDenied, ValidationFailed, ...; ApiError; QueueFull; EngineClosed)."""
    if isinstance(exc, ApiError):
        return user_error(str(exc.detail))
    if isinstance(exc, StorageError | QueueFull | EngineClosed):
        return user_error(str(exc) or type(exc).__name__)
    log.error("unexpected error in the UI", exc_info=exc)
    return gr.Error("The server failed; the error is logged.", print_exception=False)


def keep_outputs_on_error(blocks: gr.Blocks) -> None:
    """An event that fails leaves its outputs as they were: Gradio's default progress display ("full")
    covers every output with an error box when the event fails, which blanks forms, tables and the audit
    log; hidden, only the toast tells the user."""
    for function in blocks.fns.values():
        if function.show_progress == "full":
            function.show_progress = "hidden"


class TempFolder:
    """A private folder in the system temp directory whose files are deleted once older than `max_age_s`,
    so copies and exports cannot fill the disk silently.

    Folders with the same prefix left by earlier processes (a crash, a restart) are removed on creation once
    older than `max_age_s`; this process's files are swept on use, at most every `sweep_every_s` seconds.
    """

    def __init__(
        self,
        prefix: str,
        max_age_s: float,
        *,
        sweep_every_s: float = SWEEP_EVERY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age_s = max_age_s
        self._sweep_every_s = sweep_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sweep = clock()
        for stale in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
            if stale.is_dir() and self._is_old(stale):
                shutil.rmtree(stale, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def maybe_sweep(self) -> None:
        """Sweep when the last sweep is `sweep_every_s` old: cheap enough to call on every use."""
        with self._lock:
            if self._clock() - self._last_sweep < self._sweep_every_s:
                return
            self._last_sweep = self._clock()
        self.sweep()

    def sweep(self) -> int:
        """Delete files older than `max_age_s` (by modification time) and the folders they leave empty."""
        removed = 0
        for path in sorted(self.path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            try:
                if path.is_dir():
                    if not any(path.iterdir()) and self._is_old(path):
                        path.rmdir()
                elif self._is_old(path):
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another sweep or a download got there first
                continue
        if removed:
            log.info(
                "removed %d temporary file(s) older than %ds from %s", removed, self.max_age_s, self.path
            )
        return removed

    def _is_old(self, path: Path) -> bool:
        return self._clock() - path.stat().st_mtime > self.max_age_s


class ImageFiles:
    """Copies of stored PNGs in a private temp folder, named for download (`draftroom-<id>.png`).

    Gradio serves only files it may read from its cache; handing it copies keeps the data
    directory itself out of reach of the UI's file routes wherever it lives. A copy is made again
    when asked for after its folder's age-based sweep removed it.
    """

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.temp = TempFolder("draftroom-ui-", TEMP_MAX_AGE_S)
        self.folder = self.temp.path

    def image(self, image: ImageInfo) -> str:
        self.temp.maybe_sweep()
        target = self.folder / f"draftroom-{image.id}.png"
        if not target.exists():
            shutil.copyfile(self.studio.storage.images.path_for(image.sha256), target)
        return str(target)

    def upload(self, sha256: str) -> str:
        self.temp.maybe_sweep()
        target = self.folder / f"upload-{sha256[:16]}.png"
        if not target.exists():
            shutil.copyfile(self.studio.storage.upload_store.path_for(sha256), target)
        return str(target)


def thumbnail_uri(path: Path | str, max_side: int = 128) -> str:
    """A small PNG of a stored picture as a data URI, for HTML panels: no file route has to serve it."""
    with Image.open(path) as picture:
        return picture_uri(picture, max_side)


def picture_uri(picture: Image.Image, max_side: int = 128) -> str:
    """A picture as a PNG data URI, shrunk to `max_side` at most (never enlarged: the page scales it up
    pixelated)."""
    small = picture.convert("RGB")
    small.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_img(path: Path | str | None, alt: str, css_class: str = "thumb") -> str:
    """An <img> for an HTML panel; a readable note when the file is gone."""
    if path is None or not Path(path).is_file():
        return f'<span class="{css_class} missing">{html.escape(alt)}: file missing</span>'
    return f'<img class="{css_class}" src="{thumbnail_uri(path)}" alt="{html.escape(alt, quote=True)}">'


def export_zip(studio: Studio, user: UserInfo, status: str, exports: TempFolder) -> str:
    """Write the export zip of images in `status` into a new folder under `exports`; its path for gr.File."""
    if status not in {s.value for s in ReviewStatus}:
        raise user_error("Images with status: pick one of the list.")
    exports.maybe_sweep()
    target = Path(tempfile.mkdtemp(dir=exports.path)) / f"draftroom-{status}.zip"
    try:
        summary = studio.storage.export.write_zip(user.id, target, status)
    except StorageError as exc:
        raise ui_error(exc) from None
    gr.Info(
        f"{summary.count} image(s) exported"
        + (
            f"; {len(summary.missing_image_ids)} missing file(s) left out"
            if summary.missing_image_ids
            else ""
        )
    )
    return str(target)


def parse_day(text: str, field: str, *, end: bool = False) -> datetime | None:
    """'YYYY-MM-DD' as UTC midnight; an end date includes its whole day."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise user_error(f"{field}: write the date as YYYY-MM-DD") from None
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment + timedelta(days=1) if end else moment


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def escape_md(text: str) -> str:
    """User text shown in Markdown must stay text: no links, HTML, emphasis or math from a prompt."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|<>~$" else ch for ch in text)


def plain_markdown(value: str = "", **options: Any) -> gr.Markdown:
    """Markdown for the studio's own formatting around user text, with LaTeX off: a prompt holding `$$...$$`
    is shown as typed, never typeset (user text in it goes through `escape_md`)."""
    return gr.Markdown(value, latex_delimiters=[], **options)


def plain_table(headers: list[str], **options: Any) -> gr.Dataframe:
    """A read-only table whose cells are plain text: no Markdown or LaTeX from what users typed."""
    return gr.Dataframe(
        headers=headers, value=[], interactive=False, datatype="str", latex_delimiters=[], **options
    )
