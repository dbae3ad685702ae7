"""API tokens for the REST API. Only a SHA-256 of each token is stored, plus a short prefix to recognise it.

A token is 32 random bytes, so a fast unsalted hash is enough: there is nothing to brute-force
(unlike passwords, which get argon2).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ..models import ApiToken, User, utcnow
from ..text import checked_text
from ..types import Actor, NewToken, Role, TokenInfo, UserInfo
from .helpers import Service, acting_user, audit, get_or_404, is_row_id, missing, token_info, user_info

TOKEN_PREFIX = "dr_"
DISPLAY_PREFIX_LEN = 10  # "dr_" + 7 characters: enough to tell tokens apart, useless to an attacker
MAX_LABEL = 64
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _own_only(acting: User | None) -> int | None:
    """The user whose tokens alone `acting` may manage: themselves; None for admins and the CLI (anyone's)."""
    return None if acting is None or acting.role == Role.ADMIN else acting.id


def _owner(session: Session, acting: User | None, user_id: int) -> User:
    """The account whose tokens `acting` may manage. Someone else's reads as missing, like an unknown id, so
    the answer does not tell whether the account exists."""
    if _own_only(acting) not in (None, user_id):
        raise missing("User", user_id)
    return get_or_404(session, User, user_id, "User")


class TokenService(Service):
    def create(self, actor: Actor, user_id: int, label: str = "") -> NewToken:
        """A new token for `user_id` (oneself, or anyone for an admin). The secret is returned once."""
        label = checked_text(str(label).strip(), "label")
        if len(label) > MAX_LABEL:
            raise ValidationFailed("label", f"A token label has at most {MAX_LABEL} characters.")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.write() as session:
            acting = acting_user(session, actor, operator=True)
            owner = _owner(session, acting, user_id)
            if not owner.active:
                raise PermissionDenied(f"{owner.username}'s account is disabled.")
            token = ApiToken(
                user_id=owner.id,
                label=label,
                prefix=secret[:DISPLAY_PREFIX_LEN],
                token_hash=hash_token(secret),
            )
            session.add(token)
            session.flush()
            audit(
                session, acting, "token.create", "token", token.id, owner=owner.username, prefix=token.prefix
            )
            return NewToken(token_info(token), secret)

    def list_for(self, actor: Actor, user_id: int) -> list[TokenInfo]:
        """A user's tokens, newest first, revoked ones included (marked)."""
        with self.db.read() as session:
            acting = acting_user(session, actor, operator=True)
            _owner(session, acting, user_id)
            tokens = session.scalars(
                select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
            )
            return [token_info(t) for t in tokens]

    def revoke(self, actor: Actor, token_ref: int | str) -> TokenInfo:
        """Revoke by id or by the displayed prefix. Revoking twice is harmless."""
        with self.write() as session:
            acting = acting_user(session, actor, operator=True)
            token = self._find(session, token_ref, _own_only(acting))
            if token.revoked_at is None:
                token.revoked_at = utcnow()
                audit(
                    session,
                    acting,
                    "token.revoke",
                    "token",
                    token.id,
                    owner=token.user.username,
                    prefix=token.prefix,
                )
            session.flush()
            return token_info(token)

    @staticmethod
    def _find(session: Session, token_ref: int | str, owner_id: int | None) -> ApiToken:
        """A token by id or prefix, among `owner_id`'s tokens when given (another user's token is then
        not found, with the same answer as a token that does not exist)."""
        if isinstance(token_ref, int) or str(token_ref).isdigit():
            token = session.get(ApiToken, int(token_ref)) if is_row_id(int(token_ref)) else None
            if token is None or owner_id not in (None, token.user_id):
                raise missing("Token", token_ref)
            return token
        ref = str(token_ref)
        if len(ref) < len(TOKEN_PREFIX) + 4:
            raise ValidationFailed("token", "Give a token id or at least 7 characters of its prefix.")
        query = select(ApiToken).where(ApiToken.prefix.startswith(ref[:DISPLAY_PREFIX_LEN], autoescape=True))
        if owner_id is not None:
            query = query.where(ApiToken.user_id == owner_id)
        matches = session.scalars(query).all()
        if not matches:
            raise NotFound(f"No token starts with {ref!r}.")
        if len(matches) > 1:
            raise Conflict(f"{len(matches)} tokens start with {ref!r}; use the token id.")
        return matches[0]

    def authenticate(self, secret: str) -> UserInfo:
        """The user a bearer token belongs to. Refuses revoked tokens and disabled users.

        `last_used_at` is refreshed at most once a minute, so API calls do not each take the write lock.
        """
        if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX):
            raise PermissionDenied("Invalid API token.")
        with self.db.read() as session:
            token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
            if token is None or token.revoked_at is not None:
                raise PermissionDenied("Invalid or revoked API token.")
            if not token.user.active:
                raise PermissionDenied("This account is disabled.")
            user, token_id, last_used = user_info(token.user), token.id, token.last_used_at
        now = utcnow()
        if last_used is None or now - last_used > LAST_USED_RESOLUTION:
            with self.write() as session:
                session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        return user
