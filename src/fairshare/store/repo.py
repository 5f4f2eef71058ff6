"""Conversions between rows and the scenario model, and the few queries everything needs.

The scenario model is the one vocabulary: importing a file writes rows, exporting reads them
back into a `Scenario`, and a round's engine input is built the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.errors import Conflict, NotFound
from fairshare.scenario import OrgNode, Policy, Pool, Priority, Request, Scenario, ScenarioError
from fairshare.store import models as m


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "fs_" + secrets.token_urlsafe(32)


# --- org tree and pools ---------------------------------------------------------------------


def nodes_by_name(session: Session) -> dict[str, m.Node]:
    return {n.name: n for n in session.scalars(select(m.Node))}


def org_tree(session: Session) -> wf.OrgTree:
    rows = session.execute(select(m.Node.id, m.Node.name, m.Node.parent_id)).all()
    name_of = {i: n for i, n, _ in rows}
    return wf.OrgTree({n: (name_of[p] if p is not None else None) for _, n, p in rows})


def root_node(session: Session) -> m.Node:
    root = session.scalars(select(m.Node).where(m.Node.parent_id.is_(None))).first()
    if root is None:
        raise NotFound("the organisation is empty; import a scenario first (`fairshare import FILE`)")
    return root


def get_node(session: Session, name: str) -> m.Node:
    node = session.scalars(select(m.Node).where(m.Node.name == name)).first()
    if node is None:
        raise NotFound(f"no org node named {name!r}")
    return node


def live_node_names(session: Session) -> set[str]:
    """The org nodes that are not archived: the ones a new request or a new round may name."""
    return set(session.scalars(select(m.Node.name).where(m.Node.archived_at.is_(None))))


def org_model(session: Session) -> OrgNode:
    """The org tree as the scenario model (archived nodes left out: they take no part in new rounds)."""
    rows = list(
        session.scalars(select(m.Node).where(m.Node.archived_at.is_(None)).order_by(m.Node.position, m.Node.id))
    )
    kids: dict[int | None, list[m.Node]] = {}
    for n in rows:
        kids.setdefault(n.parent_id, []).append(n)

    def build(n: m.Node) -> OrgNode:
        return OrgNode(
            name=n.name,
            weight=n.weight,
            guarantee=n.guarantee,
            limit=n.limit,
            children=[build(c) for c in kids.get(n.id, [])],
        )

    roots = kids.get(None, [])
    if not roots:
        raise NotFound("the organisation is empty; import a scenario first (`fairshare import FILE`)")
    return build(roots[0])


def pool_models(session: Session) -> list[Pool]:
    return [
        Pool(name=p.name, gpu=p.gpu, site=p.site, gpus=p.gpus)
        for p in session.scalars(select(m.Pool).order_by(m.Pool.position, m.Pool.id))
    ]


def lab(session: Session) -> m.Lab:
    row = session.get(m.Lab, 1)
    if row is None:
        row = m.Lab(id=1, name="lab", reference_gpu=None, policy={})
        session.add(row)
    return row


# --- requests ---------------------------------------------------------------------------------


def request_model(row: m.Request) -> Request:
    return Request(
        id=row.key,
        team=row.team.name,
        gpus=row.gpus,
        min=row.min,
        priority=Priority(row.priority),
        launch=row.launch,
        weight=row.weight,
        speed=row.speed,
        sites=row.sites,
        justification=row.justification or None,
    )


def request_fields(req: Request) -> dict[str, Any]:
    """Columns of a request row from the scenario model (team resolved by the caller)."""
    d = req.model_dump(mode="json")
    return {
        "key": req.id,
        "gpus": req.gpus,
        "min": req.min,
        "priority": d["priority"],
        "launch": req.launch,
        "weight": req.weight,
        "speed": req.speed,
        "sites": req.sites,
        "justification": req.justification or "",
    }


def lab_world(session: Session) -> dict[str, Any]:
    """The lab as it is now (reference GPU, pools, org tree), in the form a round freezes it."""
    return {
        "reference_gpu": lab(session).reference_gpu,
        "pools": [p.model_dump(mode="json") for p in pool_models(session)],
        "org": org_model(session).model_dump(mode="json", exclude_defaults=True),
    }


def freeze_world(session: Session, rnd: m.Round) -> None:
    """Keep the lab's current world as the round's own: every later solve of the round (propose,
    overrides, rulings, a late appeal) uses it, whatever the lab becomes.  Called when it closes."""
    if rnd.world is None:
        rnd.world = lab_world(session)


def round_scenario(session: Session, rnd: m.Round) -> Scenario:
    """The engine's input for a round: its frozen world (or, while it is draft or open, today's pools
    and org), and its live requests.  (The requests as `request_model` makes them, from plain rows: a
    round may hold thousands.)"""
    rows = session.execute(
        select(
            m.Request.key,
            m.Node.name,
            m.Request.gpus,
            m.Request.min,
            m.Request.priority,
            m.Request.launch,
            m.Request.weight,
            m.Request.speed,
            m.Request.sites,
            m.Request.justification,
        )
        .join(m.Node, m.Node.id == m.Request.team_id)
        .where(m.Request.round_id == rnd.id, m.Request.withdrawn.is_(False))
        .order_by(m.Request.id)
    )
    with _still_valid(f"round {rnd.name!r}"):
        requests = [
            Request(
                id=key,
                team=team,
                gpus=gpus,
                min=least,
                priority=priority,
                launch=launch,
                weight=weight,
                speed=speed,
                sites=sites,
                justification=justification or None,
            )
            for key, team, gpus, least, priority, launch, weight, speed, sites, justification in rows
        ]
        if rnd.world is None:
            return Scenario(
                name=rnd.name,
                reference_gpu=lab(session).reference_gpu,
                pools=pool_models(session),
                org=org_model(session),
                requests=requests,
                policy=Policy.model_validate(rnd.policy),
            )
        world = rnd.world
        return Scenario(
            name=rnd.name,
            reference_gpu=world["reference_gpu"],
            pools=[Pool.model_validate(p) for p in world["pools"]],
            org=OrgNode.model_validate(world["org"]),
            requests=requests,
            policy=Policy.model_validate(rnd.policy),
        )


@contextmanager
def _still_valid(what: str) -> Iterator[None]:
    """Stored rows that no longer make a valid scenario (an import changed a pool's GPU type
    under a round's requests, say) are the caller's to fix: a ScenarioError (4xx) naming them."""
    try:
        yield
    except ValidationError as e:
        raise ScenarioError(
            [
                (
                    tuple(err["loc"]),
                    f"{err['msg'].removeprefix('Value error, ')} (in {what}, as "
                    "stored; change it, or import a lab it fits)",
                )
                for err in e.errors()
            ]
        ) from None


# --- import / export --------------------------------------------------------------------------


class NodeInUse(Conflict):
    """An org node still holds live requests in a round not yet published (HTTP 409)."""


@dataclass(frozen=True)
class NewRound:
    """How a round that an import creates is set up: its own date (its policy's, for urgency) and appeal windows."""

    date: dt.date | None = None
    appeal_window_hours: float = 14 * 24.0
    appeal_response_hours: float = 3 * 24.0


def subtree_names(session: Session, name: str) -> list[str]:
    """`name` and every node below it, parents first."""
    tree = org_tree(session)
    return [n for n in tree.parents if name in tree.path_to_root(n)]


def archive_nodes(session: Session, names: Iterable[str], now: dt.datetime) -> list[str]:
    """Archive the named nodes (the caller names whole subtrees): they leave the lab's world, and so every
    new or still open round, while past rounds keep them in their frozen worlds.  Refused (NodeInUse,
    naming them) while a round not yet published still holds live requests of theirs: those requests would
    lose their team (an open round takes the lab's world; a closed or proposed one can be reopened).  A
    published or final round never changes its world again, so it keeps the node and does not hold it back.
    Returns the nodes archived now (already archived ones are left as they are)."""
    rows = [n for n in session.scalars(select(m.Node).where(m.Node.name.in_(list(names)))) if n.archived_at is None]
    if not rows:
        return []
    if any(n.parent_id is None for n in rows):
        raise Conflict("the org root cannot be archived; import a new tree instead")
    held = session.execute(
        select(m.Round.name, m.Round.state, m.Request.key, m.Node.name)
        .join(m.Request, m.Request.round_id == m.Round.id)
        .join(m.Node, m.Node.id == m.Request.team_id)
        .where(
            m.Request.team_id.in_([n.id for n in rows]),
            m.Request.withdrawn.is_(False),
            m.Round.state.not_in([wf.RoundState.published.value, wf.RoundState.final.value]),
        )
        .order_by(m.Round.id, m.Request.id)
    ).all()
    if held:
        shown = "; ".join(f"{key} ({team}) in round {rnd!r} ({state})" for rnd, state, key, team in held[:10])
        more = f" and {len(held) - 10} more" if len(held) > 10 else ""
        raise NodeInUse(
            f"cannot archive {', '.join(sorted(n.name for n in rows))}: live requests in rounds not yet published: "
            f"{shown}{more}; withdraw them while the round is open, or wait until it is published"
        )
    for n in rows:
        n.archived_at = now
    session.flush()
    return [n.name for n in rows]


def import_scenario(
    session: Session,
    scenario: Scenario,
    round_name: str | None = None,
    actor: str = "import",
    *,
    prune: bool = False,
    new_round: NewRound = NewRound(),
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Upsert pools and org nodes by name, set the lab's reference GPU and default policy, and load the
    requests into an open round if one is named (a new one is set up as `new_round` says).  Nodes missing
    from the file are kept, or archived with `prune` (see `archive_nodes`); a node the file names is live
    again.  Returns counts of what was written, and the nodes kept or archived."""
    settings = lab(session)
    settings.name = scenario.name
    settings.reference_gpu = scenario.reference_gpu
    settings.policy = scenario.policy.model_dump(mode="json")
    pools = {p.name: p for p in session.scalars(select(m.Pool))}
    for i, p in enumerate(scenario.pools):
        row = pools.get(p.name) or m.Pool(name=p.name)
        row.gpu, row.site, row.gpus, row.position = p.gpu, p.site, p.gpus, i
        session.add(row)
    nodes = nodes_by_name(session)

    def upsert(node: OrgNode, parent: m.Node | None, position: int) -> None:
        row = nodes.get(node.name) or m.Node(name=node.name)
        row.archived_at = None
        row.weight, row.guarantee, row.limit, row.position = (
            node.weight,
            dict(node.guarantee),
            dict(node.limit),
            position,
        )
        row.parent_id = parent.id if parent else None
        session.add(row)
        session.flush()
        nodes[node.name] = row
        for k, child in enumerate(node.children):
            upsert(child, row, k)

    old_roots = [n for n in nodes.values() if n.parent_id is None and n.name != scenario.org.name]
    upsert(scenario.org, None, 0)
    for stray in old_roots:  # a previous root that the new tree does not contain
        stray.parent_id = nodes[scenario.org.name].id
    in_file = {n.name for n in scenario.org.walk()}
    left_out = sorted(n.name for n in nodes.values() if n.name not in in_file and n.archived_at is None)
    archived = archive_nodes(session, left_out, now or m.utcnow()) if prune else []
    counts: dict[str, Any] = {
        "pools": len(scenario.pools),
        "nodes": len(in_file),
        "requests": 0,
        "kept": [] if prune else left_out,
        "archived": archived,
    }
    if round_name is not None:
        rnd = session.scalars(select(m.Round).where(m.Round.name == round_name)).first()
        if rnd is None:
            policy = scenario.policy
            if new_round.date is not None:
                policy = policy.model_copy(update={"date": new_round.date})
            rnd = m.Round(
                name=round_name,
                state=wf.RoundState.open.value,
                node_id=nodes[scenario.org.name].id,
                policy=policy.model_dump(mode="json"),
                appeal_window_hours=new_round.appeal_window_hours,
                appeal_response_hours=new_round.appeal_response_hours,
            )
            session.add(rnd)
            session.flush()
            audit(
                session,
                actor,
                "round.create",
                "round",
                rnd.id,
                None,
                {"name": round_name, "state": rnd.state, "policy": rnd.policy, "by": "import"},
            )
        elif rnd.state not in (wf.RoundState.draft.value, wf.RoundState.open.value):
            raise wf.IllegalTransition(
                f"round {round_name!r} is {rnd.state}; requests can be imported only into a new, draft or open round"
            )
        existing = {r.key: r for r in session.scalars(select(m.Request).where(m.Request.round_id == rnd.id))}
        for req in scenario.requests:
            req_row = existing.get(req.id) or m.Request(round_id=rnd.id)
            for k, v in request_fields(req).items():
                setattr(req_row, k, v)
            req_row.team_id = nodes[req.team].id
            session.add(req_row)
            session.flush()
            session.add(
                m.RequestVersion(
                    request_id=req_row.id, version=req_row.version, data=req.model_dump(mode="json"), author=actor
                )
            )
        counts["requests"] = len(scenario.requests)
    _check_rounds_still_fit(session)
    return counts


def export_scenario(session: Session, rnd: m.Round | None = None) -> Scenario:
    """The org, pools and policy; with a round, its requests and policy too."""
    if rnd is not None:
        return round_scenario(session, rnd)
    settings = lab(session)
    with _still_valid("the lab"):
        return Scenario(
            name=settings.name,
            reference_gpu=settings.reference_gpu,
            pools=pool_models(session),
            org=org_model(session),
            policy=Policy.model_validate(settings.policy or {}),
        )


def _check_rounds_still_fit(session: Session) -> None:
    """After an import: the lab (org nodes the file left out are kept, with their guarantees
    and limits) and every round that still takes the lab's world (draft or open: the others keep
    their own) must be valid scenarios on the new pools and tree; else the import is refused (the
    caller's transaction rolls back)."""
    session.flush()
    export_scenario(session)
    for rnd in session.scalars(select(m.Round).where(m.Round.world.is_(None)).order_by(m.Round.id)):
        round_scenario(session, rnd)


# --- members, grants, tokens ----------------------------------------------------------------


def actor_of(member: m.Member) -> wf.Actor:
    return wf.Actor(member.name, tuple(wf.Grant(wf.Role(g.role), g.node.name) for g in member.grants))


def ensure_member(session: Session, name: str, email: str | None = None) -> m.Member:
    member = session.scalars(select(m.Member).where(m.Member.name == name)).first()
    if member is None:
        member = m.Member(name=name, email=email)
        session.add(member)
        session.flush()
    elif email:
        member.email = email
    return member


def grant(session: Session, member: m.Member, role: wf.Role, node_name: str) -> m.Grant:
    node = get_node(session, node_name)
    for g in member.grants:
        if g.role == role.value and g.node_id == node.id:
            return g
    row = m.Grant(member=member, role=role.value, node=node)
    session.add(row)
    session.flush()
    return row


def create_token(session: Session, member: m.Member, label: str = "") -> str:
    """A new token for `member`; the plain text is returned once and never stored."""
    token = new_token()
    session.add(m.Token(member_id=member.id, digest=token_digest(token), label=label))
    session.flush()
    return token


def member_by_token(session: Session, token: str) -> m.Member | None:
    row = session.scalars(
        select(m.Token).where(m.Token.digest == token_digest(token), m.Token.revoked_at.is_(None))
    ).first()
    return row.member if row else None


_ACTOR_BY_DIGEST = (  # built once: every authenticated request runs it
    select(m.Member.name, m.Grant.role, m.Node.name)
    .select_from(m.Token)
    .join(m.Member, m.Member.id == m.Token.member_id)
    .outerjoin(m.Grant, m.Grant.member_id == m.Member.id)
    .outerjoin(m.Node, m.Node.id == m.Grant.node_id)
    .where(m.Token.digest == bindparam("digest"), m.Token.revoked_at.is_(None))
    .order_by(m.Grant.id)
)


def actor_by_token(session: Session, token: str) -> wf.Actor | None:
    """The caller behind a live token, as `actor_of(member_by_token(...))` but in one plain query
    that builds no ORM objects."""
    rows = session.execute(_ACTOR_BY_DIGEST, {"digest": token_digest(token)}).all()
    if not rows:
        return None
    name = rows[0][0]  # a digest is unique: every row is the same member
    return wf.Actor(name, tuple(wf.Grant(wf.Role(role), node) for _, role, node in rows if role is not None))


def audit(
    session: Session,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(
        m.AuditEntry(actor=actor, action=action, entity=entity, entity_id=str(entity_id), before=before, after=after)
    )


def names(rows: Iterable[Any]) -> list[str]:
    return [r.name for r in rows]
