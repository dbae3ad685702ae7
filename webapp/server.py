"""The studio's one process: FastAPI with the REST API at /api/v1 and the Gradio UI mounted at /.

Both front ends share one Studio: the storage facade, the one engine (so every user's requests
batch together) and the generation job service that keeps storage in step with the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import gradio as gr
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.api import PREFIX, build_api_router
from webapp.auth import Auth
from webapp.context import Studio
from webapp.errors import error_response, install_error_handlers
from webapp.services.generation_jobs import GenerationJobs
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
    anything new is accepted (see webapp.services.generation_jobs for why they are not requeued).
    """
    jobs = GenerationJobs(storage, engine)
    jobs.recover()
    studio = Studio(storage=storage, engine=engine, jobs=jobs, auth=Auth(storage, enabled=auth_enabled))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = FastAPI(title="Draftroom", version="1.0",
                  description="Draft images from text, review them, share the prompts.", lifespan=lifespan)
    app.state.studio = studio
    install_error_handlers(app)
    app.add_middleware(ApiBodyLimit)
    app.include_router(build_api_router(studio))
    blocks = build_ui(studio)
    return gr.mount_gradio_app(
        app, blocks, path="/",
        auth=studio.auth.gradio_login if auth_enabled else None,
        auth_message="Sign in to Draftroom. Ask an admin for an account.",
        footer_links=[], run_history=False, ssr_mode=False, mcp_server=False,
        max_file_size=MAX_UPLOAD_BYTES, enable_monitoring=False, css=CSS,
    )
