"""Accounts, roles, the active flag, passwords and sign-in."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from storage import Storage, open_storage
from storage.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from storage.models import LoginFailure, User
from storage.services.login_throttle import LoginThrottle, LoginThrottled, ThrottlePolicy
from storage.types import OPERATOR, Role

from .conftest import FAST_HASHER, PASSWORD, People


def test_usernames_are_unique_ignoring_case_and_keep_their_spelling(storage: Storage, people: People) -> None:
    assert storage.users.find("ALICE").id == people.alice
    storage.users.create(OPERATOR, "Zoe-2", password=PASSWORD)
    assert storage.users.find("zOE-2").username == "Zoe-2"
    with pytest.raises(Conflict, match="taken"):
        storage.users.create(OPERATOR, "Alice", password=PASSWORD)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("username", {"username": "no spaces"}),
        ("username", {"username": "../admin"}),
        ("password", {"username": "carol", "password": "short"}),
        ("password", {"username": "carol", "password": "eleven char"}),
        ("role", {"username": "carol", "role": "owner"}),
    ],
)
def test_bad_input_names_the_field(storage: Storage, field: str, kwargs: dict[str, str]) -> None:
    kwargs = {"password": PASSWORD, **kwargs}
    with pytest.raises(ValidationFailed) as error:
        storage.users.create(OPERATOR, kwargs.pop("username"), **kwargs)
    assert error.value.field == field


def test_passwords_are_stored_as_argon2id_hashes_only(storage: Storage, people: People) -> None:
    with storage.db.read() as session:
        stored = session.scalar(select(User.password_hash).where(User.id == people.alice))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)


def test_the_default_hasher_has_argon2_cffi_recommended_cost(data_dir, database_url) -> None:
    from storage import open_storage

    with open_storage(data_dir, database_url) as storage:
        storage.users.create(OPERATOR, "carol", password=PASSWORD)
        with storage.db.read() as session:
            stored = session.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_generated_passwords_are_shown_once_and_must_be_changed(storage: Storage) -> None:
    created = storage.users.create(OPERATOR, "carol")
    assert created.generated_password and created.user.must_change_password
    user = storage.users.authenticate("carol", created.generated_password)
    storage.users.change_password(
        user.id, user.id, "a brand new secret", current_password=created.generated_password
    )
    assert not storage.users.get(user.id).must_change_password
    with pytest.raises(PermissionDenied, match="Wrong username or password"):
        storage.users.authenticate("carol", created.generated_password)
    assert storage.users.authenticate("CAROL", "a brand new secret").id == user.id


def test_changing_ones_own_password_needs_the_current_one(storage: Storage, people: People) -> None:
    with pytest.raises(ValidationFailed) as error:
        storage.users.change_password(people.alice, people.alice, "another secret", current_password="wrong")
    assert error.value.field == "current_password"
    with pytest.raises(PermissionDenied, match="Only admins"):
        storage.users.change_password(people.alice, people.bob, "another secret")


def test_an_admin_reset_forces_a_change_at_next_login(storage: Storage, people: People) -> None:
    storage.users.change_password(people.ada, people.alice, "temporary secret")
    assert storage.users.get(people.alice).must_change_password
    assert storage.users.authenticate("alice", "temporary secret").id == people.alice


def test_bootstrap_admin_only_on_an_empty_database(storage: Storage) -> None:
    created = storage.users.ensure_bootstrap_admin()
    assert created is not None and created.user.role == Role.ADMIN and created.user.must_change_password
    assert storage.users.authenticate("admin", created.generated_password or "").role == Role.ADMIN
    assert storage.users.ensure_bootstrap_admin() is None


def test_only_admins_manage_users(storage: Storage, people: People) -> None:
    for actor in (people.alice, people.rita):
        with pytest.raises(PermissionDenied, match="Only admins"):
            storage.users.create(actor, "mallory", password=PASSWORD)
        with pytest.raises(PermissionDenied):
            storage.users.set_role(actor, actor, Role.ADMIN)
        with pytest.raises(PermissionDenied):
            storage.users.list_all(actor)
    storage.users.set_role(people.ada, people.alice, Role.REVIEWER)
    assert storage.users.get(people.alice).role == Role.REVIEWER
    assert [u.username for u in storage.users.list_all(people.ada)] == ["ada", "alice", "bob", "rita", "ruth"]


def test_the_last_active_admin_cannot_be_demoted_or_disabled(storage: Storage, people: People) -> None:
    with pytest.raises(Conflict, match="last active admin"):
        storage.users.set_role(OPERATOR, people.ada, Role.MEMBER)
    with pytest.raises(Conflict, match="last active admin"):
        storage.users.set_active(people.ada, people.ada, False)
    storage.users.set_role(people.ada, people.rita, Role.ADMIN)
    storage.users.set_role(people.rita, people.ada, Role.MEMBER)
    assert storage.users.get(people.ada).role == Role.MEMBER


def test_sign_in_failures_are_vague_and_logged(storage: Storage, people: People) -> None:
    for name, password in (("alice", "wrong password"), ("nobody", PASSWORD)):
        with pytest.raises(PermissionDenied, match=r"^Wrong username or password\.$"):
            storage.users.authenticate(name, password)
    user = storage.users.authenticate("Alice", PASSWORD)
    assert user.id == people.alice and user.last_login_at is not None
    events = storage.audit.list_events(people.ada, action="login").items
    assert [(e.action, e.actor_name) for e in events] == [
        ("login", "alice"),
        ("login.failed", "nobody"),
        ("login.failed", "alice"),
    ]


def test_a_disabled_user_cannot_sign_in_and_can_be_enabled_again(storage: Storage, people: People) -> None:
    storage.users.set_active(people.ada, people.bob, False)
    with pytest.raises(PermissionDenied, match="disabled"):
        storage.users.authenticate("bob", PASSWORD)
    storage.users.set_active(people.ada, people.bob, True)
    assert storage.users.authenticate("bob", PASSWORD).active


def test_unknown_users_are_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound):
        storage.users.find("ghost")
    with pytest.raises(NotFound):
        storage.users.get(404)


@pytest.mark.parametrize(
    "password",
    [
        "password1234",
        "Password2024!",
        "qwertyqwerty",
        "QWERTYUIOP123",
        "123456789012",
        "iloveyou!!!!",
        "  letmein12345  ",
    ],
)
def test_common_passwords_and_their_decorated_forms_are_refused(
    storage: Storage, people: People, password: str
) -> None:
    with pytest.raises(ValidationFailed, match="most common passwords") as error:
        storage.users.create(OPERATOR, "carol", password=password)
    assert error.value.field == "password"
    with pytest.raises(ValidationFailed, match="most common passwords"):
        storage.users.change_password(people.alice, people.alice, password, current_password=PASSWORD)
    with pytest.raises(ValidationFailed, match="most common passwords"):
        storage.users.change_password(people.ada, people.bob, password)
    storage.users.create(OPERATOR, "carol", password="password rhubarb 7")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sign_ins_are_throttled_per_account_then_allowed_again(storage: Storage, people: People) -> None:
    clock = FakeClock()
    storage.users.throttle = LoginThrottle(
        storage.db, ThrottlePolicy(account_failures=3, window_s=600), clock
    )
    for _ in range(3):
        with pytest.raises(PermissionDenied, match="Wrong username"):
            storage.users.authenticate("alice", "wrong password", client="10.0.0.1")
    with pytest.raises(LoginThrottled, match="this account; try again in 10 minute") as refused:
        storage.users.authenticate(
            "ALICE", PASSWORD, client="10.0.0.2"
        )  # the right password, another address
    assert (refused.value.scope, refused.value.retry_after_s) == ("account", 600)
    assert storage.users.authenticate("bob", PASSWORD, client="10.0.0.1").id == people.bob
    events = storage.audit.list_events(people.ada, action="login.throttled").items
    assert [(e.actor_name, e.detail) for e in events] == [
        ("ALICE", {"scope": "account", "client": "10.0.0.2"})
    ]
    assert events[0].actor_id == people.alice
    clock.now += 600
    assert storage.users.authenticate("alice", PASSWORD).id == people.alice


def test_sign_ins_are_throttled_per_client_address(storage: Storage, people: People) -> None:
    clock = FakeClock()
    storage.users.throttle = LoginThrottle(
        storage.db, ThrottlePolicy(account_failures=3, client_failures=4, window_s=600), clock
    )
    for name in ("alice", "bob", "rita", "nobody"):
        with pytest.raises(PermissionDenied, match="Wrong username"):
            storage.users.authenticate(name, "wrong password", client="10.0.0.9")
        clock.now += 60
    with pytest.raises(LoginThrottled, match="your network address; try again in 6 minute") as refused:
        storage.users.authenticate("ruth", PASSWORD, client="10.0.0.9")
    assert refused.value.scope == "address"
    assert storage.users.authenticate("ruth", PASSWORD, client="10.0.0.10").id == people.ruth
    clock.now += 6 * 60  # the first failure ages out: one more try from the address
    assert storage.users.authenticate("ruth", PASSWORD, client="10.0.0.9").id == people.ruth


def test_a_right_password_clears_the_accounts_failures(storage: Storage, people: People) -> None:
    storage.users.throttle = LoginThrottle(storage.db, ThrottlePolicy(account_failures=2), FakeClock())
    for _ in range(3):
        with pytest.raises(PermissionDenied, match="Wrong username"):
            storage.users.authenticate("alice", "wrong password")
        storage.users.authenticate("alice", PASSWORD)


def test_attempts_in_flight_count_and_right_passwords_leave_the_address_count(storage: Storage) -> None:
    """Parallel guesses cannot all pass before the first has failed; an office of colleagues signing in
    from one address does not use up its failures."""
    throttle = LoginThrottle(storage.db, ThrottlePolicy(account_failures=2, client_failures=2), FakeClock())
    throttle.begin("alice", None)
    throttle.begin("alice", None)
    with pytest.raises(LoginThrottled, match="this account"):
        throttle.begin("alice", None)
    for name in ("bob", "rita", "ruth"):
        throttle.succeeded(name, "10.0.0.1", throttle.begin(name, "10.0.0.1"))
    throttle.begin("mallory-1", "10.0.0.1")
    throttle.begin("mallory-2", "10.0.0.1")
    with pytest.raises(LoginThrottled, match="your network address"):
        throttle.begin("mallory-3", "10.0.0.1")


def test_every_front_end_of_the_database_counts_the_same_failures(
    storage: Storage, people: People, data_dir: Path, database_url: str | None
) -> None:
    """Behind a load balancer, failures sent to one front-end count on the others too; names are not kept
    as typed."""
    with open_storage(data_dir, database_url, password_hasher=FAST_HASHER) as other:
        policy = ThrottlePolicy(account_failures=2)
        storage.users.throttle = LoginThrottle(storage.db, policy)
        other.users.throttle = LoginThrottle(other.db, policy)
        for front_end in (storage, other):
            with pytest.raises(PermissionDenied, match="Wrong username"):
                front_end.users.authenticate("alice", "wrong password", client="10.0.0.1")
        with pytest.raises(LoginThrottled, match="this account"):
            storage.users.authenticate("alice", PASSWORD, client="10.0.0.2")
        with storage.db.read() as session:
            stored = session.scalars(select(LoginFailure.key_hash)).all()
    assert len(stored) == 4  # two failures, each counted for the account and for the address
    assert all(re.fullmatch("[0-9a-f]{64}", key) for key in stored)
