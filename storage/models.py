"""The ORM: SQLAlchemy 2 typed models. Only the services use them; callers get `storage.types`.

Migrations in `storage/migrations/versions` create exactly this schema (a test compares them),
plus what the ORM cannot describe portably: the full-text index and the append-only triggers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import Decision, GenerationStatus, GuidanceDecay, ReviewStatus, Role

SHA256_LEN = 64


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend.

    SQLite has no time zone type: values are stored as naive UTC and given back their tzinfo.
    Naive datetimes are refused, so a local time can never be stored by mistake.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONValue = JSON().with_variant(JSONB(), "postgresql")


def _one_of(column: str, values: type) -> CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)  # type: ignore[attr-defined]
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads it from the class
        datetime: UTCDateTime(),
        dict[str, Any]: JSONValue,
        list[Any]: JSONValue,
    }


class User(Base):
    __tablename__ = "users"
    __table_args__ = (_one_of("role", Role),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(String(64), unique=True)  # casefolded: uniqueness ignores case
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None]


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_LEN), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class Upload(Base):
    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("uploader_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uploader_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    sha256: Mapped[str] = mapped_column(String(SHA256_LEN), index=True)
    relpath: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    file_missing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (
        _one_of("guidance_decay", GuidanceDecay),
        Index(None, "author_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    mix: Mapped[list[Any]] = mapped_column(
        default=list
    )  # [{"weight": w, "text": t} | {"weight": w, "upload_id": u}]
    guidance_upload_id: Mapped[int | None] = mapped_column(ForeignKey("uploads.id"))
    guidance_scale: Mapped[float] = mapped_column(Float, default=0.0)
    guidance_decay: Mapped[str] = mapped_column(String(16), default=GuidanceDecay.NONE.value)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    shared: Mapped[bool] = mapped_column(Boolean, default=True)
    use_count: Mapped[int] = mapped_column(Integer, default=0, index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    author: Mapped[User] = relationship()


class Favourite(Base):
    __tablename__ = "favourites"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Generation(Base):
    __tablename__ = "generations"
    __table_args__ = (
        _one_of("status", GenerationStatus),
        Index(None, "user_id", "created_at"),
        Index(None, "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    model_id: Mapped[str] = mapped_column(String(200))
    model_hash: Mapped[str] = mapped_column(String(128))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=GenerationStatus.QUEUED.value)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    queue_wait_s: Mapped[float | None] = mapped_column(Float)
    model_s: Mapped[float | None] = mapped_column(Float)
    frontend_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The front-end (`Frontend.id`) that holds the job's engine handle; None: no live front-end does."""

    user: Mapped[User] = relationship()
    prompt: Mapped[Prompt] = relationship()
    images: Mapped[list[Image]] = relationship(order_by="Image.index", back_populates="generation")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        _one_of("review_status", ReviewStatus),
        UniqueConstraint("generation_id", "index"),
        Index(None, "review_status", "generation_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    index: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(SHA256_LEN), index=True)
    relpath: Mapped[str] = mapped_column(String(200))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    """This image's own seed (the generation's seed + index for the studio's models)."""
    review_status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.DRAFT.value)
    file_missing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revision_of: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    """The earlier image this one revises (set when the author submits it as a revision)."""

    generation: Mapped[Generation] = relationship(back_populates="images")


class Review(Base):
    """One decision. Rows are never updated or deleted (database triggers refuse it)."""

    __tablename__ = "reviews"
    __table_args__ = (_one_of("decision", Decision), Index(None, "image_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    reviewer: Mapped[User] = relationship()


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "actor_id", "created_at"), Index(None, "action", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Frontend(Base):
    """A running `app.py serve`: its instance id and its last sign of life (docs/RELIABILITY.md)."""

    __tablename__ = "frontends"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class BrowserSession(Base):
    """A browser signed in to the UI: the SHA-256 of its cookie's token, valid on every front-end."""

    __tablename__ = "browser_sessions"

    token_hash: Mapped[str] = mapped_column(String(SHA256_LEN), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Setting(Base):
    """A value every process of one database shares (`session_cookie_id`), drawn by a migration."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LoginFailure(Base):
    """A failed (or still unchecked) sign-in, counted against its account and its address for a while."""

    __tablename__ = "login_failures"
    __table_args__ = (Index(None, "key_hash", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(SHA256_LEN))
    """SHA-256 of the scope ("account" or "address") and the key: a typed name or a network address."""
    at: Mapped[float] = mapped_column(Float, index=True)
    """When, in the throttle's clock (Unix seconds)."""
