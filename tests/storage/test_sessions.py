"""The UI's sign-in sessions live in the database: every process opened on it knows them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from storage import Storage, open_storage
from storage.models import BrowserSession, utcnow
from storage.services.sessions import SESSION_LIFETIME

from .conftest import FAST_HASHER, People


def test_a_session_started_by_one_process_is_known_to_another(
    storage: Storage, people: People, data_dir: Path, database_url: str | None
) -> None:
    with open_storage(data_dir, database_url, password_hasher=FAST_HASHER) as other:
        storage.sessions.start("browser-token", "ALICE")  # as typed at sign-in
        assert other.sessions.username("browser-token") == "alice"
        assert other.sessions.cookie_id() == storage.sessions.cookie_id()
        assert other.sessions.end("browser-token")
        assert storage.sessions.username("browser-token") is None
        assert not storage.sessions.end("browser-token")


def test_each_database_draws_its_own_cookie_id(storage: Storage, tmp_path: Path) -> None:
    with open_storage(tmp_path / "elsewhere", password_hasher=FAST_HASHER) as elsewhere:
        assert len(storage.sessions.cookie_id()) >= 16
        assert elsewhere.sessions.cookie_id() != storage.sessions.cookie_id()


def test_only_the_token_hash_is_stored_and_old_sessions_end(storage: Storage, people: People) -> None:
    storage.sessions.start("secret-token", "alice")
    with storage.db.read() as session:
        [row] = session.query(BrowserSession).all()
    assert "secret-token" not in row.token_hash and len(row.token_hash) == 64
    with storage.db.write() as session:
        session.execute(update(BrowserSession).values(created_at=utcnow() - SESSION_LIFETIME - timedelta(1)))
    assert storage.sessions.username("secret-token") is None


def test_ending_all_of_a_users_sessions_keeps_one_and_spares_others(storage: Storage, people: People) -> None:
    for token, name in (("a1", "alice"), ("a2", "alice"), ("a3", "alice"), ("b1", "bob")):
        storage.sessions.start(token, name)
    assert storage.sessions.end_all("Alice", keep="a2") == 2
    assert [storage.sessions.username(t) for t in ("a1", "a2", "a3", "b1")] == [None, "alice", None, "bob"]
    assert storage.sessions.end_all("no such\x00user") == 0
