"""The audit log: append-only, readable by committees and admins, exportable."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import func, select

from fairshare import workflow as wf
from fairshare.service.api.deps import CtxDep, PagingDep
from fairshare.service.api.schemas import AuditOut, Page
from fairshare.store import models as m

router = APIRouter(tags=["audit"])


def _filters(entity: str | None, entity_id: str | None, actor: str | None, action: str | None,
             since: dt.datetime | None, until: dt.datetime | None) -> list[object]:
    where: list[object] = []
    for col, value in ((m.AuditEntry.entity, entity), (m.AuditEntry.entity_id, entity_id),
                       (m.AuditEntry.actor, actor), (m.AuditEntry.action, action)):
        if value is not None:
            where.append(col == value)
    if since is not None:
        where.append(m.AuditEntry.at >= since)
    if until is not None:
        where.append(m.AuditEntry.at < until)
    return where


Str = Annotated[str | None, Query(max_length=200)]
When = Annotated[dt.datetime | None, Query(description="ISO 8601, e.g. 2026-11-01T00:00:00Z")]


@router.get("/audit", summary="Audit entries, oldest first, filtered")
def list_audit(ctx: CtxDep, paging: PagingDep, entity: Str = None, entity_id: Str = None, actor: Str = None,
               action: Str = None, since: When = None, until: When = None) -> Page[AuditOut]:
    wf.check_read_audit(ctx.actor)
    where = _filters(entity, entity_id, actor, action, since, until)
    total = ctx.session.scalar(select(func.count()).select_from(m.AuditEntry).where(*where)) or 0
    rows = ctx.session.scalars(select(m.AuditEntry).where(*where).order_by(m.AuditEntry.id)
                               .limit(paging.limit).offset(paging.offset))
    return Page(items=[AuditOut.model_validate(r, from_attributes=True) for r in rows], total=total,
                limit=paging.limit, offset=paging.offset)


class ExportFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


@router.get("/audit/export", summary="The whole (filtered) audit log as JSON lines or CSV",
            response_class=Response, responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
def export_audit(ctx: CtxDep, format: ExportFormat = ExportFormat.jsonl, entity: Str = None, entity_id: Str = None,
                 actor: Str = None, action: Str = None, since: When = None, until: When = None) -> Response:
    wf.check_read_audit(ctx.actor)
    rows = [AuditOut.model_validate(r, from_attributes=True).model_dump(mode="json") for r in ctx.session.scalars(
        select(m.AuditEntry).where(*_filters(entity, entity_id, actor, action, since, until)).order_by(m.AuditEntry.id))]
    if format is ExportFormat.jsonl:
        return Response("".join(json.dumps(r) + "\n" for r in rows), media_type="application/x-ndjson")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(AuditOut.model_fields))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    return Response(buf.getvalue(), media_type="text/csv")
