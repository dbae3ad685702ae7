"""Users: accounts, roles, the active flag, passwords (argon2id) and sign-in."""

from __future__ import annotations

import re
import secrets
import string
from functools import cache, cached_property
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import Database
from ..errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ..models import AuditEvent, User, utcnow
from ..text import checked_text
from ..types import Actor, CreatedUser, Role, UserInfo
from .helpers import Service, acting_user, audit, get_or_404, user_info
from .login_throttle import LoginThrottle, LoginThrottled

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")
_DECORATION = string.digits + string.punctuation + string.whitespace
BOOTSTRAP_ADMIN = "admin"
_LOGIN_FAILED = "Wrong username or password."


def username_key(username: str) -> str:
    return username.casefold()


def unknown_user(username: str) -> NotFound:
    """The answer for a name with no account, also where the caller may not learn whether an account exists."""
    return NotFound(f"There is no user {username!r}.")


def lookup_key(username: object) -> str | None:
    """The key to look a typed name up by, or None when no account can have that name: such a name is
    not looked up at all (a NUL byte in it would make PostgreSQL raise)."""
    name = str(username)
    return username_key(name) if USERNAME.fullmatch(name) else None


@cache
def common_passwords() -> frozenset[str]:
    """The most used passwords of public breach lists, lower case (common_passwords.txt, one a line)."""
    return frozenset(
        line.strip().casefold()
        for line in COMMON_PASSWORDS_FILE.read_text("utf-8").splitlines()
        if line.strip()
    )


