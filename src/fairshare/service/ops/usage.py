"""Usage against entitlement: GPU-hours a node used per GPU type beside what the newest published round gives it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare.connectors.source import from_round, newest_published
from fairshare.errors import NotFound, UserError
from fairshare.scenario import OrgNode
from fairshare.service.ops.health import published_rounds
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


# --- usage per round: attributed to the round in force when it was used ---------------------------


@dataclass(frozen=True)
class RoundUsage:
    """One GPU type of one node in one round: what the round entitled it to and what it used while in force."""

    node: str
    gpu: str
    since: dt.datetime  # the round's publication
    until: dt.datetime  # the next round's publication, or now while it is the newest
    gpu_hours: float  # used in [since, until), by it and its subtree
    entitled_gpu_hours: float  # entitled GPUs x hours in force (0 for a type it was given none of)
    round_id: int
    round: str
    entitled_gpus: int
    no_entitlement: bool  # used a GPU type the round gave it none of


def in_force(session: Session, round_id: int, now: dt.datetime) -> tuple[m.Round, dt.datetime, dt.datetime]:
    """The round and the span it was in force: from its publication until the next round's publication
    (the newest one: until `now`).  A round never published was never in force."""
    rnd = session.get(m.Round, round_id)
    if rnd is None:
        raise NotFound(f"no round with id {round_id}")
    rows = published_rounds(session)
    ids = [r.id for r in rows]
    if rnd.id not in ids or rnd.published_at is None:
        raise UserError(
            f"round_id {round_id} ({rnd.name}) is {rnd.state}: it was never in force; usage is attributed to "
            "published and final rounds"
        )
    i = ids.index(rnd.id)
    following = rows[i + 1].published_at if i + 1 < len(rows) else None
    return rnd, _utc(rnd.published_at), _utc(following) if following else now


def round_usage(session: Session, node: str, round_id: int, now: dt.datetime) -> list[RoundUsage]:
    """GPU-hours per GPU type `node` (with its subtree, in the round's own org) used while the round was in
    force, beside the GPU-hours the round entitled it to; a type used without entitlement is flagged."""
    get_node(session, node)
    rnd, start, end = in_force(session, round_id, now)
    published = from_round(session, rnd.id)
    members = _subtree(published.scenario.org, node)
    if not members:
        raise NotFound(f"no org node named {node!r} in round {rnd.name!r}")
    used: dict[str, float] = {}
    if end > start:
        rows = session.scalars(
            select(m.Usage).where(m.Usage.node.in_(members), m.Usage.period_end > start, m.Usage.period_start < end)
        )
        for u in rows:
            u_start, u_end = _utc(u.period_start), _utc(u.period_end)
            span = (u_end - u_start).total_seconds()
            inside = (min(u_end, end) - max(u_start, start)).total_seconds()
            if span > 0 and inside > 0:
                used[u.gpu] = used.get(u.gpu, 0.0) + u.gpu_hours * inside / span
    entitled = {t: n for t, n in published.node_gpus.get(node, {}).items() if n}
    hours = max((end - start).total_seconds() / 3600, 0.0)
    return [
        RoundUsage(
            node=node,
            gpu=gpu,
            since=start,
            until=end,
            gpu_hours=round(used.get(gpu, 0.0), 3),
            entitled_gpu_hours=round(entitled.get(gpu, 0) * hours, 3),
            round_id=rnd.id,
            round=rnd.name,
            entitled_gpus=entitled.get(gpu, 0),
            no_entitlement=gpu not in entitled and used.get(gpu, 0.0) > 0,
        )
        for gpu in sorted(set(used) | set(entitled))
    ]


def _subtree(org: OrgNode, name: str) -> list[str]:
    """`name` and every node below it in this org tree (empty when it is not in it)."""
    if org.name == name:
        out: list[str] = []
        stack = [org]
        while stack:
            n = stack.pop()
            out.append(n.name)
            stack.extend(n.children)
        return out
    for child in org.children:
        found = _subtree(child, name)
        if found:
            return found
    return []
