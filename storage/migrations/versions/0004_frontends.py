"""Several front-ends on one database: who holds each job, who is alive, and the UI's sign-ins.

- `frontends`: one row per running `app.py serve` (its instance id) with a heartbeat. The jobs of a
  front-end whose heartbeat went stale are marked `interrupted` by whichever front-end notices
  (docs/RELIABILITY.md, "Several front-ends").
- `generations.frontend_id`: the front-end that holds the job's engine handle. Rows from before this
  migration have none: no live front-end holds them. No foreign key: the front-end's row goes when it
  stops, the record of who ran the job stays.
- `browser_sessions`: the UI's sign-in tokens (SHA-256 hashes), so every front-end knows a browser
  signed in on another one, and a restart signs nobody out.
- `login_failures`: the sign-in throttle's counts (SHA-256 of the account or address, and when), so
  every front-end counts the same failures and a load balancer multiplies no attacker's tries.
- `settings`: `session_cookie_id`, the variable part of the sign-in cookie's name, which every
  front-end of one database must share; drawn here, once per database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEX = "ix_generations_frontend_id"


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "frontends",
        sa.Column("id", sa.String(64), primary_key=True),
        _ts("started_at"),
        _ts("heartbeat_at"),
    )
    op.add_column("generations", sa.Column("frontend_id", sa.String(64), nullable=True))
    op.create_index(INDEX, "generations", ["frontend_id"])
    op.create_table(
        "browser_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name=op.f("fk_browser_sessions_user_id_users")),
            nullable=False,
        ),
        _ts("created_at"),
    )
    op.create_index(op.f("ix_browser_sessions_user_id"), "browser_sessions", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index(op.f("ix_login_failures_key_hash_at"), "login_failures", ["key_hash", "at"])
    op.create_index(op.f("ix_login_failures_at"), "login_failures", ["at"])
    settings = op.create_table(
        "settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(settings, [{"name": "session_cookie_id", "value": secrets.token_urlsafe(16)}])


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_index(op.f("ix_login_failures_at"), table_name="login_failures")
    op.drop_index(op.f("ix_login_failures_key_hash_at"), table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index(op.f("ix_browser_sessions_user_id"), table_name="browser_sessions")
    op.drop_table("browser_sessions")
    op.drop_index(INDEX, table_name="generations")
    op.drop_column("generations", "frontend_id")  # in place on SQLite >= 3.35: no index or key refers to it
    op.drop_table("frontends")
