"""The audit log: append-only, readable by committees and admins, exportable."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from fairshare.service.api.deps import CtxDep, PagingDep
from fairshare.service.api.schemas import AuditOut, Page
from fairshare.service.ops import audit

router = APIRouter(tags=["audit"])


Str = Annotated[str | None, Query(max_length=200)]
When = Annotated[dt.datetime | None, Query(description="ISO 8601, e.g. 2026-11-01T00:00:00Z")]


@router.get("/audit", summary="Audit entries, oldest first, filtered")
def list_audit(
    ctx: CtxDep,
    paging: PagingDep,
    entity: Str = None,
    entity_id: Str = None,
    actor: Str = None,
    action: Str = None,
    since: When = None,
    until: When = None,
) -> Page[AuditOut]:
    rows, total = audit.page(
        ctx.session,
        ctx.actor,
        audit.Filter(entity, entity_id, actor, action, since, until),
        paging.limit,
        paging.offset,
    )
    return Page(
        items=[AuditOut.model_validate(r, from_attributes=True) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


@router.get(
    "/audit/export",
    summary="The whole (filtered) audit log as JSON lines or CSV",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
def export_audit(
    ctx: CtxDep,
    format: ExportFormat = ExportFormat.jsonl,
    entity: Str = None,
    entity_id: Str = None,
    actor: Str = None,
    action: Str = None,
    since: When = None,
    until: When = None,
) -> Response:
    entries = audit.every(ctx.session, ctx.actor, audit.Filter(entity, entity_id, actor, action, since, until))
    rows = [AuditOut.model_validate(r, from_attributes=True).model_dump(mode="json") for r in entries]
    if format is ExportFormat.jsonl:
        return Response("".join(json.dumps(r) + "\n" for r in rows), media_type="application/x-ndjson")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(AuditOut.model_fields))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    return Response(buf.getvalue(), media_type="text/csv")
