"""The browser-facing defences around the whole app, as ASGI middlewares (see docs/SECURITY.md).

- `SecurityHeaders`: a Content-Security-Policy that only this origin may frame, nosniff, a strict referrer.
- `SameOriginWrites`: a state-changing request that a browser could send on its own (no bearer token: the
  UI's session cookie, the sign-in form, or `--no-auth`) must come from this origin or an allowed one.
- `LaxSessionCookies`: Gradio's sign-in cookies become `SameSite=Lax`, so other sites' requests lack them.
- `SessionPerUser`: a Gradio session hash is kept apart per signed-in user, so nobody reaches another
  user's session state or results stream by reusing their hash.

The host check and the CORS policy are Starlette's own (TrustedHostMiddleware, CORSMiddleware; see
webapp.server).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.auth import BrowserSessions
from webapp.errors import error_response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    # Gradio's page carries its config in an inline script and runs event snippets through Function().
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GRADIO_API = "/gradio_api/"
SESSION_PATHS = (GRADIO_API + "heartbeat/", GRADIO_API + "stream/")
"""Gradio routes that name the session hash as the first path segment after them (GET only)."""


class SecurityHeaders:
    """Add the security headers to every response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def request_origin(headers: Headers) -> str | None:
    """The origin a browser says a request comes from: `Origin`, else the scheme and host of `Referer`."""
    origin = headers.get("origin")
    if origin is not None:
        return origin
    referer = urlsplit(headers.get("referer", ""))
    return f"{referer.scheme}://{referer.netloc}" if referer.scheme and referer.netloc else None


class SameOriginWrites:
    """Refuse (403) a state-changing, cookie- or `--no-auth`-authorised request from a foreign origin.

    Browsers send `Origin` (or at least `Referer`) with every cross-site POST, so a request from a hostile
    page is recognised; a request without either comes from a program (curl, gradio_client), not a page
    that rides on a signed-in browser, and passes. Bearer-token requests pass: browsers never add the token.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed_origins = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = request_origin(headers)
        bearer = headers.get("authorization", "").lower().startswith("bearer ")
        if bearer or origin is None or self.same_origin(origin, headers):
            await self.app(scope, receive, send)
            return
        refused = error_response(
            403,
            "cross_origin",
            f"a request from {origin} may not change anything here; "
            "use the studio's own pages or an API token",
        )
        await refused(scope, receive, send)

    def same_origin(self, origin: str, headers: Headers) -> bool:
        origin = origin.rstrip("/").lower()
        return origin in self.allowed_origins or urlsplit(origin).netloc == headers.get("host", "").lower()


class LaxSessionCookies:
    """Gradio sets its secure sign-in cookie with `SameSite=None`; make every sign-in cookie `SameSite=Lax`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def lax(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name, lax_cookie(value) if name.lower() == b"set-cookie" else value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, lax)


def lax_cookie(set_cookie: bytes) -> bytes:
    """A `Set-Cookie` value of a sign-in cookie with `SameSite=Lax`; other cookies unchanged."""
    if not set_cookie.startswith(b"access-token"):
        return set_cookie
    attributes = [part.strip() for part in set_cookie.split(b";")]
    kept = [part for part in attributes if not part.lower().startswith(b"samesite")]
    return b"; ".join([*kept, b"SameSite=Lax"])


class SessionPerUser:
    """Give each signed-in user their own Gradio sessions, whatever session hash their browser sends.

    Gradio keys session state and results streams by a hash the client chooses; a colleague who learns
    another user's hash could otherwise join that session. Here every hash in a Gradio request (query,
    JSON body, or path) is suffixed with a digest of the signed-in user's name, so the same hash names
    different sessions for different users. Without sign-in (`--no-auth`) there is one user: no change.
    """

    def __init__(self, app: ASGIApp, sessions: BrowserSessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GRADIO_API):
            await self.app(scope, receive, send)
            return
        username = self.sessions.username(cookie_parser(Headers(scope=scope).get("cookie", "")))
        if username is None:
            await self.app(scope, receive, send)
            return
        suffix = "~" + hashlib.sha256(username.casefold().encode()).hexdigest()[:16]
        scope = dict(scope)
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if any(name == "session_hash" for name, _ in query):
            scope["query_string"] = urlencode(
                [(name, value + suffix if name == "session_hash" else value) for name, value in query]
            ).encode()
        prefix = next((p for p in SESSION_PATHS if scope["path"].startswith(p)), None)
        if prefix is not None and scope["method"] == "GET":
            session, _, rest = scope["path"][len(prefix) :].partition("/")
            scope["path"] = f"{prefix}{session}{suffix}" + (f"/{rest}" if rest else "")
            scope["raw_path"] = scope["path"].encode()
        if scope["method"] == "POST" and Headers(scope=scope).get("content-type", "").startswith(
            "application/json"
        ):
            receive = await with_session_in_body(scope, receive, suffix)
        await self.app(scope, receive, send)


async def with_session_in_body(scope: Scope, receive: Receive, suffix: str) -> Receive:
    """Read a JSON body (already capped by the body limit) and suffix its `session_hash`, if it has one."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("session_hash"), str):
        payload["session_hash"] += suffix
        body = json.dumps(payload).encode()
        scope["headers"] = [(name, value) for name, value in scope["headers"] if name != b"content-length"]
        scope["headers"].append((b"content-length", str(len(body)).encode()))
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
