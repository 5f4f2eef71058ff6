"""The lab: its org tree, pools and policy (imported from a scenario file), its members, roles and tokens."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.scenario import Scenario
from fairshare.service.ops.rounds import get_round
from fairshare.service.ops.unit import use_case
from fairshare.store import models as m
from fairshare.store import repo
from fairshare.store.repo import NewRound as NewRound  # re-exported: the API builds one


def nodes(session: Session) -> list[tuple[m.Node, str | None]]:
    """The live org tree (archived nodes left out), parents before children (depth first, siblings in
    the file's order), each node with its parent's name."""
    rows = list(
        session.scalars(select(m.Node).where(m.Node.archived_at.is_(None)).order_by(m.Node.position, m.Node.id))
    )
    kids: dict[int | None, list[m.Node]] = {}
    for n in rows:
        kids.setdefault(n.parent_id, []).append(n)
    out: list[tuple[m.Node, str | None]] = []

    def visit(n: m.Node, parent: str | None) -> None:
        out.append((n, parent))
        for child in kids.get(n.id, []):
            visit(child, n.name)

    for root in kids.get(None, []):
        visit(root, None)
    return out


def node(session: Session, name: str) -> tuple[m.Node, str | None]:
    """One org node and its parent's name."""
    row = session.scalars(select(m.Node).where(m.Node.name == name)).first()
    if row is None:
        raise repo.NotFound(f"no org node named {name!r}")
    parent = session.get(m.Node, row.parent_id) if row.parent_id else None
    return row, parent.name if parent else None


def pools(session: Session) -> list[m.Pool]:
    return list(session.scalars(select(m.Pool).order_by(m.Pool.position, m.Pool.id)))


def member(session: Session, name: str) -> m.Member:
    row = session.scalars(select(m.Member).where(m.Member.name == name)).first()
    if row is None:
        raise repo.NotFound(f"no member named {name!r}")
    return row


def members(session: Session, actor: wf.Actor) -> list[m.Member]:
    """Every member and their roles: for committees and admins."""
    if not actor.is_committee:
        raise wf.Forbidden(f"{actor.name} is neither on a committee nor an admin")
    return list(session.scalars(select(m.Member).order_by(m.Member.name)))


def export(session: Session, actor: wf.Actor, round_id: int | None) -> Scenario:
    """The org, pools and policy as a scenario (with a round's requests), for committees and admins;
    a committee sees the justifications of its own subtree only."""
    if not actor.is_committee:
        raise wf.Forbidden(f"{actor.name} is neither on a committee nor an admin; export holds justifications")
    scenario = repo.export_scenario(session, get_round(session, round_id) if round_id else None)
    tree = repo.org_tree(session)
    return scenario.model_copy(
        update={
            "requests": [
                r if wf.may_see_justification(actor, tree, r.team) else r.model_copy(update={"justification": None})
                for r in scenario.requests
            ]
        }
    )


@use_case
def import_scenario(
    session: Session,
    actor: wf.Actor,
    scenario: Scenario,
    round_name: str | None,
    *,
    prune: bool = False,
    new_round: NewRound = NewRound(),
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Upsert pools, org tree and policy by name (and load the requests into a round), for admins;
    with `prune`, the nodes the file leaves out are archived.  Refused whole if a round still taking
    the lab's world would no longer fit it, or if a pruned node still has live requests in a round
    not yet published."""
    wf.check_admin(actor)
    counts = repo.import_scenario(
        session, scenario, round_name, actor=actor.name, prune=prune, new_round=new_round, now=now
    )
    repo.audit(session, actor.name, "scenario.import", "lab", scenario.name, None, {**counts, "round": round_name})
    for name in counts["archived"]:
        repo.audit(session, actor.name, "node.archive", "node", name, None, {"by": "import --prune"})
    return counts


@use_case
def archive_node(session: Session, actor: wf.Actor, name: str, now: dt.datetime) -> list[str]:
    """Archive an org node and its subtree (a team that leaves), for admins: they take no part in new
    rounds and leave the request forms, and the schedulers' next sync retires their accounts and queues;
    past rounds keep them.  Refused (409, naming them) while a round not yet published holds their live requests."""
    wf.check_admin(actor)
    node(session, name)  # no such node: NotFound
    archived = repo.archive_nodes(session, repo.subtree_names(session, name), now)
    if not archived:
        raise repo.NotFound(f"org node {name!r} is already archived")
    for n in archived:
        repo.audit(
            session, actor.name, "node.archive", "node", n, {"archived": False}, {"archived": True, "with": name}
        )
    return archived


@use_case
def add_member(
    session: Session,
    actor: wf.Actor,
    name: str,
    email: str | None,
    grants: list[tuple[wf.Role, str]],
    audit_data: dict[str, Any],
) -> m.Member:
    """A new member with their roles (admin)."""
    wf.check_admin(actor)
    if session.scalars(select(m.Member).where(m.Member.name == name)).first():
        raise wf.IllegalTransition(f"member {name!r} exists; add grants with POST /members/{name}/grants")
    row = repo.ensure_member(session, name, email)
    for role, node_name in grants:
        repo.grant(session, row, role, node_name)
    repo.audit(session, actor.name, "member.add", "member", name, None, audit_data)
    return row


@use_case
def add_grant(
    session: Session, actor: wf.Actor, name: str, role: wf.Role, node_name: str, audit_data: dict[str, Any]
) -> m.Member:
    """A role over a subtree for an existing member (admin)."""
    wf.check_admin(actor)
    row = member(session, name)
    repo.grant(session, row, role, node_name)
    repo.audit(session, actor.name, "member.grant", "member", name, None, audit_data)
    session.flush()
    session.refresh(row)
    return row


@use_case
def add_token(session: Session, actor: wf.Actor, name: str, label: str) -> str:
    """A new API token for an existing member (admin); only its hash is kept."""
    wf.check_admin(actor)
    token = repo.create_token(session, member(session, name), label)
    repo.audit(session, actor.name, "token.create", "member", name, None, {"label": label})
    return token


@use_case
def enrol(
    session: Session, actor: wf.Actor, name: str, email: str | None, role: wf.Role, node_name: str | None, label: str
) -> tuple[str, str]:
    """Member (created if new), role over a subtree (default: the root) and a new token in one step,
    as `fairshare token create` does on the database itself (admin).  Returns the node and the token."""
    wf.check_admin(actor)
    node_name = node_name or repo.root_node(session).name
    repo.get_node(session, node_name)  # no such node: NotFound
    person = repo.ensure_member(session, name, email)
    repo.grant(session, person, role, node_name)
    token = repo.create_token(session, person, label)
    repo.audit(session, actor.name, "token.create", "member", name, None, {"role": role.value, "node": node_name})
    return node_name, token
