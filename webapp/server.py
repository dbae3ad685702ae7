"""The studio's one process: FastAPI with the REST API at /api/v1 and the Gradio UI mounted at /.

Both front ends share one Studio: the storage facade, the one engine (so every user's requests
batch together) and the job runner that keeps storage in step with the engine.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
from fastapi import FastAPI
from gradio.utils import get_upload_folder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.api import PREFIX, build_api_router
from webapp.auth import Auth
from webapp.context import Studio
from webapp.errors import error_response, install_error_handlers
from webapp.jobs import JobRunner
from webapp.ui import CSS, build_ui
from webapp.uploads import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from model.engine.engine_base import Engine
    from storage import Storage

MAX_JSON_BYTES = 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024


class ApiBodyLimit:
    """Refuse oversized API request bodies with 413 before they are parsed or spooled to disk.

    A declared Content-Length is checked up front; a chunked body is counted as it arrives.
    Uploads may carry an image of MAX_UPLOAD_BYTES; every other API body is small JSON.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        limit = (MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD if scope["path"] == f"{PREFIX}/uploads"
                 else MAX_JSON_BYTES)
        too_large = error_response(413, "payload_too_large", f"the request body exceeds {limit} bytes")
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:  # end the body here; the app's answer is replaced below
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def answer(message: Message) -> None:
            if seen <= limit:
                await send(message)
            elif message["type"] == "http.response.start":
                await too_large(scope, receive, send)

        await self.app(scope, counted, answer)


def create_app(storage: Storage, engine: Engine, *, auth_enabled: bool = True) -> FastAPI:
    """Build the studio around an open storage and a started engine (the caller owns and closes both).

    Generations a previous process left queued or running are marked `interrupted` here, before
    anything new is accepted (see webapp.jobs for why they are not requeued).
    """
    runner = JobRunner(storage, engine)
    runner.recover()
    studio = Studio(storage=storage, engine=engine, runner=runner, auth=Auth(storage, enabled=auth_enabled))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runner.shutdown()

    app = FastAPI(title="Draftroom", version="1.0",
                  description="Draft images from text, review them, share the prompts.", lifespan=lifespan)
    app.state.studio = studio
    install_error_handlers(app)
    app.add_middleware(ApiBodyLimit)
    app.include_router(build_api_router(studio))
    blocks = build_ui(studio)
    gr.mount_gradio_app(
        app, blocks, path="/",
        auth=studio.auth.gradio_login if auth_enabled else None,
        auth_message="Sign in to Draftroom. Ask an admin for an account.",
        footer_links=[], run_history=False, ssr_mode=False, mcp_server=False,
        max_file_size=MAX_UPLOAD_BYTES, enable_monitoring=False, css=CSS,
        blocked_paths=blocked_paths(storage),
    )
    # Gradio checks the paths in an event's file inputs (only its upload folder) and outputs (never a
    # blocked path) only once the Blocks count as launched; launch() sets this, mounting does not.
    blocks.has_launched = True
    return app


def blocked_paths(storage: Storage) -> list[str]:
    """The data directory, which Gradio must never read or serve (the UI hands it copies instead).

    Left out when it holds the temp folder or Gradio's upload folder, which Gradio must keep serving.
    """
    data_dir = storage.data_dir.resolve()
    gradio_folders = (Path(tempfile.gettempdir()).resolve(), Path(get_upload_folder()).resolve())
    return [] if any(folder.is_relative_to(data_dir) for folder in gradio_folders) else [str(data_dir)]
