"""Who is calling, and may they? Shared by the REST API (bearer tokens) and the UI (Gradio login).

Every REST handler and every Gradio event handler resolves the caller here on each call and checks
the role on the server; the storage services check again. A disabled account or a revoked token
stops working at the next request, even inside an open browser session.

Auth is on unless the server runs with `--no-auth` on a loopback address; then every caller acts
as the first active admin (a single-user studio on one's own machine).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Depends, HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from storage.errors import NotFound, PermissionDenied
from storage.services.login_throttle import LoginThrottled
from storage.types import OPERATOR, Role, UserInfo
from webapp.errors import ApiError

if TYPE_CHECKING:
    from gradio.routes import App as GradioApp

    from storage import Storage

PASSWORD_CHANGE_REQUIRED = (
    "password change required: change it in the studio's Account tab or with POST /api/v1/me/password"
)
ALL_ROLES = (Role.MEMBER, Role.REVIEWER, Role.ADMIN)
STAFF = (Role.REVIEWER, Role.ADMIN)
LOGIN_PATHS = ("/login", "/login/")

_login_client: ContextVar[str | None] = ContextVar("draftroom_login_client", default=None)
"""The network address of the sign-in request being handled (Gradio calls `auth=` with the name and password
only; LoginClient puts the address here for the throttle)."""


class LoginClient:
    """ASGI middleware: remember the client address of each request to Gradio's `/login` for `gradio_login`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in LOGIN_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = _login_client.set(client[0] if client else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _login_client.reset(token)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost": the only binds where auth may be turned off."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StoredSignIns:
    """What Gradio keeps in `App.tokens` (in its own memory: sign-in token -> username), kept in the database
    instead (`storage.sessions`), so every front-end of one database knows every signed-in browser.

    Gradio reads it with `get` on every request and writes it on sign-in; the studio signs out through
    BrowserSessions (its `POST /logout` replaces Gradio's), so no one lists the tokens.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, token: object, default: str | None = None) -> str | None:
        name = self.storage.sessions.username(token) if isinstance(token, str) and token else None
        return default if name is None else name

    def __getitem__(self, token: str) -> str:
        name = self.get(token)
        if name is None:
            raise KeyError(token)
        return name

    def __contains__(self, token: object) -> bool:
        return self.get(token) is not None

    def __setitem__(self, token: str, username: str) -> None:
        self.storage.sessions.start(token, username)

    def __delitem__(self, token: str) -> None:
        if not self.storage.sessions.end(token):
            raise KeyError(token)


class BrowserSessions:
    """The UI's sign-in sessions. Gradio names the user behind a browser's cookie token through `App.tokens`;
    here that memory is the database (StoredSignIns) and the cookie's name is the database's
    `session_cookie_id`, not one drawn by each process, so a browser signed in through one front-end is
    signed in on all, and a token that is no longer stored is signed out everywhere (the next request shows
    the sign-in page)."""

    def __init__(self, gradio_app: GradioApp, storage: Storage) -> None:
        self.storage = storage
        self.gradio_app = gradio_app
        gradio_app.cookie_id = storage.sessions.cookie_id()
        gradio_app.tokens = StoredSignIns(storage)  # type: ignore[assignment]  # Gradio only uses it as above

    @property
    def cookie_names(self) -> tuple[str, str]:
        """Gradio sets the same token twice: in a `Secure` cookie, and in one that plain HTTP carries."""
        cookie_id = self.gradio_app.cookie_id
        return f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"

    def token(self, cookies: Mapping[str, str]) -> str | None:
        """The sign-in token a browser sends."""
        return next((cookies[name] for name in self.cookie_names if cookies.get(name)), None)

    def username(self, cookies: Mapping[str, str]) -> str | None:
        token = self.token(cookies)
        return self.storage.sessions.username(token) if token else None

    def end(self, token: str | None) -> None:
        """Sign out the one browser that holds `token`, on every front-end."""
        if token:
            self.storage.sessions.end(token)

    def end_all(self, username: str, *, keep: str | None = None) -> int:
        """Sign out every browser of `username` (matched as sign-in matches it, ignoring case) except `keep`."""
        return self.storage.sessions.end_all(username, keep=keep)


class Auth:
    """Resolves callers to `UserInfo` and enforces roles, for both front ends."""

    def __init__(self, storage: Storage, *, enabled: bool = True) -> None:
        self.storage = storage
        self.enabled = enabled
        self.browser_sessions: BrowserSessions | None = None
        """Set once the UI is mounted (webapp.server); None for a studio without its UI."""

    def password_changed(self, username: str, *, keeping: Mapping[str, str] | None = None) -> None:
        """A changed password ends the user's browser sessions, except the browser that made the change
        (whose cookies are `keeping`). API tokens are not touched: their owner revokes them."""
        if self.browser_sessions is not None:
            keep = self.browser_sessions.token(keeping) if keeping else None
            self.browser_sessions.end_all(username, keep=keep)

    # Shared checks ----------------------------------------------------------------------------

    def local_user(self) -> UserInfo:
        """The account an unauthenticated (`--no-auth`) caller acts as: the first active admin."""
        admins = [u for u in self.storage.users.list_all(OPERATOR) if u.role == Role.ADMIN and u.active]
        if not admins:
            raise PermissionDenied("No active admin exists; create one with `app.py users add`.")
        return admins[0]

    def check(
        self, user: UserInfo, roles: Iterable[Role], *, allow_password_change: bool = False
    ) -> UserInfo:
        """Raise PermissionDenied unless `user` is active, has one of `roles` and may act now."""
        if not user.active:
            raise PermissionDenied("This account is disabled.")
        if self.enabled and user.must_change_password and not allow_password_change:
            raise PermissionDenied(PASSWORD_CHANGE_REQUIRED)
        roles = tuple(roles)
        if user.role not in roles:
            names = " and ".join(f"{Role(r).value}s" for r in roles)
            raise PermissionDenied(f"Only {names} can do this.")
        return user

    # REST -------------------------------------------------------------------------------------

    def bearer_user(self, request: Request) -> UserInfo:
        """The user behind `Authorization: Bearer <token>`; 401 when it is missing or not valid."""
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if not header:
            if not self.enabled:
                return self.local_user()
            raise ApiError(
                401, "unauthorized", "send Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"}
            )
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(
                401,
                "unauthorized",
                "the Authorization header must be 'Bearer <token>'",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            return self.storage.tokens.authenticate(secret.strip())
        except PermissionDenied as exc:
            raise ApiError(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"}) from None

    def require(self, *roles: Role, allow_password_change: bool = False) -> Any:
        """A FastAPI dependency giving the checked caller; 401 unauthenticated, 403 wrong role."""
        wanted = roles or ALL_ROLES

        async def dependency(request: Request) -> UserInfo:
            user = await anyio.to_thread.run_sync(self.bearer_user, request)
            try:
                return self.check(user, wanted, allow_password_change=allow_password_change)
            except PermissionDenied as exc:
                raise ApiError(403, "forbidden", str(exc)) from None

        return Depends(dependency)

    # UI ---------------------------------------------------------------------------------------

    async def gradio_login(self, username: str, password: str) -> bool:
        """Gradio's `auth=` callable: argon2 check against the users table (every attempt audited).

        A throttled sign-in answers 429 with the reason and Retry-After, instead of Gradio's generic 400."""
        client = _login_client.get()
        try:
            await anyio.to_thread.run_sync(
                lambda: self.storage.users.authenticate(username, password, client=client)
            )
        except LoginThrottled as refused:
            raise HTTPException(429, str(refused), {"Retry-After": str(refused.retry_after_s)}) from None
        except PermissionDenied:
            return False
        return True

    def session_user(self, username: str | None) -> UserInfo:
        """Reload the signed-in user of a UI session on every event, so a disabled account stops at once."""
        if not self.enabled and not username:
            return self.local_user()
        if not username:
            raise PermissionDenied("Sign in first.")
        try:
            return self.storage.users.find(username)
        except NotFound:
            raise PermissionDenied("Unknown user; sign in again.") from None
