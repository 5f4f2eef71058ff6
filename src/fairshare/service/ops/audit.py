"""The audit log: append-only (every use case writes its entries), read by committees and admins."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.store import models as m


@dataclass(frozen=True)
class Filter:
    """Entries with these values (None: any), at or after `since`, before `until`."""

    entity: str | None = None
    entity_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self) -> list[Any]:
        out: list[Any] = [
            col == value
            for col, value in (
                (m.AuditEntry.entity, self.entity),
                (m.AuditEntry.entity_id, self.entity_id),
                (m.AuditEntry.actor, self.actor),
                (m.AuditEntry.action, self.action),
            )
            if value is not None
        ]
        if self.since is not None:
            out.append(m.AuditEntry.at >= self.since)
        if self.until is not None:
            out.append(m.AuditEntry.at < self.until)
        return out


def page(session: Session, actor: wf.Actor, where: Filter, limit: int, offset: int) -> tuple[list[m.AuditEntry], int]:
    """A page of the matching entries, oldest first, and how many match."""
    wf.check_read_audit(actor)
    total = session.scalar(select(func.count()).select_from(m.AuditEntry).where(*where.where())) or 0
    rows = session.scalars(
        select(m.AuditEntry).where(*where.where()).order_by(m.AuditEntry.id).limit(limit).offset(offset)
    )
    return list(rows), total


def every(session: Session, actor: wf.Actor, where: Filter) -> list[m.AuditEntry]:
    """Every matching entry, oldest first (an export)."""
    wf.check_read_audit(actor)
    return list(session.scalars(select(m.AuditEntry).where(*where.where()).order_by(m.AuditEntry.id)))


def newest(session: Session, actor: wf.Actor, where: Filter, limit: int = 500) -> list[m.AuditEntry]:
    """The newest matching entries, newest first (the audit page)."""
    wf.check_read_audit(actor)
    return list(
        session.scalars(select(m.AuditEntry).where(*where.where()).order_by(m.AuditEntry.id.desc()).limit(limit))
    )
