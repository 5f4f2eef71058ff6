"""Overrides: a committee pins a request's GPUs in a proposal and the engine re-solves around the pin.

A pin is absorbed by the request's own branch first (`fairshare.engine.absorb`): the GPUs it adds
come from its siblings, then its team's sibling teams, up the tree only as far as needed, and a
committee's pin never moves GPUs outside the subtree it governs (refused, `OutsideSubtree`).  A
committee may not replace or remove a pin made by a committee above it (`DecidedAbove`).  Each
action is planned first (`plan_pin`, `plan_removal`): the plan is what a preview shows and what
the action saves, so the two cannot differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine import Allocation
from fairshare.engine.overrides import Pin, absorb, allocate_in_order, place
from fairshare.errors import Conflict, Forbidden, NotFound, UserError
from fairshare.service.ops.previews import (
    DecidedAbove,
    OutsideSubtree,
    Preview,
    authority,
    check_not_above,
    holding_of,
    holding_of_rows,
    moves,
    outside,
)
from fairshare.service.ops.rounds import (
    active_overrides,
    current_results,
    get_round,
    pin_of,
    request_in_round,
    solve,
    visible_round,
)
from fairshare.service.ops.unit import use_case
from fairshare.store import models as m
from fairshare.store.repo import audit, org_tree, round_scenario


def list_overrides(session: Session, actor: wf.Actor, round_id: int) -> list[tuple[m.Override, str]]:
    """The round's overrides, active and past (a replaced one names the override that replaced it), each
    with its request's id."""
    visible_round(session, actor, round_id)
    rows = session.execute(
        select(m.Override, m.Request.key)
        .join(m.Request, m.Request.id == m.Override.request_id)
        .where(m.Override.round_id == round_id)
        .order_by(m.Override.id)
    ).all()
    return [(o, key) for o, key in rows]


@dataclass(frozen=True)
class Plan:
    """What an action would do: the allocation after it, what moves, and why it is refused (if it is)."""

    after: Allocation | None
    preview: Preview
    error: Conflict | None
    placed: dict[str, int]
    authority: str | None


def plan_pin(
    session: Session,
    actor: wf.Actor,
    rnd: m.Round,
    req: m.Request,
    total: int | None,
    gpus: dict[str, int] | None,
    reason: str,
) -> Plan:
    """The round after pinning `req` (replacing its active pin): the pin absorbed by its branch, checked
    against the subtree `actor`'s committee governs and the committee that made the pin it replaces."""
    scenario = round_scenario(session, rnd)
    tree = org_tree(session)
    current = current_results(session, rnd)
    have = {k: int(v) for k, v in (current[req.key].gpus if req.key in current else {}).items()}
    rows = active_overrides(session, rnd)
    mine = authority(actor, tree, req.team.name)
    replaced = next((o for o, _ in rows if o.request_id == req.id), None)
    others = [pin_of(o, k) for o, k in rows if o.request_id != req.id]
    taken: dict[str, int] = {}
    for p in others:
        for pool, n in p.gpus.items():
            taken[pool] = taken.get(pool, 0) + n
    base = allocate_in_order(scenario, others)
    placed = dict(gpus) if gpus is not None else place(scenario, req.key, int(total or 0), have, taken, base)
    done = absorb(scenario, base, [*others, Pin(req.key, placed, reason)], req.key)
    before, after = holding_of_rows(current.values()), holding_of(done.allocation)
    error: Conflict | None = None
    above = check_not_above(tree, mine, replaced, "replace") if replaced is not None else None
    if above:
        error = DecidedAbove(above)
    elif mine is not None and (why := outside(tree, mine, before, after)):
        error = OutsideSubtree(why)
    return Plan(
        done.allocation, Preview(moves(before, after), str(error) if error else None, done.scope), error, placed, mine
    )


def plan_removal(session: Session, actor: wf.Actor, rnd: m.Round, row: m.Override) -> Plan:
    """The round without the override `row`: the others replayed in order, as if it had never been made."""
    scenario = round_scenario(session, rnd)
    tree = org_tree(session)
    req = session.get(m.Request, row.request_id)
    assert req is not None
    mine = authority(actor, tree, req.team.name)
    pins = [pin_of(o, k) for o, k in active_overrides(session, rnd) if o.id != row.id]
    alloc = allocate_in_order(scenario, pins)
    before, after = holding_of_rows(current_results(session, rnd).values()), holding_of(alloc)
    error: Conflict | None = None
    if above := check_not_above(tree, mine, row, "remove"):
        error = DecidedAbove(above)
    elif mine is not None and (why := outside(tree, mine, before, after)):
        error = OutsideSubtree(why)
    return Plan(alloc, Preview(moves(before, after), str(error) if error else None, row.scope), error, {}, mine)


def refused(error: UserError) -> Preview:
    """A preview of an action refused before anything was computed."""
    return Preview([], str(error), None)


