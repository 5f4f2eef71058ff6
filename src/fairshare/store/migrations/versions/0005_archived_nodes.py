"""org nodes can be archived (a team that leaves): kept for past rounds, out of new ones

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN (SQLite has it): a batch copy of `nodes` would trip the keys that point at it
    op.add_column("nodes", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("nodes", "archived_at")  # SQLite >= 3.35 drops a column in place, as 0004 does
