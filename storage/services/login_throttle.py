"""Sign-in throttling: after too many failed sign-ins in a window, refuse further tries for a while.

Two keys are counted, each in a sliding window: the account (so one account cannot be guessed at from many
addresses) and the client address (so one address cannot try many accounts). A refusal lasts until the
oldest failure in the window ages out, never longer: the real user is slowed down, not locked out for good.
The counts live in the server process (one process serves the studio); a restart forgets them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import PermissionDenied

ACCOUNT_FAILURES = 5
CLIENT_FAILURES = 20
WINDOW_S = 15 * 60.0
MAX_KEYS = 10_000
"""Above this many keys every stale one is dropped, so names made up by an attacker cannot pile up."""


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


class LoginThrottle:
    """Failure times per key, pruned to the window; thread-safe (sign-ins run on worker threads)."""

    def __init__(
        self, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def begin(self, account: str, client: str | None) -> float:
        """Admit one sign-in attempt and return its stamp for `succeeded`, or raise LoginThrottled when the
        account or the address has used up its failures. The attempt counts as a failure until `succeeded`
        says otherwise, so attempts sent in parallel cannot all pass before the first one has failed."""
        now = self._clock()
        with self._lock:
            if len(self._failures) > MAX_KEYS:
                for scope, key in list(self._failures):
                    self._recent(scope, key, now)
            keys = self._keys(account, client)
            for scope, key, limit in keys:
                times = self._recent(scope, key, now)
                if len(times) >= limit:
                    raise LoginThrottled(scope, math.ceil(times[0] + self.policy.window_s - now))
            for scope, key, _limit in keys:
                self._failures.setdefault((scope, key), deque()).append(now)
        return now

    def succeeded(self, account: str, client: str | None, attempt: float) -> None:
        """A right password: the account's count is cleared and the attempt leaves the address's count (the
        address's failures stay: it may be guessing other accounts)."""
        with self._lock:
            self._failures.pop(("account", account), None)
            times = self._failures.get(("address", client)) if client else None
            if times is not None and attempt in times:
                times.remove(attempt)

    def _keys(self, account: str, client: str | None) -> list[tuple[str, str, int]]:
        keys = [("account", account, self.policy.account_failures)]
        if client:
            keys.append(("address", client, self.policy.client_failures))
        return keys

    def _recent(self, scope: str, key: str, now: float) -> deque[float]:
        """The key's failures still inside the window (older ones dropped, an emptied key forgotten)."""
        times = self._failures.get((scope, key), deque())
        while times and times[0] <= now - self.policy.window_s:
            times.popleft()
        if not times:
            self._failures.pop((scope, key), None)
        return times
