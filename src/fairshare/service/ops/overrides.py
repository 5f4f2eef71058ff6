"""Overrides: a committee pins a request's GPUs in a proposal and the engine re-solves around the pin."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine.overrides import place
from fairshare.service.ops.rounds import active_pins, current_results, get_round, request_in_round, solve, visible_round
from fairshare.service.ops.unit import use_case
from fairshare.store import models as m
from fairshare.store.repo import NotFound, audit, org_tree, round_scenario


def list_overrides(session: Session, actor: wf.Actor, round_id: int) -> list[tuple[m.Override, str]]:
    """The round's overrides, active and past, each with its request's id."""
    visible_round(session, actor, round_id)
    rows = session.execute(
        select(m.Override, m.Request.key)
        .join(m.Request, m.Request.id == m.Override.request_id)
        .where(m.Override.round_id == round_id)
        .order_by(m.Override.id)
    ).all()
    return [(o, key) for o, key in rows]


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


@use_case
def remove_override(session: Session, actor: wf.Actor, round_id: int, override_id: int) -> tuple[m.Override, str]:
    """Lift an active override of a proposed round; the engine re-solves.  Returns it and its request's id."""
    rnd = get_round(session, round_id, lock=True)
    row = session.get(m.Override, override_id)
    if row is None or row.round_id != rnd.id or not row.active:
        raise NotFound(f"no active override {override_id} in round {round_id}")
    req = session.get(m.Request, row.request_id)
    assert req is not None
    wf.check_override(actor, org_tree(session), req.team.name)
    wf.check_adjustable(wf.RoundState(rnd.state))
    row.active = False
    session.flush()
    solve(session, rnd, trigger=f"override {row.id} removed by {actor.name}")
    audit(session, actor.name, "override.clear", "override", row.id, {"gpus": row.gpus}, None)
    return row, req.key


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
    which has checked who may do it; no commit."""
    scenario = round_scenario(session, rnd)
    current = current_results(session, rnd).get(req.key)
    have = {k: int(v) for k, v in (current.gpus if current else {}).items()}
    others = [p for p in active_pins(session, rnd) if p.request != req.key]
    taken: dict[str, int] = {}
    for p in others:
        for pool, n in p.gpus.items():
            taken[pool] = taken.get(pool, 0) + n
    placed = dict(gpus) if gpus is not None else place(scenario, req.key, int(total or 0), have, taken)
    before = {"gpus": have}
    session.execute(
        update(m.Override)
        .where(m.Override.round_id == rnd.id, m.Override.request_id == req.id, m.Override.active.is_(True))
        .values(active=False)
    )
    row = m.Override(round_id=rnd.id, request_id=req.id, gpus=placed, reason=reason, author=actor.name, source=source)
    session.add(row)
    session.flush()
    solve(session, rnd, trigger=f"override of {req.key} by {actor.name}")
    audit(
        session,
        actor.name,
        "override.set",
        "request",
        req.key,
        before,
        {"gpus": placed, "reason": reason, "source": source, "round": rnd.id},
    )
    return row
