"""What a connector enforces: an allocation as GPUs per org node and GPU type.

It comes from a scenario file (allocated on the spot) or from a published round in the store,
so `fairshare sync ... SCENARIO` and `fairshare sync ... --round ID` push the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare.engine import allocate
from fairshare.errors import UserError
from fairshare.scenario import OrgNode, Scenario
from fairshare.scenario.files import load_scenario
from fairshare.store import models as m
from fairshare.store.repo import NotFound, round_scenario


class NotPublished(UserError):
    """The round has no published allocation to enforce."""


@dataclass
class Published:
    scenario: Scenario  # org tree (weights, guarantees, limits), pools, requests
    node_gpus: dict[str, dict[str, int]]  # node -> GPU type -> GPUs for its whole subtree
    label: str  # where it came from, for logs and the audit trail
    retired: tuple[str, ...] = ()  # archived org nodes: their accounts and queues are retired, not enforced
    # node -> the members with a member or lead grant on it (from the store; a file has none), so that a
    # connector can give them scheduler users without reading the store itself
    members: dict[str, frozenset[str]] = field(default_factory=dict)
    # archived subtrees the round's own world no longer has (archived before it was created): a scheduler
    # may still hold their queues, which the sync deletes
    retired_elsewhere: tuple[OrgNode, ...] = ()


def from_file(path: Path) -> Published:
    scenario = load_scenario(path)
    alloc = allocate(scenario)
    gpus = {n.name: {t: int(round(v)) for t, v in n.gpus.items() if v} for n in alloc.nodes}
    return Published(scenario, gpus, str(path))


def from_round(session: Session, round_id: int) -> Published:
    rnd = session.get(m.Round, round_id)
    if rnd is None:
        raise NotFound(f"no round with id {round_id}")
    if rnd.state not in ("published", "final") or rnd.current_run_id is None:
        raise NotPublished(f"round {round_id} ({rnd.name}) is {rnd.state}; only a published or final round is enforced")
    scenario = round_scenario(session, rnd)
    gpu_of = {p.name: p.gpu for p in scenario.pools}
    gpus: dict[str, dict[str, int]] = {}
    for row in session.scalars(select(m.NodeResult).where(m.NodeResult.run_id == rnd.current_run_id)):
        per_type: dict[str, int] = {}
        for pool, n in row.data["gpus"].items():
            per_type[gpu_of[pool]] = per_type.get(gpu_of[pool], 0) + int(n)
        gpus[row.node] = {t: n for t, n in per_type.items() if n}
    archived = set(session.scalars(select(m.Node.name).where(m.Node.archived_at.is_not(None))))
    in_world = {n.name for n in scenario.nodes()}
    retired = tuple(n.name for n in scenario.nodes() if n.name in archived)
    label = f"round {round_id} ({rnd.name}), run {rnd.current_run_id}"
    return Published(scenario, gpus, label, retired, _members(session), _archived_trees(session, in_world))


def _archived_trees(session: Session, in_world: set[str]) -> tuple[OrgNode, ...]:
    """The archived subtrees (topmost archived node and its descendants) absent from a round's world."""
    rows = list(session.scalars(select(m.Node).order_by(m.Node.position, m.Node.id)))
    kids: dict[int | None, list[m.Node]] = {}
    for row in rows:
        kids.setdefault(row.parent_id, []).append(row)
    by_id = {row.id: row for row in rows}

    def tree(row: m.Node) -> OrgNode:
        return OrgNode(name=row.name, children=[tree(c) for c in kids.get(row.id, [])])

    tops = [
        row
        for row in rows
        if row.archived_at is not None
        and row.name not in in_world
        and (row.parent_id is None or by_id[row.parent_id].archived_at is None)
    ]
    return tuple(tree(row) for row in tops)


def _members(session: Session) -> dict[str, frozenset[str]]:
    """Node -> members holding a member or lead grant on it."""
    rows = session.execute(
        select(m.Node.name, m.Member.name)
        .join(m.Grant, m.Grant.node_id == m.Node.id)
        .join(m.Member, m.Member.id == m.Grant.member_id)
        .where(m.Grant.role.in_(("member", "lead")))
    )
    out: dict[str, set[str]] = {}
    for node, member in rows:
        out.setdefault(node, set()).add(member)
    return {node: frozenset(names) for node, names in out.items()}


def not_newest(session: Session, round_id: int) -> str | None:
    """Why the round must not be pushed into a scheduler (the newest published or final round is the one
    in force, and a scheduler holds it), or None if it is that round."""
    newest = newest_published(session)
    if newest is None or newest == round_id:
        return None
    rnd, top = session.get(m.Round, round_id), session.get(m.Round, newest)
    assert top is not None
    what = f"round {round_id} ({rnd.name})" if rnd else f"round {round_id}"
    return f"{what} is not the newest published round; round {newest} ({top.name}) is, and the schedulers hold it"


def newest_published(session: Session) -> int | None:
    """The id of the most recently published round that has an allocation, if any."""
    return session.scalar(
        select(m.Round.id)
        .where(m.Round.state.in_(("published", "final")), m.Round.current_run_id.is_not(None))
        .order_by(m.Round.published_at.desc(), m.Round.id.desc())
        .limit(1)
    )