def is_common_password(password: str) -> bool:
    """True for a common password, also with digits or symbols added around it ("Password2024!") or
    repeated ("qwertyqwerty"): the first variations a guessing list tries."""
    folded = password.casefold()
    forms = {folded, folded.strip(_DECORATION)}
    for size in range(1, len(folded) // 2 + 1):
        if len(folded) % size == 0 and folded[:size] * (len(folded) // size) == folded:
            forms.add(folded[:size])
            break
    return not forms.isdisjoint(common_passwords())


def check_password(password: str, field: str = "password") -> None:
    """The one password rule for every way an account is made or changed (CLI, REST, UI)."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationFailed(field, f"A password needs at least {MIN_PASSWORD} characters.")
    if is_common_password(password):
        raise ValidationFailed(
            field,
            "This is one of the most common passwords (or one with digits or symbols added); choose another.",
        )


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ValidationFailed("role", f"Unknown role {role!r}; use member, reviewer or admin.") from None


class UserService(Service):
    def __init__(self, db: Database, hasher: PasswordHasher, throttle: LoginThrottle | None = None) -> None:
        super().__init__(db)
        self.hasher = hasher
        self.throttle = throttle or LoginThrottle(db)

    @cached_property
    def _dummy_hash(self) -> str:
        """Checked against when a name is unknown, so a wrong name costs as long as a wrong password."""
        return self.hasher.hash(secrets.token_urlsafe(16))

    def create(
        self,
        actor: Actor,
        username: str,
        *,
        role: Role | str = Role.MEMBER,
        password: str | None = None,
        display_name: str | None = None,
    ) -> CreatedUser:
        """A new account. Without a password one is generated, shown once, and must be changed at first login."""
        if not isinstance(username, str) or not USERNAME.fullmatch(username):
            raise ValidationFailed(
                "username",
                "A username is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            )
        generated = None
        if password is None:
            password = generated = secrets.token_urlsafe(12)
        check_password(password)
        display_name = checked_text((display_name or username).strip(), "display_name")
        if len(display_name) > 128:
            raise ValidationFailed("display_name", "A display name has at most 128 characters.")
        role = _role(role)
        password_hash = self.hasher.hash(password)
        with self.write(f"The username {username!r} is taken.") as session:
            admin = acting_user(session, actor, Role.ADMIN, operator=True)
            user = self._insert(session, username, role, password_hash, display_name, generated is not None)
            audit(session, admin, "user.create", "user", user.id, username=username, role=role.value)
            return CreatedUser(user_info(user), generated)

    def ensure_bootstrap_admin(self) -> CreatedUser | None:
        """On an empty database, create `admin` with a one-time password (to print once); else None."""
        password = secrets.token_urlsafe(12)
        try:
            with self.write() as session:
                if session.scalar(select(func.count()).select_from(User)):
                    return None
                user = self._insert(
                    session,
                    BOOTSTRAP_ADMIN,
                    Role.ADMIN,
                    self.hasher.hash(password),
                    "Administrator",
                    must_change_password=True,
                )
                audit(
                    session,
                    None,
                    "user.create",
                    "user",
                    user.id,
                    username=BOOTSTRAP_ADMIN,
                    role="admin",
                    bootstrap=True,
                )
                return CreatedUser(user_info(user), password)
        except Conflict:  # another process bootstrapped at the same moment
            return None

    @staticmethod
    def _insert(
        session: Session,
        username: str,
        role: Role,
        password_hash: str,
        display_name: str,
        must_change_password: bool,
    ) -> User:
        if session.scalar(select(User.id).where(User.username_key == username_key(username))):
            raise Conflict(f"The username {username!r} is taken.")
        user = User(
            username=username,
            username_key=username_key(username),
            display_name=display_name,
            password_hash=password_hash,
            role=role.value,
            active=True,
            must_change_password=must_change_password,
        )
        session.add(user)
        session.flush()
        return user

    def get(self, user_id: int) -> UserInfo:
        """A user by id, for the web layer to reload its signed-in user (no acting user needed)."""
        with self.db.read() as session:
            return user_info(get_or_404(session, User, user_id, "User"))

    def find(self, username: str) -> UserInfo:
        """A user by name, any case."""
        key = lookup_key(username)
        with self.db.read() as session:
            user = session.scalar(select(User).where(User.username_key == key)) if key else None
            if user is None:
                raise unknown_user(username)
            return user_info(user)

    def list_all(self, actor: Actor) -> list[UserInfo]:
        with self.db.read() as session:
            acting_user(session, actor, Role.ADMIN, operator=True)
            return [user_info(u) for u in session.scalars(select(User).order_by(User.username_key))]

    def set_role(self, actor: Actor, user_id: int, role: Role | str) -> UserInfo:
        role = _role(role)
        with self.write() as session:
            admin = acting_user(session, actor, Role.ADMIN, operator=True)
            user: User = get_or_404(session, User, user_id, "User")
            if user.role == Role.ADMIN and role != Role.ADMIN:
                self._keep_an_admin(session, user)
            old = user.role
            user.role = role.value
            audit(
                session,
                admin,
                "user.role_change",
                "user",
                user.id,
                username=user.username,
                old=old,
                new=role.value,
            )
            session.flush()
            return user_info(user)

    def set_active(self, actor: Actor, user_id: int, active: bool) -> UserInfo:
        """Disable or re-enable an account. A disabled user can do nothing, tokens included."""
        with self.write() as session:
            admin = acting_user(session, actor, Role.ADMIN, operator=True)
            user: User = get_or_404(session, User, user_id, "User")
            if not active and user.role == Role.ADMIN:
                self._keep_an_admin(session, user)
            user.active = bool(active)
            audit(
                session,
                admin,
                "user.enable" if active else "user.disable",
                "user",
                user.id,
                username=user.username,
            )
            session.flush()
            return user_info(user)

    @staticmethod
    def _keep_an_admin(session: Session, leaving: User) -> None:
        others = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN.value, User.active.is_(True), User.id != leaving.id)
        )
        if not others:
            raise Conflict(f"{leaving.username} is the last active admin; make someone else admin first.")

    def change_password(
        self, actor: Actor, user_id: int, new_password: str, *, current_password: str | None = None
    ) -> None:
        """Users change their own password (giving the current one); admins reset anyone's.

        A reset by someone else sets `must_change_password`; changing one's own clears it.
        Hashing happens outside the write transaction: argon2 is slow on purpose.
        """
        check_password(new_password, "new_password")
        with self.db.read() as session:
            acting = acting_user(session, actor, operator=True)
            user: User = get_or_404(session, User, user_id, "User")
            own = acting is not None and acting.id == user.id
            old_hash = user.password_hash
        if own and (current_password is None or not self._verify(old_hash, current_password)):
            raise ValidationFailed("current_password", "The current password is wrong.")
        if not own and acting is not None and acting.role != Role.ADMIN:
            raise PermissionDenied("Only admins can set another user's password.")
        new_hash = self.hasher.hash(new_password)
        with self.write() as session:
            acting = acting_user(session, actor, operator=True)
            user = get_or_404(session, User, user_id, "User")
            user.password_hash = new_hash
            user.must_change_password = not own
            audit(session, acting, "user.password_change", "user", user.id, username=user.username)

    def authenticate(self, username: str, password: str, *, client: str | None = None) -> UserInfo:
        """Check a sign-in from ``client`` (its network address, when the caller knows it). Every attempt,
        good, bad or throttled, lands in the audit log.

        An unknown name costs the same hash check as a known one, so timing does not reveal names. After too
        many failures for the account or the address the attempt is refused unchecked (LoginThrottled).
        """
        key = lookup_key(username)
        account = key or str(username).casefold()
        try:
            attempt = self.throttle.begin(account, client)
        except LoginThrottled as refused:
            with self.write() as session:
                user = session.scalar(select(User).where(User.username_key == key)) if key else None
                self._log(session, user, str(username), "login.throttled", scope=refused.scope, client=client)
            raise
        with self.db.read() as session:
            found = (
                session.execute(select(User.id, User.password_hash).where(User.username_key == key)).first()
                if key
                else None
            )
        good = self._verify(found.password_hash if found else self._dummy_hash, str(password))
        rehash = None
        if found and good and self.hasher.check_needs_rehash(found.password_hash):
            rehash = self.hasher.hash(str(password))
        failure: PermissionDenied | None = None
        result: UserInfo | None = None
        with self.write() as session:
            user = session.get(User, found.id) if found else None
            if user is None or not good:
                self._log(session, user, str(username), "login.failed", client=client)
                failure = PermissionDenied(_LOGIN_FAILED)
            elif not user.active:
                self._log(session, user, user.username, "login.refused")
                failure = PermissionDenied("This account is disabled.")
            else:
                if rehash:
                    user.password_hash = rehash
                user.last_login_at = utcnow()
                audit(session, user, "login", "user", user.id)
                session.flush()
                result = user_info(user)
        if good:  # a right password, even of a disabled account, is no guess to count
            self.throttle.succeeded(account, client, attempt)
        if result is None:  # raised after the commit so the failed attempt stays in the log
            raise failure or PermissionDenied(_LOGIN_FAILED)
        return result

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _log(session: Session, user: User | None, name: str, action: str, **detail: str | None) -> None:
        session.add(
            AuditEvent(
                actor_id=user.id if user else None,
                actor_name=name.replace("\x00", "\ufffd")[:64],  # the name as typed, storable
                action=action,
                target_type="user",
                target_id=str(user.id) if user else None,
                detail={key: value for key, value in detail.items() if value is not None},
            )
        )
