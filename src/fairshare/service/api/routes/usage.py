"""Usage read back from the schedulers (`fairshare usage import slurm`), against entitlement."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare.connectors.source import from_round, newest_published
from fairshare.service.api.deps import CtxDep
from fairshare.store import models as m
from fairshare.store.repo import get_node

router = APIRouter(tags=["usage"])


class UsageOut(BaseModel):
    node: str
    gpu: str
    since: dt.datetime
    until: dt.datetime
    gpu_hours: float
    entitled_gpu_hours: float | None  # GPUs of the newest published round x hours in the period
    round_id: int | None


def usage_summary(session: Session, node: str, since: dt.datetime, until: dt.datetime) -> list[UsageOut]:
    """GPU-hours per GPU type that `node` used in [since, until), beside what the newest published
    round entitles it to over the same hours."""
    rows = session.scalars(select(m.Usage).where(m.Usage.node == node, m.Usage.period_start >= since,
                                                 m.Usage.period_start < until))
    used: dict[str, float] = {}
    for row in rows:
        used[row.gpu] = used.get(row.gpu, 0.0) + row.gpu_hours
    rid = newest_published(session)
    entitled = from_round(session, rid).node_gpus.get(node, {}) if rid is not None else {}
    hours = (until - since).total_seconds() / 3600
    return [UsageOut(node=node, gpu=gpu, since=since, until=until, gpu_hours=round(used.get(gpu, 0.0), 3),
                     entitled_gpu_hours=(entitled[gpu] * hours if gpu in entitled else None) if rid else None,
                     round_id=rid)
            for gpu in sorted(set(used) | set(entitled))]


DEFAULT_SPAN = dt.timedelta(days=30)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


@router.get("/usage/{node}", summary="GPU-hours a team (or any node) used per GPU type, against its entitlement")
def get_usage(node: str, ctx: CtxDep,
              since: Annotated[dt.datetime | None, Query(description="default: 30 days ago")] = None,
              until: Annotated[dt.datetime | None, Query(description="default: now")] = None) -> list[UsageOut]:
    get_node(ctx.session, node)
    end = _utc(until) if until else ctx.now
    if since is None and end - dt.datetime.min.replace(tzinfo=dt.timezone.utc) < DEFAULT_SPAN:
        raise HTTPException(422, f"until ({end.isoformat()}) is too early for the default since (30 days before it); "
                                 "give since too")
    start = _utc(since) if since else end - DEFAULT_SPAN
    if end <= start:
        raise HTTPException(422, f"until ({end.isoformat()}) is not after since ({start.isoformat()})")
    return usage_summary(ctx.session, node, start, end)