@use_case
def add_override(
    session: Session,
    actor: wf.Actor,
    round_id: int,
    request_key: str,
    total: int | None,
    gpus: dict[str, int] | None,
    reason: str,
) -> m.Override:
    """Pin a request of a proposed round (its committee): a total spread over its pools, or GPUs per pool."""
    rnd = get_round(session, round_id, lock=True)
    req = request_in_round(session, rnd, request_key)
    wf.check_override(actor, org_tree(session), req.team.name)
    wf.check_adjustable(wf.RoundState(rnd.state))
    return pin(session, actor, rnd, req, total, gpus, reason)


def preview_override(
    session: Session,
    actor: wf.Actor,
    round_id: int,
    request_key: str,
    total: int | None,
    gpus: dict[str, int] | None,
    reason: str,
) -> Preview:
    """What `add_override` would change, and why it would be refused; nothing is saved."""
    rnd = get_round(session, round_id)
    req = request_in_round(session, rnd, request_key)
    wf.check_override(actor, org_tree(session), req.team.name)
    try:
        wf.check_adjustable(wf.RoundState(rnd.state))
        return plan_pin(session, actor, rnd, req, total, gpus, reason).preview
    except (NotFound, Forbidden):
        raise
    except UserError as e:
        return refused(e)


def _removable(session: Session, actor: wf.Actor, rnd: m.Round, override_id: int) -> tuple[m.Override, m.Request]:
    row = session.get(m.Override, override_id)
    if row is None or row.round_id != rnd.id or not row.active:
        raise NotFound(f"no active override {override_id} in round {rnd.id}")
    req = session.get(m.Request, row.request_id)
    assert req is not None
    wf.check_override(actor, org_tree(session), req.team.name)
    return row, req


@use_case
def remove_override(session: Session, actor: wf.Actor, round_id: int, override_id: int) -> tuple[m.Override, str]:
    """Lift an active override of a proposed round: the round as if it had never been made.  Returns it
    and its request's id."""
    rnd = get_round(session, round_id, lock=True)
    row, req = _removable(session, actor, rnd, override_id)
    wf.check_adjustable(wf.RoundState(rnd.state))
    plan = plan_removal(session, actor, rnd, row)
    if plan.error is not None:
        raise plan.error
    row.active = False
    row.ended_by = actor.name
    session.flush()
    solve(session, rnd, trigger=f"override {row.id} removed by {actor.name}", alloc=plan.after)
    audit(session, actor.name, "override.clear", "override", row.id, {"gpus": row.gpus}, None)
    return row, req.key


def preview_removal(session: Session, actor: wf.Actor, round_id: int, override_id: int) -> Preview:
    """What `remove_override` would change, and why it would be refused; nothing is saved."""
    rnd = get_round(session, round_id)
    row, _ = _removable(session, actor, rnd, override_id)
    try:
        wf.check_adjustable(wf.RoundState(rnd.state))
        return plan_removal(session, actor, rnd, row).preview
    except (NotFound, Forbidden):
        raise
    except UserError as e:
        return refused(e)


def pin(
    session: Session,
    actor: wf.Actor,
    rnd: m.Round,
    req: m.Request,
    total: int | None,
    gpus: dict[str, int] | None,
    reason: str,
    source: str = "committee",
) -> m.Override:
    """Replace the request's active pin and re-solve: a step of a use case (an override, a ruling),
    which has checked who may do it; no commit.  Refused (nothing changed) if the pin cannot be
    absorbed inside the actor's subtree or replaces a pin of a committee above."""
    plan = plan_pin(session, actor, rnd, req, total, gpus, reason)
    if plan.error is not None:
        raise plan.error
    current = current_results(session, rnd).get(req.key)
    before = {"gpus": {k: int(v) for k, v in (current.gpus if current else {}).items()}}
    replaced = session.scalars(
        select(m.Override).where(
            m.Override.round_id == rnd.id, m.Override.request_id == req.id, m.Override.active.is_(True)
        )
    ).all()
    row = m.Override(
        round_id=rnd.id,
        request_id=req.id,
        gpus=plan.placed,
        reason=reason,
        author=actor.name,
        source=source,
        authority=plan.authority,
        scope=plan.preview.scope,
    )
    session.add(row)
    session.flush()
    for old in replaced:
        old.active, old.replaced_by, old.ended_by = False, row.id, actor.name
    session.flush()
    solve(session, rnd, trigger=f"override of {req.key} by {actor.name}", alloc=plan.after)
    audit(
        session,
        actor.name,
        "override.set",
        "request",
        req.key,
        before,
        {
            "gpus": plan.placed,
            "reason": reason,
            "source": source,
            "round": rnd.id,
            "absorbed_by": plan.preview.scope,
            "replaced": [o.id for o in replaced],
        },
    )
    return row
