"""The studio's one process: FastAPI with the REST API at /api/v1 and the Gradio UI mounted at /.

Both front ends share one Studio: the storage facade, the one engine (so every user's requests
batch together) and the generation job service that keeps storage in step with the engine.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from gradio.routes import App as GradioApp
from gradio.utils import get_upload_folder
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.api import PREFIX, build_api_router
from webapp.auth import Auth, BrowserSessions, LoginClient
from webapp.context import Studio
from webapp.errors import error_response, install_error_handlers
from webapp.security import (
    LaxSessionCookies,
    SameOriginWrites,
    SecurityHeaders,
    SessionPerUser,
)
from webapp.services.generation_jobs import FrontendTiming, GenerationJobs
from webapp.ui import CSS, build_ui
from webapp.uploads import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from model.engine.engine_base import Engine
    from storage import Storage

DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1")
MAX_JSON_BYTES = 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024


UPLOAD_PATHS = (f"{PREFIX}/uploads", "/gradio_api/upload")


def body_limit(path: str) -> int | None:
    """The largest body a path accepts, or None for paths without a body limit (pages, static files).

    Image uploads (REST and the UI's) may carry MAX_UPLOAD_BYTES; every other API, UI event and sign-in
    body is small JSON or form data.
    """
    if path in UPLOAD_PATHS:
        return MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD
    if path.startswith((PREFIX + "/", "/gradio_api/")) or path in ("/login", "/login/", "/logout"):
        return MAX_JSON_BYTES
    return None


class BodyLimit:
    """Refuse oversized request bodies with 413 before they are parsed, spooled to disk or authenticated.

    A declared Content-Length is checked up front; a chunked body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = body_limit(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
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


def allowed_hosts_for(bind_host: str) -> list[str]:
    """The default Host names: the bound address, localhost and 127.0.0.1 (0.0.0.0 names no host)."""
    hosts = [*DEFAULT_ALLOWED_HOSTS, bind_host.strip("[]")]
    return list(dict.fromkeys(host for host in hosts if host not in ("0.0.0.0", "::")))


def create_app(
    storage: Storage,
    engine: Engine,
    *,
    auth_enabled: bool = True,
    allowed_hosts: Sequence[str] = DEFAULT_ALLOWED_HOSTS,
    allowed_origins: Sequence[str] = (),
    frontend_id: str | None = None,
    frontend_timing: FrontendTiming | None = None,
) -> FastAPI:
    """Build the studio around an open storage and a started engine (the caller owns and closes both).

    The studio is one front-end, named `frontend_id` (default: this machine's name), of the database:
    others may share it and the data directory. Generations that no live front-end holds (this one's
    previous run's, or a front-end's that stopped beating) are marked `interrupted` here, before anything
    new is accepted (see webapp.services.generation_jobs for why they are not requeued). Requests must name
    one of `allowed_hosts` in `Host`; browsers may use the studio from its own origin and `allowed_origins`.
    """
    jobs = GenerationJobs(storage, engine, frontend_id=frontend_id, timing=frontend_timing)
    jobs.recover()
    studio = Studio(storage=storage, engine=engine, jobs=jobs, auth=Auth(storage, enabled=auth_enabled))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        yield
        jobs.shutdown()

    app = FastAPI(
        title="Draftroom",
        version="1.0",
        description="Draft images from text, review them, share the prompts.",
        lifespan=lifespan,
    )
    app.state.studio = studio
    install_error_handlers(app)
    app.add_middleware(LoginClient)
    app.include_router(build_api_router(studio))
    add_logout_routes(app, studio.auth)
    blocks = build_ui(studio)
    gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        auth=studio.auth.gradio_login if auth_enabled else None,
        auth_message="Sign in to Draftroom. Ask an admin for an account.",
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        max_file_size=MAX_UPLOAD_BYTES,
        enable_monitoring=False,
        css=CSS,
        blocked_paths=blocked_paths(storage),
    )
    # Gradio checks the paths in an event's file inputs (only its upload folder) and outputs (never a
    # blocked path) only once the Blocks count as launched; launch() sets this, mounting does not.
    blocks.has_launched = True
    gradio_app = next(
        route.app for route in app.routes if isinstance(route, Mount) and isinstance(route.app, GradioApp)
    )
    studio.auth.browser_sessions = BrowserSessions(gradio_app, storage)
    # Starlette runs the last added middleware first: hosts, then CORS, origins, sizes, sessions.
    app.add_middleware(LaxSessionCookies)
    app.add_middleware(SessionPerUser, sessions=studio.auth.browser_sessions)
    app.add_middleware(BodyLimit)
    app.add_middleware(SameOriginWrites, allowed_origins=allowed_origins)
    # With a CORSMiddleware on the parent app, Gradio leaves out its own (permissive) CORS headers.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(allowed_origins),
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(SecurityHeaders)
    return app


def add_logout_routes(app: FastAPI, auth: Auth) -> None:
    """`POST /logout` signs this browser out and shows the sign-in page; `GET /logout` changes nothing.

    They replace Gradio's own `GET /logout`, which any page could trigger with a link or an image.
    """

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> RedirectResponse:
        response = RedirectResponse("/", status_code=303)
        sessions = auth.browser_sessions
        if sessions is not None:
            sessions.end(sessions.token(request.cookies))
            secure, plain = sessions.cookie_names
            response.delete_cookie(secure, path="/", secure=True, httponly=True)
            response.delete_cookie(plain, path="/", httponly=True)
        return response

    @app.get("/logout", include_in_schema=False)
    def logout_page() -> Response:
        return error_response(
            405,
            "method_not_allowed",
            "sign out with POST /logout (the studio's Sign out button)",
            {"Allow": "POST"},
        )


def blocked_paths(storage: Storage) -> list[str]:
    """The data directory, which Gradio must never read or serve (the UI hands it copies instead).

    Left out when it holds the temp folder or Gradio's upload folder, which Gradio must keep serving.
    """
    data_dir = storage.data_dir.resolve()
    gradio_folders = (Path(tempfile.gettempdir()).resolve(), Path(get_upload_folder()).resolve())
    return [] if any(folder.is_relative_to(data_dir) for folder in gradio_folders) else [str(data_dir)]
