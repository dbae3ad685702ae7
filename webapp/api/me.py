"""`GET /me` and `POST /me/password`: usable even while a password change is pending (that is their point)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from storage.types import UserInfo
from webapp.context import Studio
from webapp.schemas import MeOut, PasswordChangeBody


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["me"])
    caller = studio.auth.require(allow_password_change=True)

    @api.get("/me", response_model=MeOut)
    def me(user: UserInfo = caller) -> MeOut:
        return MeOut(name=user.username, role=user.role.value, must_change_password=user.must_change_password)

    @api.post("/me/password", status_code=204, response_class=Response)
    def change_password(body: PasswordChangeBody, user: UserInfo = caller) -> Response:
        studio.storage.users.change_password(
            user.id, user.id, body.new_password, current_password=body.current_password
        )
        studio.auth.password_changed(user.username)
        return Response(status_code=204)

    return api
