"""Accounts and API tokens over REST: admins manage everyone; anyone may make or revoke their own tokens.

Passwords and token secrets are returned exactly once, in the response that creates them.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from storage.services.users import unknown_user, username_key
from storage.types import Role, TokenInfo, UserInfo
from webapp.context import Studio
from webapp.schemas import TokenCreateBody, TokenInfoOut, TokenOut, UserCreateBody, UserOut, UserPatchBody


class CreatedUserOut(UserOut):
    password: str | None = None
    """The generated one-time password when none was given (the user must change it)."""


def user_out(user: UserInfo) -> UserOut:
    return UserOut(name=user.username, role=user.role.value, active=user.active)


def token_info_out(token: TokenInfo) -> TokenInfoOut:
    return TokenInfoOut(
        id=token.id,
        user=token.username,
        name=token.label,
        prefix=token.prefix,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


class TokenList(BaseModel):
    items: list[TokenInfoOut]


def router(studio: Studio) -> APIRouter:
    api = APIRouter(tags=["users"])
    admin = studio.auth.require(Role.ADMIN)
    caller = studio.auth.require()
    users, tokens = studio.storage.users, studio.storage.tokens

    def token_owner(name: str, caller: UserInfo) -> UserInfo:
        """Members and reviewers manage only their own tokens: any other name gets the unknown-name 404,
        so the answer does not tell whether that account exists."""
        if caller.role != Role.ADMIN and username_key(name) != username_key(caller.username):
            raise unknown_user(name)
        return users.find(name)

    @api.get("/users", response_model=list[UserOut])
    def list_users(user: UserInfo = admin) -> list[UserOut]:
        return [user_out(u) for u in users.list_all(user.id)]

    @api.post("/users", status_code=201, response_model=CreatedUserOut)
    def create_user(body: UserCreateBody, user: UserInfo = admin) -> CreatedUserOut:
        created = users.create(user.id, body.name, role=body.role, password=body.password)
        return CreatedUserOut(**user_out(created.user).model_dump(), password=created.generated_password)

    @api.patch("/users/{name}", response_model=UserOut)
    def update_user(name: str, body: UserPatchBody, user: UserInfo = admin) -> UserOut:
        target = users.find(name)
        if body.role is not None:
            target = users.set_role(user.id, target.id, body.role)
        if body.active is not None:
            target = users.set_active(user.id, target.id, body.active)
        return user_out(target)

    @api.post("/tokens", status_code=201, response_model=TokenOut)
    def create_token(body: TokenCreateBody, user: UserInfo = caller) -> TokenOut:
        owner = token_owner(body.user, user)
        new = tokens.create(user.id, owner.id, body.name)
        return TokenOut(id=new.info.id, user=new.info.username, name=new.info.label, token=new.secret)

    @api.get("/tokens", response_model=TokenList)
    def list_tokens(name: str | None = None, user: UserInfo = caller) -> TokenList:
        owner = token_owner(name, user) if name else user
        return TokenList(items=[token_info_out(t) for t in tokens.list_for(user.id, owner.id)])

    @api.delete("/tokens/{token_id}", status_code=204, response_class=Response)
    def revoke_token(token_id: int, user: UserInfo = caller) -> Response:
        tokens.revoke(user.id, token_id)
        return Response(status_code=204)

    return api
