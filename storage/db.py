"""The database connection (a SQLAlchemy engine), sessions and migrations. SQLite by default, PostgreSQL
when a URL says so. (`DatabaseEngine` is SQLAlchemy's Engine, named apart from the model engine.)

SQLite settings, chosen on purpose:
- `journal_mode=WAL`: readers never block the writer and the writer never blocks readers, so a
  history search stays fast while generations are being recorded.
- `synchronous=NORMAL`: in WAL mode a commit is durable as soon as it is in the WAL file; the WAL
  is fsynced at checkpoints, not at every commit. A crash of the application (or of Python) loses
  nothing that was committed. Only an OS crash or a power cut can roll back the last few commits,
  and it can never corrupt the database. We accept that trade for a drafting studio: image files
  are fsynced *before* their rows commit, so the worst case after a power cut is a few orphan files
  that `db check --repair` removes, never a row pointing at a missing file. FULL would add an fsync
  to every commit (every queued job, every review) for protection we do not need.
- `foreign_keys=ON`: SQLite ignores foreign keys unless told, per connection.
- `busy_timeout`: a writer waits for another writer instead of failing at once.
- Write transactions start with `BEGIN IMMEDIATE`: they take the write lock up front, so two
  writers queue on `busy_timeout` instead of failing with "database is locked" when both try to
  upgrade a read lock. Read-only sessions use a plain (deferred) BEGIN and never wait for writers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, event, make_url, text
from sqlalchemy import Engine as DatabaseEngine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

SQLITE_FILENAME = "draftroom.db"
BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x64726166  # any constant; serialises concurrent start-ups on PostgreSQL
_BEGIN_OPTION = "draftroom_begin"


def resolve_data_dir(arg: str | None) -> Path:
    """The data directory: `--data-dir`, else `$DRAFTROOM_DATA`, else `./data`."""
    return Path(arg or os.environ.get("DRAFTROOM_DATA") or "data").expanduser().resolve()


def resolve_database_url(arg: str | None = None) -> str | None:
    """A database URL given explicitly, else `$DATABASE_URL`, else None (SQLite in the data dir)."""
    return arg or os.environ.get("DATABASE_URL") or None


def _normalise_url(database_url: str) -> URL:
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise ValueError(f"DATABASE_URL: unsupported database {backend!r}; use sqlite or postgresql")


def make_database_engine(database_url: str | None, data_dir: Path) -> DatabaseEngine:
    """A database engine for `database_url`, or for SQLite at `<data_dir>/draftroom.db` when it is None."""
    if database_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        url = URL.create("sqlite", database=str(data_dir / SQLITE_FILENAME))
    else:
        url = _normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: DatabaseEngine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_BEGIN_OPTION, 'IMMEDIATE')}")


class Database:
    """One database engine and two kinds of session: `write()` (one transaction, committed on exit) and `read()`."""

    def __init__(self, engine: DatabaseEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"}))

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._writer.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def alembic_config(connection: Connection) -> Config:
    """An Alembic config built in code: migrations inside the package, run on `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() or ""


def current_revision(engine: DatabaseEngine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: DatabaseEngine, revision: str = "head") -> None:
    """Apply migrations up to `revision` in one transaction (SQLite and PostgreSQL both have transactional DDL)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        command.upgrade(alembic_config(conn), revision)
