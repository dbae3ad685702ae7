"""Draftroom's storage: the database (SQLite or PostgreSQL), the image files, and the services.

storage = open_storage(Path("data"))          # migrations run here
user = storage.users.authenticate("ada", "...")
page = storage.history.search(user.id, HistoryQuery(text="red circle"))
storage.close()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher

from .db import Database, make_database_engine, upgrade
from .images import ImageStore
from .services import (
    AuditService,
    BrowserSessionService,
    CheckService,
    ExportService,
    FrontendService,
    GenerationService,
    HistoryService,
    PromptService,
    ReviewService,
    TokenService,
    UploadService,
    UserService,
)


@dataclass
class Storage:
    """One database, the two file stores, and a service per concern. Close it when done."""

    data_dir: Path
    db: Database
    images: ImageStore
    upload_store: ImageStore
    users: UserService
    tokens: TokenService
    uploads: UploadService
    prompts: PromptService
    generations: GenerationService
    reviews: ReviewService
    history: HistoryService
    export: ExportService
    audit: AuditService
    check: CheckService
    frontends: FrontendService
    sessions: BrowserSessionService

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_storage(
    data_dir: Path, database_url: str | None = None, *, password_hasher: PasswordHasher | None = None
) -> Storage:
    """Open (creating if needed) the data dir and database, and migrate it to the latest schema.

    `database_url` None means SQLite at `<data_dir>/draftroom.db`. `password_hasher` defaults to
    argon2id with argon2-cffi's recommended cost; pass a cheaper one only in tests.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_database_engine(database_url, data_dir)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    db = Database(engine)
    images = ImageStore(data_dir / "images")
    upload_store = ImageStore(data_dir / "uploads")
    return Storage(
        data_dir=data_dir,
        db=db,
        images=images,
        upload_store=upload_store,
        users=UserService(db, password_hasher or PasswordHasher()),
        tokens=TokenService(db),
        uploads=UploadService(db, upload_store),
        prompts=PromptService(db),
        generations=GenerationService(db, images),
        reviews=ReviewService(db),
        history=HistoryService(db),
        export=ExportService(db, images),
        audit=AuditService(db),
        check=CheckService(db, images, upload_store, data_dir / "quarantine"),
        frontends=FrontendService(db),
        sessions=BrowserSessionService(db),
    )
