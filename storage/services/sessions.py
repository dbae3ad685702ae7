"""The UI's sign-in sessions, in the database so that every front-end of one database knows them.

Gradio signs a browser in by giving it a random token in a cookie and remembering which user the token
names. Here that memory is the `browser_sessions` table (only a SHA-256 of each token is stored, as for API
tokens), so a browser signed in through one front-end is signed in on all of them, a restart signs nobody
out, and signing out (or a password change) ends the session everywhere at once. The cookie's name carries
`session_cookie_id`, drawn once per database by the migration that made the table, so every front-end looks
for the same cookie and two studios on one host (different databases) do not read each other's.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from ..models import BrowserSession, Setting, User, utcnow
from .helpers import Service, changed_rows
from .tokens import hash_token
from .users import lookup_key

SESSION_LIFETIME = timedelta(days=30)
"""A browser signs in again after this long, however active it was."""
COOKIE_ID_SETTING = "session_cookie_id"


class BrowserSessionService(Service):
    """Acts for no user: the sign-in form (after the password check) and the middlewares call it."""

    def cookie_id(self) -> str:
        """The part of the sign-in cookie's name every front-end of this database shares."""
        with self.db.read() as session:
            return session.get_one(Setting, COOKIE_ID_SETTING).value

    def start(self, token: str, username: str) -> None:
        """Remember that `token` names `username` (just signed in). Sessions past their lifetime go."""
        key = lookup_key(username)
        with self.write() as session:
            user_id = session.scalar(select(User.id).where(User.username_key == key)) if key else None
            if user_id is None:
                raise LookupError(f"There is no user {username!r}.")
            session.execute(
                delete(BrowserSession).where(BrowserSession.created_at < utcnow() - SESSION_LIFETIME)
            )
            session.add(BrowserSession(token_hash=hash_token(token), user_id=user_id))

    def username(self, token: str) -> str | None:
        """The user a browser's token names, or None when it names no current session."""
        with self.db.read() as session:
            return session.scalar(
                select(User.username)
                .join(BrowserSession, BrowserSession.user_id == User.id)
                .where(
                    BrowserSession.token_hash == hash_token(token),
                    BrowserSession.created_at >= utcnow() - SESSION_LIFETIME,
                )
            )

    def end(self, token: str) -> bool:
        """Sign out the one browser that holds `token`; False when it was not signed in."""
        with self.write() as session:
            return bool(
                changed_rows(
                    session, delete(BrowserSession).where(BrowserSession.token_hash == hash_token(token))
                )
            )

    def end_all(self, username: str, *, keep: str | None = None) -> int:
        """Sign out every browser of `username` (matched as sign-in matches it) except the one holding `keep`."""
        key = lookup_key(username)
        if key is None:
            return 0
        statement = delete(BrowserSession).where(
            BrowserSession.user_id.in_(select(User.id).where(User.username_key == key))
        )
        if keep is not None:
            statement = statement.where(BrowserSession.token_hash != hash_token(keep))
        with self.write() as session:
            return changed_rows(session, statement)
