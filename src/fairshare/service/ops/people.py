"""Who is calling: a web sign-in's token, the member behind a session, the CLI on the database itself."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.store import models as m
from fairshare.store.repo import actor_of, token_digest


def sign_in(session: Session, token: str) -> str | None:
    """The digest a web session keeps for a live API token (None: unknown or revoked); the token
    itself is never kept."""
    digest = token_digest(token)
    return digest if _live_member(session, digest) is not None else None


def actor_by_digest(session: Session, digest: str) -> wf.Actor | None:
    """The member behind a signed-in session, with their roles (None: the token was revoked since)."""
    member = _live_member(session, digest)
    return actor_of(member) if member is not None else None


def _live_member(session: Session, digest: str) -> m.Member | None:
    row = session.scalars(select(m.Token).where(m.Token.digest == digest, m.Token.revoked_at.is_(None))).first()
    return row.member if row is not None else None


def local_admin(name: str = "cli") -> wf.Actor:
    """Whoever runs the CLI on the database itself holds the whole lab: they could change it with SQL."""
    return wf.Actor(name, (wf.Grant(wf.Role.admin, ""),))
