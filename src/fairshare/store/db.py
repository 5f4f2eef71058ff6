"""Database URLs, engines and migrations.  SQLite by default, PostgreSQL in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from fairshare.errors import Unavailable
from fairshare.settings import load_settings

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(Unavailable):
    """The database cannot be reached or is not at the current schema; says what to run.  The CLI
    exits 2: the fix is the user's (a URL, `fairshare db upgrade`)."""

    exit_code = 2


def database_url(url: str | None = None) -> str:
    """The URL to use: the argument, else the settings' (FAIRSHARE_DATABASE_URL, else ./fairshare.db).
    A bare postgresql:// URL is given the psycopg 3 driver."""
    url = url or load_settings().database_url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    url = database_url(url)
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        backend = None
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"{url!r} is not a database fairshare can use; write sqlite:///path/to/fairshare.db or "
            "postgresql://user@host:5432/dbname"
        ) from None
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_size=kwargs.pop("pool_size", 20),
        max_overflow=kwargs.pop("max_overflow", 20),
        pool_pre_ping=True,
        **kwargs,
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision` (idempotent)."""
    from alembic import command

    current_revision(engine)  # a database that cannot be read at all: DatabaseError, not a driver's traceback
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision (None when it has none yet); DatabaseError when it cannot be
    reached or read (a server that is down, a file that cannot be opened or is not a database)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except Exception as e:  # driver errors differ per backend; the message is what matters
        raise DatabaseError(f"cannot connect to {engine.url.render_as_string(hide_password=True)}: {e}") from e


def head_revision() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def check_schema(engine: Engine) -> None:
    """Raise DatabaseError unless the database is at the newest migration."""
    have = current_revision(engine)
    want = head_revision()
    if have != want:
        tables = inspect(engine).get_table_names()
        what = "is empty" if not tables else f"is at schema revision {have or 'none'}, not {want}"
        raise DatabaseError(
            f"the database {engine.url.render_as_string(hide_password=True)} {what}; run `fairshare db upgrade` first"
        )
