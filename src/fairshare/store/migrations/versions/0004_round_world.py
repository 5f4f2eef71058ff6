"""a round keeps its own world (pools, org tree, reference GPU), frozen when it closes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 05:00:00

Rounds already past `open` are frozen with the lab as it is at the upgrade: the best record left
of their world, and from now on it stops moving under them.
"""
import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

LIVE = ("draft", "open")


def _world(bind: sa.engine.Connection) -> dict:
    lab = bind.execute(sa.text("SELECT reference_gpu FROM lab WHERE id = 1")).first()
    pools = [{"name": n, "gpu": g, "site": s, "gpus": c} for n, g, s, c in bind.execute(
        sa.text("SELECT name, gpu, site, gpus FROM pools ORDER BY position, id"))]
    rows = list(bind.execute(sa.text(
        "SELECT id, parent_id, name, weight, guarantee, limits FROM nodes ORDER BY position, id")))
    kids: dict = {}
    for row in rows:
        kids.setdefault(row.parent_id, []).append(row)

    def load(value: object) -> dict:
        return json.loads(value) if isinstance(value, str) else dict(value or {})

    def build(row: sa.Row) -> dict:
        node = {"name": row.name, "weight": row.weight, "children": [build(c) for c in kids.get(row.id, [])]}
        for key, column in (("guarantee", row.guarantee), ("limit", row.limits)):
            if load(column):
                node[key] = load(column)
        return node

    roots = kids.get(None, [])
    return {"reference_gpu": lab.reference_gpu if lab else None, "pools": pools,
            "org": build(roots[0]) if roots else None}


def upgrade() -> None:
    json_type = sa.JSON().with_variant(JSONB(), "postgresql")
    op.add_column("rounds", sa.Column("world", json_type, nullable=True))
    bind = op.get_bind()
    closed = [r.id for r in bind.execute(sa.text("SELECT id, state FROM rounds")) if r.state not in LIVE]
    if closed:
        world = _world(bind)
        rounds = sa.table("rounds", sa.column("id", sa.Integer), sa.column("world", json_type))
        for round_id in closed:
            bind.execute(rounds.update().where(rounds.c.id == round_id).values(world=world))


def downgrade() -> None:
    op.drop_column("rounds", "world")
