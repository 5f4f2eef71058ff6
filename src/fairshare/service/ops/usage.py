"""Usage against entitlement: GPU-hours a node used per GPU type beside what the newest published round gives it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare.connectors.source import from_round, newest_published
from fairshare.errors import UserError
from fairshare.store import models as m
from fairshare.store.repo import get_node


@dataclass(frozen=True)
class Usage:
    node: str
    gpu: str
    since: dt.datetime
    until: dt.datetime
    gpu_hours: float
    entitled_gpu_hours: float | None  # GPUs of the newest published round x hours in the period
    round_id: int | None


def usage_summary(session: Session, node: str, since: dt.datetime, until: dt.datetime) -> list[Usage]:
    """GPU-hours per GPU type that `node` used in [since, until), beside what the newest published
    round entitles it to over the same hours."""
    rows = session.scalars(
        select(m.Usage).where(m.Usage.node == node, m.Usage.period_start >= since, m.Usage.period_start < until)
    )
    used: dict[str, float] = {}
    for row in rows:
        used[row.gpu] = used.get(row.gpu, 0.0) + row.gpu_hours
    rid = newest_published(session)
    entitled = from_round(session, rid).node_gpus.get(node, {}) if rid is not None else {}
    hours = (until - since).total_seconds() / 3600
    return [
        Usage(
            node=node,
            gpu=gpu,
            since=since,
            until=until,
            gpu_hours=round(used.get(gpu, 0.0), 3),
            entitled_gpu_hours=(entitled[gpu] * hours if gpu in entitled else None) if rid else None,
            round_id=rid,
        )
        for gpu in sorted(set(used) | set(entitled))
    ]


DEFAULT_SPAN = dt.timedelta(days=30)


def usage_of(
    session: Session, node: str, since: dt.datetime | None, until: dt.datetime | None, now: dt.datetime
) -> list[Usage]:
    """`usage_summary` over [since, until) (default: the 30 days up to now); times without a zone are UTC."""
    get_node(session, node)
    end = _utc(until) if until else now
    if since is None and end - dt.datetime.min.replace(tzinfo=dt.UTC) < DEFAULT_SPAN:
        raise UserError(
            f"until ({end.isoformat()}) is too early for the default since (30 days before it); give since too"
        )
    start = _utc(since) if since else end - DEFAULT_SPAN
    if end <= start:
        raise UserError(f"until ({end.isoformat()}) is not after since ({start.isoformat()})")
    return usage_summary(session, node, start, end)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
