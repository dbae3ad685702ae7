"""Every storage test runs twice: on SQLite in a temp dir, and on the PostgreSQL server that
scripts/test.sh starts (DRAFTROOM_TEST_POSTGRES_URL), each test in a fresh schema of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storage import Storage, open_storage
from storage.types import OPERATOR, Role

PG_ENV = "DRAFTROOM_TEST_POSTGRES_URL"
# argon2 at its real cost takes ~0.3 s per hash here; the rules under test do not depend on the cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite; for PostgreSQL a URL whose search_path is a schema made for this test."""
    if request.param == "sqlite":
        yield None
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set; scripts/test.sh starts a PostgreSQL server and sets it")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def storage(data_dir: Path, database_url: str | None) -> Iterator[Storage]:
    with open_storage(data_dir, database_url, password_hasher=FAST_HASHER) as opened:
        yield opened


@dataclass(frozen=True)
class People:
    alice: int  # member
    bob: int  # member
    rita: int  # reviewer
    ruth: int  # reviewer
    ada: int  # admin


PASSWORD = "correct horse battery"


@pytest.fixture
def people(storage: Storage) -> People:
    def add(name: str, role: Role) -> int:
        return storage.users.create(OPERATOR, name, role=role, password=PASSWORD).user.id

    return People(
        alice=add("alice", Role.MEMBER),
        bob=add("bob", Role.MEMBER),
        rita=add("rita", Role.REVIEWER),
        ruth=add("ruth", Role.REVIEWER),
        ada=add("ada", Role.ADMIN),
    )
