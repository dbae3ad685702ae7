"""Each image records its own seed (image i of a generation uses the generation's seed + i).

Existing rows are filled in from their generation's seed and their index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("seed", sa.BigInteger(), nullable=True))
    op.execute(
        'UPDATE images SET seed = (SELECT generations.seed + images."index" FROM generations'
        " WHERE generations.id = images.generation_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("seed")
