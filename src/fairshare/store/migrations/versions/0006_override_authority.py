"""overrides record the committee that made them, the subtree that absorbed them and who ended them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

COLUMNS = ("authority", "scope", "replaced_by", "ended_by")


def upgrade() -> None:
    # plain ADD COLUMNs (SQLite has them); replaced_by holds an override id without a foreign key,
    # which SQLite could only add by copying the table
    op.add_column("overrides", sa.Column("authority", sa.String(200), nullable=True))
    op.add_column("overrides", sa.Column("scope", sa.String(200), nullable=True))
    op.add_column("overrides", sa.Column("replaced_by", sa.Integer(), nullable=True))
    op.add_column("overrides", sa.Column("ended_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("overrides") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
