"""Who is calling, and may they? Shared by the REST API (bearer tokens) and the UI (Gradio login).

Every REST handler and every Gradio event handler resolves the caller here on each call and checks
the role on the server; the storage services check again. A disabled account or a revoked token
stops working at the next request, even inside an open browser session.

Auth is on unless the server runs with `--no-auth` on a loopback address; then every caller acts
as the first active admin (a single-user studio on one's own machine).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Depends, Request

from storage.errors import NotFound, PermissionDenied
from storage.types import OPERATOR, Role, UserInfo
from webapp.errors import ApiError

if TYPE_CHECKING:
    from storage import Storage

PASSWORD_CHANGE_REQUIRED = ("password change required: change it in the studio's Account tab "
                            "or with POST /api/v1/me/password")
ALL_ROLES = (Role.MEMBER, Role.REVIEWER, Role.ADMIN)
STAFF = (Role.REVIEWER, Role.ADMIN)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost": the only binds where auth may be turned off."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Auth:
    """Resolves callers to `UserInfo` and enforces roles, for both front ends."""

    def __init__(self, storage: Storage, *, enabled: bool = True) -> None:
        self.storage = storage
        self.enabled = enabled

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
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>",
                           {"WWW-Authenticate": "Bearer"})
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'",
                           {"WWW-Authenticate": "Bearer"})
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
        """Gradio's `auth=` callable: argon2 check against the users table (every attempt audited)."""
        try:
            await anyio.to_thread.run_sync(self.storage.users.authenticate, username, password)
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
