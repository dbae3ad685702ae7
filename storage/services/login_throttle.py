"""Sign-in throttling: after too many failed sign-ins in a window, refuse further tries for a while.

Two keys are counted, each in a sliding window: the account (so one account cannot be guessed at from many
addresses) and the client address (so one address cannot try many accounts). A refusal lasts until the
oldest failure in the window ages out, never longer: the real user is slowed down, not locked out for good.
The failures are rows of `login_failures`, shared by every front-end of the database: behind a load
balancer an attacker gets the same number of tries as against one front-end, and a restart forgets nothing.
Keys are stored as SHA-256 digests, so a name typed at the sign-in form is never stored there as typed.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import PermissionDenied
from ..models import LoginFailure

ACCOUNT_FAILURES = 5
CLIENT_FAILURES = 20
WINDOW_S = 15 * 60.0
_PG_THROTTLE_LOCK = 0x6C6F6769  # serialises the count-then-record of concurrent sign-ins on PostgreSQL


class LoginThrottled(PermissionDenied):
    """Too many failed sign-ins; `scope` is "account" or "address", `retry_after_s` when to try again."""

    def __init__(self, scope: str, retry_after_s: int) -> None:
        minutes = max(1, math.ceil(retry_after_s / 60))
        whose = "this account" if scope == "account" else "your network address"
        super().__init__(f"Too many failed sign-ins for {whose}; try again in {minutes} minute(s).")
        self.scope = scope
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ThrottlePolicy:
    account_failures: int = ACCOUNT_FAILURES
    client_failures: int = CLIENT_FAILURES
    window_s: float = WINDOW_S


def _key_hash(scope: str, key: str) -> str:
    return hashlib.sha256(f"{scope}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()


class LoginThrottle:
    """Failure times per key in the database, pruned to the window. `clock` is wall-clock seconds: the
    front-ends sharing the database compare each other's times."""

    def __init__(
        self, db: Database, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.policy = policy or ThrottlePolicy()
        self._clock = clock

    def begin(self, account: str, client: str | None) -> int | None:
        """Admit one sign-in attempt and return its stamp for `succeeded`, or raise LoginThrottled when the
        account or the address has used up its failures. The attempt counts as a failure until `succeeded`
        says otherwise, so attempts sent in parallel (to any front-end) cannot all pass before the first one
        has failed."""
        now = self._clock()
        with self.db.write() as session:
            self._serialise(session)
            session.execute(delete(LoginFailure).where(LoginFailure.at <= now - self.policy.window_s))
            keys = self._keys(account, client)
            for scope, key_hash, limit in keys:
                times = session.scalars(
                    select(LoginFailure.at).where(LoginFailure.key_hash == key_hash).order_by(LoginFailure.at)
                ).all()
                if len(times) >= limit:
                    raise LoginThrottled(scope, math.ceil(times[0] + self.policy.window_s - now))
            rows = [LoginFailure(key_hash=key_hash, at=now) for _scope, key_hash, _limit in keys]
            session.add_all(rows)
            session.flush()
            return rows[1].id if client else None

    def succeeded(self, account: str, client: str | None, attempt: int | None) -> None:
        """A right password: the account's count is cleared and the attempt leaves the address's count (the
        address's failures stay: it may be guessing other accounts)."""
        with self.db.write() as session:
            session.execute(
                delete(LoginFailure).where(LoginFailure.key_hash == _key_hash("account", account))
            )
            if attempt is not None:
                session.execute(delete(LoginFailure).where(LoginFailure.id == attempt))

    def _keys(self, account: str, client: str | None) -> list[tuple[str, str, int]]:
        keys = [("account", _key_hash("account", account), self.policy.account_failures)]
        if client:
            keys.append(("address", _key_hash("address", client), self.policy.client_failures))
        return keys

    @staticmethod
    def _serialise(session: Session) -> None:
        """SQLite's write transactions already run one at a time (BEGIN IMMEDIATE); PostgreSQL's need a lock."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_THROTTLE_LOCK})
