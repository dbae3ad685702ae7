"""API tokens: only their hash is stored; revoked tokens and disabled users are refused."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from storage import Storage
from storage.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from storage.types import OPERATOR

from .conftest import People


def _database_dump(storage: Storage) -> str:
    with storage.db.read() as session:
        rows = session.execute(text("SELECT * FROM api_tokens")).all()
        events = session.execute(text("SELECT * FROM audit_events")).all()
    return repr(rows) + repr(events)


def test_the_plaintext_token_is_never_stored(storage: Storage, people: People) -> None:
    new = storage.tokens.create(people.alice, people.alice, "laptop")
    assert new.secret.startswith("dr_") and len(new.secret) > 40
    assert new.info.prefix == new.secret[:10]
    dump = _database_dump(storage)
    assert new.secret not in dump and new.secret[10:20] not in dump
    assert hashlib.sha256(new.secret.encode()).hexdigest() in dump


def test_a_token_authenticates_its_user_and_records_its_use(storage: Storage, people: People) -> None:
    new = storage.tokens.create(people.alice, people.alice)
    assert storage.tokens.list_for(people.alice, people.alice)[0].last_used_at is None
    assert storage.tokens.authenticate(new.secret).id == people.alice
    assert storage.tokens.list_for(people.alice, people.alice)[0].last_used_at is not None
    for wrong in ("dr_" + "x" * 43, new.secret[:-1], "", "Bearer " + new.secret):
        with pytest.raises(PermissionDenied):
            storage.tokens.authenticate(wrong)


def test_revoked_tokens_stop_working_by_id_or_prefix(storage: Storage, people: People) -> None:
    first = storage.tokens.create(people.alice, people.alice, "one")
    second = storage.tokens.create(people.alice, people.alice, "two")
    assert storage.tokens.revoke(people.alice, first.info.id).revoked_at is not None
    assert storage.tokens.revoke(people.alice, second.info.prefix).revoked_at is not None
    for new in (first, second):
        with pytest.raises(PermissionDenied, match="revoked"):
            storage.tokens.authenticate(new.secret)
    assert [t.label for t in storage.tokens.list_for(people.alice, people.alice)] == ["two", "one"]


def test_tokens_of_a_disabled_user_are_refused(storage: Storage, people: People) -> None:
    new = storage.tokens.create(people.bob, people.bob)
    storage.users.set_active(people.ada, people.bob, False)
    with pytest.raises(PermissionDenied, match="disabled"):
        storage.tokens.authenticate(new.secret)
    with pytest.raises(PermissionDenied, match="disabled"):
        storage.tokens.create(people.bob, people.bob)


def test_users_manage_only_their_own_tokens_admins_and_the_cli_anyones(
    storage: Storage, people: People
) -> None:
    new = storage.tokens.create(people.alice, people.alice)
    with pytest.raises(NotFound, match=rf"^Token {new.info.id} does not exist"):
        storage.tokens.revoke(people.bob, new.info.id)
    with pytest.raises(NotFound, match=r"^No token starts with"):
        storage.tokens.revoke(people.bob, new.info.prefix)
    with pytest.raises(NotFound, match=f"^User {people.alice} does not exist"):
        storage.tokens.list_for(people.rita, people.alice)
    with pytest.raises(NotFound, match=f"^User {people.alice} does not exist"):
        storage.tokens.create(people.bob, people.alice)
    assert storage.tokens.list_for(OPERATOR, people.alice)[0].revoked_at is None
    assert storage.tokens.create(people.ada, people.bob).info.username == "bob"
    assert storage.tokens.create(OPERATOR, people.bob).info.username == "bob"
    assert storage.tokens.revoke(OPERATOR, new.info.id).revoked_at is not None


def test_not_yours_and_not_there_get_the_same_answer(storage: Storage, people: People) -> None:
    """An id or prefix of someone else's token, and someone else's account, read exactly as missing ones."""
    theirs = storage.tokens.create(people.alice, people.alice).info
    missing_id = theirs.id + 1000
    answers = []
    for ref, absent in ((theirs.id, missing_id), (theirs.prefix, "dr_zzzzzzz")):
        for attempt in (ref, absent):
            with pytest.raises(NotFound) as refused:
                storage.tokens.revoke(people.bob, attempt)
            answers.append(str(refused.value).replace(str(attempt), "<ref>"))
    assert answers[0] == answers[1] and answers[2] == answers[3]


def test_unknown_short_and_ambiguous_references(storage: Storage, people: People) -> None:
    with pytest.raises(NotFound):
        storage.tokens.revoke(OPERATOR, 999)
    with pytest.raises(NotFound):
        storage.tokens.revoke(OPERATOR, "dr_zzzzzzz")
    with pytest.raises(ValidationFailed) as error:
        storage.tokens.revoke(OPERATOR, "dr_")
    assert error.value.field == "token"
    ids = [storage.tokens.create(people.alice, people.alice).info.id for _ in range(2)]
    with storage.db.write() as session:  # two prefixes that share their first 9 characters
        for token_id, prefix in zip(ids, ("dr_abcdefg", "dr_abcdefh"), strict=True):
            session.execute(
                text("UPDATE api_tokens SET prefix = :p WHERE id = :i"), {"p": prefix, "i": token_id}
            )
    with pytest.raises(Conflict, match="use the token id"):
        storage.tokens.revoke(OPERATOR, "dr_abcdef")
    assert storage.tokens.revoke(OPERATOR, "dr_abcdefh").id == ids[1]
