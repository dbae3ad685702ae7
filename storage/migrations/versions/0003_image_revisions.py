"""Image revisions: `images.revision_of` links an image to the earlier one it revises.

An author answers "request changes" by submitting a new image as a revision of the old one; the
reviewer follows the link back to see the lineage. The column is nullable with no default, so
SQLite can add it (and its foreign key) in place, without rebuilding `images`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_images_revision_of_images"
INDEX = "ix_images_revision_of"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot ALTER a constraint in, but accepts a named REFERENCES clause on a new column.
        op.execute(
            f"ALTER TABLE images ADD COLUMN revision_of INTEGER CONSTRAINT {FOREIGN_KEY} REFERENCES images (id)"
        )
    else:
        op.add_column("images", sa.Column("revision_of", sa.Integer(), nullable=True))
        op.create_foreign_key(FOREIGN_KEY, "images", "images", ["revision_of"], ["id"])
    op.create_index(INDEX, "images", ["revision_of"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="images")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE images DROP COLUMN revision_of")  # SQLite >= 3.35; no index refers to it now
    else:
        op.drop_constraint(FOREIGN_KEY, "images", type_="foreignkey")
        op.drop_column("images", "revision_of")
