"""Initial schema: users, tokens, uploads, prompts, favourites, generations, images, reviews, audit.

Besides the tables it creates what the ORM cannot describe portably:
- full-text search over prompt text: an FTS5 table kept in sync by triggers on SQLite, a GIN index
  on `to_tsvector('simple', text)` on PostgreSQL ('simple': no stemming, like FTS5's unicode61);
- triggers that make `reviews` append-only on both backends.
A later SQLite "batch" migration that rebuilds `prompts` or `reviews` drops their triggers and
must create them again.

Revision ID: 0001
Revises:
Create Date: 2025-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE prompts_fts USING fts5(text, content='prompts', content_rowid='id',"
    " tokenize='unicode61 remove_diacritics 2', prefix='2 3')",
    "CREATE TRIGGER prompts_fts_insert AFTER INSERT ON prompts BEGIN"
    " INSERT INTO prompts_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER prompts_fts_delete AFTER DELETE ON prompts BEGIN"
    " INSERT INTO prompts_fts(prompts_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER prompts_fts_update AFTER UPDATE OF text ON prompts BEGIN"
    " INSERT INTO prompts_fts(prompts_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    " INSERT INTO prompts_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews BEGIN"
    " SELECT RAISE(ABORT, 'reviews are append-only'); END",
    "CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews BEGIN"
    " SELECT RAISE(ABORT, 'reviews are append-only'); END",
]
POSTGRES_SEARCH = [
    "CREATE INDEX ix_prompts_text_tsv ON prompts USING gin (to_tsvector('simple', text))",
    "CREATE FUNCTION reviews_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN RAISE EXCEPTION 'reviews are append-only'; END $$",
    "CREATE TRIGGER reviews_append_only BEFORE UPDATE OR DELETE ON reviews"
    " FOR EACH ROW EXECUTE FUNCTION reviews_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("username_key", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("last_login_at", nullable=True),
        sa.CheckConstraint("role IN ('member', 'reviewer', 'admin')", name=op.f("ck_users_role_valid")),
        sa.UniqueConstraint("username_key", name=op.f("uq_users_username_key")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name=op.f("fk_api_tokens_user_id_users")),
            nullable=False,
        ),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("last_used_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])
    op.create_index(op.f("ix_api_tokens_prefix"), "api_tokens", ["prefix"])
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "uploader_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name=op.f("fk_uploads_uploader_id_users")),
            nullable=False,
        ),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("relpath", sa.String(200), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("file_missing", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("uploader_id", "sha256", name=op.f("uq_uploads_uploader_id_sha256")),
    )
    op.create_index(op.f("ix_uploads_sha256"), "uploads", ["sha256"])
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "author_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name=op.f("fk_prompts_author_id_users")),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("negative_prompt", sa.Text(), nullable=False),
        sa.Column("mix", JSON, nullable=False),
        sa.Column(
            "guidance_upload_id",
            sa.Integer(),
            sa.ForeignKey("uploads.id", name=op.f("fk_prompts_guidance_upload_id_uploads")),
            nullable=True,
        ),
        sa.Column("guidance_scale", sa.Float(), nullable=False),
        sa.Column("guidance_decay", sa.String(16), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("use_count", sa.Integer(), nullable=False),
        sa.Column(
            "parent_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", name=op.f("fk_prompts_parent_id_prompts")),
            nullable=True,
        ),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(
            "guidance_decay IN ('none', 'linear', 'cosine')", name=op.f("ck_prompts_guidance_decay_valid")
        ),
    )
    op.create_index(op.f("ix_prompts_author_id_created_at"), "prompts", ["author_id", "created_at"])
    op.create_index(op.f("ix_prompts_use_count"), "prompts", ["use_count"])
    op.create_index(op.f("ix_prompts_parent_id"), "prompts", ["parent_id"])
    op.create_table(
        "favourites",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name=op.f("fk_favourites_user_id_users")),
            nullable=False,
        ),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", name=op.f("fk_favourites_prompt_id_prompts")),
            nullable=False,
        ),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("user_id", "prompt_id", name=op.f("pk_favourites")),
    )
    op.create_index(op.f("ix_favourites_prompt_id"), "favourites", ["prompt_id"])
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name=op.f("fk_generations_user_id_users")),
            nullable=False,
        ),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", name=op.f("fk_generations_prompt_id_prompts")),
            nullable=False,
        ),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("model_hash", sa.String(128), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("queue_wait_s", sa.Float(), nullable=True),
        sa.Column("model_s", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')",
            name=op.f("ck_generations_status_valid"),
        ),
    )
    op.create_index(op.f("ix_generations_prompt_id"), "generations", ["prompt_id"])
    op.create_index(op.f("ix_generations_created_at"), "generations", ["created_at"])
    op.create_index(op.f("ix_generations_user_id_created_at"), "generations", ["user_id", "created_at"])
    op.create_index(op.f("ix_generations_status_created_at"), "generations", ["status", "created_at"])
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "generation_id",
            sa.Integer(),
            sa.ForeignKey("generations.id", name=op.f("fk_images_generation_id_generations")),
            nullable=False,
        ),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("relpath", sa.String(200), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("review_status", sa.String(16), nullable=False),
        sa.Column("file_missing", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint(
            "review_status IN ('draft', 'pending', 'approved', 'rejected')",
            name=op.f("ck_images_review_status_valid"),
        ),
        sa.UniqueConstraint("generation_id", "index", name=op.f("uq_images_generation_id_index")),
    )
    op.create_index(op.f("ix_images_sha256"), "images", ["sha256"])
    op.create_index(
        op.f("ix_images_review_status_generation_id"), "images", ["review_status", "generation_id"]
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "image_id",
            sa.Integer(),
            sa.ForeignKey("images.id", name=op.f("fk_reviews_image_id_images")),
            nullable=False,
        ),
        sa.Column(
            "reviewer_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name=op.f("fk_reviews_reviewer_id_users")),
            nullable=False,
        ),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint(
            "decision IN ('approve', 'reject', 'request_changes')", name=op.f("ck_reviews_decision_valid")
        ),
    )
    op.create_index(op.f("ix_reviews_image_id_id"), "reviews", ["image_id", "id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "actor_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name=op.f("fk_audit_events_actor_id_users")),
            nullable=True,
        ),
        sa.Column("actor_name", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        _ts("created_at"),
    )
    op.create_index(op.f("ix_audit_events_created_at"), "audit_events", ["created_at"])
    op.create_index(op.f("ix_audit_events_actor_id_created_at"), "audit_events", ["actor_id", "created_at"])
    op.create_index(op.f("ix_audit_events_action_created_at"), "audit_events", ["action", "created_at"])

    for statement in SQLITE_SEARCH if op.get_bind().dialect.name == "sqlite" else POSTGRES_SEARCH:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE prompts_fts")  # its triggers go with the tables below
    else:
        op.execute("DROP INDEX ix_prompts_text_tsv")
    for table in (
        "audit_events",
        "reviews",
        "images",
        "generations",
        "favourites",
        "prompts",
        "uploads",
        "api_tokens",
        "users",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION reviews_append_only()")
