"""Alembic environment: runs on the engine fairshare hands it (see fairshare.store.db.upgrade)."""

from alembic import context

from fairshare.store.db import make_engine
from fairshare.store.models import Base

config = context.config
engine = config.attributes.get("engine") or make_engine(config.get_main_option("sqlalchemy.url") or None)

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
